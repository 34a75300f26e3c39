"""One reverse step on a real recording (diffwave.evaluation.denoising), on espeak-ng speech.

Expected values come from the schedule's definition (level 0 of the fast schedule adds noise of
std √(β₀/(1−β₀)) ≈ 0.01 to the recording), from a network that knows the true noise (it must
give the recording back), and from an untrained one (ε̂ = 0: nothing removed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffwave.audio import read_wav
from diffwave.evaluation.denoising import denoise_one_step, score_one_step
from diffwave.features import log_mel_spectrogram
from diffwave.model import DiffWave

from helpers import random_model, tiny_config

SR = 22050
FAST = (1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5)


@pytest.fixture(scope="module")
def recording(speech_wav):
    audio = read_wav(speech_wav, SR)
    features = log_mel_spectrogram(audio).numpy()
    length = features.shape[1] * 256
    padded = np.zeros(length, np.float32)
    padded[: min(length, len(audio))] = audio[:length]
    return audio, features, padded


class KnowsTheNoise(torch.nn.Module):
    """A 'network' that returns the exact noise in x_n, computed from the recording and ᾱ_n."""

    def __init__(self, clean: np.ndarray, alpha_cum: float):
        super().__init__()
        self.config = tiny_config()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device
        self.clean = torch.as_tensor(clean)[None]
        self.alpha_cum = alpha_cum
        self.steps: list[float] = []

    def forward(self, x, step, spectrogram):
        self.steps.append(float(step))
        return ((x - math.sqrt(self.alpha_cum) * self.clean) / math.sqrt(1 - self.alpha_cum))[:, None]


@pytest.mark.parametrize("level", [0, 2, 5])
def test_a_network_that_knows_the_noise_gives_the_recording_back(recording, level):
    _, features, clean = recording
    alpha_cum = float(np.prod([1 - b for b in FAST[: level + 1]]))
    oracle = KnowsTheNoise(clean, alpha_cum)
    result = denoise_one_step(oracle, clean, features, level=level, seed=3)
    np.testing.assert_allclose(result.denoised, clean, atol=1e-5)
    assert result.noise_std == pytest.approx(math.sqrt((1 - alpha_cum) / alpha_cum), rel=1e-9)
    assert np.std(result.noisy - clean) == pytest.approx(result.noise_std, rel=0.02)
    if level == 0:
        assert oracle.steps == [0.0]  # β₀ of the fast schedule is the first training beta


def test_an_untrained_network_removes_nothing(recording):
    audio, features, _ = recording
    fresh = DiffWave(tiny_config()).eval()  # lmnt's init zeroes the output layer's weight, not its bias
    torch.nn.init.zeros_(fresh.output_projection.bias)  # now ε̂ = 0 exactly
    result = denoise_one_step(fresh, audio, features, level=1)
    np.testing.assert_array_equal(result.denoised, np.clip(result.noisy, -1, 1))
    assert np.std(result.noisy - result.denoised) < 1e-3 * result.noise_std


def test_scores_rise_when_the_noise_is_removed(recording):
    audio, features, clean = recording
    perfect = score_one_step(KnowsTheNoise(clean, 1 - FAST[0]), audio, features, SR, level=0)
    assert perfect.noisy_snr_db == pytest.approx(20 * math.log10(np.std(clean) / 0.01), abs=0.3)
    assert perfect.denoised_snr_db > 90
    assert perfect.denoised_pesq > 4.5 > 2.0 > perfect.noisy_pesq


def test_level_outside_the_schedule_is_refused(recording):
    audio, features, _ = recording
    with pytest.raises(ValueError, match="level 6 is not a step of a 6-step schedule"):
        denoise_one_step(random_model(), audio, features, level=6)
