"""Periodicity of loud frames (diffwave/evaluation/periodicity.py) on tones, noise and espeak-ng speech.

The expected values come from the definition, checked against a direct loop written here, and
from signals whose periodicity is known (a harmonic tone repeats exactly; white noise does not).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffwave.audio import read_wav
from diffwave.evaluation.periodicity import frame_periodicities, periodicity

SR = 22050


def harmonic_tone(f0: float, seconds: float, sample_rate: int = SR, seed: int = 0) -> np.ndarray:
    """Five harmonics with random phases: repeats exactly every 1/f0 seconds."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return sum(0.1 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 6)).astype(np.float32)


def direct_loop(audio: np.ndarray) -> list[float]:
    """The definition at 22 050 Hz, one frame and one lag at a time."""
    x = audio.astype(np.float64)
    n, hop, lags = 1024, 512, range(50, 301)
    starts = range(0, len(x) - n - 300 + 1, hop)
    rms = np.array([np.sqrt(np.mean(x[s : s + n] ** 2)) for s in starts])
    out = []
    for s, r in zip(starts, rms):
        if r <= 0.1 * rms.max():
            continue
        a = x[s : s + n]
        out.append(max(np.dot(a, x[s + k : s + k + n]) / np.sqrt(np.dot(a, a) * np.dot(x[s + k : s + k + n], x[s + k : s + k + n])) for k in lags))
    return out


def test_matches_the_definition_frame_by_frame_on_speech(speech_wav):
    speech = read_wav(speech_wav, SR)
    expected = direct_loop(speech)
    got = frame_periodicities(speech, SR)
    assert len(expected) > 20
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_a_harmonic_tone_scores_one_and_white_noise_near_zero():
    assert periodicity(harmonic_tone(130.0, 2.0), SR) > 0.99  # period 169.6 samples, inside 50-300
    noise = np.random.default_rng(1).standard_normal(2 * SR).astype(np.float32)
    assert periodicity(noise, SR) < 0.2


def test_speech_is_periodic_and_added_noise_lowers_it_step_by_step(speech_wav):
    speech = read_wav(speech_wav, SR)
    rng = np.random.default_rng(0)
    levels = [0.0, 0.003, 0.01, 0.03, 0.1]
    values = [periodicity(speech + level * rng.standard_normal(speech.shape).astype(np.float32), SR) for level in levels]
    assert values[0] > 0.5, values
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_quiet_frames_do_not_count():
    """A tone followed by noise 40 dB down: only the tone's frames are loud enough to be measured."""
    tone = harmonic_tone(200.0, 1.0)
    hiss = 0.001 * np.random.default_rng(2).standard_normal(SR).astype(np.float32)
    assert periodicity(np.concatenate([tone, hiss]), SR) > 0.99
    # The same noise at the tone's level is loud, and pulls the mean down.
    assert periodicity(np.concatenate([tone, 100 * hiss]), SR) < 0.7


def test_frame_and_lags_scale_with_the_sample_rate():
    """The same 130 Hz tone at 16 kHz: lags of 36-218 samples still hold its 123-sample period."""
    assert periodicity(harmonic_tone(130.0, 2.0, sample_rate=16000), 16000) > 0.99
    # A 60 Hz tone's period (16.7 ms) is longer than the longest lag (13.6 ms) at any rate.
    assert periodicity(np.sin(2 * np.pi * 60.0 * np.arange(2 * 16000) / 16000), 16000) < 0.8


@pytest.mark.parametrize("audio", [np.zeros(SR, np.float32), np.ones(1000, np.float32)], ids=["silence", "shorter-than-a-frame"])
def test_nothing_to_measure_is_nan(audio):
    assert math.isnan(periodicity(audio, SR))
    assert frame_periodicities(audio, SR).size == 0
