"""The result of ``diffwave eval`` as typed rows, a printed table and a JSON file.

The JSON schema (``schema: "diffwave-eval/1"``) is what dashboards and the issue's quality
bar read, so it is defined here once: field names are the dataclass field names below.
Non-finite numbers (PESQ with no speech, SNR of bit-identical outputs) are written as
``null``, because JSON has no NaN or Infinity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from ..strict_json import dumps_strict

SCHEMA = "diffwave-eval/1"
ORIGINAL = "original"  #: the recording itself: the ceiling for PESQ and the DNSMOS reference
GRIFFIN_LIM = "griffin-lim"


@dataclass(frozen=True)
class SystemInfo:
    """One source of audio in the table: a model on a backend, Griffin-Lim, or the original."""

    name: str  #: label in the table, e.g. "onnx:model.onnx", "griffin-lim-64", "original"
    kind: str  #: "onnx", "checkpoint", "engine", "griffin-lim" or "original"
    path: Optional[str] = None  #: the model file, for model systems


@dataclass
class Row:
    """Metrics of one system on one file (``file == "mean"`` for the average over files)."""

    file: str
    system: str
    mel_cycle_db: Optional[float] = None  #: features of the output vs the input features, mean |Δ| in dB
    mrstft: Optional[float] = None  #: auraloss multi-resolution STFT distance to the original
    periodicity: Optional[float] = None  #: mean best pitch-lag autocorrelation of loud frames (evaluation/periodicity.py)
    pesq_wb: Optional[float] = None  #: PESQ wide-band (16 kHz) against the original
    dnsmos_overall: Optional[float] = None
    dnsmos_signal: Optional[float] = None
    dnsmos_background: Optional[float] = None
    dnsmos_p808: Optional[float] = None


METRICS = tuple(f.name for f in fields(Row) if f.name not in ("file", "system"))


@dataclass
class SnrRow:
    """SNR of system ``b``'s output against system ``a``'s, both fed the same features and noise."""

    file: str
    a: str
    b: str
    snr_db: Optional[float]  #: null when the outputs are bit-identical (infinite SNR)


@dataclass
class Skipped:
    """A mean that covers only some files: ``metric`` of ``system`` had no value on ``files``.

    PESQ finds no utterance in a clip of silence and periodicity no loud frame; the mean is then
    over the other files, and this says so instead of passing the smaller mean off as the whole's.
    """

    system: str
    metric: str  #: a Row field name, e.g. "pesq_wb"
    files: list[str]  #: the files the mean leaves out
    of: int  #: how many files the system was scored on


@dataclass
class EvalReport:
    steps: str | tuple[float, ...]  #: a schedule name or the betas given to --steps
    seed: int
    sample_rate: int
    griffin_lim_iterations: int
    perceptual: bool  #: whether PESQ and DNSMOS were computed
    systems: list[SystemInfo]
    files: list[str]
    rows: list[Row] = field(default_factory=list)
    means: list[Row] = field(default_factory=list)
    snr: list[SnrRow] = field(default_factory=list)
    mean_snr: list[SnrRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  #: means over fewer files than the system's rows
    schema: str = SCHEMA

    def finalize(self) -> "EvalReport":
        """Fill ``means`` and ``mean_snr`` from the per-file rows (NaN-aware: a missing value is skipped)."""
        self.means, self.skipped = [], []
        for system in self.systems:
            own = [r for r in self.rows if r.system == system.name]
            mean = Row(file="mean", system=system.name)
            for name in METRICS:
                values = [getattr(r, name) for r in own if _finite(getattr(r, name))]
                setattr(mean, name, sum(values) / len(values) if values else None)
                if values and len(values) < len(own):  # none at all is a metric not computed: "-" says that
                    missing = [r.file for r in own if not _finite(getattr(r, name))]
                    self.skipped.append(Skipped(system.name, name, missing, len(own)))
            self.means.append(mean)
        pairs = sorted({(s.a, s.b) for s in self.snr}, key=lambda p: [x.name for x in self.systems].index(p[1]))
        self.mean_snr = []
        for a, b in pairs:
            values = [s.snr_db for s in self.snr if (s.a, s.b) == (a, b)]
            finite = [v for v in values if _finite(v)]
            # all identical -> infinite -> null; otherwise the mean of the finite ones
            self.mean_snr.append(SnrRow("mean", a, b, sum(finite) / len(finite) if finite else None))
        return self

    def to_json(self) -> str:
        return dumps_strict(asdict(self))

    def write_json(self, path: str | Path) -> Path:
        from runtime.bundle import write_text_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, self.to_json())
        return path

    def table(self) -> str:
        """Per-file rows, then the mean over files; SNR between models last."""
        headers = ("file", "system", "mel-cycle dB", "MR-STFT", "periodicity", "PESQ-WB", "DNSMOS", "SIG", "BAK", "P808")
        body = [_cells(r) for r in self.rows]
        mean = [_cells(r) for r in self.means]
        widths = [max(len(h), *(len(c[i]) for c in body + mean)) for i, h in enumerate(headers)]
        line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
        rule = "-" * len(line(headers))
        out = [line(headers), rule, *map(line, body), rule, *map(line, mean)]
        for s in self.skipped:
            label = headers[2 + METRICS.index(s.metric)]
            out.append(f"  {s.system}: the mean {label} covers {s.of - len(s.files)} of {s.of} files (no value for {', '.join(s.files)})")
        if self.snr:
            out += ["", "SNR between models (same features, same noise):"]
            for s in self.snr + self.mean_snr:
                out.append(f"  {s.file}  {s.b} vs {s.a}: {_num(s.snr_db, 2, inf_if_none=True)} dB")
        return "\n".join(out)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _num(value, digits: int, inf_if_none: bool = False) -> str:
    if value is None:
        return "inf" if inf_if_none else "-"
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def _cells(r: Row) -> tuple[str, ...]:
    return (
        r.file,
        r.system,
        _num(r.mel_cycle_db, 2),
        _num(r.mrstft, 3),
        _num(r.periodicity, 3),
        _num(r.pesq_wb, 2),
        _num(r.dnsmos_overall, 2),
        _num(r.dnsmos_signal, 2),
        _num(r.dnsmos_background, 2),
        _num(r.dnsmos_p808, 2),
    )
