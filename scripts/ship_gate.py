"""Decide whether a candidate model replaces the shipped one, from `diffwave eval` reports over several noise seeds.

    python scripts/ship_gate.py EVAL.json [EVAL.json ...] --candidate LABEL --shipped LABEL
        [--min-gain 0.005] [--max-mel-loss 0.2] [--max-dnsmos-loss 0.05]

Each EVAL.json is one `diffwave eval --json` report (schema diffwave-eval/1) that scored both
systems on the same files with one noise seed; give one report per seed, all of the same files and
schedule. LABEL is a system's name in the reports, e.g. ``checkpoint:weights.pt``.

Why several seeds: an 8-file mean of PESQ-WB moves by about as much between noise seeds as a CPU
sitting gains (stop 31 shipped on a 0.003 margin). The candidate ships only if

- its PESQ-WB mean is above the shipped model's in **every** report,
- its PESQ-WB gain, averaged over the reports, is at least ``--min-gain``,
- its mel-cycle distance (mean over the reports) is at most ``--max-mel-loss`` dB worse, and
- its DNSMOS overall (mean over the reports) is at most ``--max-dnsmos-loss`` lower.

The table also gives the paired per-file PESQ-WB gain over all files and seeds with its standard
error, for the reader; the rule does not use it, because 8 files × 2 seeds make a rough error bar.

Exit status: 0 ship, 1 do not ship (each failed condition on one line), 2 unusable reports
(one line naming the file and what is wrong).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from diffwave.evaluation.report import SCHEMA

#: (JSON field, table heading); PESQ-WB first: it decides.
METRICS = (("pesq_wb", "PESQ-WB"), ("mel_cycle_db", "mel-cycle dB"), ("dnsmos_overall", "DNSMOS"))


class GateError(Exception):
    """One line: why the reports cannot be compared."""


@dataclass(frozen=True)
class SeedResult:
    """One report: the two systems' means and their per-file PESQ-WB, paired by file."""

    source: str  #: the report file
    seed: int
    steps: str  #: the noise schedule, as the report names it
    files: tuple[str, ...]  #: the recordings scored
    candidate: dict[str, float]  #: metric -> mean
    shipped: dict[str, float]
    pesq_pairs: tuple[tuple[float, float], ...]  #: (candidate, shipped) per file

    def gain(self, metric: str) -> float:
        return self.candidate[metric] - self.shipped[metric]


@dataclass(frozen=True)
class Rule:
    min_gain: float = 0.005  #: PESQ-WB, mean over seeds
    max_mel_loss: float = 0.2  #: dB, mean over seeds
    max_dnsmos_loss: float = 0.05  #: mean over seeds


