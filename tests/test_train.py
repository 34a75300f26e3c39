"""Training on real speech: it learns, it logs, it checkpoints atomically and resumes exactly."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from diffwave.audio import read_wav
from diffwave.checkpoint import CheckpointError, load_checkpoint, load_model
from diffwave.cli import app
from diffwave.model import DiffWave
from diffwave.preprocess import preprocess
from diffwave.data import DataError, scan
from diffwave.train import TrainingError, TrainOptions, resolve_config, train
from diffwave.validation import ValidationSet, validation_levels
from helpers import TINY_PARAMS, tiny_config
from runtime.bundle import FeatureSpec

runner = CliRunner()


# One intra-op thread (conftest.one_thread); the subprocess in the kill test gets OMP_NUM_THREADS=1,
# so the bitwise comparisons compare the same arithmetic.
pytestmark = pytest.mark.usefixtures("one_thread")


def options(model_dir, data_dir, **kw) -> TrainOptions:
    kw.setdefault("data_workers", 0)
    kw.setdefault("progress", False)
    return TrainOptions(model_dir=Path(model_dir), data_dirs=(Path(data_dir),), **kw)


def assert_same_state(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), f"{what}: {key} differs"
        elif isinstance(a[key], dict):
            assert_same_state(a[key], b[key], f"{what}.{key}")
        else:
            assert a[key] == b[key], f"{what}: {key} differs"


@pytest.fixture(scope="module")
def one_batch_dir(tmp_path_factory, speech_wav) -> Path:
    """One utterance of exactly 16 frames: with 16-frame crops every batch is the same audio."""
    folder = tmp_path_factory.mktemp("one_batch")
    audio = read_wav(speech_wav, 22050)
    voiced = int(np.argmax(np.abs(audio) > 0.1))
    sf.write(folder / "a.wav", audio[voiced : voiced + 15 * 256], 22050, subtype="FLOAT")
    assert preprocess([folder], FeatureSpec(), workers=1, progress=False).ok
    return folder


def read_events(model_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(model_dir), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    events.Reload()
    return events


def test_tiny_model_overfits_one_batch(tmp_path, one_batch_dir):
    """Loss falls by half within 200 steps (trained in resumed chunks of 50, read back from TensorBoard)."""
    config = tiny_config(learning_rate=2e-3)
    model_dir = tmp_path / "run"
    for target in (50, 100, 150, 200):
        train(options(model_dir, one_batch_dir, max_steps=target, log_every=1, checkpoint_every=50), config)
        losses = [e.value for e in read_events(model_dir).Scalars("train/loss")]
        assert len(losses) == target  # one scalar per step; resuming continues the series
        if np.mean(losses[-10:]) <= 0.5 * np.mean(losses[:10]):
            break
    else:
        pytest.fail(f"loss went from {np.mean(losses[:10]):.3f} to {np.mean(losses[-10:]):.3f} in 200 steps")
    assert np.mean(losses[:10]) > 0.6  # starts at E|ε| ≈ 0.8: the zero output layer predicts nothing
    events = read_events(model_dir)
    tags = events.Tags()
    assert {"train/loss", "train/grad_norm", "train/learning_rate"} <= set(tags["scalars"])
    assert events.Scalars("train/learning_rate")[-1].value == pytest.approx(2e-3)
    assert all(np.isfinite(e.value) and e.value > 0 for e in events.Scalars("train/grad_norm"))
    assert "train/spectrogram" in tags["images"] and "train/audio" in tags["audio"]
    ckpt = load_checkpoint(model_dir)
    assert ckpt.step == target and ckpt.params == config.to_params()


def test_held_out_loss_is_logged_at_every_checkpoint_and_falls(tmp_path, one_batch_dir, capsys):
    # The held-out loss is measured on the weights inference gets (here the average) at step 0
    # and at every checkpoint; on the one utterance the run learns, it must fall.
    config = tiny_config(learning_rate=2e-3, ema_decay=0.8)
    model_dir = tmp_path / "run"
    result = train(options(model_dir, one_batch_dir, max_steps=60, checkpoint_every=30, valid_dirs=(one_batch_dir,)), config)
    events = read_events(model_dir)
    mean = {e.step: e.value for e in events.Scalars("valid/loss")}
    assert sorted(mean) == [0, 30, 60]
    # With no progress bar (a log file) the run says what it trains on, then each checkpoint prints
    # one line of pace and the held-out loss.
    inventory, *lines = capsys.readouterr().err.splitlines()
    assert inventory == "training data: 1 record"
    assert [line.split(":")[0] for line in lines] == [
        "held-out loss at step 0", "step 30", "held-out loss at step 30", "step 60", "held-out loss at step 60"
    ], lines
    for line, window, step in ((lines[1], result.losses[:30], 30), (lines[3], result.losses[30:], 60)):
        assert line.startswith(f"step {step}: loss {np.mean(window):.4f} over 30 steps, ") and line.endswith(
            f" steps/s; saved weights-{step}.pt"
        ), line
        assert float(line.split(", ")[1].split()[0]) > 0
    assert lines[4].startswith(f"held-out loss at step 60: {mean[60]:.4f} (t0:")
    levels = validation_levels(len(config.diffusion.noise_schedule))
    assert levels[0] == 0 and levels[-1] == len(config.diffusion.noise_schedule) - 1 and list(levels) == sorted(set(levels))
    per_level = [events.Scalars(f"valid/loss_t{t:02d}")[-1].value for t in levels]
    assert mean[60] == pytest.approx(np.mean(per_level), rel=1e-5)
    # The zero output layer predicts ε̂ = 0 at first: E|ε| = √(2/π) ≈ 0.80 at every level.
    assert mean[0] == pytest.approx(0.798, abs=0.02)
    assert mean[60] < 0.8 * mean[0], mean
    # Recomputed independently from the saved checkpoint (load_model picks the average).
    validation = ValidationSet.build(scan([one_batch_dir], config).records, config, seed=config.train.seed)
    assert validation.evaluate(load_model(model_dir)).mean == pytest.approx(mean[60], rel=1e-4)
    with pytest.raises(DataError, match="no .wav files"):
        train(options(tmp_path / "other", one_batch_dir, max_steps=1, valid_dirs=(tmp_path / "run",)), config)


def test_a_resume_keeps_the_curves_up_to_its_checkpoint_and_drops_what_came_after(tmp_path, preprocessed_dir):
    # Before: a resume purged every event from its checkpoint's step on, so the held-out loss logged
    # with that checkpoint vanished (slices shorter than --checkpoint-every kept only the first and
    # last points), while a sitting killed before its first checkpoint left its later steps behind.
    from torch.utils.tensorboard import SummaryWriter

    model_dir = tmp_path / "run"
    model_dir.mkdir()
    dead = SummaryWriter(str(model_dir))  # a sitting killed before its first checkpoint
    for step in (1, 2, 3, 50):
        dead.add_scalar("train/loss", 9.0, step)
    dead.close()
    valid = dict(valid_dirs=(preprocessed_dir,), log_every=1, checkpoint_every=4)
    train(options(model_dir, preprocessed_dir, max_steps=4, **valid), tiny_config())
    train(options(model_dir, preprocessed_dir, max_steps=8, **valid), tiny_config())
    events = read_events(model_dir)
    assert [e.step for e in events.Scalars("valid/loss")] == [0, 4, 8]
    losses = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(losses) == list(range(1, 9)) and 9.0 not in losses.values()


def test_resume_matches_an_uninterrupted_run(tmp_path, preprocessed_dir):
    config = tiny_config(ema_decay=0.9)
    straight = train(options(tmp_path / "a", preprocessed_dir, max_steps=6), config)
    assert straight.step == 6
    first = train(options(tmp_path / "b", preprocessed_dir, max_steps=3), config)
    assert first.step == 3
    # The second half loads its batches in two worker processes: crops must not depend on that.
    second = train(options(tmp_path / "b", preprocessed_dir, max_steps=6, data_workers=2), config)
    assert (second.start_step, second.step) == (3, 6)
    assert straight.losses[3:] == second.losses
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert a.step == b.step == 6
    assert_same_state(a.model, b.model, "model")
    assert_same_state(a.optimizer, b.optimizer, "optimizer")
    assert_same_state(a.ema, b.ema, "ema")
    assert sorted(p.name for p in (tmp_path / "b").glob("weights*.pt")) == ["weights-3.pt", "weights-6.pt", "weights.pt"]
    assert os.readlink(tmp_path / "b" / "weights.pt") == "weights-6.pt"
    # The averaged weights really are an average, saved beside the raw ones, and load on request.
    assert not torch.equal(a.ema["output_projection.weight"], a.model["output_projection.weight"])
    # By default inference gets the average; the raw weights on request; insisting on an average
    # a run never kept is an error naming the file.
    ema_model = load_model(tmp_path / "a")
    assert ema_model.uses_ema
    assert torch.equal(ema_model.output_projection.weight, a.ema["output_projection.weight"])
    raw_model = load_model(tmp_path / "a", use_ema=False)
    assert not raw_model.uses_ema
    assert torch.equal(raw_model.output_projection.weight, a.model["output_projection.weight"])
    # Nothing to do when the target is reached.
    again = train(options(tmp_path / "a", preprocessed_dir, max_steps=6), config)
    assert again.step == 6 and again.losses == []


def test_ema_switched_on_when_resuming_averages_from_the_resumed_weights(tmp_path, preprocessed_dir):
    # A run trained without an average gets ema_decay on resume (what a long CPU run wants late on):
    # the average must start at the checkpoint's weights, not at the random initialisation.
    train(options(tmp_path, preprocessed_dir, max_steps=3), tiny_config())
    assert load_checkpoint(tmp_path / "weights-3.pt").ema is None
    assert not load_model(tmp_path / "weights-3.pt").uses_ema
    with pytest.raises(CheckpointError, match=r"weights-3\.pt: has no averaged \(EMA\) weights"):
        load_model(tmp_path / "weights-3.pt", use_ema=True)
    # A decay other than 0.5, so swapping the two weights of the update would fail too.
    train(options(tmp_path, preprocessed_dir, max_steps=4), tiny_config(ema_decay=0.75))
    before, after = load_checkpoint(tmp_path / "weights-3.pt"), load_checkpoint(tmp_path / "weights-4.pt")
    for key, value in after.ema.items():
        expected = 0.75 * before.model[key].float() + 0.25 * after.model[key].float()
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=key)


def test_kill_9_leaves_a_loadable_checkpoint_and_resume_is_exact(tmp_path, preprocessed_dir):
    """A real ``kill -9`` of ``diffwave train`` while it checkpoints every step."""
    killed = tmp_path / "killed"
    proc = _start_training(tmp_path, killed, preprocessed_dir, "--checkpoint-every", "1", "--workers", "0", "--keep-checkpoints", "3")
    try:
        _wait_for(proc, lambda: _linked_step(killed) >= 4, "training did not reach step 4")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(killed)  # whatever moment the kill hit, weights.pt is whole
    assert ckpt.step >= 4
    assert len(list(killed.glob("weights-*.pt"))) <= 4  # old ones pruned (one more may be mid-prune); exact: test_keep_checkpoints_…
    resumed = train(options(killed, preprocessed_dir, max_steps=ckpt.step + 2), tiny_config())
    assert resumed.start_step == ckpt.step and resumed.step == ckpt.step + 2
    assert not list(killed.glob(".*.tmp"))  # a killed save's temporary file is cleaned up on restart
    train(options(tmp_path / "straight", preprocessed_dir, max_steps=ckpt.step + 2), tiny_config())
    assert_same_state(load_checkpoint(killed).model, load_checkpoint(tmp_path / "straight").model, "model")


def test_sigterm_saves_the_steps_since_the_last_checkpoint(tmp_path, preprocessed_dir):
    """`timeout` and job schedulers send SIGTERM before they kill: the work since the last checkpoint is kept."""
    run = tmp_path / "run"
    proc = _start_training(tmp_path, run, preprocessed_dir, "--checkpoint-every", "100000", "--log-every", "1", "--workers", "1")
    try:
        # the event file grows by a few scalars per step
        _wait_for(proc, lambda: _logged_bytes(run) >= 2000, "training did not start")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "error: terminated (the last checkpoint is in place; rerun to resume)"
    assert load_checkpoint(run).step >= 1  # no checkpoint was due: this one was written on SIGTERM


def test_a_stop_signal_during_a_checkpoint_write_waits_for_it(tmp_path, preprocessed_dir, monkeypatch):
    """SIGTERM that lands inside torch.save: the write finishes, then the run stops with that checkpoint.

    Broken off halfway, torch's zip writer raised a second error over the first (a traceback and
    exit 1 instead of 143, the step lost); seen with a large model, where a save takes long.
    """
    import diffwave.checkpoint as checkpoint_module
    from diffwave.interrupts import Terminated, stop_signals_raise

    real_save = checkpoint_module.torch.save
    finished: list[bool] = []

    def save_hit_by_sigterm(obj, fh):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write, as from `timeout` or a scheduler
        real_save(obj, fh)
        finished.append(True)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_hit_by_sigterm)
    run = tmp_path / "run"
    with pytest.raises(Terminated), stop_signals_raise():
        train(options(run, preprocessed_dir, max_steps=10, checkpoint_every=2), tiny_config())
    assert finished == [True]  # the write the signal landed in ran to its end, and nothing was saved twice
    assert load_checkpoint(run).step == 2
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temporaries


def _start_training(tmp_path: Path, model_dir: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    """``diffwave train`` of the tiny config on one thread, as a child process to signal."""
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_PARAMS))
    cmd = [sys.executable, "-m", "diffwave", "train", str(model_dir), str(data_dir), "--config", str(config_file),
           "--device", "cpu", "--no-progress", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(proc: subprocess.Popen, condition, failure: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; fail with the child's stderr if it exits first."""
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, failure
        time.sleep(0.05)


