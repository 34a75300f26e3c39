"""The result of ``diffwave bench`` as typed rows, a printed table, a JSON file and a plot.

The JSON schema (``schema: "diffwave-bench/1"``) is defined here once: the field names of
:class:`BenchReport`, :class:`BenchRow`, :class:`Skipped` and
:class:`~diffwave.benchmark.machine.MachineInfo`. Times are milliseconds, memory MiB.
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from runtime.bundle import atomic_output

from ..strict_json import dumps_strict
from .machine import MachineInfo

SCHEMA = "diffwave-bench/1"


@dataclass
class BenchRow:
    """One contender on one shape (batch × seconds)."""

    backend: str  #: contender name, e.g. "onnxruntime-cpu"
    device: str
    batch: int
    seconds: float  #: audio per item
    samples: int  #: samples per item (frames × hop)
    steps: int  #: network evaluations per call
    median_ms: float
    min_ms: float
    max_ms: float
    times_ms: list[float]  #: every timed call, in round order
    rtf: float  #: real-time factor: median time / audio produced (batch × seconds); < 1 is faster than real time
    x_realtime: float  #: 1 / rtf
    speedup: Optional[float]  #: over the reference on the same device: median of per-round ratios
    speedup_of_medians: Optional[float]  #: reference median / this median
    #: the lowest and highest per-round ratio: load that slows one side more than the other widens it
    speedup_range: Optional[tuple[float, float]] = None
    warmup_ms: Optional[float] = None  #: the first (untimed) call of this shape in the timing process
    #: SNR of this row's audio against its device's reference on the same noise (None for the reference;
    #: inf when identical, written as null); rows under 30 dB are not timed at all
    agreement_db: Optional[float] = None
    #: opening the contender in a fresh process (memory worker): weights or engine read, session built
    load_ms: Optional[float] = None
    first_call_ms: Optional[float] = None  #: the first call in that process
    peak_mb: Optional[float] = None  #: resident-memory peak of one call above the loaded process
    peak_rss_mb: Optional[float] = None
    gpu_peak_mb: Optional[float] = None
    gpu_used_mb: Optional[float] = None
    mode: str = "eager"  #: "replayed" when the timed calls replayed a CUDA graph
    detail: str = ""  #: the backend's own description
    memory_error: Optional[str] = None


def _mode_suffix(row: "BenchRow") -> str:
    """"(graph)" when the timed calls replayed a CUDA graph; "(eager)" on a graph row that could not
    (its noise over the per-call budget, or a chunked input): it timed the eager loop instead."""
    if row.mode == "replayed":
        return " (graph)"
    return " (eager)" if row.backend.endswith("-graphs") else ""


def _speedup_cell(row: "BenchRow") -> str:
    """The median per-round ratio, with the lowest and highest round when they differ."""
    if row.speedup is None:
        return "-"
    if row.speedup_range is None or row.backend.startswith("reference"):
        return f"{row.speedup:.2f}×"
    low, high = row.speedup_range
    return f"{row.speedup:.2f}× ({low:.2f}–{high:.2f})"


@dataclass
class Skipped:
    backend: str
    reason: str
    batch: Optional[int] = None  #: set when only one shape failed
    seconds: Optional[float] = None


@dataclass
class BenchReport:
    machine: MachineInfo
    settings: dict[str, Any]
    models: dict[str, Optional[str]]
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    created: str = ""
    schema: str = SCHEMA

    def to_json(self) -> str:
        return dumps_strict(asdict(self))

    def write_json(self, path: str | os.PathLike) -> Path:
        from runtime.bundle import write_text_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, text: str) -> "BenchReport":
        data = json.loads(text)
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {data.get('schema')!r})")
        machine = MachineInfo(**data["machine"])
        return cls(
            machine=machine,
            settings=data["settings"],
            models=data["models"],
            rows=[BenchRow(**{**r, "speedup_range": tuple(r["speedup_range"]) if r.get("speedup_range") else None})
                  for r in data["rows"]],
            skipped=[Skipped(**s) for s in data["skipped"]],
            created=data["created"],
        )

    def table(self, markdown: bool = False) -> str:
        """The rows grouped by shape; ``markdown`` gives a GitHub table (README, benchmarks/README.md)."""
        headers = ("backend", "batch", "audio s", "median ms", "RTF", "× real time", "speed-up (rounds)", "cold ms", "peak MiB")
        body = [
            (
                r.backend + _mode_suffix(r),
                str(r.batch),
                f"{r.seconds:g}",
                f"{r.median_ms:.1f}",
                f"{r.rtf:.3f}",
                f"{r.x_realtime:.2f}",
                _speedup_cell(r),
                _cold_start_cell(r),
                _memory_cell(r),
            )
            for r in self.rows
        ]
        if markdown:
            lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
            lines += ["| " + " | ".join(cells) + " |" for cells in body]
            return "\n".join(lines)
        widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(headers)]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

        out, previous = [line(headers), "-" * len(line(headers))], None
        for row, cells in zip(self.rows, body):
            shape = (row.batch, row.seconds)
            if previous is not None and shape != previous:
                out.append("")
            previous = shape
            out.append(line(cells))
        for s in self.skipped:
            where = "" if s.batch is None else f" (batch {s.batch}, {s.seconds:g} s)"
            out.append(f"skipped {s.backend}{where}: {s.reason}")
        return "\n".join(out)

    def plot(self, path: str | os.PathLike) -> Path:
        """Median time against audio length, one line per backend, one panel per batch size."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        batches = sorted({r.batch for r in self.rows})
        fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4.2), squeeze=False, sharey=True)
        for ax, batch in zip(axes[0], batches):
            rows = [r for r in self.rows if r.batch == batch]
            for backend in dict.fromkeys(r.backend for r in rows):
                points = sorted((r.seconds, r.median_ms / 1e3) for r in rows if r.backend == backend)
                style = "k--" if backend.startswith("reference") else "-"
                ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=backend)
            seconds = sorted({r.seconds for r in rows})
            ax.plot(seconds, [s * batch for s in seconds], ":", color="grey", label="real time")
            ax.set_xlabel("audio per item (s)")
            ax.set_title(f"batch {batch}, {self.settings.get('steps')} schedule")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel("time per call (s)")
        axes[0][-1].legend(fontsize=8)
        # The machine line is long: wrap it so a one-panel figure does not clip it.
        fig.suptitle("\n".join(textwrap.wrap(self.machine.describe(), 60 * len(batches))), fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_output(path, suffix=path.suffix or ".png") as tmp:
                fig.savefig(tmp, dpi=120)
        finally:
            plt.close(fig)
        return path


def cold_start_ms(row: BenchRow) -> Optional[float]:
    """Open the model and make the first call, in a fresh process: what a service's first request
    waits for after a (re)start. TensorRT reads a built engine; ONNX Runtime optimises the graph."""
    if row.load_ms is None or row.first_call_ms is None:
        return None
    return row.load_ms + row.first_call_ms


def _cold_start_cell(row: BenchRow) -> str:
    value = cold_start_ms(row)
    return "-" if value is None else f"{value:.0f}"


def _memory_cell(row: BenchRow) -> str:
    value = row.gpu_used_mb if row.device == "cuda" and row.gpu_used_mb is not None else row.peak_mb
    return "-" if value is None else f"{value:.0f}"


