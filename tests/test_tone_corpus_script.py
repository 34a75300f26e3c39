"""scripts/make_tone_corpus.py: periodic where it sounds, silent between bursts, reproducible, trainable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_tone_corpus.py"


@pytest.fixture(scope="module")
def tones():
    return load_script("make_tone_corpus")


def best_autocorrelation(frame: np.ndarray, min_lag: int, max_lag: int) -> float:
    """Largest normalised autocorrelation over lags min_lag..max_lag (1 for a perfectly periodic frame)."""
    frame = frame - frame.mean()
    ac = np.correlate(frame, frame, "full")[len(frame) - 1 :]
    return float((ac[min_lag : max_lag + 1] / ac[0]).max())


def loud_frames(audio: np.ndarray, width: int = 1024) -> list[np.ndarray]:
    frames = [audio[s : s + width] for s in range(0, len(audio) - width, width)]
    return [f for f in frames if np.sqrt(np.mean(f**2)) > 0.03]


def test_bursts_are_periodic_at_a_voice_pitch_and_pauses_are_silent(tones):
    audio = tones.harmonic_tone(np.random.default_rng(3), seconds=3.0)
    assert audio.dtype == np.float32 and len(audio) == 3 * tones.SAMPLE_RATE
    assert np.abs(audio).max() == pytest.approx(tones.PEAK, rel=1e-4)
    # Pitch periods of 90-260 Hz are 85-245 samples at 22 050 Hz.
    voiced = loud_frames(audio)
    assert len(voiced) > 20
    periodicity = np.mean([best_autocorrelation(f, 80, 250) for f in voiced])
    noise = np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
    noise_periodicity = np.mean([best_autocorrelation(f, 80, 250) for f in loud_frames(noise * 0.1)])
    assert periodicity > 0.6 > 0.2 > noise_periodicity
    # Pauses are digital silence, so hiss a vocoder leaves there is plain to see.
    assert (audio == 0).mean() > 0.1


def test_same_seed_same_files_other_seed_other_files(tones, tmp_path):
    tones.make_tone_corpus(tmp_path / "a", train=2, heldout=1, seconds=1.0, seed=5)
    tones.make_tone_corpus(tmp_path / "b", train=2, heldout=1, seconds=1.0, seed=5)
    tones.make_tone_corpus(tmp_path / "c", train=2, heldout=1, seconds=1.0, seed=6)
    names = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert [str(n) for n in names] == ["heldout/0000.wav", "train/0000.wav", "train/0001.wav"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    info = sf.info(tmp_path / "a" / names[0])
    assert (info.samplerate, info.channels, info.subtype) == (22_050, 1, "PCM_16")


def test_the_command_line_writes_a_corpus_that_preprocess_accepts(tmp_path):
    out = tmp_path / "tones"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--train", "2", "--heldout", "1", "--seconds", "1.5"],
        capture_output=True, text=True, check=True,
    )
    assert "wrote 2 training and 1 held-out files" in run.stdout
    subprocess.run(
        [sys.executable, "-m", "diffwave", "preprocess", str(out / "train"), str(out / "heldout")],
        capture_output=True, text=True, check=True,
    )
    spectrograms = sorted(out.rglob("*.wav.spec.npy"))
    assert len(spectrograms) == 3
    features = np.load(spectrograms[0])
    assert features.shape[0] == 80 and np.isfinite(features).all()