def read_report(path: Path, candidate: str, shipped: str) -> SeedResult:
    """One report's numbers for the two systems; GateError names the file when it cannot be used."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GateError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise GateError(f"{path}: not a `diffwave eval --json` report (schema {SCHEMA} expected)")
    try:
        return _results(path, report, candidate, shipped)
    except (KeyError, TypeError, ValueError) as exc:  # a hand-edited or cut report
        raise GateError(f"{path}: malformed report ({type(exc).__name__}: {exc})") from None


def _results(path: Path, report: dict, candidate: str, shipped: str) -> SeedResult:
    names = [s["name"] for s in report["systems"]]
    for label in (candidate, shipped):
        if label not in names:
            raise GateError(f"{path}: no system {label!r}; it has {', '.join(names)}")
    means = {r["system"]: r for r in report["means"]}
    for label in (candidate, shipped):
        missing = [m for m, _ in METRICS if means[label].get(m) is None]
        if missing:
            raise GateError(f"{path}: {label} has no mean {', '.join(missing)} (was it run with --no-perceptual?)")
    return SeedResult(
        source=str(path),
        seed=int(report["seed"]),
        steps=str(report["steps"]),
        files=tuple(report["files"]),
        candidate={m: float(means[candidate][m]) for m, _ in METRICS},
        shipped={m: float(means[shipped][m]) for m, _ in METRICS},
        pesq_pairs=_pesq_pairs(path, report["rows"], candidate, shipped),
    )


def _pesq_pairs(path: Path, rows: list[dict], candidate: str, shipped: str) -> tuple[tuple[float, float], ...]:
    by_file: dict[str, dict[str, Optional[float]]] = {}
    for row in rows:
        if row["system"] in (candidate, shipped):
            by_file.setdefault(row["file"], {})[row["system"]] = row.get("pesq_wb")
    pairs = []
    for file, scores in by_file.items():
        if set(scores) != {candidate, shipped}:
            raise GateError(f"{path}: {file} was not scored for both {candidate} and {shipped}")
        if scores[candidate] is not None and scores[shipped] is not None:
            pairs.append((float(scores[candidate]), float(scores[shipped])))
    return tuple(pairs)


def check_comparable(results: Sequence[SeedResult]) -> None:
    """The same files and schedule in every report, and every report a different seed, so no draw of noise counts twice."""
    first = results[0]
    seen: dict[int, str] = {}
    for r in results:
        if r.steps != first.steps:
            raise GateError(f"{r.source}: schedule {r.steps} differs from {first.source}'s {first.steps}")
        if r.files != first.files:
            raise GateError(f"{r.source}: scores other files than {first.source} ({len(r.files)} vs {len(first.files)}); give --limit and the data alike")
        if r.seed in seen:
            raise GateError(f"{r.source}: seed {r.seed} again (also in {seen[r.seed]}); give one report per seed")
        seen[r.seed] = r.source


def failures(results: Sequence[SeedResult], rule: Rule) -> list[str]:
    """Each condition the candidate misses, one line each; empty means it ships."""
    out = [f"seed {r.seed}: PESQ-WB {r.candidate['pesq_wb']:.4f} is not above the shipped {r.shipped['pesq_wb']:.4f}"
           for r in results if r.gain("pesq_wb") <= 0]
    pesq, mel, dnsmos = (_mean([r.gain(m) for r in results]) for m, _ in METRICS)
    if pesq < rule.min_gain:
        out.append(f"PESQ-WB gain {pesq:+.4f} (mean over seeds) is below {rule.min_gain}")
    if mel > rule.max_mel_loss:
        out.append(f"mel-cycle is {mel:+.2f} dB worse (mean over seeds), more than {rule.max_mel_loss}")
    if -dnsmos > rule.max_dnsmos_loss:
        out.append(f"DNSMOS overall is {-dnsmos:.3f} lower (mean over seeds), more than {rule.max_dnsmos_loss}")
    return out


def paired_gain(results: Sequence[SeedResult]) -> tuple[float, float, int]:
    """Mean per-file PESQ-WB gain over all files and seeds, its standard error, and the number of pairs."""
    gains = [c - s for r in results for c, s in r.pesq_pairs]
    n = len(gains)
    se = statistics.stdev(gains) / math.sqrt(n) if n >= 2 else math.nan
    return _mean(gains), se, n


def table(results: Sequence[SeedResult]) -> str:
    """Per seed and mean over seeds: candidate, shipped and their difference (candidate minus shipped) for each metric.

    Lower is better for mel-cycle, higher for PESQ-WB and DNSMOS.
    """
    head = ["seed"] + [f"{h} {w}" for _, h in METRICS for w in ("cand", "shipped", "diff")]
    values = [[v for m, _ in METRICS for v in (r.candidate[m], r.shipped[m], r.gain(m))] for r in results]
    rows = [[str(r.seed)] + [f"{v:.4f}" for v in row] for r, row in zip(results, values)]
    rows.append(["mean"] + [f"{_mean(column):.4f}" for column in zip(*values)])
    widths = [max(len(c) for c in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in [head, *rows])


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="`diffwave eval --json` reports, one per noise seed")
    parser.add_argument("--candidate", required=True, help="the new model's system name in the reports")
    parser.add_argument("--shipped", required=True, help="the shipped model's system name in the reports")
    parser.add_argument("--min-gain", type=float, default=Rule.min_gain, help="least PESQ-WB gain, mean over seeds (default %(default)s)")
    parser.add_argument("--max-mel-loss", type=float, default=Rule.max_mel_loss, help="most mel-cycle dB lost (default %(default)s)")
    parser.add_argument("--max-dnsmos-loss", type=float, default=Rule.max_dnsmos_loss, help="most DNSMOS overall lost (default %(default)s)")
    args = parser.parse_args(argv)
    if args.candidate == args.shipped:
        print("ship_gate: --candidate and --shipped name the same system", file=sys.stderr)
        return 2
    try:
        results = [read_report(p, args.candidate, args.shipped) for p in args.reports]
        check_comparable(results)
    except GateError as exc:
        print(f"ship_gate: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    mean, se, n = paired_gain(results)
    print(f"paired per-file PESQ-WB gain: {mean:+.4f} ± {se:.4f} (standard error, {n} file-seed pairs)")
    missed = failures(results, Rule(args.min_gain, args.max_mel_loss, args.max_dnsmos_loss))
    for line in missed:
        print(f"do not ship: {line}")
    if not missed:
        print(f"ship: {args.candidate} beats {args.shipped} on every seed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