def _logged_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.glob("events.out.tfevents.*")) if model_dir.is_dir() else 0


def _linked_step(model_dir: Path) -> int:
    """The step weights.pt points at (-1 before the first checkpoint); the link is replaced atomically."""
    try:
        return int(os.readlink(model_dir / "weights.pt")[len("weights-") : -len(".pt")])
    except FileNotFoundError:
        return -1


def test_time_budget_stops_with_a_checkpoint_and_the_next_slice_resumes(tmp_path, preprocessed_dir):
    # --max-minutes without --max-steps: the sitting ends on its clock, keeps its work, and the
    # next sitting starts where it stopped (how training runs on a machine lent for minutes).
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_PARAMS))
    model_dir = tmp_path / "run"
    args = ["train", str(model_dir), str(preprocessed_dir), "--config", str(config_file), "--device", "cpu",
            "--workers", "0", "--no-progress", "--max-minutes", "0.001"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    step = load_checkpoint(model_dir).step
    assert step >= 1 and (model_dir / f"weights-{step}.pt").is_file()
    assert "budget is spent" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert f"trained steps {step}.." in second.output and load_checkpoint(model_dir).step > step
    with pytest.raises(TrainingError, match="max minutes"):
        options(model_dir, preprocessed_dir, max_minutes=0)


def test_config_file_is_resolved_and_saved(tmp_path, preprocessed_dir):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({**TINY_PARAMS, "residual_layers": 3, "learning_rate": 5e-4, "max_grad_norm": 1.0}))
    model_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(model_dir), str(preprocessed_dir), "--config", str(config_file), "--max-steps", "2",
              "--batch-size", "2", "--device", "cpu", "--workers", "0", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "trained steps 0..2" in result.stdout
    params = load_checkpoint(model_dir).params
    assert (params["residual_layers"], params["learning_rate"], params["batch_size"], params["max_grad_norm"]) == (3, 5e-4, 2, 1.0)
    assert params["noise_schedule"] == np.linspace(1e-4, 0.05, 50).tolist()
    assert len(DiffWave.from_checkpoint(model_dir).residual_layers) == 3
    # Rerunning without --config resumes with the checkpoint's configuration.
    assert resolve_config(model_dir).model.residual_layers == 3
    result = runner.invoke(app, ["train", str(model_dir), str(preprocessed_dir), "--max-steps", "3", "--device", "cpu",
                                 "--workers", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(model_dir).step == 3
    # ... but refuses to change the architecture of an existing run.
    with pytest.raises(TrainingError, match=r"another architecture \(residual_layers=3 -> 30\)"):
        resolve_config(model_dir, overrides={"residual_layers": 30})


def test_bf16_on_cpu(tmp_path, preprocessed_dir):
    result = train(options(tmp_path / "bf16", preprocessed_dir, max_steps=2, precision="bf16"), tiny_config())
    assert result.step == 2 and all(np.isfinite(result.losses))
    assert all(v.dtype == torch.float32 for v in load_checkpoint(tmp_path / "bf16").model.values())  # master weights stay fp32
    # The same two steps in fp32 (same weights, batches and noise): bf16's 8-bit mantissa must show in
    # the losses, or bf16 was silently ignored; and only as rounding, or it computed something else.
    reference = train(options(tmp_path / "fp32", preprocessed_dir, max_steps=2), tiny_config())
    for low, full in zip(result.losses, reference.losses):
        assert low != full and abs(low - full) < 0.05 * full, (result.losses, reference.losses)


def test_keep_checkpoints_prunes_to_the_newest(tmp_path, preprocessed_dir):
    model_dir = tmp_path / "run"
    train(options(model_dir, preprocessed_dir, max_steps=5, checkpoint_every=1, keep_checkpoints=2), tiny_config())
    assert sorted(p.name for p in model_dir.glob("weights*.pt")) == ["weights-4.pt", "weights-5.pt", "weights.pt"]
    assert os.readlink(model_dir / "weights.pt") == "weights-5.pt"
    # 0 keeps every checkpoint from then on
    train(options(model_dir, preprocessed_dir, max_steps=7, checkpoint_every=1, keep_checkpoints=0), tiny_config())
    assert sorted(p.name for p in model_dir.glob("weights-*.pt")) == [f"weights-{s}.pt" for s in (4, 5, 6, 7)]


@pytest.mark.slow
def test_compiled_network_trains_like_the_eager_one(tmp_path, preprocessed_dir):
    # torch.compile (Inductor's C++ kernels here) computes the same step up to rounding, and the
    # checkpoint holds the plain module's parameter names, so it loads and resumes without it.
    from torch._dynamo.utils import counters

    config = tiny_config(ema_decay=0.9)
    eager = train(options(tmp_path / "eager", preprocessed_dir, max_steps=3), config)
    counters.clear()
    compiled = train(options(tmp_path / "compiled", preprocessed_dir, max_steps=3, compile=True), config)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"], dict(counters["graph_break"])
    np.testing.assert_allclose(compiled.losses, eager.losses, rtol=1e-4)
    a, b = load_checkpoint(tmp_path / "eager"), load_checkpoint(tmp_path / "compiled")
    assert a.model.keys() == b.model.keys() and a.ema.keys() == b.ema.keys()
    for key in a.model:
        torch.testing.assert_close(b.model[key], a.model[key], rtol=1e-4, atol=1e-6, msg=key)
    resumed = train(options(tmp_path / "compiled", preprocessed_dir, max_steps=4), config)
    assert (resumed.start_step, resumed.step) == (3, 4)


def test_unconditional_training(tmp_path, speech_dir):
    config = tiny_config(unconditional=True, audio_len=4096)
    result = train(options(tmp_path / "u", speech_dir, max_steps=2), config)
    assert result.step == 2
    model = DiffWave.from_checkpoint(tmp_path / "u")
    assert model.unconditional and load_checkpoint(tmp_path / "u").params["unconditional"] is True


@pytest.mark.skipif(not torch.cuda.is_available(), reason="--fp16 (autocast + GradScaler) needs a CUDA device; none here")
def test_fp16_with_grad_scaler_on_cuda(tmp_path, preprocessed_dir):
    config = tiny_config()
    model_dir = tmp_path / "fp16"
    train(options(model_dir, preprocessed_dir, max_steps=3, precision="fp16", device="cuda"), config)
    ckpt = load_checkpoint(model_dir)
    assert ckpt.scaler and ckpt.scaler["scale"] > 0  # the GradScaler state travels with the checkpoint
    resumed = train(options(model_dir, preprocessed_dir, max_steps=5, precision="fp16", device="cuda"), config)
    assert resumed.step == 5 and all(np.isfinite(resumed.losses))
    straight = tmp_path / "straight"
    train(options(straight, preprocessed_dir, max_steps=5, precision="fp16", device="cuda"), config)
    assert_same_state(load_checkpoint(model_dir).scaler, load_checkpoint(straight).scaler, "scaler")


def test_nan_loss_names_the_step_and_keeps_the_last_checkpoint(tmp_path, preprocessed_dir):
    model_dir = tmp_path / "nan"
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({**TINY_PARAMS, "learning_rate": 1e30}))  # diverges at once
    args = ["train", str(model_dir), str(preprocessed_dir), "--config", str(config_file), "--device", "cpu",
            "--workers", "0", "--no-progress", "--checkpoint-every", "1", "--max-steps", "50"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    message = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: (loss|gradient norm) is (nan|inf) at step \d+: training diverged .*", message), message
    failed_step = int(message.split(" at step ")[1].split(":")[0])
    assert 1 <= failed_step <= 5
    ckpt = load_checkpoint(model_dir)
    assert ckpt.step == failed_step - 1  # every step before the failure was saved, and nothing after
    assert all(torch.isfinite(v).all() for v in ckpt.model.values())
    assert all(torch.isfinite(v).all() for state in ckpt.optimizer["state"].values() for v in state.values())


def _diverging_args(model_dir, data_dir, tmp_path, *extra):
    config_file = tmp_path / "diverge.json"
    config_file.write_text(json.dumps({**TINY_PARAMS, "learning_rate": 1e30}))
    return ["train", str(model_dir), str(data_dir), "--config", str(config_file), "--device", "cpu",
            "--workers", "0", "--no-progress", "--checkpoint-every", "100", "--max-steps", "50", *extra]


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, preprocessed_dir):
    # Before: the model directory stayed behind holding one TensorBoard events file, which looks
    # like a run in TensorBoard and in ls but has nothing to resume or vocode.
    fresh = tmp_path / "runs" / "fresh"
    result = runner.invoke(app, _diverging_args(fresh, preprocessed_dir, tmp_path))
    assert result.exit_code == 1 and "training diverged" in result.stderr
    assert not fresh.exists()
    # A folder that was there before stays, with what it held; only this run's events go.
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    result = runner.invoke(app, _diverging_args(existing, preprocessed_dir, tmp_path, "--valid", str(tmp_path / "no-such")))
    assert result.exit_code != 0
    gc.collect()  # a TensorBoard writer left open re-creates its removed file when it is flushed or collected
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    result = runner.invoke(app, _diverging_args(existing, preprocessed_dir, tmp_path))
    assert result.exit_code == 1 and "training diverged" in result.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_a_resumed_run_that_fails_keeps_its_checkpoint_and_events(tmp_path, preprocessed_dir):
    model_dir = tmp_path / "run"
    train(options(model_dir, preprocessed_dir, max_steps=2, checkpoint_every=2), tiny_config())
    before = {p.name: p.stat().st_size for p in model_dir.iterdir()}
    assert any(name.startswith("events.out.tfevents.") for name in before)
    result = runner.invoke(app, _diverging_args(model_dir, preprocessed_dir, tmp_path))
    assert result.exit_code == 1 and "training diverged" in result.stderr
    assert load_checkpoint(model_dir).step == 2
    assert {p.name for p in model_dir.iterdir()} >= set(before)
