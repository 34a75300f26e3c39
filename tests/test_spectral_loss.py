"""The optional log-magnitude STFT term (diffwave/spectral_loss.py) on espeak-ng speech, and its config keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffwave.audio import read_wav
from diffwave.config import DiffWaveConfig
from diffwave.spectral_loss import log_stft_distance, low_noise_spectral_loss
from diffwave.train import TrainOptions, train
from helpers import tiny_config
from runtime.schedule import cumulative_alphas


@pytest.fixture(scope="module")
def speech(speech_wav) -> torch.Tensor:
    return torch.as_tensor(read_wav(speech_wav, 22050), dtype=torch.float32)


def test_distance_is_zero_only_for_the_same_signal(speech):
    clean = speech[None, :16384]
    assert float(log_stft_distance(clean, clean)) == 0.0
    noisy = clean + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    assert float(log_stft_distance(noisy, clean)) > 0.1


def _numpy_log_stft_distance(estimate: np.ndarray, reference: np.ndarray) -> float:
    """The documented term written independently: Hann windows of 256, 512 and 1024 points, hop n/4,
    frames centred with reflected padding, mean |log(|X| + 1e-3·√n) − log(|Y| + 1e-3·√n)|, averaged."""
    distances = []
    for n in (256, 512, 1024):
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann

        def log_magnitude(signal: np.ndarray) -> np.ndarray:
            padded = np.pad(signal.astype(np.float64), n // 2, mode="reflect")
            starts = range(0, len(padded) - n + 1, n // 4)
            frames = np.stack([padded[s : s + n] * window for s in starts])
            return np.log(np.abs(np.fft.rfft(frames, axis=1)) + 1e-3 * np.sqrt(n))

        distances.append(np.mean(np.abs(log_magnitude(estimate) - log_magnitude(reference))))
    return float(np.mean(distances))


def test_distance_matches_an_independent_computation(speech):
    # Half the amplitude: the estimate is *quieter* than the reference in every bin, so a signed
    # difference would come out negative here, and the loud bins differ by ln 2 (below the floor, less).
    clean = speech[:12000]
    quieter = 0.5 * clean
    expected = _numpy_log_stft_distance(quieter.numpy(), clean.numpy())
    assert 0.1 < expected < np.log(2)
    assert float(log_stft_distance(quieter[None], clean[None])) == pytest.approx(expected, rel=1e-4)
    assert float(log_stft_distance(clean[None], quieter[None])) == pytest.approx(expected, rel=1e-4)  # symmetric


def test_the_same_noise_costs_more_where_the_recording_is_quiet(speech):
    """What the term is for: hiss in empty bins counts, though it is as loud as hiss under speech.

    The same burst of noise (std 0.01, the fast schedule's last level) is added once over the
    loudest stretch of a real espeak-ng sentence and once over its quietest stretch. By energy
    (and so by the ε loss) the two errors are identical; the log-magnitude distance must rank the
    quiet one clearly worse (about 1.7× on this sentence: under speech the burst still shows in
    the bins between harmonics and above the formants).
    """
    audio = speech.clone()
    width = 2048
    frames = audio[: len(audio) // width * width].reshape(-1, width)
    rms = frames.pow(2).mean(1).sqrt()
    loud, quiet = int(rms.argmax()), int(rms.argmin())
    assert rms[loud] > 30 * rms[quiet], "the sentence needs a pause and a loud stretch"
    burst = 0.01 * torch.randn(width, generator=torch.Generator().manual_seed(1))

    def with_burst_at(index: int) -> torch.Tensor:
        out = audio.clone()
        out[index * width : (index + 1) * width] += burst
        return out[None]

    clean = audio[None]
    over_speech, over_pause = with_burst_at(loud), with_burst_at(quiet)
    assert torch.allclose((over_speech - clean).pow(2).sum(), (over_pause - clean).pow(2).sum())
    assert float(log_stft_distance(over_pause, clean)) > 1.4 * float(log_stft_distance(over_speech, clean))


def test_term_covers_only_the_low_noise_rows(speech):
    alpha_cum = torch.tensor(cumulative_alphas(DiffWaveConfig().diffusion.noise_schedule), dtype=torch.float32)
    gen = torch.Generator().manual_seed(2)
    clean = torch.stack([speech[i * 4096 : i * 4096 + 8192] for i in range(4)])
    noise = torch.randn(clean.shape, generator=gen)
    steps = torch.tensor([0, 4, 10, 40])  # row 1 sits exactly at max_step=4: it counts
    level = alpha_cum[steps].unsqueeze(1)
    noisy = level.sqrt() * clean + (1 - level).sqrt() * noise
    wrong = noise + 0.3 * torch.randn(clean.shape, generator=gen)  # an imperfect ε̂

    # A perfect prediction gives x̂₀ = x₀ (up to rounding): nothing to add.
    assert float(low_noise_spectral_loss(noisy, noise, clean, steps, alpha_cum, max_step=4)) < 1e-3
    # No row at step ≤ max_step: exactly zero, whatever the prediction.
    assert float(low_noise_spectral_loss(noisy[2:], wrong[2:], clean[2:], steps[2:], alpha_cum, max_step=4)) == 0.0
    # Rows 0 and 1 qualify: their distance, scaled by their share of the batch (2 of 4).
    rows = slice(0, 2)
    estimate = (noisy[rows] - (1 - level[rows]).sqrt() * wrong[rows]) / level[rows].sqrt()
    expected = 0.5 * float(log_stft_distance(estimate, clean[rows]))
    assert float(low_noise_spectral_loss(noisy, wrong, clean, steps, alpha_cum, max_step=4)) == pytest.approx(expected)


def test_config_keys_default_off_round_trip_and_are_checked():
    assert DiffWaveConfig().train.spectral_loss_weight == 0.0  # lmnt's loss unless asked for
    config = DiffWaveConfig().override({"spectral_loss_weight": 0.5, "spectral_loss_max_step": 10})
    again = DiffWaveConfig.from_params(config.to_params())
    assert (again.train.spectral_loss_weight, again.train.spectral_loss_max_step) == (0.5, 10)
    with pytest.raises(ValueError, match="spectral_loss_weight"):
        DiffWaveConfig().override({"spectral_loss_weight": -1.0})
    with pytest.raises(ValueError, match="spectral_loss_max_step"):
        DiffWaveConfig().override({"spectral_loss_max_step": 50})  # the training schedule has steps 0..49


@pytest.mark.usefixtures("one_thread")
def test_a_training_step_adds_the_term(tmp_path, preprocessed_dir):
    """The same first step (same batch, noise and steps) with and without the term, through train()."""

    def first_step(weight: float) -> tuple[float, dict]:
        model_dir = tmp_path / f"w{weight}"
        config = tiny_config(spectral_loss_weight=weight, spectral_loss_max_step=49)  # every row qualifies
        options = TrainOptions(model_dir=Path(model_dir), data_dirs=(Path(preprocessed_dir),), max_steps=1,
                               data_workers=0, progress=False)
        result = train(options, config)
        return result.losses[0], result.model.state_dict()

    plain_loss, plain_weights = first_step(0.0)
    spectral_loss, spectral_weights = first_step(1.0)
    assert np.isfinite(spectral_loss)
    assert spectral_loss > plain_loss + 0.1  # log-magnitude distances of a fresh network are large
    changed = [k for k in plain_weights if not torch.equal(plain_weights[k], spectral_weights[k])]
    assert changed, "the term did not reach the gradients"
