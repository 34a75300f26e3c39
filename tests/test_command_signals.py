"""Ctrl-C and SIGTERM in the commands that write files but do not train: vocode, eval, export,
bench and demo end with one line and leave no temporary behind.

Before, SIGTERM killed them by its default action: a wav's hidden temporary stayed in the output
folder, export's ``.<name>.<random>.staging`` folder beside the bundle, bench's temporary models in
/tmp. Each test signals the real command at a chosen moment (tests/signal_probe.py ``called:``):
right after a file's temporary is written and before it is renamed, or once a temporary folder
holds something.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffwave.checkpoint import Checkpoint, save_checkpoint
from helpers import random_model, tiny_config

PROBE = Path(__file__).with_name("signal_probe.py")
SIGNALS = [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
FRAMES = 40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    config = tiny_config()
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(folder, Checkpoint(step=1, model=random_model(config, seed=5).state_dict(), params=config.to_params()))
    return folder


def _run(probe: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {}), "PROBE": probe}
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=300, env=env)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("name, code, word", SIGNALS)
def test_vocode_keeps_the_whole_wavs_and_no_temporary(tmp_path, checkpoint, name, code, word):
    rng = np.random.default_rng(0)
    inputs = []
    for stem in ("a", "b", "c"):
        np.save(tmp_path / f"{stem}.npy", rng.uniform(0, 1, (80, FRAMES)).astype(np.float32))
        inputs.append(str(tmp_path / f"{stem}.npy"))
    out = tmp_path / "out"
    # The signal lands after b.wav's temporary is written, before it is renamed.
    proc = _run(f"called:soundfile.write:2:{name}", "vocode", *inputs, "-o", str(out), "--checkpoint", str(checkpoint),
                "--device", "cpu")
    assert proc.returncode == code, proc.stderr
    assert _last_line(proc) == f"error: {word} (every wav written so far is complete)"
    assert sorted(p.name for p in out.iterdir()) == ["a.wav"]  # a whole, b's temporary removed, c never started
    assert sf.info(str(out / "a.wav")).frames == FRAMES * 256


def test_eval_leaves_no_temporary_among_the_saved_audio(tmp_path, checkpoint, speech_wav):
    saved = tmp_path / "saved"
    proc = _run("called:soundfile.write:1:SIGTERM", "eval", str(speech_wav), "--checkpoint", str(checkpoint),
                "--no-perceptual", "--griffin-lim-iters", "2", "--save-audio", str(saved))
    assert proc.returncode == 143, proc.stderr
    assert _last_line(proc) == "error: terminated (nothing half-written is left; no table was produced)"
    files = [p for p in saved.rglob("*")]
    assert [p for p in files if p.name.startswith(".")] == []
    assert [p for p in files if p.is_file()] == []  # the first write was the one signalled


def test_export_removes_its_staging_folder(tmp_path, checkpoint):
    bundle = tmp_path / "bundle"
    # Right after the step graph is written into the staging folder.
    proc = _run("called:export.bundle_export.export_step_onnx:1:SIGTERM", "export", str(checkpoint), "-o", str(bundle),
                "--onnx-only", "--fp32", "--no-progress")
    assert proc.returncode == 143, proc.stderr
    assert _last_line(proc) == "error: terminated (nothing half-written is left; rerun to export)"
    assert not bundle.exists()
    assert _hidden(tmp_path) == []  # no .bundle.<random>.staging


def test_bench_removes_its_temporary_models(tmp_path, checkpoint):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = _run("called:diffwave.cli.bench_cmd._prepare_models:1:SIGTERM", "bench", "--checkpoint", str(checkpoint),
                "--seconds", "0.05", "--repeats", "1", "--warmup", "0", "--no-memory", "--no-progress",
                env={"TMPDIR": str(scratch)})
    assert proc.returncode == 143, proc.stderr
    assert _last_line(proc) == "error: terminated (no results; its temporary models were removed)"
    assert list(scratch.glob("diffwave-bench-*")) == []


def test_demo_leaves_neither_output_nor_temporary(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = _run("called:soundfile.write:1:SIGTERM", "demo", "-o", str(out / "out.wav"),
                env={"DIFFWAVE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 143, proc.stderr
    assert _last_line(proc) == "error: terminated (nothing half-written is left)"
    assert list(out.iterdir()) == []
