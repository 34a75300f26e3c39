"""Typed configuration, with lmnt's defaults and lmnt's ``params`` key names on the wire.

Settings travel through the code as frozen dataclasses. On disk (``--config FILE.json``
and every checkpoint's ``params``) they use the flat key names of lmnt's ``params.py``
(``residual_channels``, ``noise_schedule``, …) so that checkpoints written by lmnt's code
load unchanged and ours load in lmnt's code.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

from runtime.bundle import BundleMetadata, FeatureSpec
from runtime.schedule import FAST_BETAS, TRAINING_BETAS

#: The hop the spectrogram upsampler is built for: two transposed convolutions of stride 16.
UPSAMPLER_HOP = 256


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (DiffWave paper, base model: 30 layers × 64 channels, dilation cycle 10)."""

    residual_layers: int = 30
    residual_channels: int = 64
    dilation_cycle_length: int = 10
    unconditional: bool = False


@dataclass(frozen=True)
class DiffusionConfig:
    """Training betas and the named inference schedules."""

    noise_schedule: tuple[float, ...] = TRAINING_BETAS
    inference_noise_schedule: tuple[float, ...] = FAST_BETAS

    def named_schedules(self) -> dict[str, tuple[float, ...]]:
        """``fast`` = the short inference schedule, ``full`` = the training schedule."""
        return {"fast": tuple(self.inference_noise_schedule), "full": tuple(self.noise_schedule)}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (lmnt: batch 16, Adam lr 2e-4, 62-frame crops, no clipping)."""

    batch_size: int = 16
    learning_rate: float = 2e-4
    max_grad_norm: Optional[float] = None  #: None = no clipping, as lmnt
    crop_mel_frames: int = 62  #: training crop, in spectrogram frames
    audio_len: int = 22050 * 5  #: crop length in samples for unconditional training
    ema_decay: Optional[float] = None  #: e.g. 0.9999 keeps an exponential moving average of the weights
    seed: int = 0
    #: Weight of the log-magnitude STFT term on x̂₀ (diffwave/spectral_loss.py); 0 = lmnt's loss alone.
    spectral_loss_weight: float = 0.0
    #: The term covers training steps 0..spectral_loss_max_step (4: the fast schedule's three finest).
    spectral_loss_max_step: int = 4
    #: Share of each batch's rows trained at the steps the fast schedule samples with (the training
    #: step nearest each inference step) instead of a uniform step; 0 = lmnt's uniform draw.
    fast_step_share: float = 0.0


@dataclass(frozen=True)
class DiffWaveConfig:
    """Everything a checkpoint needs to be rebuilt, exported and served."""

    features: FeatureSpec = field(default_factory=FeatureSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # -- the lmnt-compatible flat form -------------------------------------------------
    def to_params(self) -> dict[str, Any]:
        """Flat dict with lmnt's key names (plus our extra feature keys), JSON- and torch.load-safe."""
        params: dict[str, Any] = {}
        params.update(_plain(asdict(self.model)))
        params.update(_plain(asdict(self.diffusion)))
        params.update(_plain(asdict(self.train)))
        feats = _plain(asdict(self.features))
        # lmnt's names for the three feature settings it has; ours keep their own names.
        params["sample_rate"] = feats.pop("sample_rate")
        params["n_mels"] = feats.pop("n_mels")
        params["n_fft"] = feats.pop("n_fft")
        params["hop_samples"] = feats.pop("hop_samples")
        params.update({f"feature_{k}": v for k, v in feats.items()})
        return params

    @classmethod
    def from_params(cls, params: dict[str, Any], strict: bool = True) -> "DiffWaveConfig":
        """Inverse of :meth:`to_params`. Unknown keys raise when ``strict`` (a typo must not be ignored)."""
        return cls().override(params, strict=strict)

    def override(self, params: dict[str, Any], strict: bool = True) -> "DiffWaveConfig":
        """A copy with the given lmnt-style keys replaced, e.g. ``{"residual_layers": 4}``."""
        sections = {"model": self.model, "diffusion": self.diffusion, "train": self.train}
        updates: dict[str, dict[str, Any]] = {name: {} for name in sections}
        feature_updates: dict[str, Any] = {}
        unknown = []
        feature_names = {f.name for f in fields(FeatureSpec)}
        for key, value in params.items():
            if key in ("sample_rate", "n_mels", "n_fft", "hop_samples"):
                feature_updates[key] = value
                continue
            if key.startswith("feature_") and key[len("feature_"):] in feature_names:
                feature_updates[key[len("feature_"):]] = value
                continue
            for name, section in sections.items():
                if key in {f.name for f in fields(section)}:
                    updates[name][key] = value
                    break
            else:
                unknown.append(key)
        if unknown and strict:
            known = sorted(set(self.to_params()))
            raise ValueError(f"unknown config key(s) {', '.join(sorted(unknown))}; known keys: {', '.join(known)}")
        for key in ("noise_schedule", "inference_noise_schedule"):
            if key in updates["diffusion"]:
                updates["diffusion"][key] = tuple(float(b) for b in updates["diffusion"][key])
        config = replace(
            self,
            features=replace(self.features, **feature_updates),
            model=replace(self.model, **updates["model"]),
            diffusion=replace(self.diffusion, **updates["diffusion"]),
            train=replace(self.train, **updates["train"]),
        )
        config.validate()
        return config

    @classmethod
    def from_json(cls, path: str | Path, base: Optional["DiffWaveConfig"] = None) -> "DiffWaveConfig":
        """Read a ``--config`` file: a JSON object of lmnt-style keys overriding ``base`` (default: lmnt's)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read config ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file holds a JSON object of parameter names")
        try:
            return (base or cls()).override(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def bundle_metadata(self) -> "BundleMetadata":
        """The ``model.json`` contents this config implies (no ONNX or plan entries yet)."""
        return BundleMetadata(
            sample_rate=self.features.sample_rate,
            hop_samples=self.features.hop_samples,
            n_mels=self.features.n_mels,
            unconditional=self.model.unconditional,
            noise_schedule=tuple(self.diffusion.noise_schedule),
            inference_schedules=self.diffusion.named_schedules(),
            features=self.features,
            params=self.to_params(),
        )

    def validate(self) -> None:
        m, f = self.model, self.features
        f.validate()
        for section in (self.model, self.train):
            _check_types(section)
        t = self.train
        if t.learning_rate < 0:  # finite: _check_types
            raise ValueError(f"learning_rate={t.learning_rate!r}: must be a finite number >= 0")
        if t.max_grad_norm is not None and t.max_grad_norm <= 0:
            # a negative limit would flip every gradient (the loss climbs); 0 would read as "no clipping"
            raise ValueError(f"max_grad_norm={t.max_grad_norm!r}: must be positive, or null for no clipping")
        if t.ema_decay is not None and not 0.0 <= t.ema_decay < 1.0:
            raise ValueError(f"ema_decay={t.ema_decay!r}: must lie in [0, 1) (e.g. 0.999), or null for no average")
        if t.seed < 0:
            raise ValueError(f"seed={t.seed}: must be >= 0")
        if t.audio_len < 1:
            raise ValueError(f"audio_len={t.audio_len}: must be a positive number of samples")
        if m.residual_layers < 1 or m.residual_channels < 1 or m.dilation_cycle_length < 1:
            raise ValueError("residual_layers, residual_channels and dilation_cycle_length must be positive")
        if not m.unconditional and f.hop_samples != UPSAMPLER_HOP:
            raise ValueError(
                f"hop_samples={f.hop_samples}: the conditional model's upsampler is built for a hop of {UPSAMPLER_HOP}"
            )
        if self.train.crop_mel_frames < 1 or self.train.batch_size < 1:
            raise ValueError("crop_mel_frames and batch_size must be positive")
        if not self.train.spectral_loss_weight >= 0:  # also refuses NaN
            raise ValueError(f"spectral_loss_weight={self.train.spectral_loss_weight}: must be 0 (off) or positive")
        if not 0 <= self.train.spectral_loss_max_step < len(self.diffusion.noise_schedule):
            raise ValueError(
                f"spectral_loss_max_step={self.train.spectral_loss_max_step}: must be a training step, "
                f"0..{len(self.diffusion.noise_schedule) - 1}"
            )
        if not 0.0 <= self.train.fast_step_share <= 1.0:  # also refuses NaN
            raise ValueError(f"fast_step_share={self.train.fast_step_share}: must be a share of the batch, 0..1")


def _check_types(section: Any) -> None:
    """Each field of a config section has its annotated type: a JSON 2.5 where an int belongs, or a
    string where a number belongs, is refused here, naming the key, instead of failing deep in torch."""
    for name, hint in typing.get_type_hints(type(section)).items():
        value = getattr(section, name)
        optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
        if optional:
            if value is None:
                continue
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if hint is bool:
            ok = isinstance(value, bool)
        elif hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            continue
        if not ok:
            kind = {bool: "true or false", int: "an integer", float: "a finite number"}[hint]
            raise ValueError(f"{name}={value!r}: must be {kind}{' or null' if optional else ''}")


def network_param_keys() -> frozenset[str]:
    """``params`` keys fixed once a network is trained: its architecture, features and training schedule.

    Changing any of these on an existing checkpoint would silently change what the weights mean,
    so resuming training refuses it and inference ignores such overrides.
    """
    feature_keys = {k for k in DiffWaveConfig().to_params() if k.startswith("feature_")}
    fixed = {"sample_rate", "n_mels", "n_fft", "hop_samples", "noise_schedule"}
    return frozenset({f.name for f in fields(ModelConfig)} | fixed | feature_keys)


#: Network keys that leave every weight's shape as it is. A new run started from a checkpoint
#: (``--init-from``) may change them: the weights load, and training adapts them to the new
#: arrangement. Why it matters: a dilation cycle of 6 cannot hold a partial's phase over a pitch
#: period's worth of context, and 10 can at the same cost (models/README.md, "Can the CPU network
#: hold a partial's phase?"); moving a trained model to 10 is cheaper than training it again.
#: Resuming a run never changes them: its optimizer state belongs to the old arrangement.
SHAPE_FREE_NETWORK_KEYS = frozenset({"dilation_cycle_length"})


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples to lists, so the dict survives JSON and ``torch.load(weights_only=True)`` unchanged."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
