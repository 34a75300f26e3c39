"""scripts/ship_default_model.py: what goes into the package is the weights inference uses, once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffwave.audio import read_wav
from diffwave.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from diffwave.model import DiffWave
from helpers import load_script, randomize_weights, tiny_config


@pytest.fixture()
def ship(tmp_path, monkeypatch):
    module = load_script("ship_default_model", monkeypatch)
    # Into a scratch folder, never over the shipped model.
    assets = tmp_path / "assets"
    monkeypatch.setattr(module, "ASSETS", assets)
    monkeypatch.setattr(module, "WEIGHTS", assets / "weights.pt")
    monkeypatch.setattr(module, "SAMPLE_WAV", assets / "sample.wav")
    monkeypatch.setattr(module, "SAMPLE_SPEC", assets / "sample.wav.spec.npy")
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


def _assets(ship) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(ship.ASSETS.iterdir())} if ship.ASSETS.is_dir() else {}


@pytest.fixture()
def shipped_before(ship, speech_wav):
    """A package that already holds a model and a sample, as the real one does."""
    import shutil

    ship.ASSETS.mkdir()
    shutil.copy(speech_wav, ship.SAMPLE_WAV)
    ship.SAMPLE_SPEC.write_bytes(b"old spectrogram")
    ship.WEIGHTS.write_bytes(b"old weights")
    return _assets(ship)


def test_the_sample_spectrogram_follows_the_new_models_features(tmp_path, ship, shipped_before, capsys):
    # Before: a model with 64 mel bands shipped (exit 0) beside the old 80-band spectrogram, and the
    # README's first command then failed.
    config = tiny_config(n_mels=64)
    save_checkpoint(tmp_path / "run", Checkpoint(step=3, model=randomize_weights(DiffWave(config), seed=1).state_dict(),
                                                 params=config.to_params()))
    assert ship.main([str(tmp_path / "run"), "--no-loss-plot"]) == 0
    spec = np.load(ship.SAMPLE_SPEC)
    assert spec.shape == (64, 1 + len(read_wav(ship.SAMPLE_WAV, 22050)) // 256)
    assert ship.SAMPLE_WAV.read_bytes() == shipped_before["sample.wav"]  # the wav stays
    assert load_model(ship.WEIGHTS).config.features.n_mels == 64
    # --sample naming the shipped file itself (the natural way to recompute the spectrogram) works
    assert ship.main([str(tmp_path / "run"), "--no-loss-plot", "--sample", str(ship.SAMPLE_WAV)]) == 0


def test_the_sample_spectrogram_is_kept_when_only_rounding_would_change_it(tmp_path, ship, shipped_before, capsys):
    # Before: every ship rewrote it; on another host the recomputed one differed by <= 6.4e-6 (stop 40),
    # a binary change in git with nothing behind it.
    config = tiny_config()
    save_checkpoint(tmp_path / "run", Checkpoint(step=3, model=randomize_weights(DiffWave(config), seed=1).state_dict(),
                                                 params=config.to_params()))
    assert ship.main([str(tmp_path / "run"), "--no-loss-plot"]) == 0  # the placeholder is not a spectrogram
    exact = np.load(ship.SAMPLE_SPEC)
    rng = np.random.default_rng(0)
    for offset, kept in ((1e-5, True), (1e-2, False)):
        np.save(ship.SAMPLE_SPEC, exact + rng.choice([-offset, offset], exact.shape).astype(np.float32))
        before = ship.SAMPLE_SPEC.read_bytes()
        assert ship.main([str(tmp_path / "run"), "--no-loss-plot"]) == 0
        assert (ship.SAMPLE_SPEC.read_bytes() == before) is kept, offset
        if not kept:
            np.testing.assert_array_equal(np.load(ship.SAMPLE_SPEC), exact)
    assert "kept" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["a 16 kHz sample", "no loss scalars", "over the size limit"])
def test_a_refused_call_writes_nothing(tmp_path, ship, shipped_before, capsys, monkeypatch, problem):
    # Before: the weights were replaced first and the sample copied next, so a 16 kHz sample left a
    # new model beside a 16 kHz wav and a stale spectrogram; a run without scalars drew an empty plot.
    run = run_with(tmp_path, average=True)
    args = [str(run), "--loss-plot", str(tmp_path / "loss.png")]
    if problem == "a 16 kHz sample":
        sf.write(tmp_path / "rate.wav", np.zeros(16000, np.float32), 16000)
        args += ["--sample", str(tmp_path / "rate.wav")]
        expected = f"{tmp_path / 'rate.wav'}: sample rate 16000 Hz, expected 22050 Hz"
    elif problem == "no loss scalars":
        expected = f"{run}: no TensorBoard training loss to plot"
    else:
        monkeypatch.setattr(ship, "MAX_WEIGHTS_BYTES", 1000)
        expected = f"{run}: the weights come to"
    assert ship.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {expected}"), err
    assert _assets(ship) == shipped_before and not (tmp_path / "loss.png").exists()
    if problem == "over the size limit":
        assert ship.main(args + ["--force", "--no-loss-plot"]) == 0
        assert load_checkpoint(ship.WEIGHTS).step == 7


def test_a_real_runs_loss_curve_is_drawn(tmp_path, ship, shipped_before, preprocessed_dir):
    from diffwave.train import TrainOptions, train

    run = tmp_path / "run"
    train(TrainOptions(model_dir=run, data_dirs=(preprocessed_dir,), max_steps=3, data_workers=0, progress=False,
                       log_every=1), tiny_config())
    plot = tmp_path / "loss.png"
    assert ship.main([str(run), "--loss-plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_checkpoint(ship.WEIGHTS).step == 3
