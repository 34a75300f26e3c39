"""scripts/sine_probe.py: the line measure separates a held phase from a wandering one; the corpus is one sine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import load_script, random_model, tiny_config
from runtime_helpers import save_model_dir

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sine_probe.py"
RATE = 22_050


@pytest.fixture(scope="module")
def probe():
    return load_script("sine_probe")


def test_the_line_share_is_high_for_a_held_phase_and_low_for_one_that_wanders(probe):
    rng = np.random.default_rng(0)
    held = probe.sine_clip(rng, 220.0, 2.0, RATE)
    assert probe.line_share(held, 220.0, RATE) > 0.99
    assert probe.line_share(held, 300.0, RATE) < 0.01  # the band is where the sine is, not anywhere
    assert probe.line_share(rng.standard_normal(2 * RATE), 220.0, RATE) < 0.01
    # The same sine whose phase starts afresh every N samples (a network that sees +-126 samples
    # cannot agree on a phase over more than about 252): the right frequency, yet the shorter
    # the stretch of one phase, the more power leaves the band (0.31, 0.42, 0.79 here).
    t = np.arange(2 * RATE) / RATE
    shares = []
    for stretch in (126, 252, 504):
        phase = np.repeat(rng.uniform(0, 2 * np.pi, len(t) // stretch + 1), stretch)[: len(t)]
        shares.append(probe.line_share(np.sin(2 * np.pi * 220.0 * t + phase), 220.0, RATE))
    assert shares[0] < 0.4 and shares[1] < 0.6 and shares[2] < 0.85 and shares == sorted(shares)
    assert probe.line_share(np.zeros(100), 220.0, RATE) == 0.0


def test_make_writes_one_sine_that_preprocess_accepts_and_score_reports_a_share(probe, tmp_path):
    corpus = tmp_path / "sine"
    made = subprocess.run([sys.executable, str(SCRIPT), "make", str(corpus), "--train", "2", "--heldout", "1", "--seconds", "1"],
                          capture_output=True, text=True, check=True)
    assert "wrote 2 training and 1 held-out files of a 220 Hz sine" in made.stdout
    import soundfile as sf

    clips = [sf.read(str(p), dtype="float32")[0] for p in sorted(corpus.rglob("*.wav"))]
    assert len(clips) == 3 and all(len(c) == RATE for c in clips)
    assert all(probe.line_share(c, 220.0, RATE) > 0.99 for c in clips)
    assert not np.allclose(clips[0], clips[1], atol=0.01)  # random phases: the files are not copies
    subprocess.run([sys.executable, "-m", "diffwave", "preprocess", str(corpus / "train"), str(corpus / "heldout")],
                   capture_output=True, text=True, check=True)

    run = save_model_dir(tmp_path / "run", random_model(tiny_config(), seed=1))
    shares = probe.score(run, corpus, 220.0, seeds=2)
    assert len(shares) == 2 and all(0.0 <= s < 0.5 for s in shares)  # random weights make no line

    bare = tmp_path / "bare"
    (bare / "heldout").mkdir(parents=True)
    failed = subprocess.run([sys.executable, str(SCRIPT), "score", str(run), str(bare)], capture_output=True, text=True)
    assert failed.returncode != 0 and failed.stderr.strip() == (
        f"error: {bare / 'heldout'}: no .wav.spec.npy files (run diffwave preprocess on it first)"
    )


def test_a_pitch_corpus_gives_every_file_its_own_pitch_and_is_scored_per_file(probe, tmp_path):
    corpus = tmp_path / "pitches"
    made = subprocess.run([sys.executable, str(SCRIPT), "make", str(corpus), "--train", "2", "--heldout", "2", "--seconds", "1",
                           "--hz-range", "100", "300"], capture_output=True, text=True, check=True)
    assert "sines at 100-300 Hz (one random pitch each" in made.stdout
    import json

    import soundfile as sf

    pitches = json.loads((corpus / "pitches.json").read_text())
    assert sorted(pitches) == ["heldout/0000.wav", "heldout/0001.wav", "train/0000.wav", "train/0001.wav"]
    assert all(100 <= hz <= 300 for hz in pitches.values()) and len({round(hz, 3) for hz in pitches.values()}) == 4
    for name, hz in pitches.items():  # each file is a sine at the pitch listed for it, and at no other
        clip = sf.read(str(corpus / name), dtype="float32")[0]
        assert abs(probe.peak_hz(clip, RATE) - hz) < 1.5
        assert probe.line_share(clip, hz, RATE, probe.PITCH_BAND * hz) > 0.99
    subprocess.run([sys.executable, "-m", "diffwave", "preprocess", str(corpus / "heldout")],
                   capture_output=True, text=True, check=True)

    run = save_model_dir(tmp_path / "run", random_model(tiny_config(), seed=1))
    shares = probe.score(run, corpus, 220.0, seeds=1)  # --hz is not used: pitches.json says each file's
    assert len(shares) == 2 and all(0.0 <= s < 0.5 for s in shares)

    missing = subprocess.run([sys.executable, str(SCRIPT), "score", str(tmp_path / "nope.pt"), str(corpus)],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip() == (
        f"error: {tmp_path / 'nope.pt'}: no checkpoint found (expected a .pt file or a model directory with weights.pt)"
    )
    bad = subprocess.run([sys.executable, str(SCRIPT), "make", str(tmp_path / "x"), "--hz-range", "300", "100"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--hz-range 300 100: expected 0 < LO < HI" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_the_peak_is_the_sine_and_not_its_neighbour(probe):
    rng = np.random.default_rng(3)
    assert abs(probe.peak_hz(probe.sine_clip(rng, 147.0, 2.0, RATE), RATE) - 147.0) < 1.0
    assert abs(probe.peak_hz(probe.sine_clip(rng, 233.0, 2.0, RATE), RATE) - 233.0) < 1.0
