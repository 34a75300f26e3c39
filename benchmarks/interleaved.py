"""Timing for the probes in this folder: interleaved rounds, paired ratios, and their tables.

Machines here are shared: load from other jobs comes and goes within a minute. Running every
variant once per round, in a rotating order, spreads that load over all variants alike, and the
ratio is taken per round (paired) before the median, so a slow round slows both sides of it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_interleaved(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, one call per variant per round, rotating the order."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - started)
    return times


def paired_speedup(baseline: list[float], values: list[float]) -> float:
    """Median over rounds of baseline time / variant time (> 1: the variant is faster)."""
    return statistics.median(a / b for a, b in zip(baseline, values))


def print_paired(times: dict[str, list[float]], baseline: str, title: str) -> None:
    """Median seconds and the median of per-round ratios baseline / variant (> 1: faster)."""
    width = max(map(len, times))
    print(f"{title}: median s per call, speed-up vs {baseline} (paired)")
    for name, values in times.items():
        ratio = paired_speedup(times[baseline], values)
        print(f"  {name:{width}s} {statistics.median(values):7.3f} s  {ratio:5.2f}×  {[round(v, 3) for v in values]}")


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Right-aligned columns, each as wide as its widest cell."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
