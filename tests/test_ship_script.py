"""scripts/ship_default_model.py: what goes into the package is the weights inference uses, once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from diffwave.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from diffwave.model import DiffWave
from helpers import randomize_weights, tiny_config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_default_model.py"


@pytest.fixture()
def ship(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("ship_default_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Into a scratch folder, never over the shipped model.
    monkeypatch.setattr(module, "ASSETS", tmp_path / "assets")
    monkeypatch.setattr(module, "WEIGHTS", tmp_path / "assets" / "weights.pt")
    return module


def run_with(tmp_path: Path, average: bool) -> Path:
    """A run whose raw and averaged weights are different random networks."""
    config = tiny_config()
    raw = randomize_weights(DiffWave(config), seed=1).state_dict()
    ema = randomize_weights(DiffWave(config), seed=2).state_dict() if average else None
    save_checkpoint(tmp_path / "run", Checkpoint(step=7, model=raw, params=config.to_params(), optimizer={"state": {}}, ema=ema))
    return tmp_path / "run"


def test_an_average_is_shipped_once_and_labelled(tmp_path, ship):
    run = run_with(tmp_path, average=True)
    ship.ship_weights(run)
    shipped = load_checkpoint(ship.WEIGHTS)
    expected = load_checkpoint(run).ema
    assert shipped.step == 7 and shipped.optimizer is None
    assert all((shipped.model[k] == v).all() for k, v in expected.items())
    assert all(shipped.ema[k].data_ptr() == v.data_ptr() for k, v in shipped.model.items())
    one_set = sum(v.numel() * v.element_size() for v in shipped.model.values())
    assert ship.WEIGHTS.stat().st_size < 1.2 * one_set
    assert load_model(ship.WEIGHTS).uses_ema


def test_raw_weights_are_shipped_as_raw(tmp_path, ship):
    run = run_with(tmp_path, average=False)
    ship.ship_weights(run)
    shipped = load_checkpoint(ship.WEIGHTS)
    assert shipped.ema is None
    assert all((shipped.model[k] == v).all() for k, v in load_checkpoint(run).model.items())
    assert not load_model(ship.WEIGHTS).uses_ema
