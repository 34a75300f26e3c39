"""benchmarks/data_loader.py runs the training loader over real preprocessed speech and prints one row per worker count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "data_loader.py"


def test_one_row_per_worker_count(preprocessed_dir):
    proc = subprocess.run(
        [sys.executable, str(BENCH), str(preprocessed_dir), "--config", "small", "--workers", "0,1", "--batches", "5"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("data loader: ") and "batch 8 × 32 frames" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["0", "1"]
    for row in rows:  # crops/s is batches/s times the batch, and both are positive
        batches, crops = float(row[2]), float(row[3])
        assert batches > 0 and abs(crops - 8 * batches) <= 8
