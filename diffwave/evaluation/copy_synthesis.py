"""Copy-synthesis: features of a recording -> vocoder -> audio, scored against the recording.

Each file is read at the models' sample rate, turned into features with the models' own
feature settings, and vocoded by every system; Griffin-Lim on the same features and the
recording itself are scored alongside, so each number has an anchor (Griffin-Lim) and a
ceiling (the original). Models are given the same seed, so two backends of one model
start from identical noise and their SNR measures the backends, not the sampling.

The vocoders are plain callables here (features [n_mels, F] -> audio [samples]); the CLI
wraps ``runtime.Vocoder`` into them, tests may wrap anything.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from runtime.bundle import FeatureSpec

from .griffin_lim import DEFAULT_ITERATIONS, griffin_lim
from .metrics import mel_cycle_distance_db, mrstft_distance, snr_db
from .periodicity import periodicity
from .report import GRIFFIN_LIM, ORIGINAL, EvalReport, Row, SnrRow, SystemInfo

VocodeFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Synthesizer:
    """A model to evaluate: its table entry and the function that vocodes one utterance."""

    info: SystemInfo
    vocode: VocodeFn


def find_wavs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Wav files named directly or found (non-recursively, sorted, hidden names skipped) in the given folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            wavs = sorted(w for w in p.glob("*.wav") if not w.name.startswith("."))
            if not wavs:
                raise FileNotFoundError(f"{p}: no .wav files in this folder")
            found.extend(wavs)
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return found


def system_names(model_names: Sequence[str], griffin_lim_iterations: int) -> list[str]:
    """The table's systems in order: the original, Griffin-Lim, then the models."""
    return [ORIGINAL, f"{GRIFFIN_LIM}-{griffin_lim_iterations}", *model_names]


def output_plan(
    files: Sequence[str | os.PathLike],
    names: Sequence[str],
    save_audio: Optional[str | os.PathLike] = None,
    spectrograms: Optional[str | os.PathLike] = None,
) -> list[tuple[Path, Optional[str], Path]]:
    """(recording, system or None for its figure, output file) for every file :func:`evaluate` writes.

    With ``save_audio``: ``<save_audio>/<system>/<recording's name>`` for every system but the
    original; with ``spectrograms``: ``<spectrograms>/<recording's stem>.png``.
    """
    plan: list[tuple[Path, Optional[str], Path]] = []
    for path in map(Path, files):
        if save_audio is not None:
            plan += [(path, name, Path(save_audio) / _safe(name) / path.name) for name in names if name != ORIGINAL]
        if spectrograms is not None:
            plan.append((path, None, Path(spectrograms) / f"{path.stem}.png"))
    return plan


def check_outputs(
    files: Sequence[str | os.PathLike],
    names: Sequence[str],
    save_audio: Optional[str | os.PathLike] = None,
    spectrograms: Optional[str | os.PathLike] = None,
    json_file: Optional[str | os.PathLike] = None,
    inputs: Optional[Sequence[str | os.PathLike]] = None,
) -> None:
    """Refuse, before any work, outputs that would overwrite an input recording or each other.

    ``inputs``: every recording that must not be overwritten (default ``files``; the command
    passes all it found, also those ``--limit`` leaves out). Raises ValueError, one line:
    ``<recording>: … would overwrite this input recording`` or ``A and B would both be written to C``.
    """
    protected: dict[Path, Path] = {}
    for path in map(Path, inputs if inputs is not None else files):
        for key in (_where(path), path.resolve()):
            protected.setdefault(key, path)
    outputs: list[tuple[str, Optional[Path], Optional[str], Path]] = []  # (option, recording, system, file)
    if json_file is not None:
        outputs.append(("--json", None, None, Path(json_file)))
    for source, system, target in output_plan(files, names, save_audio, spectrograms):
        outputs.append(("--save-audio" if system is not None else "--spectrograms", source, system, target))
    written: dict[Path, tuple[str, Optional[Path], Optional[str]]] = {}
    for option, source, system, target in outputs:
        key = _where(target)
        if key in protected:
            what = "" if source is None else f" with {system}'s output for {source}" if system else f" with the spectrogram of {source}"
            raise ValueError(f"{protected[key]}: {option} would overwrite this input recording{what}")
        if key in written:
            first = written[key]
            if first[1] is None or source is None:  # the report and a recording's output
                owners = f"{_what(*first)} and {_what(option, source, system)}"
            elif _where(first[1]) != _where(source):
                owners = f"{first[1]} and {source}"
            elif first[2] == system:
                continue  # the same recording listed twice: the same output, written twice
            else:  # two system names that make the same folder name
                owners = f"{source}: {first[2]} and {system}"
            raise ValueError(f"{owners} would both be written to {target}")
        written[key] = (option, source, system)


def _where(path: Path) -> Path:
    """Where writing ``path`` lands: its folder resolved, the name kept (a rename replaces a link, not its target)."""
    path = Path(path).absolute()
    return path.parent.resolve() / path.name


def _what(option: str, source: Optional[Path], system: Optional[str]) -> str:
    if source is None:
        return "the --json report"
    return f"{system}'s output for {source}" if system is not None else f"the spectrogram of {source}"


