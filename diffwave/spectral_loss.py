"""An optional training term: log-magnitude STFT distance of the clean-audio estimate at low noise.

Why: DiffWave's loss, L1 on the predicted noise ε, weighs every sample alike. At the quietest
noise levels most of the error it tolerates sits in time-frequency bins that hold almost no
speech (pauses, spectral valleys, the gaps between low harmonics). There the error is small in
energy, so it earns the network little loss, but nothing masks it: it is the hiss that PESQ and
listeners hear (models/README.md, "Where does sampling lose the recording?"). A distance between
*log* magnitudes counts a bin's error relative to what the bin holds, so removing the last noise
from an empty bin is worth as much as getting a loud one right.

The term is taken on the network's estimate of the clean audio,
x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t, and only at training steps t ≤ ``max_step``: at high noise x̂₀ is
a blurred average by design (that is what minimises the ε loss there), and pulling its
magnitudes towards the recording's would fight that. The default ``max_step`` 4 covers the
fast schedule's three finest steps (training steps 0, 0.89 and 4.09).

The floor inside the logarithm is 1e-3·√n for an n-point Hann window, about 16 dB below the
STFT magnitude of the fast schedule's last noise level (std 0.01), so bins quieter than the
noise the last step must remove count little more than the floor.
"""

from __future__ import annotations

import torch

#: STFT sizes (hop n/4, Hann window) the distance is averaged over.
RESOLUTIONS: tuple[int, ...] = (256, 512, 1024)
#: Magnitude floor per √(window length): the log of |X| + FLOOR·√n.
FLOOR_PER_SQRT_N = 1e-3


def _magnitude(audio: torch.Tensor, n_fft: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spectrum = torch.stft(audio, n_fft, n_fft // 4, window=window, return_complex=True)
    # |z| through a tiny epsilon: the complex abs has an undefined gradient at exactly zero.
    return torch.view_as_real(spectrum).pow(2).sum(-1).add(1e-12).sqrt()


def log_stft_distance(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean L1 between log(|STFT| + floor) of two (batch, samples) signals, averaged over RESOLUTIONS."""
    total = estimate.new_zeros(())
    for n_fft in RESOLUTIONS:
        floor = FLOOR_PER_SQRT_N * n_fft**0.5
        a = torch.log(_magnitude(estimate, n_fft) + floor)
        b = torch.log(_magnitude(reference, n_fft) + floor)
        total = total + (a - b).abs().mean()
    return total / len(RESOLUTIONS)


def low_noise_spectral_loss(
    noisy: torch.Tensor,
    predicted_noise: torch.Tensor,
    clean: torch.Tensor,
    steps: torch.Tensor,
    alpha_cum: torch.Tensor,
    max_step: int,
) -> torch.Tensor:
    """The term for one batch: log_stft_distance(x̂₀, x₀) over the rows with step ≤ ``max_step``.

    Scaled by the share of such rows, so it adds to the batch-mean ε loss the way a per-row term
    would (a batch with no such row contributes exactly zero). Shapes: ``noisy``, ``predicted_noise``
    and ``clean`` (batch, samples); ``steps`` (batch,) integer training steps; ``alpha_cum`` the
    cumulative alphas of the training schedule.
    """
    selected = steps <= max_step
    if not bool(selected.any()):
        return noisy.new_zeros(())
    level = alpha_cum[steps[selected]].unsqueeze(1)
    estimate = (noisy[selected] - (1.0 - level).sqrt() * predicted_noise[selected]) / level.sqrt()
    return log_stft_distance(estimate, clean[selected]) * selected.float().mean()
