"""Quality metrics on real espeak-ng speech: distances, Griffin-Lim anchor, PESQ, DNSMOS.

Expected values come from arithmetic (a gain of ½ is −6.02 dB; 0.9 × x has SNR 20 dB) or
from the metric's definition (identical audio: distance 0, PESQ near its 4.64 ceiling),
never from running the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffwave.audio import read_wav
from diffwave.evaluation.griffin_lim import griffin_lim
from diffwave.evaluation.metrics import MissingExtraError, mel_cycle_distance_db, mrstft_distance, require, snr_db
from diffwave.evaluation.perceptual import dnsmos, pesq_wb, resample
from diffwave.features import PRESETS, log_mel_spectrogram
from runtime.bundle import FeatureSpec

SR = 22050
NOISE_LEVELS = (1e-4, 1e-3, 1e-2, 1e-1)


@pytest.fixture(scope="module")
def speech(speech_wav) -> np.ndarray:
    return read_wav(speech_wav, SR)


def _noisy(audio: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    return audio + level * np.random.default_rng(seed).standard_normal(audio.shape).astype(np.float32)


def test_distances_are_zero_for_identical_audio(speech):
    features = log_mel_spectrogram(speech)
    assert mel_cycle_distance_db(speech, features) == 0.0
    assert mrstft_distance(speech, speech.copy()) == pytest.approx(0.0, abs=1e-6)
    assert snr_db(speech, speech.copy()) == math.inf


def test_distances_grow_monotonically_with_noise(speech):
    features = log_mel_spectrogram(speech)
    mel = [mel_cycle_distance_db(_noisy(speech, lvl), features) for lvl in NOISE_LEVELS]
    mr = [mrstft_distance(_noisy(speech, lvl), speech) for lvl in NOISE_LEVELS]
    snr = [snr_db(_noisy(speech, lvl), speech) for lvl in NOISE_LEVELS]
    assert all(a < b for a, b in zip(mel, mel[1:])), mel
    assert all(a < b for a, b in zip(mr, mr[1:])), mr
    assert all(a > b for a, b in zip(snr, snr[1:])), snr
    assert mel[0] > 0 and mr[0] > 0


@pytest.mark.parametrize("preset", ["lmnt", "ln-slaney"])
def test_mel_cycle_distance_is_in_decibels(preset):
    """Halving the amplitude moves every unclipped mel band by 20·log10(½) = −6.0206 dB."""
    spec = PRESETS[preset]
    noise = 0.1 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    features = log_mel_spectrogram(noise, spec)
    if spec.compression == "lmnt_db":  # the gain test needs no band at the clip limits
        assert 0.0 < float(features.min()) and float(features.max()) < 1.0
    assert mel_cycle_distance_db(0.5 * noise, features, spec) == pytest.approx(20 * math.log10(2), abs=0.01)


def test_mel_cycle_ignores_the_extra_samples_a_vocoder_returns(speech):
    features = log_mel_spectrogram(speech)
    padded = np.concatenate([speech, np.zeros(FeatureSpec().hop_samples * 3, np.float32)])
    assert mel_cycle_distance_db(padded, features) < 0.05  # only the last frame sees the padding
    with pytest.raises(ValueError, match="fewer"):
        mel_cycle_distance_db(speech[: len(speech) // 2], features)


def test_snr_of_a_known_error():
    x = np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    assert snr_db(0.9 * x, x) == pytest.approx(20.0, abs=1e-4)  # error 0.1·x: 10·log10(1/0.01)
    assert snr_db(x, 0 * x) == -math.inf


def test_griffin_lim_reconstructs_features_far_better_than_noise(speech):
    features = log_mel_spectrogram(speech)
    hop = FeatureSpec().hop_samples
    gl = griffin_lim(features)  # 64 iterations by default
    assert gl.dtype == np.float32 and gl.shape == (features.shape[1] * hop,) and np.isfinite(gl).all()
    gl_db = mel_cycle_distance_db(gl, features)
    random_phase_db = mel_cycle_distance_db(griffin_lim(features, iterations=0), features)
    rms = float(np.sqrt(np.mean(speech**2)))
    noise_db = mel_cycle_distance_db(rms * np.random.default_rng(3).standard_normal(gl.shape).astype(np.float32), features)
    assert gl_db < 2.5, gl_db  # measured ≈ 1.2–1.4 dB on espeak-ng sentences
    assert gl_db < 0.5 * random_phase_db, (gl_db, random_phase_db)
    assert gl_db < 0.2 * noise_db, (gl_db, noise_db)


def test_griffin_lim_is_seeded_and_batched(speech):
    features = log_mel_spectrogram(speech[: SR // 2])
    a = griffin_lim(features, iterations=4, seed=1)
    assert np.array_equal(a, griffin_lim(features, iterations=4, seed=1))
    assert not np.array_equal(a, griffin_lim(features, iterations=4, seed=2))
    batch = griffin_lim(np.stack([features.numpy(), features.numpy()]), iterations=4, seed=1)
    assert batch.shape == (2, a.shape[0])


def test_griffin_lim_reconstructs_the_last_hop():
    """The features' last frame describes the final hop of the F × hop samples a vocoder returns;
    a steady sound must not fall silent there (it did: istft stopped at the last frame's centre)."""
    hop = FeatureSpec().hop_samples
    t = np.arange(SR // 2) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    features = log_mel_spectrogram(tone)
    gl = griffin_lim(features, iterations=16)
    assert gl.shape == (features.shape[1] * hop,)
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    body, tail = rms(gl[hop : len(tone) - 2 * hop]), rms(gl[-hop:])
    assert 0.5 * body < tail < 2.0 * body, (body, tail)
    longer = griffin_lim(features, iterations=2, length=len(gl) + 100)  # past the span: zeros, as documented
    assert longer.shape == (len(gl) + 100,) and not longer[-100:].any()


def test_griffin_lim_with_natural_log_features(speech):
    spec = PRESETS["ln-slaney"]
    features = log_mel_spectrogram(speech, spec)
    assert mel_cycle_distance_db(griffin_lim(features, spec), features, spec) < 2.5  # measured ≈ 1.5 dB


def test_resample_keeps_pitch():
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    out = resample(tone, SR)
    assert abs(len(out) - 16000) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * 16000 / len(out)
    assert abs(peak_hz - 1000.0) < 2.0


def test_pesq_is_near_its_ceiling_for_identical_audio_and_drops_with_noise(speech):
    clean = pesq_wb(speech, speech, SR)
    assert clean > 4.4  # P.862.2's maximum is 4.64
    scores = [pesq_wb(_noisy(speech, lvl), speech, SR) for lvl in (1e-3, 1e-2)]
    assert clean > scores[0] > scores[1], (clean, scores)
    assert scores[1] < 2.0


def test_pesq_of_silence_is_missing_not_an_error():
    assert math.isnan(pesq_wb(np.zeros(SR, np.float32), np.zeros(SR, np.float32), SR))


def test_dnsmos_ranges_and_noise(speech):
    clean = dnsmos(speech, SR)
    noisy = dnsmos(_noisy(speech, 0.05), SR)
    for score in (clean, noisy):
        for value in (score.overall, score.signal, score.background, score.p808):
            assert 1.0 <= value <= 5.0, score
    assert noisy.overall < clean.overall - 0.3, (clean, noisy)
    assert noisy.background < clean.background - 0.5, (clean, noisy)


def test_missing_optional_package_names_the_extra():
    with pytest.raises(MissingExtraError, match=r"pip install 'diffwave\[eval\]'"):
        require("diffwave_no_such_module_for_test", "a test metric")
