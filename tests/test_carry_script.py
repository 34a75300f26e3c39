"""scripts/carry_run.py: the carried checkpoint and events end at the same step, and a refusal changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from diffwave.checkpoint import Checkpoint, save_checkpoint
from diffwave.model import DiffWave
from helpers import load_script, randomize_weights, tiny_config


@pytest.fixture()
def carry_script(monkeypatch):
    return load_script("carry_run", monkeypatch)


def write_sitting(run: Path, steps: range, tag: str) -> Path:
    """One sitting's events file, as training writes it: a loss scalar at each step."""
    before = set(run.glob("events.out.tfevents.*"))
    writer = SummaryWriter(str(run), filename_suffix=f".{tag}")
    for step in steps:
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.close()
    (path,) = set(run.glob("events.out.tfevents.*")) - before
    return path


def save(run: Path, step: int, adam_moments: bool = True) -> Path:
    config = tiny_config()
    model = randomize_weights(DiffWave(config), seed=step).state_dict()
    optimizer = {"state": {}, "param_groups": []} if adam_moments else None
    return save_checkpoint(run, Checkpoint(step=step, model=model, params=config.to_params(), optimizer=optimizer, ema=model))


def scalar_steps(path: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars("train/loss")]


@pytest.fixture()
def run_and_dest(tmp_path):
    """A run with two sittings (steps 0-4, then 5-12 stopped past the save at 10) and a folder carrying step 3."""
    run, dest = tmp_path / "run", tmp_path / "carried"
    first = write_sitting(run, range(0, 5), "a")
    second = write_sitting(run, range(5, 13), "b")
    save(run, 10)
    dest.mkdir()
    (dest / "weights-3.pt").write_bytes(b"the checkpoint carried before")
    return run, dest, first, second


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_checkpoint_and_events_end_at_the_carried_step(run_and_dest, carry_script):
    run, dest, first, second = run_and_dest
    assert carry_script.main([str(run), "--step", "10", "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted([first.name, second.name, "weights-10.pt"])
    assert (dest / "weights-10.pt").read_bytes() == (run / "weights-10.pt").read_bytes()
    assert (dest / first.name).read_bytes() == first.read_bytes()  # nothing to cut: the same bytes, no churn in git
    assert scalar_steps(dest / second.name) == list(range(5, 11))
    assert scalar_steps(second) == list(range(5, 13))  # the run itself is left alone


def test_a_sitting_after_the_step_is_left_out(run_and_dest, carry_script):
    run, dest, first, second = run_and_dest
    later = write_sitting(run, range(20, 25), "c")
    assert carry_script.main([str(run), "--step", "10", "--dest", str(dest)]) == 0
    assert not (dest / later.name).exists() and (dest / second.name).exists()


def test_a_step_that_was_not_saved_is_refused_and_changes_nothing(run_and_dest, carry_script, capsys):
    run, dest, *_ = run_and_dest
    before = snapshot(dest)
    assert carry_script.main([str(run), "--step", "12", "--dest", str(dest)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights-12.pt" in err and "weights-10.pt" in err
    assert snapshot(dest) == before


def test_a_checkpoint_without_adam_moments_is_refused(tmp_path, carry_script, capsys):
    run, dest = tmp_path / "run", tmp_path / "carried"
    write_sitting(run, range(0, 3), "a")
    save(run, 2, adam_moments=False)
    assert carry_script.main([str(run), "--step", "2", "--dest", str(dest)]) == 1
    assert "no optimizer state" in capsys.readouterr().err
    assert not dest.exists()


def test_a_truncated_events_file_is_refused_and_changes_nothing(run_and_dest, carry_script, capsys):
    run, dest, first, second = run_and_dest
    data = second.read_bytes()
    second.write_bytes(data[: len(data) - 7])
    before = snapshot(dest)
    assert carry_script.main([str(run), "--step", "10", "--dest", str(dest)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and second.name in err
    assert snapshot(dest) == before
