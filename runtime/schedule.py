"""Noise-schedule math for DiffWave: the only implementation in the repository.

Training (``diffwave.train``) and every runtime backend import this module, so the
forward process the network learns and the reverse process that samples from it can
never drift apart. It is pure NumPy on purpose: a TTS service that embeds ``runtime``
gets the sampler without PyTorch.

The split follows the diffusers schedulers: this module only computes numbers
(``ReverseSchedule``); it knows nothing about networks or buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: lmnt's training schedule: 50 betas, linearly spaced (DiffWave paper, base model).
TRAINING_BETAS: tuple[float, ...] = tuple(np.linspace(1e-4, 0.05, 50).tolist())
#: lmnt's fast inference schedule (DiffWave paper v3, Table/Sec. on fast sampling).
FAST_BETAS: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.05, 0.2, 0.5)


def cumulative_alphas(betas: Sequence[float]) -> np.ndarray:
    """ᾱ_n = ∏_{i≤n} (1 − β_i), in float64 so that 50-step products keep full precision."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.size == 0:
        raise ValueError(f"a noise schedule is a non-empty list of betas, got shape {betas.shape}")
    if np.any(betas <= 0) or np.any(betas >= 1):
        raise ValueError("every beta of a noise schedule must lie in (0, 1)")
    return np.cumprod(1.0 - betas)


def align_to_training_steps(training_betas: Sequence[float], inference_betas: Sequence[float]) -> np.ndarray:
    """Continuous training-step index for each inference step (DiffWave paper v3, fast sampling).

    Inference step s is mapped to the fractional training step t + w whose noise level
    √ᾱ lies between those of training steps t and t+1: w interpolates √ᾱ linearly.
    The network then sees a step embedding interpolated between integer rows of its
    sin/cos table, the way it was evaluated during lmnt's fast sampling.
    """
    train_cum = cumulative_alphas(training_betas)
    infer_cum = cumulative_alphas(inference_betas)
    steps = np.empty(len(infer_cum), dtype=np.float64)
    for s, level in enumerate(infer_cum):
        # Look for the training interval [t, t+1] whose noise levels bracket this one.
        for t in range(len(train_cum) - 1):
            if train_cum[t + 1] <= level <= train_cum[t]:
                hi, lo = np.sqrt(train_cum[t]), np.sqrt(train_cum[t + 1])
                steps[s] = t + (hi - np.sqrt(level)) / (hi - lo)
                break
        else:
            raise ValueError(
                f"inference step {s} (alpha_cum={level:.6g}) lies outside the training schedule's "
                f"noise levels [{train_cum[-1]:.6g}, {train_cum[0]:.6g}]"
            )
    return steps


@dataclass(frozen=True)
class ReverseSchedule:
    """Per-step constants of the reverse (denoising) process, indexed by inference step n.

    The sampler runs n = N−1 … 0 and, at each n, computes
    ``x = clamp(c1[n] · (x − c2[n] · ε(x, steps[n])) + sigma[n] · z, −1, 1)``
    with ``sigma[0] = 0`` (no noise after the last step), exactly as lmnt's ``predict``.
    """

    betas: np.ndarray  #: inference betas β_n
    steps: np.ndarray  #: continuous training-step index fed to the network
    c1: np.ndarray  #: 1/√α_n
    c2: np.ndarray  #: β_n/√(1−ᾱ_n)
    sigma: np.ndarray  #: √((1−ᾱ_{n−1})/(1−ᾱ_n)·β_n), 0 for n = 0

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @classmethod
    def create(cls, training_betas: Sequence[float], inference_betas: Sequence[float]) -> "ReverseSchedule":
        betas = np.asarray(inference_betas, dtype=np.float64)
        alpha_cum = cumulative_alphas(betas)
        alphas = 1.0 - betas
        sigma = np.zeros_like(betas)
        sigma[1:] = np.sqrt((1.0 - alpha_cum[:-1]) / (1.0 - alpha_cum[1:]) * betas[1:])
        return cls(
            betas=betas,
            steps=align_to_training_steps(training_betas, inference_betas),
            c1=1.0 / np.sqrt(alphas),
            c2=betas / np.sqrt(1.0 - alpha_cum),
            sigma=sigma,
        )


def resolve_inference_betas(
    steps: str | Sequence[float], named: dict[str, Sequence[float]]
) -> tuple[float, ...]:
    """Turn ``"fast"``/``"full"`` (or any name in ``named``) or an explicit list into betas."""
    if isinstance(steps, str):
        if steps not in named:
            raise ValueError(f"unknown schedule {steps!r}; known: {', '.join(sorted(named))}, or a list of betas")
        return tuple(float(b) for b in named[steps])
    try:
        return tuple(float(b) for b in steps)
    except TypeError:  # None, a bare number, nested lists: say what is accepted
        raise ValueError(f"expected a schedule name ({', '.join(sorted(named))}) or a list of betas, got {steps!r}") from None
