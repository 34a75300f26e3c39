"""Run the contenders against the reference, shape by shape, in one process; then measure memory.

For each (batch, seconds) every runner gets the same random spectrogram, is warmed up
(untimed), then the timed rounds interleave all runners (see :mod:`.timing`). Speed-ups are
against the reference *on the same device in the same rounds*. Memory is measured afterwards,
one fresh worker process per row (see :mod:`.memory`), so it neither disturbs the timings
nor is disturbed by them.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np

from runtime.errors import first_line

from .contenders import BenchModels, Contender, Runner, open_runner, reference_for, resolve
from .machine import describe_machine, load_average
from .memory import MemoryJob, measure_in_subprocess
from .report import BenchReport, BenchRow, Skipped
from .timing import Summary, paired_ratios, paired_speedup

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    seconds: tuple[float, ...] = (1.0, 5.0, 10.0)
    batches: tuple[int, ...] = (1, 4)
    steps: Any = "fast"  #: a schedule name of model.json or a tuple of betas
    repeats: int = 3  #: timed calls per contender and shape
    warmup: int = 1  #: untimed calls first (CUDA-graph contenders get two more: eager, then capture)
    seed: int = 0
    #: ONNX Runtime intra-op threads (None: as many as torch uses, so the rows compare like with like)
    threads: Optional[int] = None
    torch_threads: Optional[int] = None  #: torch.set_num_threads for the reference and PyTorch rows (None: torch's default)
    memory: bool = True  #: measure peak memory in worker processes
    backends: Optional[tuple[str, ...]] = None  #: None: everything that can run here
    progress: bool = True

    def validate(self) -> None:
        if not self.seconds or any(not (s > 0) for s in self.seconds):
            raise ValueError(f"seconds must be positive, got {list(self.seconds)}")
        if not self.batches or any(b < 1 for b in self.batches):
            raise ValueError(f"batch sizes must be at least 1, got {list(self.batches)}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be at least 1 and warmup at least 0")


def frames_for(seconds: float, sample_rate: int, hop: int) -> int:
    return max(1, int(round(seconds * sample_rate / hop)))


def run_bench(settings: BenchSettings, models: BenchModels, log: Log = lambda _m: None) -> BenchReport:
    """Time every contender on every shape; raise ``ValueError`` when nothing can run."""
    import torch

    settings.validate()
    if models.metadata.unconditional:
        raise ValueError("diffwave bench times conditional models (spectrogram in); this model is unconditional")
    previous = torch.get_num_threads()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    # Both libraries get the same thread count unless told otherwise, and the report records the
    # counts used: ONNX Runtime's default (one per core) ignores OMP_NUM_THREADS, which torch
    # follows, so under OMP_NUM_THREADS=1 the reference ran on one thread against two.
    torch_threads = torch.get_num_threads()
    settings = replace(settings, torch_threads=torch_threads, threads=settings.threads or torch_threads)
    try:
        return _run(settings, models, log)
    finally:
        torch.set_num_threads(previous)


def _run(settings: BenchSettings, models: BenchModels, log: Log) -> BenchReport:
    from runtime import VocoderError

    meta = models.metadata
    machine = describe_machine()
    contenders, unavailable = resolve(settings.backends, models)
    skipped = [Skipped(name, why) for name, why in unavailable]

    runners: list[Runner] = []
    for contender in contenders:
        try:
            runners.append(open_runner(contender, models, settings.steps, seed=settings.seed, threads=settings.threads))
        except (VocoderError, ImportError, OSError, RuntimeError) as exc:  # TensorRTMissing is an ImportError
            skipped.append(Skipped(contender.name, first_line(exc)))
    # A contender without its device's reference has nothing to be compared with.
    devices_with_reference = {r.contender.device for r in runners if r.contender.is_reference}
    for runner in [r for r in runners if r.contender.device not in devices_with_reference]:
        skipped.append(Skipped(runner.contender.name, f"its reference ({reference_for(runner.contender.device).name}) could not run"))
        runners.remove(runner)
    if not runners:
        raise ValueError("nothing to benchmark: " + "; ".join(f"{s.backend}: {s.reason}" for s in skipped))
    for s in skipped:
        log(f"skipping {s.backend}: {s.reason}")

    rows: list[BenchRow] = []
    shapes = [(b, s) for b in settings.batches for s in settings.seconds]
    calls = sum(settings.warmup + settings.repeats + (2 if r.contender.cuda_graphs else 0) for r in runners) * len(shapes)
    bar = _progress(calls, settings.progress, "bench")
    try:
        for batch, seconds in shapes:
            frames = frames_for(seconds, meta.sample_rate, meta.hop_samples)
            rng = np.random.default_rng(settings.seed)
            mel = rng.uniform(0.0, 1.0, (batch, meta.n_mels, frames)).astype(np.float32)
            timings, warm, failed, agreement = _time_shape(runners, models, mel, meta.hop_samples, settings, bar)
            for name, reason in failed.items():
                skipped.append(Skipped(name, reason, batch, seconds))
            for runner in runners:
                c = runner.contender
                if c.name not in timings:
                    continue
                ref = timings.get(reference_for(c.device).name)
                rows.append(_row(c, runner, batch, seconds, frames * meta.hop_samples, timings[c.name], ref, warm[c.name], settings,
                                 agreement.get(c.name)))
    finally:
        bar.close()
        for runner in runners:
            runner.close()

    report = BenchReport(
        machine=machine,
        settings={**_settings_dict(settings), "sample_rate": meta.sample_rate, "hop_samples": meta.hop_samples},
        models={"weights": models.weights, "checkpoint": str(models.checkpoint), "onnx": _str(models.onnx), "engine": _str(models.engine)},
        rows=rows,
        skipped=skipped,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    if settings.memory:
        _measure_memory(report, models, settings)
    machine.load_average_end = load_average()
    return report


#: A row is timed only if its audio matches its device's reference this closely on the same noise:
#: the parity gate's bar for an FP16 graph (float32 rows agree to about 120 dB).
AGREEMENT_DB = 30.0


def _agreement(runners: Sequence[Runner], models: BenchModels, mel: np.ndarray, hop: int, seed: int) -> dict[str, float]:
    """SNR (dB) of each row's audio against its device's reference, all vocoding ``mel`` with one noise.

    Without it a backend that computes something else (a bundle of other weights of the same
    shape, a broken export) would be timed and reported as a speed-up.
    """
    from diffwave.evaluation.metrics import snr_db

    references = {r.contender.device: r for r in runners if r.contender.is_reference}
    if not references:
        return {}
    some = next(iter(references.values()))
    shape = (some.num_steps, mel.shape[0], mel.shape[-1] * hop)
    noise = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    expected = {device: r.output(noise) for device, r in references.items()}
    comparable = [r for r in runners if not r.contender.is_reference and r.contender.device in expected
                  and (models.files_share_weights or r.contender.kind == "pytorch")]
    return {r.contender.name: snr_db(r.output(noise).reshape(-1), expected[r.contender.device].reshape(-1)) for r in comparable}


def _time_shape(runners: Sequence[Runner], models: BenchModels, mel: np.ndarray, hop: int, settings: BenchSettings, bar: Any):
    """Warm every runner up on ``mel``, check its audio against the reference's, then time the rows
    that agree in interleaved rounds."""
    from runtime import VocoderError

    timings: dict[str, list[float]] = {}
    warm: dict[str, float] = {}
    failed: dict[str, str] = {}
    live = []
    for runner in runners:
        name = runner.contender.name
        try:
            runner.prepare(mel)
            for i in range(settings.warmup + (2 if runner.contender.cuda_graphs else 0)):
                elapsed = runner.clock.time(runner)
                warm.setdefault(name, elapsed)
                bar.update(1)
        except (VocoderError, RuntimeError) as exc:  # e.g. a shape outside an engine's profile, out of memory
            failed[name] = first_line(exc)
            continue
        warm.setdefault(name, float("nan"))
        timings[name] = []
        live.append(runner)
    agreement = _agreement(live, models, mel, hop, settings.seed)
    for runner in list(live):
        name = runner.contender.name
        if agreement.get(name, math.inf) < AGREEMENT_DB:
            failed[name] = (f"its audio differs from {reference_for(runner.contender.device).name}'s on the same noise "
                            f"(SNR {agreement[name]:.1f} dB < {AGREEMENT_DB:.0f} dB): another model or a broken backend")
            live.remove(runner)
            del timings[name]
    for round_index in range(settings.repeats):
        shift = round_index % max(1, len(live))
        for runner in live[shift:] + live[:shift]:  # rotate who goes first: no fixed position in the load
            timings[runner.contender.name].append(runner.clock.time(runner))
            bar.update(1)
    return timings, warm, failed, agreement


def _row(c: Contender, runner: Runner, batch: int, seconds: float, samples: int, times: list[float],
         ref: Optional[list[float]], warm: float, settings: BenchSettings, agreement_db: Optional[float]) -> BenchRow:
    summary = Summary.of(times)
    audio = batch * samples / runner.sample_rate
    rtf = summary.median / audio
    speedup = paired_speedup(ref, times) if ref else None
    ratios = paired_ratios(ref, times) if ref else []
    return BenchRow(
        backend=c.name,
        device=c.device,
        batch=batch,
        seconds=seconds,
        samples=samples,
        steps=runner.num_steps,
        median_ms=summary.median * 1e3,
        min_ms=summary.minimum * 1e3,
        max_ms=summary.maximum * 1e3,
        times_ms=[t * 1e3 for t in times],
        rtf=rtf,
        x_realtime=1.0 / rtf,
        speedup=speedup,
        speedup_of_medians=(Summary.of(ref).median / summary.median) if ref else None,
        speedup_range=(min(ratios), max(ratios)) if ratios else None,
        warmup_ms=warm * 1e3,
        agreement_db=agreement_db,
        mode=runner.mode,
        detail=runner.describe,
    )


def _measure_memory(report: BenchReport, models: BenchModels, settings: BenchSettings) -> None:
    bar = _progress(len(report.rows), settings.progress, "memory")
    metadata = models.metadata.to_dict()
    try:
        for row in report.rows:
            job = MemoryJob(
                contender=row.backend,
                metadata=metadata,
                checkpoint=str(models.checkpoint),
                onnx=_str(models.onnx),
                engine=_str(models.engine),
                batch=row.batch,
                frames=row.samples // models.metadata.hop_samples,
                steps=list(settings.steps) if not isinstance(settings.steps, str) else settings.steps,
                seed=settings.seed,
                threads=settings.threads,
                torch_threads=settings.torch_threads,
            )
            result = measure_in_subprocess(job)
            row.peak_mb, row.peak_rss_mb, row.first_call_ms = result.peak_mb, result.peak_rss_mb, result.first_call_ms
            row.load_ms = result.load_ms
            row.gpu_peak_mb, row.gpu_used_mb, row.memory_error = result.gpu_peak_mb, result.gpu_used_mb, result.error
            bar.update(1)
    finally:
        bar.close()


def _settings_dict(settings: BenchSettings) -> dict[str, Any]:
    data = asdict(settings)
    data.pop("progress")
    for key in ("seconds", "batches", "backends"):
        if data[key] is not None:
            data[key] = list(data[key])
    if not isinstance(data["steps"], str):
        data["steps"] = list(data["steps"])
    return data


def _progress(total: int, enabled: bool, what: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="call", disable=not enabled, leave=False)


def _str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


