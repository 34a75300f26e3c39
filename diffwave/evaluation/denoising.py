"""One reverse step on a real recording: how much noise of a known level the network removes.

Vocoding from pure noise asks the network to invent the waveform's fine structure (harmonics,
phase) at the coarse steps. While it cannot yet, the output is shaped noise and PESQ-WB sits at
its floor (≈ 1.0–1.1) for a trained model and a random one alike, so PESQ cannot tell them apart
or show progress. This measure skips the invention: it noises the *recording* to the level of
one inference step, x_k = √ᾱ_k·x₀ + √(1−ᾱ_k)·ε, lets the network predict ε̂ once, and scores
the estimate x̂₀ = (x_k − √(1−ᾱ_k)·ε̂)/√ᾱ_k against the recording. At level 0 (the fast
schedule's β = 1e-4, noise std 0.01) x̂₀ is exactly what the sampler's last step computes, so
the sampler's last step leaves the same kind of residual in every vocoded file: a model whose
last step leaves PESQ-WB below Griffin-Lim's is unlikely to pass the quality bar from pure noise.

An untrained network (ε̂ = 0) returns the noisy input unchanged; a network that ignores its
step embedding or its weights' order removes nothing; models/README.md has the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from runtime.schedule import align_to_training_steps, cumulative_alphas

from .metrics import snr_db
from .perceptual import pesq_wb


@dataclass(frozen=True)
class OneStepDenoising:
    """The recording noised to one inference level, and the network's one-step estimate of it."""

    level: int  #: inference step n (0 = the last, least noisy step)
    noise_std: float  #: √(1−ᾱ_n)/√ᾱ_n: the noise's std on the recording's scale
    recording: np.ndarray  #: float32, the recording cut or zero-padded to frames × hop samples
    noisy: np.ndarray  #: x_n/√ᾱ_n, float32, the recording plus that noise
    denoised: np.ndarray  #: x̂₀, float32, clamped to [−1, 1] like the sampler's output


@dataclass(frozen=True)
class OneStepScore:
    level: int
    noise_std: float
    noisy_pesq: float  #: PESQ-WB of the noisy input against the recording
    denoised_pesq: float  #: PESQ-WB of x̂₀ against the recording
    noisy_snr_db: float
    denoised_snr_db: float


def denoise_one_step(
    model: torch.nn.Module,
    audio: np.ndarray,
    features: np.ndarray,
    level: int = 0,
    seed: int = 0,
    inference_betas: Optional[tuple[float, ...]] = None,
) -> OneStepDenoising:
    """Noise ``audio`` (the recording of ``features``) to inference ``level`` and denoise it once.

    ``model`` is a :class:`~diffwave.model.DiffWave`; its config supplies the training betas
    and, unless ``inference_betas`` is given, the fast schedule. The recording is cut or
    zero-padded to frames × hop samples, the length the network conditions on.
    """
    config = model.config
    training = tuple(config.diffusion.noise_schedule)
    betas = tuple(inference_betas or config.diffusion.inference_noise_schedule)
    if not 0 <= level < len(betas):
        raise ValueError(f"level {level} is not a step of a {len(betas)}-step schedule")
    frames = features.shape[-1]
    length = frames * config.features.hop_samples
    clean = torch.zeros(1, length)
    recording = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1)[:length])
    clean[0, : recording.numel()] = recording

    alpha_cum = float(cumulative_alphas(betas)[level])
    signal, noise = alpha_cum**0.5, (1.0 - alpha_cum) ** 0.5
    step = float(align_to_training_steps(training, betas)[level])
    generator = torch.Generator().manual_seed(seed)
    x = signal * clean + noise * torch.randn(1, length, generator=generator)
    device = next(model.parameters()).device
    with torch.no_grad():
        eps = model(x.to(device), torch.tensor([step], device=device), torch.as_tensor(features, dtype=torch.float32)[None].to(device))
    estimate = ((x - noise * eps[:, 0].float().cpu()) / signal).clamp(-1.0, 1.0)
    return OneStepDenoising(
        level=level,
        noise_std=noise / signal,
        recording=clean[0].numpy(),
        noisy=(x / signal)[0].numpy(),
        denoised=estimate[0].numpy(),
    )


def score_one_step(
    model: torch.nn.Module, audio: np.ndarray, features: np.ndarray, sample_rate: int, level: int = 0, seed: int = 0
) -> OneStepScore:
    """PESQ-WB and SNR of the noisy input and of the one-step estimate (see the module docstring)."""
    result = denoise_one_step(model, audio, features, level=level, seed=seed)
    reference = result.recording
    return OneStepScore(
        level=level,
        noise_std=result.noise_std,
        noisy_pesq=pesq_wb(result.noisy, reference, sample_rate),
        denoised_pesq=pesq_wb(result.denoised, reference, sample_rate),
        noisy_snr_db=snr_db(result.noisy, reference),
        denoised_snr_db=snr_db(result.denoised, reference),
    )
