"""Which network calls compute one reverse step of a (ragged, possibly long) batch, exactly.

The network zero-pads every dilated convolution at the edges of whatever it is given. So an
item's output equals the whole-signal output only where the network saw the item's true
edges, or at least a halo of real context (:mod:`runtime.receptive_field`). This module
plans *windows* that honour that, and nothing else:

* an item no longer than the window limit is one window, exactly its own length — items of
  equal length share a network call (rows of one batch);
* a longer item is cut into equal windows no longer than the window limit (as short as the
  fewest windows allow), clamped to the item's ends, each keeping only the span at least a
  halo away from any cut; all such windows of all items share one call shape, run in as many
  rounds as the batch limit needs.

Padding a short item up to a longer one's length would change its last few thousand samples
(the network would see the padding, not its end), which is why ragged items are never padded.

Lengths and windows are in *units*: frames for conditional models (so windows align with the
spectrogram), samples for unconditional ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .receptive_field import Halo


@dataclass(frozen=True)
class Window:
    """One row of a network call: item ``item``'s units [start, start + pass units)."""

    item: int
    start: int
    keep_start: int  #: first unit (item coordinates) whose output this window supplies
    keep_stop: int  #: one past the last


@dataclass(frozen=True)
class Pass:
    """Network calls of one shape: ``rows`` × ``units``, over ``windows`` in rounds of ``rows``."""

    units: int
    rows: int
    windows: tuple[Window, ...]

    def rounds(self) -> list[tuple[Window, ...]]:
        return [self.windows[i : i + self.rows] for i in range(0, len(self.windows), self.rows)]


@dataclass(frozen=True)
class Plan:
    """Every network call of one reverse step, for a batch of item lengths."""

    lengths: tuple[int, ...]
    passes: tuple[Pass, ...]

    @property
    def direct(self) -> bool:
        """One call whose row r is item r whole: the loop's state can live in the call's own buffers."""
        if len(self.passes) != 1:
            return False
        (p,) = self.passes
        return p.rows == len(self.lengths) == len(p.windows) and all(
            w.item == r and w.start == 0 and w.keep_stop == p.units == self.lengths[r] for r, w in enumerate(p.windows)
        )

    @property
    def computed_units(self) -> int:
        """Units the network evaluates per step, dummy rows included (the cost of this plan)."""
        return sum(p.units * p.rows * len(p.rounds()) for p in self.passes)


def balanced_rows(count: int, max_rows: int, min_rows: int = 1) -> int:
    """Rows per call that run ``count`` windows in the fewest rounds with the least padding."""
    rounds = -(-count // max_rows)
    return max(min_rows, -(-count // rounds))


def fitted_window(length: int, window: int, halo: Halo) -> int:
    """Shortest window covering ``length`` units in as few windows as ``window`` allows.

    n windows of w units keep n·w − (n−1)·(halo before + after) units, so the fewest windows is
    n = ⌈(length − H)/(window − H)⌉ and the shortest such w is ⌈(length + (n−1)·H)/n⌉.
    """
    total = halo.total
    count = -(-(length - total) // (window - total))
    return min(window, -(-(length + (count - 1) * total) // count))


def plan_windows(
    lengths: Sequence[int],
    *,
    window: int,
    halo: Halo,
    max_units_per_call: int,
    max_rows: int | None = None,
    min_rows: int = 1,
) -> Plan:
    """Plan exact windows for items of ``lengths`` units.

    ``window`` is the longest row the network may see; ``max_units_per_call`` bounds rows ×
    units of one call (the memory budget); ``max_rows``/``min_rows`` are the engine's batch
    limits (rows beyond the windows are dummies whose output is ignored).
    """
    if window <= halo.total:
        raise ValueError(f"window of {window} units leaves nothing to keep after a halo of {halo.before}+{halo.after}")
    if any(n < 1 for n in lengths):
        raise ValueError("every item needs at least one unit")

    def rows_for(units: int, count: int) -> int:
        limit = max(1, max_units_per_call // units)
        if max_rows is not None:
            limit = min(limit, max_rows)
        return balanced_rows(count, max(limit, 1), min_rows)

    passes: list[Pass] = []
    short: dict[int, list[Window]] = {}
    long_items = [(item, n) for item, n in enumerate(lengths) if n > window]
    for item, n in enumerate(lengths):
        if n <= window:
            short.setdefault(n, []).append(Window(item, 0, 0, n))
    for units, windows in short.items():
        passes.append(Pass(units, rows_for(units, len(windows)), tuple(windows)))
    if long_items:
        # The shortest window that still needs no more windows than ``window`` would: a 862-frame
        # item with a 512 limit becomes two 444-frame windows (3 % halo overhead), not two of 512.
        size = max(fitted_window(n, window, halo) for _, n in long_items)
        long: list[Window] = []
        for item, n in long_items:
            keep = 0
            while keep < n:
                start = max(0, min(keep - halo.before, n - size))
                stop = start + size
                keep_stop = n if stop == n else stop - halo.after
                long.append(Window(item, start, keep, keep_stop))
                keep = keep_stop
        passes.append(Pass(size, rows_for(size, len(long)), tuple(long)))
    return Plan(tuple(lengths), tuple(passes))
