"""The ``model.json`` schema: what export writes beside ``model.onnx`` / ``*.plan`` and the runtime reads.

This is the one place the file format is defined (DESIGN.md, "Bundle metadata"). A
bundle is self-describing so that the runtime never guesses: it learns the audio and
feature settings, the noise schedules, and, for every TensorRT plan, the exact build
settings it must check before trusting the plan bytes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

from .receptive_field import upsampler_hop

FORMAT_VERSION = 1
#: The named inference schedules every bundle holds: "fast" (the short schedule) and "full" (the training one).
REQUIRED_SCHEDULES = ("fast", "full")
METADATA_NAME = "model.json"


class BundleError(ValueError):
    """A bundle or its metadata is missing, unreadable or inconsistent (message is one line)."""


@dataclass(frozen=True)
class FeatureSpec:
    """How a waveform becomes the log-mel spectrogram the model is conditioned on.

    The default is lmnt's torchaudio recipe (DESIGN.md, "Features"). Other front ends are
    a different set of these values, never a code fork.
    """

    preset: str = "lmnt"
    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_samples: int = 256
    n_mels: int = 80
    f_min: float = 20.0
    f_max: Optional[float] = None  #: None means sample_rate / 2
    mel_scale: str = "htk"  #: "htk" or "slaney"
    mel_norm: Optional[str] = None  #: None or "slaney" (area-normalised filters)
    normalized: bool = True  #: divide |STFT| by sqrt(sum(window²)) (torchaudio's normalized=True)
    power: float = 1.0  #: 1 = magnitude, 2 = power
    compression: str = "lmnt_db"  #: "lmnt_db": clip((20·log10(max(m,ε)) − 20 + 100)/100, 0, 1); "ln": ln(max(m, ε))
    clip_min: float = 1e-5  #: ε above

    @property
    def fmax(self) -> float:
        return float(self.f_max) if self.f_max is not None else self.sample_rate / 2.0

    def frames_for(self, samples: int) -> int:
        """Frames of a centred STFT of ``samples`` samples: 1 + samples // hop."""
        return 1 + samples // self.hop_samples

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        spec = cls(**_known(cls, data, "features"))
        spec.validate()
        return spec

    def validate(self) -> None:
        """Refuse settings no STFT or filterbank can use, naming the field (a :class:`BundleError`)."""
        _require_positive_ints(self, ("sample_rate", "n_fft", "win_length", "hop_samples", "n_mels"), "features: ")
        if self.win_length > self.n_fft:
            raise BundleError(f"features: win_length {self.win_length} is longer than n_fft {self.n_fft}")
        for name in ("f_min", "power", "clip_min"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise BundleError(f"features: {name} must be a non-negative number, got {value!r}")
        if not (self.power > 0 and self.clip_min > 0):
            raise BundleError(f"features: power and clip_min must be positive, got {self.power!r} and {self.clip_min!r}")
        if self.f_max is not None and (
            isinstance(self.f_max, bool) or not isinstance(self.f_max, (int, float)) or not self.f_min < self.f_max <= self.sample_rate / 2
        ):
            raise BundleError(f"features: f_max must lie above f_min {self.f_min} and at most sample_rate/2, got {self.f_max!r}")
        choices = {"mel_scale": ("htk", "slaney"), "mel_norm": (None, "slaney"), "compression": ("lmnt_db", "ln"), "normalized": (True, False)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise BundleError(f"features: {name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Profile:
    """A TensorRT optimisation profile: batch and frame ranges (samples = frames × hop)."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 4
    min_frames: int = 16
    opt_frames: int = 256
    max_frames: int = 1024

    def __post_init__(self) -> None:
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise BundleError(
                f"profile batch bounds must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )
        if not (1 <= self.min_frames <= self.opt_frames <= self.max_frames):
            raise BundleError(
                f"profile frame bounds must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_frames}/{self.opt_frames}/{self.max_frames}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Profile":
        return cls(**_known(cls, data, "profile"))


@dataclass(frozen=True)
class PlanInfo:
    """What one serialized engine was built from and for; the runtime checks it before loading."""

    file: str  #: plan file name inside the bundle, e.g. "model.plan" or "model.rtx.plan"
    target: str  #: "tensorrt" or "rtx"
    library_version: str  #: version of the TensorRT module that built it
    precision: str  #: "fp16" or "fp32"
    profile: Profile
    onnx_file: str  #: the ONNX graph it was built from
    onnx_sha256: str
    gpu_name: Optional[str] = None  #: the GPU it was built on (None: built without a GPU)
    compute_capability: Optional[str] = None  #: e.g. "9.0"; None when built without a GPU
    compute_capabilities: tuple[str, ...] = ()  #: capabilities the plan runs on, where the target documents them
    plan_sha256: Optional[str] = None  #: hash of the plan bytes, so a swapped plan file is detected

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlanInfo":
        data = _known(cls, data, "plan")
        data["profile"] = Profile.from_dict(data.get("profile", {}))
        data["compute_capabilities"] = tuple(data.get("compute_capabilities", ()))
        return cls(**data)


@dataclass(frozen=True)
class BundleMetadata:
    """Contents of ``model.json``."""

    sample_rate: int
    hop_samples: int
    n_mels: int
    unconditional: bool
    noise_schedule: tuple[float, ...]  #: the training betas
    inference_schedules: dict[str, tuple[float, ...]]  #: at least "fast" and "full"
    features: FeatureSpec
    onnx: dict[str, str] = field(default_factory=dict)  #: precision -> file name ("fp32": "model.onnx")
    onnx_sha256: dict[str, str] = field(default_factory=dict)  #: file name -> sha256
    plans: tuple[PlanInfo, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)  #: the checkpoint's full lmnt-style params
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = METADATA_NAME) -> "BundleMetadata":
        """Parse and check ``model.json``'s content; every problem is one :class:`BundleError` naming ``source``."""
        if not isinstance(data, dict):
            raise BundleError(f"{source}: malformed metadata (expected a JSON object, got {type(data).__name__})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        try:
            data = _known(cls, data, source)
            data["noise_schedule"] = _betas(data["noise_schedule"], "noise_schedule")
            schedules = data["inference_schedules"]
            if not isinstance(schedules, dict):
                raise BundleError(f"inference_schedules must map names to lists of betas, got {schedules!r}")
            data["inference_schedules"] = {name: _betas(b, f"inference_schedules[{name!r}]") for name, b in schedules.items()}
            data["features"] = FeatureSpec.from_dict(data["features"])
            data["plans"] = tuple(PlanInfo.from_dict(p) for p in data.get("plans", ()))
            metadata = cls(**data)
            metadata._check()
        except BundleError as exc:
            message = str(exc)
            raise BundleError(message if message.startswith(source) else f"{source}: {message}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{source}: malformed metadata ({type(exc).__name__}: {exc})") from None
        return metadata

    def _check(self) -> None:
        """Types, ranges and the fields that are stated twice (top level and ``features``)."""
        for name in ("sample_rate", "hop_samples", "n_mels"):
            _require_positive_ints(self, (name,))
            value = getattr(self, name)
            if getattr(self.features, name) != value:
                raise BundleError(f"{name}={value!r} disagrees with features.{name}={getattr(self.features, name)!r}")
        if not isinstance(self.unconditional, bool):
            raise BundleError(f"unconditional must be true or false, got {self.unconditional!r}")
        if not isinstance(self.params, dict):
            raise BundleError(f"params must be an object, got {self.params!r}")
        missing = [name for name in REQUIRED_SCHEDULES if name not in self.inference_schedules]
        if missing:
            raise BundleError(f"inference_schedules lacks {' and '.join(map(repr, missing))} (export writes both)")
        if not self.unconditional and self.hop_samples != upsampler_hop():
            raise BundleError(
                f"hop_samples={self.hop_samples}, but the network's upsampler makes {upsampler_hop()} samples of every "
                "frame: this metadata does not describe its graph (re-export the bundle)"
            )

    def plan(self, file_name: str) -> PlanInfo:
        for info in self.plans:
            if info.file == file_name:
                return info
        known = ", ".join(p.file for p in self.plans) or "none"
        raise BundleError(f"{METADATA_NAME} has no entry for plan {file_name!r} (plans recorded: {known})")

    def with_plan(self, info: PlanInfo) -> "BundleMetadata":
        """A copy with ``info`` added, replacing any earlier entry for the same file."""
        others = tuple(p for p in self.plans if p.file != info.file)
        return replace(self, plans=others + (info,))

    def write(self, directory: str | os.PathLike) -> Path:
        """Write ``model.json`` atomically (temp file in the same directory, then rename)."""
        path = Path(directory) / METADATA_NAME
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory: str | os.PathLike) -> "BundleMetadata":
        path = Path(directory) / METADATA_NAME
        if not path.is_file():
            raise BundleError(f"{path}: missing bundle metadata (export writes it beside the model)")
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path}: unreadable metadata ({exc})") from None
        return cls.from_dict(data, source=str(path))


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temp name in the target directory, fsync, then rename: never a half-written file."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the caller to write; renamed onto ``path`` on success.

    Readers never see half a file (a crash or an exception deletes the temporary instead),
    and the result gets the permissions a plain ``open()`` would give: mkstemp's 0600 would
    hide bundles, wavs and figures from other users (a service account, a web server).
    ``suffix`` matters to writers that pick the format from the name (soundfile, matplotlib).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def stale_temporaries(folder: str | os.PathLike, suffix: str = ".tmp") -> Iterator[tuple[str, Path]]:
    """(the name it was for, the file) for each temporary of :func:`atomic_output` in ``folder``.

    Only a killed process (SIGKILL, a power cut) leaves one behind; the caller decides which of
    them are its own to remove. The names are mkstemp's: ``.<name>.<8 random characters><suffix>``.
    """
    pattern = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}" + re.escape(suffix))
    for path in Path(folder).glob(f".*{suffix}"):
        match = pattern.fullmatch(path.name)
        if match:
            yield match["name"], path


def current_umask() -> int:
    """The process umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _require_positive_ints(obj: Any, names: tuple[str, ...], prefix: str = "") -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BundleError(f"{prefix}{name} must be a positive integer, got {value!r}")


def _betas(values: Any, what: str) -> tuple[float, ...]:
    """A non-empty list of noise levels, each strictly between 0 and 1."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise BundleError(f"{what} must be a list of betas, got {values!r}")
    try:
        betas = tuple(float(b) for b in values)
    except (TypeError, ValueError):
        raise BundleError(f"{what} must be a list of numbers, got {values!r}") from None
    if not betas or not all(0.0 < b < 1.0 for b in betas):
        raise BundleError(f"{what} must be a non-empty list of betas in (0, 1), got {list(betas)}")
    return betas


def _known(cls: type, data: dict[str, Any], source: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BundleError(f"{source} must be an object, got {data!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise BundleError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}")
    return dict(data)

