"""The ``diffwave`` command line: help texts, and one clear line for every bad input to ``train``.

(``preprocess``'s bad inputs are in test_preprocess.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from diffwave.checkpoint import load_checkpoint
from diffwave.cli import app
from helpers import TINY_PARAMS

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def test_console_script_lists_every_command():
    exe = shutil.which("diffwave", path=os.path.dirname(sys.executable)) or shutil.which("diffwave")
    assert exe, "the diffwave console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for command in ("preprocess", "train", "export", "vocode", "bench"):
        assert command in proc.stdout


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "diffwave", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--max-steps" in proc.stdout


@pytest.mark.parametrize(
    "command, options",
    [
        ("preprocess", ["--workers", "--force", "--config"]),
        ("train", ["--max-steps", "--batch-size", "--fp16", "--bf16", "--config", "--device", "--checkpoint-every",
                   "--processes", "--keep-checkpoints"]),
    ],
)
def test_command_help(command, options):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in options:
        assert option in result.stdout


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "preprocess" in result.output and "train" in result.output


@pytest.fixture
def tiny_json(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_PARAMS))
    return path


def train_cli(*args):
    return runner.invoke(app, ["train", *map(str, args), "--device", "cpu", "--workers", "0", "--no-progress"])


def one_error_line(result, *fragments, after: tuple[str, ...] = ()):
    """The command failed with exactly one stderr line, ``error: ...``, holding ``fragments`` (after the lines ``after``)."""
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert tuple(lines[: len(after)]) == after, result.stderr
    lines = lines[len(after) :]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_train_missing_data_dir(tmp_path, tiny_json):
    one_error_line(train_cli(tmp_path / "run", tmp_path / "nope", "--config", tiny_json), f"{tmp_path / 'nope'}: no such file or folder")


def test_train_folder_without_wavs(tmp_path, tiny_json):
    (tmp_path / "empty").mkdir()
    one_error_line(train_cli(tmp_path / "run", tmp_path / "empty", "--config", tiny_json), "no .wav files in")


def test_train_not_preprocessed(tmp_path, tiny_json, speech_dir):
    one_error_line(train_cli(tmp_path / "run", speech_dir, "--config", tiny_json), "run 'diffwave preprocess'")


def test_train_every_record_too_short(tmp_path, tiny_json, preprocessed_dir):
    config = tmp_path / "long.json"
    config.write_text(json.dumps({**TINY_PARAMS, "crop_mel_frames": 5000}))
    one_error_line(train_cli(tmp_path / "run", preprocessed_dir, "--config", config), "shorter than one crop (5000 frames)")


@pytest.mark.parametrize("workers", ["0", "1"])
def test_train_nan_spectrogram_names_the_file(tmp_path, tiny_json, preprocessed_dir, workers):
    # Before: "loss is nan ... lower the learning rate" (training) or a silent nan held-out loss (--valid).
    import shutil

    import numpy as np

    data = tmp_path / "data"
    shutil.copytree(preprocessed_dir, data)
    spec = sorted(data.glob("*.spec.npy"))[0]
    np.save(spec, np.full_like(np.load(spec), np.nan))
    args = ["train", str(tmp_path / "run"), str(data), "--config", str(tiny_json), "--device", "cpu", "--no-progress",
            "--max-steps", "4", "--workers", workers]
    # found by a step, so after the inventory line a run without a bar starts with
    one_error_line(runner.invoke(app, args), f"{spec}: NaN or inf in frames", after=("training data: 3 records",))
    # and as a --valid folder, before the first step
    args = ["train", str(tmp_path / "run2"), str(preprocessed_dir), "--valid", str(data), "--config", str(tiny_json),
            "--device", "cpu", "--no-progress", "--max-steps", "1", "--workers", workers]
    one_error_line(runner.invoke(app, args), f"{spec}: NaN or inf in frames")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "cannot read config"),
        ('["residual_layers"]', "a config file holds a JSON object"),
        ('{"residual_layer": 4}', "unknown config key(s) residual_layer"),
        ('{"hop_samples": 300}', "upsampler is built for a hop of 256"),
        ('{"residual_layers": 0}', "must be positive"),
        # values that trained silently wrong (a negative clip flips every gradient; an average
        # decaying by 1.5 diverges and is what inference loads) or crashed deep in torch
        ('{"max_grad_norm": -1}', "max_grad_norm=-1: must be positive, or null for no clipping"),
        ('{"ema_decay": 1.5}', "ema_decay=1.5: must lie in [0, 1)"),
        ('{"learning_rate": "abc"}', "learning_rate='abc': must be a finite number"),
        ('{"learning_rate": -1}', "learning_rate=-1: must be a finite number >= 0"),
        ('{"residual_layers": 2.5}', "residual_layers=2.5: must be an integer"),
        ('{"seed": -1}', "seed=-1: must be >= 0"),
        ('{"unconditional": "yes"}', "unconditional='yes': must be true or false"),
    ],
    ids=["syntax", "not-object", "typo", "hop", "zero-layers", "negative-clip", "ema-above-1", "lr-string",
         "lr-negative", "float-layers", "negative-seed", "bool-string"],
)
def test_train_bad_config(tmp_path, preprocessed_dir, content, fragment):
    config = tmp_path / "bad.json"
    config.write_text(content)
    one_error_line(train_cli(tmp_path / "run", preprocessed_dir, "--config", config), str(config), fragment)
    assert not (tmp_path / "run").exists()


def test_train_missing_config_file(tmp_path, preprocessed_dir):
    one_error_line(train_cli(tmp_path / "run", preprocessed_dir, "--config", tmp_path / "missing.json"), "missing.json", "cannot read config")


@pytest.mark.parametrize(
    "flags, code, fragment",
    [
        (["--fp16", "--bf16"], 2, "--fp16 and --bf16 exclude each other"),
        (["--fp16"], 1, "--fp16 needs CUDA"),
        # usage mistakes: exit 2 and the pointer to --help, as every other option's bad value
        (["--max-steps", "-1"], 2, "Invalid value for '--max-steps': Input should be greater than or equal to 0"),
        (["--checkpoint-every", "0"], 2, "Invalid value for '--checkpoint-every'"),
        (["--log-every", "0"], 2, "Invalid value for '--log-every'"),
        (["--batch-size", "0"], 2, "Invalid value for '--batch-size'"),
        (["--processes", "0"], 2, "Invalid value for '--processes'"),
    ],
)
def test_train_bad_flags(tmp_path, preprocessed_dir, tiny_json, flags, code, fragment):
    result = train_cli(tmp_path / "run", preprocessed_dir, "--config", tiny_json, *flags)
    one_error_line(result, fragment)
    assert result.exit_code == code
    if code == 2:
        assert result.stderr.strip().endswith("(see `diffwave train --help`)")


def test_train_unknown_device(tmp_path, preprocessed_dir, tiny_json):
    result = runner.invoke(app, ["train", str(tmp_path / "r"), str(preprocessed_dir), "--device", "tpu"])
    one_error_line(result, "device 'tpu': expected cpu or cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_train_cuda_without_cuda(tmp_path, preprocessed_dir, tiny_json):
    result = runner.invoke(app, ["train", str(tmp_path / "r"), str(preprocessed_dir), "--config", str(tiny_json), "--device", "cuda"])
    one_error_line(result, "--device cuda: no CUDA device is available")


def test_train_corrupt_or_dangling_checkpoint(tmp_path, preprocessed_dir, tiny_json):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "weights-7.pt").write_bytes(b"\x00" * 100)
    os.symlink("weights-7.pt", model_dir / "weights.pt")
    one_error_line(train_cli(model_dir, preprocessed_dir, "--config", tiny_json), "weights.pt: unreadable checkpoint")
    (model_dir / "weights-7.pt").unlink()
    one_error_line(train_cli(model_dir, preprocessed_dir, "--config", tiny_json), "links to weights-7.pt, which is missing")


def test_train_already_done_and_architecture_change(tmp_path, preprocessed_dir, tiny_json):
    model_dir = tmp_path / "run"
    first = train_cli(model_dir, preprocessed_dir, "--config", tiny_json, "--max-steps", "1")
    assert first.exit_code == 0
    # without a bar the log still says what it trains on (it said nothing before)
    assert first.stderr.splitlines()[0] == f"training data: {len(list(preprocessed_dir.glob('*.wav')))} records"
    result = train_cli(model_dir, preprocessed_dir, "--max-steps", "1")
    assert result.exit_code == 0 and "already at step 1, nothing to do" in result.stdout
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**TINY_PARAMS, "residual_channels": 32}))
    one_error_line(train_cli(model_dir, preprocessed_dir, "--config", wider), "residual_channels=16 -> 32", "new model directory")
    assert load_checkpoint(model_dir).step == 1


@pytest.mark.parametrize(
    "command, sentence",
    [
        ("train", "Several GPUs: all are used by default (one spawned process each)"),
        ("export", "The parity gate runs ONNX Runtime on CPU at the profile's min, middle and max lengths (FP32"),
        ("vocode", "feature preset (copy-synthesis). Each output is OUT/<name>.wav"),
    ],
)
def test_help_paragraphs_wrap_to_the_terminal(command, sentence):
    # A docstring's source line breaks must not survive into --help: at 200 columns every one of
    # these sentences fits on one line, and before reflowing each was broken where the source was.
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert sentence in result.stdout


def test_reflow_keeps_paragraphs_apart():
    from diffwave.cli.app import reflow

    assert reflow("First line\n    goes on.\n\n    Second\n    paragraph.\n") == "First line goes on.\n\nSecond paragraph."
