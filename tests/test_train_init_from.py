"""``diffwave train --init-from``: a new run that starts from another run's checkpoint (fine-tuning)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from diffwave.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from diffwave.cli import app
from diffwave.model import DiffWave
from diffwave.train import TrainingError, TrainOptions, launch, resolve_config, train
from helpers import tiny_config
from test_train import assert_same_state, options

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, preprocessed_dir) -> Path:
    """Three steps of a tiny run that keeps an average (its raw and averaged weights differ)."""
    model_dir = tmp_path_factory.mktemp("source")
    train(options(model_dir, preprocessed_dir, max_steps=3), tiny_config(ema_decay=0.9))
    return model_dir


def test_starts_from_the_average_with_a_fresh_optimizer_and_carries_the_step(tmp_path, preprocessed_dir, source_run, capsys):
    # What --init-from promises, spelled out by hand: a checkpoint holding only the source's
    # averaged weights (no optimizer state), resumed. Both runs must reach the same bits.
    source = load_checkpoint(source_run / "weights-3.pt")
    assert not torch.equal(source.ema["output_projection.weight"], source.model["output_projection.weight"])
    by_hand = tmp_path / "by_hand"
    save_checkpoint(by_hand, Checkpoint(step=3, model=source.ema, params=source.params, ema=source.ema))
    config = resolve_config(source_run)
    expected = train(options(by_hand, preprocessed_dir, max_steps=5), config)

    fine = tmp_path / "fine"
    result = train(
        options(fine, preprocessed_dir, max_steps=5, init_from=source_run / "weights-3.pt", valid_dirs=(preprocessed_dir,)),
        resolve_config(fine, init_from=source_run),
    )
    assert (result.start_step, result.step) == (3, 5)
    assert result.losses == expected.losses
    got, want = load_checkpoint(fine), load_checkpoint(by_hand)
    assert_same_state(got.model, want.model, "model")
    assert_same_state(got.ema, want.ema, "ema")
    assert_same_state(got.optimizer, want.optimizer, "optimizer")
    # A new run measures where it starts, so its held-out curve begins at the source's step.
    err = capsys.readouterr().err
    assert "held-out loss at step 3:" in err and "held-out loss at step 5:" in err
    assert f"starting from {source_run / 'weights-3.pt'} (step 3, averaged (EMA) weights), fresh optimizer" in err

    # Resuming the source itself (raw weights, Adam's moments) is a different run: the test can tell.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    save_checkpoint(resumed, source)
    train(options(resumed, preprocessed_dir, max_steps=5), config)
    assert not torch.equal(load_checkpoint(resumed).model["output_projection.weight"], got.model["output_projection.weight"])


def test_takes_the_raw_weights_of_a_run_without_an_average(tmp_path, preprocessed_dir):
    plain = tmp_path / "plain"
    train(options(plain, preprocessed_dir, max_steps=2), tiny_config())
    source = load_checkpoint(plain)
    assert source.ema is None
    # A learning rate of 0 leaves the weights where they started: exactly the source's.
    fine = tmp_path / "fine"
    config = resolve_config(fine, overrides={"learning_rate": 0.0}, init_from=plain)
    assert config.train.learning_rate == 0.0 and config.model.residual_layers == 4  # the source's network
    train(options(fine, preprocessed_dir, max_steps=3, init_from=plain), config)
    assert_same_state(load_checkpoint(fine / "weights-3.pt").model, source.model, "model")


def test_refuses_another_network_and_a_step_already_reached(tmp_path, preprocessed_dir, source_run):
    with pytest.raises(TrainingError, match=r"weights\.pt was trained with another architecture \(residual_layers=4 -> 6\): its weights fit no other network"):
        resolve_config(tmp_path / "new", overrides={"residual_layers": 6}, init_from=source_run)
    config = resolve_config(tmp_path / "new", init_from=source_run)
    with pytest.raises(TrainingError, match=r"is at step 3 already, and --max-steps 3 counts its steps too: ask for more than 3"):
        launch(options(tmp_path / "new", preprocessed_dir, max_steps=3, init_from=source_run), config)
    assert not (tmp_path / "new").exists()


def test_a_new_run_may_rearrange_the_dilations_but_a_resumed_one_may_not(tmp_path, preprocessed_dir, source_run, capsys):
    # The source's cycle is 2 (tiny config: dilations 1, 2, 1, 2); cycle 4 gives 1, 2, 4, 8 with
    # the same weight shapes, so the weights load as they are and the outputs differ.
    source = load_checkpoint(source_run)
    assert source.config.model.dilation_cycle_length == 2
    fine = tmp_path / "fine"
    config = resolve_config(fine, overrides={"dilation_cycle_length": 4, "learning_rate": 0.0}, init_from=source_run)
    assert config.model.dilation_cycle_length == 4 and config.model.residual_layers == 4
    result = train(options(fine, preprocessed_dir, max_steps=4, init_from=source_run), config)
    assert (result.start_step, result.step) == (3, 4)
    got = load_checkpoint(fine)
    assert got.config.model.dilation_cycle_length == 4  # what inference will build
    assert_same_state(got.model, source.ema, "model")  # learning rate 0: the loaded weights, untouched
    assert "  dilation_cycle_length: 2 -> 4 (same weights, arranged anew)" in capsys.readouterr().err
    with torch.no_grad():  # the same weights under the two arrangements are two different functions
        x, t, mel = torch.randn(1, 2048), torch.tensor([5]), torch.randn(1, config.features.n_mels, 8)
        old_net, new_net = DiffWave(source.config), DiffWave(config)
        old_net.load_state_dict(source.ema)
        new_net.load_state_dict(source.ema)
        assert not torch.allclose(old_net(x, t, mel), new_net(x, t, mel), atol=1e-4)

    # Resuming keeps the arrangement its optimizer state was built for.
    with pytest.raises(TrainingError, match=r"another architecture \(dilation_cycle_length=4 -> 2\): use a new model directory"):
        resolve_config(fine, overrides={"dilation_cycle_length": 2})


def test_command_line_starts_once_then_resumes_its_own_checkpoint(tmp_path, preprocessed_dir, source_run):
    model_dir = tmp_path / "fine"
    common = [str(preprocessed_dir), "--init-from", str(source_run), "--device", "cpu", "--workers", "0", "--no-progress"]
    first = runner.invoke(app, ["train", str(model_dir), *common, "--max-steps", "4"])
    assert first.exit_code == 0, first.output
    assert "trained steps 3..4" in first.stdout
    assert "(step 3, averaged (EMA) weights), fresh optimizer" in first.stderr
    # The same command again (the next slice) goes on from the new run's own checkpoint.
    second = runner.invoke(app, ["train", str(model_dir), *common, "--max-steps", "5"])
    assert second.exit_code == 0, second.output
    assert "resuming from its own weights.pt (--init-from only starts a new run)" in second.stderr
    assert "trained steps 4..5" in second.stdout
    assert load_checkpoint(model_dir).step == 5
    assert load_checkpoint(source_run).step == 3  # the source is only read


def test_command_line_missing_source_is_one_line_and_writes_nothing(tmp_path, preprocessed_dir):
    model_dir = tmp_path / "fine"
    result = runner.invoke(app, ["train", str(model_dir), str(preprocessed_dir), "--init-from", str(tmp_path / "nope.pt"),
                                 "--device", "cpu", "--workers", "0", "--no-progress"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope.pt: no checkpoint found" in lines[0], result.stderr
    assert not model_dir.exists()