def evaluate(
    files: Sequence[Path],
    synthesizers: Sequence[Synthesizer],
    spec: FeatureSpec,
    steps: str | tuple[float, ...] = "fast",
    seed: int = 0,
    griffin_lim_iterations: int = DEFAULT_ITERATIONS,
    perceptual: bool = True,
    save_audio: Optional[Path] = None,
    progress: bool = True,
    spectrograms: Optional[Path] = None,
) -> EvalReport:
    """Score every synthesizer (and Griffin-Lim, and the original) on every file.

    Every file is checked before any is vocoded: an unusable wav raises
    :class:`~diffwave.audio.AudioError` (one line naming the file) at once, not after
    minutes spent on the files before it. With ``spectrograms``, one PNG per file
    (original, Griffin-Lim, each model) is written there, named after the wav.
    """
    from tqdm import tqdm

    from diffwave.audio import feature_min_samples, read_wav

    names = system_names([s.info.name for s in synthesizers], griffin_lim_iterations)
    gl = SystemInfo(names[1], GRIFFIN_LIM)
    systems = [SystemInfo(ORIGINAL, ORIGINAL), gl, *(s.info for s in synthesizers)]
    if len(set(names)) != len(names):
        raise ValueError(f"two systems share a name: {names}")
    check_outputs(files, names, save_audio, spectrograms)
    report = EvalReport(
        steps=steps,
        seed=seed,
        sample_rate=spec.sample_rate,
        griffin_lim_iterations=griffin_lim_iterations,
        perceptual=perceptual,
        systems=systems,
        files=[str(f) for f in files],
    )
    for path in files:  # every input checked before any work (the same check as _synthesize's)
        audio = read_wav(path, spec.sample_rate, feature_min_samples(spec.n_fft))
        if perceptual:
            _check_long_enough_for_pesq(Path(path), audio.shape[0], spec.sample_rate)
    with tqdm(files, desc="eval", unit="file", disable=not progress) as bar:
        for path in bar:
            original, features, outputs = _synthesize(Path(path), synthesizers, spec, gl.name, griffin_lim_iterations, seed)
            for name in names:
                report.rows.append(_score(str(path), name, outputs[name], original, features, spec, perceptual))
            for _, system, target in output_plan([path], names, save_audio, spectrograms):  # the paths check_outputs checked
                if system is not None:
                    _save(target, outputs[system][: original.shape[0]], spec)
                else:
                    from .figures import write_spectrogram_figure

                    shared = {name: outputs[name][: original.shape[0]] for name in names}
                    write_spectrogram_figure(target, shared, spec, title=Path(path).name)
            for a, b in itertools.combinations([s.info.name for s in synthesizers], 2):
                report.snr.append(SnrRow(str(path), a, b, snr_db(outputs[b], outputs[a])))
    return report.finalize()


def _check_long_enough_for_pesq(path: Path, samples: int, sample_rate: int) -> None:
    """PESQ refuses clips under a quarter of a second: say so before any file is vocoded, not after."""
    from diffwave.audio import AudioError

    from .perceptual import PESQ_MIN_SECONDS, pesq_min_samples

    if samples < pesq_min_samples(sample_rate):
        raise AudioError(f"{path}: {samples / sample_rate:.3f} s is too short for PESQ, which needs at least "
                         f"{PESQ_MIN_SECONDS} s (or leave the perceptual metrics out: --no-perceptual)")


def _synthesize(
    path: Path, synthesizers: Sequence[Synthesizer], spec: FeatureSpec, gl_name: str, gl_iterations: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The recording, its features, and every system's audio for those features."""
    from diffwave.audio import feature_min_samples, read_wav
    from diffwave.features import log_mel_spectrogram

    original = read_wav(path, spec.sample_rate, feature_min_samples(spec.n_fft))
    features = log_mel_spectrogram(original, spec).numpy()
    outputs = {ORIGINAL: original, gl_name: griffin_lim(features, spec, iterations=gl_iterations, seed=seed)}
    for synth in synthesizers:
        audio = np.asarray(synth.vocode(features), dtype=np.float32).reshape(-1)
        if audio.shape[0] < original.shape[0]:
            raise ValueError(
                f"{path}: {synth.info.name} returned {audio.shape[0]} samples for {features.shape[1]} frames, "
                f"fewer than the recording's {original.shape[0]}"
            )
        outputs[synth.info.name] = audio
    return original, features, outputs


def _score(
    file: str, system: str, audio: np.ndarray, original: np.ndarray, features: np.ndarray, spec: FeatureSpec, perceptual: bool
) -> Row:
    # A vocoder returns frames × hop samples, slightly more than the recording: score the shared span.
    audio = audio[: original.shape[0]]
    row = Row(file=file, system=system)
    row.mel_cycle_db = mel_cycle_distance_db(audio, features, spec)
    row.mrstft = mrstft_distance(audio, original)
    row.periodicity = periodicity(audio, spec.sample_rate)
    if perceptual:
        from .perceptual import dnsmos, pesq_wb

        row.pesq_wb = pesq_wb(audio, original, spec.sample_rate)
        score = dnsmos(audio, spec.sample_rate)
        row.dnsmos_overall, row.dnsmos_signal = score.overall, score.signal
        row.dnsmos_background, row.dnsmos_p808 = score.background, score.p808
    return row


def _save(path: Path, audio: np.ndarray, spec: FeatureSpec) -> None:
    from diffwave.audio import write_wav

    write_wav(path, np.clip(audio, -1.0, 1.0), spec.sample_rate)


def _safe(name: str) -> str:
    """A system name as a folder name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def mean_of(report: EvalReport, system: str, metric: str) -> float:
    """Convenience for quality bars: the mean of ``metric`` for ``system`` (NaN if absent)."""
    for row in report.means:
        if row.system == system:
            value = getattr(row, metric)
            return math.nan if value is None else float(value)
    raise KeyError(f"no system {system!r} in the report")
