"""Peak memory of one vocoder call, measured in a fresh process per backend and shape.

``tracemalloc`` sees only Python objects; the memory that matters here is native (ONNX
Runtime's arena, oneDNN scratch space, torch tensors, TensorRT's activations). So a worker
process loads one contender, resets the kernel's resident-set high-water mark
(``/proc/self/clear_refs`` ← 5, Linux ≥ 4.0), runs one call and reads ``VmHWM``: the peak
minus the resident size just before the call is what the call itself needed (buffers,
arenas, activations), independent of what the interpreter and libraries occupy. Where the
reset is not allowed, the high-water mark since start is used (``getrusage`` semantics),
which can only over-state the call's peak by what loading needed.

A fresh process per measurement matters: allocators keep freed memory (ONNX Runtime's arena
never shrinks), so a second shape measured in the same process would reuse the first
one's memory and under-report. On CUDA the worker also reports torch's peak allocation
during the call and the growth of device memory in use (which includes ONNX Runtime's and
TensorRT's own allocations, invisible to torch).

Run as ``python -m diffwave.benchmark.memory '<job json>'``; the result is the last stdout line.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

RESULT_PREFIX = "diffwave-bench-memory "


@dataclass(frozen=True)
class MemoryJob:
    """Everything a worker needs to rebuild one contender and its input (JSON-serialisable)."""

    contender: str
    metadata: dict[str, Any]  #: BundleMetadata.to_dict()
    checkpoint: str
    onnx: Optional[str]
    engine: Optional[str]
    batch: int
    frames: int
    steps: Any  #: a schedule name or a list of betas
    seed: int = 0
    threads: Optional[int] = None
    torch_threads: Optional[int] = None


@dataclass
class MemoryResult:
    peak_mb: Optional[float] = None  #: resident-set peak during the call minus the size just before it
    peak_rss_mb: Optional[float] = None  #: the process's resident-set peak during the call (interpreter included)
    #: opening the contender in the fresh process: weights or engine read, session or graph built, buffers for the shape
    load_ms: Optional[float] = None
    first_call_ms: Optional[float] = None  #: the first call's time in that process (cold: allocations, lazy setup)
    gpu_peak_mb: Optional[float] = None  #: torch.cuda.max_memory_allocated growth during the call
    gpu_used_mb: Optional[float] = None  #: device memory in use after the call minus before loading the contender
    reset_ok: bool = True  #: whether the high-water mark could be reset before the call
    error: Optional[str] = None


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in KiB (empty where /proc is missing)."""
    values = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, rest = line.split(":", 1)
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


def reset_peak() -> bool:
    """Reset VmHWM to the current resident size (False where the kernel or sandbox refuses)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Collect garbage and hand glibc's free heap pages back, so the baseline is what is live."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(job: MemoryJob) -> MemoryResult:
    """Load the contender, run one call of the job's shape, report its peaks (runs in the worker)."""
    import numpy as np

    from runtime.bundle import BundleMetadata

    from .contenders import CONTENDERS, BenchModels, open_runner

    contender = CONTENDERS[job.contender]
    cuda = contender.device == "cuda"
    torch = None
    if job.torch_threads and contender.kind in ("reference", "pytorch"):
        import torch

        torch.set_num_threads(job.torch_threads)
    if cuda:
        import torch

        torch.cuda.init()
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        used_before_load = total - free
    models = BenchModels(
        metadata=BundleMetadata.from_dict(job.metadata),
        checkpoint=Path(job.checkpoint),
        onnx=Path(job.onnx) if job.onnx else None,
        engine=Path(job.engine) if job.engine else None,
    )
    meta = models.metadata
    mel = np.random.default_rng(job.seed).uniform(0.0, 1.0, (job.batch, meta.n_mels, job.frames)).astype(np.float32)
    opened = time.perf_counter()
    runner = open_runner(contender, models, job.steps, seed=job.seed, threads=job.threads)
    runner.prepare(mel)
    if cuda:
        torch.cuda.synchronize()
    result = MemoryResult(load_ms=(time.perf_counter() - opened) * 1e3)
    release_free_memory()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        allocated_before = torch.cuda.memory_allocated()
    result.reset_ok = reset_peak()
    before = proc_status()
    elapsed = runner.clock.time(runner)
    after = proc_status()
    result.first_call_ms = elapsed * 1e3
    if "VmHWM" in after and "VmRSS" in before:
        result.peak_mb = max(0, after["VmHWM"] - before["VmRSS"]) / 1024
        result.peak_rss_mb = after["VmHWM"] / 1024
    if cuda:
        torch.cuda.synchronize()
        result.gpu_peak_mb = (torch.cuda.max_memory_allocated() - allocated_before) / 2**20
        free, total = torch.cuda.mem_get_info()
        result.gpu_used_mb = (total - free - used_before_load) / 2**20
    runner.close()
    return result


def measure_in_subprocess(job: MemoryJob, timeout: Optional[float] = None) -> MemoryResult:
    """Run :func:`measure` in a fresh interpreter; a failure becomes ``MemoryResult(error=...)``."""
    command = [sys.executable, "-m", "diffwave.benchmark.memory", json.dumps(asdict(job))]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return MemoryResult(error=f"memory worker timed out after {time.perf_counter() - started:.0f} s")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return MemoryResult(**json.loads(line[len(RESULT_PREFIX):]))
    tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return MemoryResult(error=f"memory worker failed: {tail}")


def main(argv: list[str]) -> int:
    job = MemoryJob(**json.loads(argv[0]))
    try:
        result = measure(job)
    except Exception as exc:  # reported to the parent as one line, not a traceback
        result = MemoryResult(error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    print(RESULT_PREFIX + json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
