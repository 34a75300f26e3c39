"""scripts/ship_gate.py: a candidate ships only if it wins on every seed, and bad reports are refused in one line.

The reports are written by the real ``EvalReport`` (the schema `diffwave eval --json` writes);
their numbers are chosen here so each verdict is known before the gate runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from diffwave.evaluation.report import EvalReport, Row, SystemInfo
from helpers import load_script

NEW, OLD = "checkpoint:weights-72000.pt", "checkpoint:weights.pt"
FILES = ("a.wav", "b.wav", "c.wav", "d.wav")


@pytest.fixture()
def gate(monkeypatch):
    return load_script("ship_gate", monkeypatch)


def write_report(path: Path, seed: int, new_pesq, old_pesq, new_mel=7.0, old_mel=7.0, new_dnsmos=1.8, old_dnsmos=1.8,
                 perceptual=True, steps="fast", files=FILES) -> Path:
    """A report with one row per file and system; pesq values are per file (lists) or one value for all."""
    per_file = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * len(files)  # noqa: E731
    report = EvalReport(steps=steps, seed=seed, sample_rate=22050, griffin_lim_iterations=64, perceptual=perceptual,
                        systems=[SystemInfo(OLD, "checkpoint", "w.pt"), SystemInfo(NEW, "checkpoint", "n.pt")], files=list(files))
    for name, pesq, mel, dnsmos in ((OLD, per_file(old_pesq), old_mel, old_dnsmos), (NEW, per_file(new_pesq), new_mel, new_dnsmos)):
        for file, p in zip(files, pesq):
            row = Row(file=file, system=name, mel_cycle_db=mel, mrstft=1.8, periodicity=0.4)
            if perceptual:
                row.pesq_wb, row.dnsmos_overall = p, dnsmos
            report.rows.append(row)
    report.finalize().write_json(path)
    return path


def run(gate, capsys, *reports: Path, extra=()) -> tuple[int, str, str]:
    code = gate.main([*map(str, reports), "--candidate", NEW, "--shipped", OLD, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_gain_on_every_seed_ships(gate, capsys, tmp_path):
    reports = [write_report(tmp_path / f"s{s}.json", s, 1.20, 1.18) for s in (0, 1)]
    code, out, _ = run(gate, capsys, *reports)
    assert code == 0 and "ship: " in out and "do not ship" not in out
    assert "+0.0200" in out  # the gain, in the table and the paired line


def test_a_mean_gain_that_one_seed_reverses_does_not_ship(gate, capsys, tmp_path):
    # Mean gain 0.01 (above --min-gain), but seed 1 has the candidate below the shipped model.
    reports = [write_report(tmp_path / "s0.json", 0, 1.21, 1.18), write_report(tmp_path / "s1.json", 1, 1.175, 1.18)]
    code, out, _ = run(gate, capsys, *reports)
    assert code == 1
    missed = [line for line in out.splitlines() if line.startswith("do not ship")]
    assert len(missed) == 1 and "seed 1" in missed[0]


def test_a_gain_smaller_than_the_margin_does_not_ship(gate, capsys, tmp_path):
    reports = [write_report(tmp_path / f"s{s}.json", s, 1.183, 1.18) for s in (0, 1)]
    code, out, _ = run(gate, capsys, *reports)
    assert code == 1 and "below 0.005" in out
    assert run(gate, capsys, *reports, extra=("--min-gain", "0.002"))[0] == 0


@pytest.mark.parametrize(
    "distances, expected",
    [(dict(new_mel=7.5, old_mel=7.0), "mel-cycle"), (dict(new_dnsmos=1.70, old_dnsmos=1.80), "DNSMOS")],
)
def test_a_pesq_gain_bought_with_a_worse_distance_or_dnsmos_does_not_ship(gate, capsys, tmp_path, distances, expected):
    reports = [write_report(tmp_path / f"s{s}.json", s, 1.25, 1.18, **distances) for s in (0, 1)]
    code, out, _ = run(gate, capsys, *reports)
    missed = [line for line in out.splitlines() if line.startswith("do not ship")]
    assert code == 1 and len(missed) == 1 and expected in missed[0]


def test_the_paired_gain_is_the_mean_and_standard_error_over_files_and_seeds(gate, tmp_path):
    s0 = write_report(tmp_path / "s0.json", 0, [1.3, 1.1, 1.2, 1.2], 1.2)  # gains 0.1, -0.1, 0, 0
    s1 = write_report(tmp_path / "s1.json", 1, [1.4, 1.2, 1.2, 1.2], 1.2)  # gains 0.2, 0, 0, 0
    results = [gate.read_report(p, NEW, OLD) for p in (s0, s1)]
    mean, se, n = gate.paired_gain(results)
    gains = [0.1, -0.1, 0, 0, 0.2, 0, 0, 0]
    m = sum(gains) / 8
    assert n == 8 and mean == pytest.approx(m)
    assert se == pytest.approx(math.sqrt(sum((g - m) ** 2 for g in gains) / 7 / 8))


def test_one_seed_given_twice_is_refused(gate, capsys, tmp_path):
    a = write_report(tmp_path / "a.json", 0, 1.20, 1.18)
    b = write_report(tmp_path / "b.json", 0, 1.20, 1.18)
    code, out, err = run(gate, capsys, a, b)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(b) in err and "seed 0" in err


def test_a_report_without_the_named_system_or_without_pesq_is_refused(gate, capsys, tmp_path):
    good = write_report(tmp_path / "s0.json", 0, 1.20, 1.18)
    code = gate.main([str(good), "--candidate", "checkpoint:other.pt", "--shipped", OLD])
    err = capsys.readouterr().err
    assert code == 2 and str(good) in err and "checkpoint:other.pt" in err and NEW in err
    bare = write_report(tmp_path / "s1.json", 1, 1.20, 1.18, perceptual=False)
    code, _, err = run(gate, capsys, good, bare)
    assert code == 2 and str(bare) in err and "--no-perceptual" in err


def test_a_file_that_is_not_an_eval_report_is_refused(gate, capsys, tmp_path):
    other = tmp_path / "bench.json"
    other.write_text(json.dumps({"schema": "diffwave-bench/1"}))
    broken = tmp_path / "cut.json"
    broken.write_text('{"schema": "diffwave-eval/1", "systems": [')
    for path in (other, broken):
        code, _, err = run(gate, capsys, path)
        assert code == 2 and err.count("\n") == 1 and str(path) in err


def test_a_report_with_a_missing_field_is_refused_in_one_line(gate, capsys, tmp_path):
    path = write_report(tmp_path / "s0.json", 0, 1.20, 1.18)
    report = json.loads(path.read_text())
    del report["means"]
    path.write_text(json.dumps(report))
    code, out, err = run(gate, capsys, path)
    assert code == 2 and out == "" and err.count("\n") == 1 and str(path) in err and "means" in err


@pytest.mark.parametrize("other, expected", [(dict(steps="full"), "schedule full"), (dict(files=FILES[:3]), "other files")])
def test_reports_of_other_files_or_another_schedule_are_refused(gate, capsys, tmp_path, other, expected):
    s0 = write_report(tmp_path / "s0.json", 0, 1.20, 1.18)
    s1 = write_report(tmp_path / "s1.json", 1, 1.20, 1.18, **other)
    code, out, err = run(gate, capsys, s0, s1)
    assert code == 2 and out == "" and err.count("\n") == 1 and str(s1) in err and expected in err
