"""The parity gate every export passes before a bundle is published (ONNX Runtime CPU).

* FP32 graph vs PyTorch: three cases at the profile's min, middle and max frame counts, each
  with a different continuous step (early, middle, late in the training schedule).
* FP16 graph vs PyTorch float32: the same three cases, plus a full fast reverse process (six
  steps for lmnt's schedule) with identical initial noise and per-step noise, compared as
  audio SNR.
* FP16 headroom: the largest value entering or leaving any layer of the float32 network on the
  three cases. ONNX Runtime's CPU computes most float16 operators in float32, so the comparisons
  above cannot see a float16 overflow that a TensorRT engine, which keeps activations in float16,
  would turn into inf; this check can.

Relative error is the relative L2 norm ``||onnx − torch|| / ||torch||`` over the whole
batch. (The elementwise max-abs ratio is printed too; it is not gated because random
30-layer networks already differ from themselves in float64 by ~1e-5 on that measure.)
The late step (0.93 of the training schedule, 45.58 of 50) is there on purpose: above 32
a float16 step loses its fraction, so a conversion that lets the step path drift into float16
is caught per step. (The fast schedule's first step is 42.9 too, but the five steps after it
wash most of that error out of the final audio.) Each case's step lies halfway between two
float16 values, where float16 rounding errs most.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from diffwave.model import DiffWave
from runtime.bundle import Profile
from runtime.schedule import ReverseSchedule

from .step_graph import INPUT_AUDIO, INPUT_SPECTROGRAM, INPUT_STEP

FP32_LIMIT = 1e-5  #: relative error of eps, FP32 graph vs PyTorch
FP16_LIMIT = 2e-2  #: relative error of eps, FP16 graph vs PyTorch float32
SNR_LIMIT_DB = 30.0  #: FP16 reverse process vs PyTorch float32
STEP_FRACTIONS = (0.07, 0.47, 0.93)  #: where in [0, T−1] the three cases' steps lie
SNR_FRAMES = 64  #: length of the reverse-process check (clamped into the profile)
FLOAT16_MAX = 65504.0
#: The FP16 graph is refused when a layer's input or output, in float32 on the gate's inputs, comes
#: within this factor of float16's largest value: real speech may drive it further than random inputs.
FLOAT16_HEADROOM = 16.0

EpsFn = Callable[[np.ndarray, float], np.ndarray]


class ParityGateFailed(RuntimeError):
    """The exported graph does not reproduce PyTorch; ``report`` holds every number."""

    def __init__(self, report: "GateReport"):
        super().__init__(report.failure_line())
        self.report = report


@dataclass(frozen=True)
class GateCase:
    batch: int
    frames: int
    step: float


@dataclass(frozen=True)
class CaseResult:
    graph: str  #: file name of the graph checked
    case: GateCase
    rel_err: float
    max_rel_err: float  #: max|Δ| / max|torch|, informational
    limit: float
    #: on failure: PyTorch float32 vs PyTorch float64 on the same input, to tell an export fault
    #: (floor far below the error) from a network whose float32 rounding alone is near the limit
    float32_floor: Optional[float] = None

    @property
    def passed(self) -> bool:
        return math.isfinite(self.rel_err) and self.rel_err <= self.limit

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        c = self.case
        floor = "" if self.float32_floor is None else f", PyTorch float32 vs float64 here {self.float32_floor:.1e}"
        return (f"{self.graph}: batch {c.batch}, {c.frames} frames, step {c.step:.4f}: eps rel err "
                f"{self.rel_err:.2e} (limit {self.limit:.0e}, max-abs ratio {self.max_rel_err:.2e}{floor}) {verdict}")


@dataclass(frozen=True)
class SnrResult:
    graph: str
    frames: int
    steps: int
    snr_db: float
    limit_db: float = SNR_LIMIT_DB

    @property
    def passed(self) -> bool:
        return not math.isnan(self.snr_db) and self.snr_db >= self.limit_db

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (f"{self.graph}: {self.steps}-step reverse process, {self.frames} frames: audio SNR "
                f"{self.snr_db:.1f} dB vs PyTorch float32 (limit {self.limit_db:.0f} dB) {verdict}")


@dataclass(frozen=True)
class HeadroomResult:
    graph: str
    peak: float  #: largest |value| entering or leaving a layer of the float32 network
    layer: str  #: where it occurs (the module's name)
    limit: float = FLOAT16_MAX / FLOAT16_HEADROOM

    @property
    def passed(self) -> bool:
        return math.isfinite(self.peak) and self.peak <= self.limit

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (f"{self.graph}: largest activation {self.peak:.3g} at {self.layer} (limit {self.limit:.0f}: "
                f"float16's largest value / {FLOAT16_HEADROOM:.0f}) {verdict}")


@dataclass
class GateReport:
    cases: list[CaseResult] = field(default_factory=list)
    snr: list[SnrResult] = field(default_factory=list)
    headroom: list[HeadroomResult] = field(default_factory=list)

    def _results(self) -> list:
        return [*self.cases, *self.snr, *self.headroom]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self._results())

    def lines(self) -> list[str]:
        return [r.line() for r in self._results()]

    def worst(self, graph: str) -> Optional[float]:
        errs = [r.rel_err for r in self.cases if r.graph == graph]
        return max(errs) if errs else None

    def failure_line(self) -> str:
        failed = [r for r in self._results() if not r.passed]
        if not failed:
            return "parity gate passed"
        return "parity gate failed: " + "; ".join(r.line() for r in failed)


def gate_cases(profile: Profile, num_training_steps: int) -> tuple[GateCase, ...]:
    """min / middle (geometric) / max frames; the shortest case also covers the largest batch."""
    lo, hi = profile.min_frames, profile.max_frames
    mid = min(hi, max(lo, int(round(math.sqrt(lo * hi)))))
    batches = (profile.max_batch, min(2, profile.max_batch), profile.min_batch)
    top = num_training_steps - 1
    return tuple(
        GateCase(batch=b, frames=f, step=between_float16_values(top * s))
        for b, f, s in zip(batches, (lo, mid, hi), STEP_FRACTIONS)
    )


def between_float16_values(step: float) -> float:
    """The midpoint above the float16 value nearest ``step``: where float16 rounds worst.

    A graph that lets the step reach float16 moves such a step by half a float16 spacing
    (1/64 of a training step between 32 and 64), the most it can; float32 holds it exactly.
    """
    half = np.float16(step)
    return float(np.float32(float(half) + float(np.spacing(half)) / 2))


def relative_errors(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(relative L2 error, max-abs ratio); inf when the candidate is not finite."""
    candidate = np.asarray(candidate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if candidate.shape != reference.shape:
        raise ValueError(f"output shape {candidate.shape} differs from PyTorch's {reference.shape}")
    if not np.all(np.isfinite(candidate)):
        return math.inf, math.inf
    diff = candidate - reference
    norm = np.linalg.norm(reference)
    peak = np.abs(reference).max()
    return (float(np.linalg.norm(diff) / norm) if norm > 0 else float(np.linalg.norm(diff)),
            float(np.abs(diff).max() / peak) if peak > 0 else float(np.abs(diff).max()))


def snr_db(candidate: np.ndarray, reference: np.ndarray) -> float:
    noise = float(np.sum((np.asarray(candidate, np.float64) - reference) ** 2))
    if not np.all(np.isfinite(candidate)):
        return math.nan
    signal = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return math.inf if noise == 0 else 10.0 * math.log10(signal / noise)


class OrtStep:
    """One ONNX Runtime CPU session of a step graph, fed numpy arrays."""

    def __init__(self, path, unconditional: bool):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # keep ORT's warnings out of the CLI's one-line output
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.unconditional = unconditional

    def __call__(self, audio: np.ndarray, step: float, spectrogram: Optional[np.ndarray]) -> np.ndarray:
        feeds = {INPUT_AUDIO: audio.astype(np.float32), INPUT_STEP: np.array([step], dtype=np.float32)}
        if not self.unconditional:
            feeds[INPUT_SPECTROGRAM] = spectrogram.astype(np.float32)
        return self.session.run(None, feeds)[0]


def torch_step(model: DiffWave) -> Callable[[np.ndarray, float, Optional[np.ndarray]], np.ndarray]:
    model = model.float().eval().cpu()

    def run(audio: np.ndarray, step: float, spectrogram: Optional[np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            spec = None if spectrogram is None else torch.from_numpy(spectrogram.astype(np.float32))
            eps = model(torch.from_numpy(audio.astype(np.float32)), torch.tensor([step], dtype=torch.float32), spec)
        return eps.squeeze(1).numpy()

    return run


def float32_floor(model: DiffWave, audio: np.ndarray, step: float, spectrogram: Optional[np.ndarray],
                  expected: np.ndarray) -> float:
    """Relative error of PyTorch float32 itself against a float64 copy of the model (failure diagnostics)."""
    import copy

    exact = copy.deepcopy(model).double()
    with torch.no_grad():
        spec = None if spectrogram is None else torch.from_numpy(spectrogram).double()
        eps = exact(torch.from_numpy(audio).double(), torch.tensor([step], dtype=torch.float64), spec)
    return relative_errors(expected, eps.squeeze(1).numpy())[0]


def reverse_process(eps: EpsFn, schedule: ReverseSchedule, x_init: np.ndarray, noise: Sequence[np.ndarray]) -> np.ndarray:
    """lmnt's sampler: n = N−1 … 0, x = clip(c1·(x − c2·ε) + σ·z, −1, 1), no noise after n = 0.

    Written here (a dozen lines) rather than borrowed from ``runtime`` so the gate checks the
    graph against PyTorch with nothing but the shared schedule constants in common.
    """
    x = x_init.astype(np.float32)
    for n in range(schedule.num_steps - 1, -1, -1):
        e = eps(x, float(schedule.steps[n]))
        x = schedule.c1[n] * (x - schedule.c2[n] * e)
        if n > 0:
            x = x + schedule.sigma[n] * noise[n]
        x = np.clip(x, -1.0, 1.0).astype(np.float32)
    return x


def run_parity_gate(
    model: DiffWave,
    fp32_path,
    fp16_path=None,
    profile: Profile = Profile(),
    seed: int = 0,
    fp32_limit: float = FP32_LIMIT,
    fp16_limit: float = FP16_LIMIT,
    snr_limit_db: float = SNR_LIMIT_DB,
    progress: bool = True,
) -> GateReport:
    """Check ``fp32_path`` (and ``fp16_path`` when given) against ``model``; raise on failure.

    Inputs are random (seeded): x ~ N(0, 1), spectrogram ~ U(0, 1) like clipped log-mels.
    Raises :class:`ParityGateFailed` after running every case, so the report is complete.
    """
    from tqdm import tqdm

    config = model.config
    unconditional = model.unconditional
    hop, n_mels = config.features.hop_samples, config.features.n_mels
    reference = torch_step(model)
    graphs = [(Path(fp32_path), fp32_limit)] + ([] if fp16_path is None else [(Path(fp16_path), fp16_limit)])

    rng = np.random.default_rng(seed)
    report = GateReport()
    cases = gate_cases(profile, len(config.diffusion.noise_schedule))
    bar = tqdm(total=len(cases) * (1 + len(graphs)), desc="parity gate", unit="run", leave=False, disable=not progress)
    inputs = []  # PyTorch once per case; each ONNX Runtime session then runs alone (ORT CPU needs
    # ~4.5 GB for the base model at 1024 frames: two live sessions would double it)
    with _largest_activation(model) as largest:
        for case in cases:
            audio = rng.standard_normal((case.batch, case.frames * hop)).astype(np.float32)
            spec = None if unconditional else rng.uniform(0, 1, (case.batch, n_mels, case.frames)).astype(np.float32)
            inputs.append((case, audio, spec, reference(audio, case.step, spec)))
            bar.update(1)
    if fp16_path is not None:
        report.headroom.append(HeadroomResult(Path(fp16_path).name, largest.peak, largest.layer))
    for index, (path, limit) in enumerate(graphs):
        run = OrtStep(path, unconditional)
        for case, audio, spec, expected in inputs:
            rel, peak = relative_errors(run(audio, case.step, spec), expected)
            result = CaseResult(path.name, case, rel, peak, limit)
            if index == 0 and not result.passed:
                result = replace(result, float32_floor=float32_floor(model, audio, case.step, spec, expected))
            report.cases.append(result)
            bar.update(1)
        if index == 1:  # the FP16 graph also runs the whole fast reverse process
            report.snr.append(_reverse_process_snr(model, (path.name, run), profile, rng, snr_limit_db, progress))
        del run
    bar.close()
    if not report.passed:
        raise ParityGateFailed(report)
    return report


def _reverse_process_snr(model: DiffWave, graph, profile: Profile, rng, limit_db: float, progress: bool) -> SnrResult:
    from tqdm import tqdm

    name, run = graph
    config = model.config
    schedule = ReverseSchedule.create(config.diffusion.noise_schedule, config.diffusion.inference_noise_schedule)
    frames = min(profile.max_frames, max(profile.min_frames, SNR_FRAMES))
    samples = frames * config.features.hop_samples
    spec = None if model.unconditional else rng.uniform(0, 1, (1, config.features.n_mels, frames)).astype(np.float32)
    x_init = rng.standard_normal((1, samples)).astype(np.float32)
    noise = [rng.standard_normal((1, samples)).astype(np.float32) for _ in range(schedule.num_steps)]
    reference = torch_step(model)
    bar = tqdm(total=2 * schedule.num_steps, desc="reverse-process SNR", unit="step", leave=False, disable=not progress)

    def counted(fn):
        def eps(x, step):
            out = fn(x, step, spec)
            bar.update(1)
            return out

        return eps

    expected = reverse_process(counted(reference), schedule, x_init, noise)
    actual = reverse_process(counted(run), schedule, x_init, noise)
    bar.close()
    return SnrResult(name, frames, schedule.num_steps, snr_db(actual, expected), limit_db)


class _Largest:
    def __init__(self) -> None:
        self.peak, self.layer = 0.0, "nothing"

    def see(self, name: str, values) -> None:
        for value in values if isinstance(values, (tuple, list)) else (values,):
            if torch.is_tensor(value) and value.is_floating_point() and value.numel():
                peak = float(value.detach().abs().max())
                if not peak <= self.peak:  # also takes inf and nan, which then fail the check
                    self.peak, self.layer = peak, name


@contextmanager
def _largest_activation(model: DiffWave):
    """Record the largest |value| entering or leaving every leaf module while the block runs.

    Inputs count too: the sum of the skip connections and the gated activations are formed between
    modules and first seen as the input of the next convolution.
    """
    largest = _Largest()
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            handles.append(module.register_forward_pre_hook(lambda m, args, name=name: largest.see(name, args)))
            handles.append(module.register_forward_hook(lambda m, args, out, name=name: largest.see(name, out)))
    try:
        yield largest
    finally:
        for handle in handles:
            handle.remove()
