"""Griffin-Lim from log-mel features: the weight-free anchor every vocoder score is read against.

Why it is here: a number like "mel-cycle 1.2 dB" means nothing alone. Griffin-Lim inverts the
same features with no learned weights, so a neural vocoder must beat it to justify itself,
and a vocoder that scores worse than it is broken.

Steps: undo the feature compression (dB or ln) to linear mel magnitudes; undo the mel
filterbank by least squares (pseudo-inverse, negatives clipped: the filterbank has fewer
bands than STFT bins, so the minimum-norm solution is the best a linear inverse can do);
undo the STFT normalisation; then estimate a phase with the fast Griffin-Lim iteration
(Perraudin, Balazs & Søndergaard 2013: Griffin-Lim with momentum 0.99), using the STFT
settings of the features themselves.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from runtime.bundle import FeatureSpec

DEFAULT_ITERATIONS = 64
DEFAULT_MOMENTUM = 0.99


def features_to_mel(features: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Invert the compression: model features -> linear mel energies (|STFT|^power through the filterbank)."""
    if spec.compression == "lmnt_db":
        db = features * 100.0 - 100.0 + 20.0  # undo clip((20·log10(m) − 20 + 100)/100) inside the clip range
        return torch.pow(10.0, db / 20.0)
    if spec.compression == "ln":
        return torch.exp(features)
    raise ValueError(f"unknown compression {spec.compression!r} (lmnt_db or ln)")


@lru_cache(maxsize=8)
def _filterbank_pinv(spec: FeatureSpec) -> torch.Tensor:
    from diffwave.features import mel_filterbank

    return torch.linalg.pinv(mel_filterbank(spec).double()).float()  # [n_freqs, n_mels]


def features_to_magnitude(features, spec: FeatureSpec = FeatureSpec()) -> torch.Tensor:
    """[n_mels, frames] (or [B, n_mels, frames]) features -> |STFT| estimate [.., n_fft/2+1, frames]."""
    feats = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features, dtype=torch.float32)
    if feats.shape[-2] != spec.n_mels:
        raise ValueError(f"expected {spec.n_mels} mel bands, got features of shape {tuple(feats.shape)}")
    mel = features_to_mel(feats, spec)
    linear = torch.clamp(torch.matmul(_filterbank_pinv(spec), mel), min=0.0)
    magnitude = linear.pow(1.0 / spec.power) if spec.power != 1.0 else linear
    if spec.normalized:
        window = torch.hann_window(spec.win_length, periodic=True)
        magnitude = magnitude * window.pow(2).sum().sqrt()
    return magnitude


def griffin_lim(
    features,
    spec: FeatureSpec = FeatureSpec(),
    iterations: int = DEFAULT_ITERATIONS,
    momentum: float = DEFAULT_MOMENTUM,
    seed: int = 0,
    length: int | None = None,
) -> np.ndarray:
    """Audio from features: float32 [samples] for [n_mels, F] input, [B, samples] for [B, n_mels, F].

    ``length`` defaults to F × hop, the length a DiffWave vocoder returns for the same features.
    The initial phase is random from ``seed``, so the result is reproducible.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    magnitude = features_to_magnitude(features, spec)
    squeeze = magnitude.dim() == 2
    if squeeze:
        magnitude = magnitude.unsqueeze(0)
    frames = magnitude.shape[-1]
    length = length or frames * spec.hop_samples
    window = torch.hann_window(spec.win_length, periodic=True)
    stft_args = dict(n_fft=spec.n_fft, hop_length=spec.hop_samples, win_length=spec.win_length, window=window, center=True)
    # The span the frames describe: up to the last frame's centre, plus what its window still covers
    # well (a hop for the usual hop <= win/2). That is the F × hop a vocoder returns, so the tail
    # is reconstructed instead of left silent; only a longer ``length`` gets zeros past it.
    span = (frames - 1) * spec.hop_samples + min(spec.hop_samples, spec.win_length // 2)

    def to_audio(spectrum: torch.Tensor) -> torch.Tensor:
        return torch.istft(spectrum, **stft_args, length=span)

    def analyse(audio: torch.Tensor) -> torch.Tensor:
        # A span of F × hop gives one frame more than the features have (its centre past the end): drop it.
        return torch.stft(audio, **stft_args, pad_mode="reflect", return_complex=True)[..., :frames]

    gen = torch.Generator().manual_seed(seed)
    phase = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=gen, dtype=torch.float64)).to(torch.complex64)
    previous = torch.zeros_like(phase)
    with torch.no_grad():
        for _ in range(iterations):
            rebuilt = analyse(to_audio(magnitude * phase))
            phase = rebuilt - previous * (momentum / (1.0 + momentum))
            phase = phase / (phase.abs() + 1e-16)
            previous = rebuilt
        audio = to_audio(magnitude * phase)[..., :length]
    audio = torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))
    audio = audio.clamp(-1.0, 1.0).numpy().astype(np.float32)
    return audio[0] if squeeze else audio
