"""scripts/gpu_train.sh, the one-call training slice for a lent GPU, dry-run on the CPU.

The GPU machine is bare and offline; here the same script runs end to end with DEVICE=cpu on a
12-sentence corpus: espeak-ng corpus, preprocess, a time-limited slice, the small weights file,
the TensorBoard scalars and the resume parts it leaves in OUT, then a second slice on a fresh run
folder that goes on from those parts alone, as the next lent machine would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from diffwave.checkpoint import load_checkpoint, load_model
from helpers import TINY_PARAMS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_train.sh"


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_a_slice_leaves_inference_weights_and_scalars(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY_PARAMS, "ema_decay": 0.9}))
    out = tmp_path / "out"
    proc = run_script(
        tmp_path, str(tmp_path / "run"), "0.02", "--config", str(config), "--workers", "0",
        OUT=str(out), DEVICE="cpu", CORPUS=str(tmp_path / "corpus"), SENTENCES="12", PART_BYTES="1000000",
        BENCH="--no-such-option",  # a benchmark that fails must not stop the slice
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    weights = sorted(out.glob("weights-*.pt"))
    assert len(weights) == 1
    shipped = load_checkpoint(weights[0])
    assert shipped.step >= 1 and shipped.optimizer is None
    # One set of weights, labelled as the average: "ema" holds the very tensors of "model".
    assert all(shipped.ema[k].data_ptr() == v.data_ptr() for k, v in shipped.model.items())
    one_set = sum(v.numel() * v.element_size() for v in shipped.model.values())
    assert weights[0].stat().st_size < 1.2 * one_set
    assert load_model(weights[0]).uses_ema
    assert shipped.params["residual_layers"] == TINY_PARAMS["residual_layers"]
    # What comes back is the average the run kept, under the plain "model" key.
    run_ckpt = load_checkpoint(tmp_path / "run")
    model = load_model(weights[0])
    assert all((model.state_dict()[k] == v).all() for k, v in run_ckpt.ema.items())
    assert list(out.glob("events.out.tfevents.*"))
    log = (out / "train.log").read_text()
    assert "budget is spent" in log and f"steps/s; saved weights-{shipped.step}.pt" in log
    assert "the benchmark failed (exit 2); training goes on" in log, log

    # The next lent machine starts bare: a new RUN_DIR, only the returned parts carried in.
    parts = sorted(out.glob(f"resume-{shipped.step}.pt.*"))
    assert len(parts) >= 3  # PART_BYTES forced the cut
    assert all(part.stat().st_size <= 1_000_000 for part in parts)
    carried = tmp_path / "carried"
    carried.mkdir()
    for part in parts:
        (carried / part.name).write_bytes(part.read_bytes())
    out2 = tmp_path / "out2"
    proc = run_script(
        tmp_path, str(tmp_path / "run2"), "0.02", "--workers", "0",
        OUT=str(out2), DEVICE="cpu", CORPUS=str(tmp_path / "corpus"), SENTENCES="12",
        RESUME=str(carried), PART_BYTES="1000000",
        # The training-step benchmark a GPU session may run first, on the same device, into the log.
        BENCH=f"--config {config} --batch-size 2 --crop-frames 4 --precisions fp32 --rounds 1 --steps 1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert f"resuming from step {shipped.step}" in proc.stdout
    log = (out2 / "train.log").read_text()
    assert "training step on CPU" in log and re.search(rf"{re.escape(str(config))}\s+fp32\s+\d+\.\d", log), log
    resumed_from = load_checkpoint(tmp_path / "run2" / f"weights-{shipped.step}.pt")
    assert all((resumed_from.model[k] == v).all() for k, v in run_ckpt.model.items())
    assert resumed_from.optimizer["state"] and resumed_from.ema is None
    later = load_checkpoint(tmp_path / "run2")
    assert later.step > shipped.step and later.params == run_ckpt.params
    assert sorted(out2.glob(f"weights-{later.step}.pt"))


def test_resume_without_parts_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_script(tmp_path, str(tmp_path / "run"), "1", OUT=str(tmp_path / "out"), RESUME=str(empty))
    assert proc.returncode == 1 and f"{empty}: no resume-<step>.pt.NN parts" in proc.stderr


def test_usage_without_out(tmp_path):
    proc = run_script(tmp_path, "run", "1", OUT="")
    assert proc.returncode == 2 and "usage: OUT=DIR" in proc.stderr
