"""scripts/gpu_train.sh, the one-call training slice for a lent GPU, dry-run on the CPU.

The GPU machine is bare and offline; here the same script runs end to end with DEVICE=cpu on a
12-sentence corpus: espeak-ng corpus, preprocess, a time-limited slice, the small weights file
and the TensorBoard scalars it leaves in OUT.
"""

from __future__ import annotations

import json
import os
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
        OUT=str(out), DEVICE="cpu", CORPUS=str(tmp_path / "corpus"), SENTENCES="12",
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    weights = sorted(out.glob("weights-*.pt"))
    assert len(weights) == 1
    shipped = load_checkpoint(weights[0])
    assert shipped.step >= 1 and shipped.optimizer is None and shipped.ema is None
    assert shipped.params["residual_layers"] == TINY_PARAMS["residual_layers"]
    # What comes back is the average the run kept, under the plain "model" key.
    run_ckpt = load_checkpoint(tmp_path / "run")
    model = load_model(weights[0])
    assert all((model.state_dict()[k] == v).all() for k, v in run_ckpt.ema.items())
    assert list(out.glob("events.out.tfevents.*"))
    log = (out / "train.log").read_text()
    assert "budget is spent" in log and "train" in log


def test_usage_without_out(tmp_path):
    proc = run_script(tmp_path, "run", "1", OUT="")
    assert proc.returncode == 2 and "usage: OUT=DIR" in proc.stderr
