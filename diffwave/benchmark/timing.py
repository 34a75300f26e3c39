"""Clocks and summary statistics for the benchmark.

On the CPU a call is timed with ``time.perf_counter``. On CUDA it is timed with CUDA events
recorded on the caller's stream around the call: every vocoder call ends by synchronising
its own stream, so the end event is recorded after all of the call's GPU work, and the
event pair measures device time rather than how long the host took to enqueue.

Timings are *interleaved*: each round calls every contender once (in a rotating order)
before the next round starts. On a machine shared with other jobs the load changes from
minute to minute; interleaving exposes every contender to the same load, and the
speed-up is taken per round (paired) before the median, so a slow minute cancels out.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence


class Clock(Protocol):
    def time(self, call: Callable[[], object]) -> float:
        """Seconds ``call`` took."""
        ...


class CpuClock:
    def time(self, call: Callable[[], object]) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started


class CudaClock:
    """CUDA events on the current stream (device time); falls back to nothing else: CUDA only."""

    def __init__(self) -> None:
        import torch

        self._torch = torch

    def time(self, call: Callable[[], object]) -> float:
        torch = self._torch
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def clock_for(device: str) -> Clock:
    return CudaClock() if device == "cuda" else CpuClock()


@dataclass(frozen=True)
class Summary:
    """Median, spread and the raw values of one contender's timed calls (seconds)."""

    median: float
    minimum: float
    maximum: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> "Summary":
        if not values:
            raise ValueError("no timings")
        return cls(statistics.median(values), min(values), max(values), tuple(values))


def paired_ratios(reference: Sequence[float], contender: Sequence[float]) -> list[float]:
    """reference/contender time per round: each round's pair ran under the same load."""
    return [r / c for r, c in zip(reference, contender) if c > 0]


def paired_speedup(reference: Sequence[float], contender: Sequence[float]) -> Optional[float]:
    """Median over rounds of reference/contender time (see :func:`paired_ratios`)."""
    ratios = paired_ratios(reference, contender)
    return statistics.median(ratios) if ratios else None
