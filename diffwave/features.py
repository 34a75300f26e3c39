"""Log-mel features with ``torch.stft`` and our own mel filterbank (no torchaudio).

The default :class:`~runtime.bundle.FeatureSpec` reproduces lmnt's torchaudio recipe
(``MelSpectrogram(power=1, normalized=True, f_min=20, htk, norm=None)``, then its dB
mapping), so published lmnt checkpoints see the spectrograms they were trained on.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from runtime.bundle import FeatureSpec


def hz_to_mel(freq: np.ndarray | float, scale: str) -> np.ndarray:
    freq = np.asarray(freq, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    if scale == "slaney":  # linear below 1 kHz, logarithmic above
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        return np.where(freq >= min_log_hz, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep, freq / f_sp)
    raise ValueError(f"unknown mel scale {scale!r} (htk or slaney)")


def mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if scale == "slaney":
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)
    raise ValueError(f"unknown mel scale {scale!r} (htk or slaney)")


@lru_cache(maxsize=8)
def mel_filterbank(spec: FeatureSpec) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters, evenly spaced on the mel scale."""
    n_freqs = spec.n_fft // 2 + 1
    # torchaudio spaces the STFT bins over 0 … sr // 2 (integer division); keep that for parity.
    bin_freqs = np.linspace(0, spec.sample_rate // 2, n_freqs)
    mel_edges = np.linspace(hz_to_mel(spec.f_min, spec.mel_scale), hz_to_mel(spec.fmax, spec.mel_scale), spec.n_mels + 2)
    hz_edges = mel_to_hz(mel_edges, spec.mel_scale)
    widths = np.diff(hz_edges)
    offsets = hz_edges[None, :] - bin_freqs[:, None]  # [n_freqs, n_mels + 2]
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    fb = np.maximum(0.0, np.minimum(rising, falling))
    if spec.mel_norm == "slaney":
        fb *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[None, :]
    elif spec.mel_norm is not None:
        raise ValueError(f"unknown mel_norm {spec.mel_norm!r} (None or slaney)")
    return torch.from_numpy(fb.T.astype(np.float32))


def log_mel_spectrogram(audio: torch.Tensor | np.ndarray, spec: FeatureSpec = FeatureSpec()) -> torch.Tensor:
    """Mono audio [samples] or [B, samples] in [-1, 1] -> features [n_mels, frames] or [B, n_mels, frames].

    frames = 1 + samples // hop (centred STFT with reflect padding).
    """
    audio = torch.as_tensor(audio, dtype=torch.float32)
    squeeze = audio.dim() == 1
    if squeeze:
        audio = audio.unsqueeze(0)
    window = torch.hann_window(spec.win_length, periodic=True, device=audio.device)
    stft = torch.stft(
        audio,
        n_fft=spec.n_fft,
        hop_length=spec.hop_samples,
        win_length=spec.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    magnitude = stft.abs()
    if spec.normalized:
        magnitude = magnitude / window.pow(2).sum().sqrt()
    if spec.power != 1.0:
        magnitude = magnitude.pow(spec.power)
    mel = torch.matmul(mel_filterbank(spec).to(audio.device), magnitude)
    out = compress(mel, spec)
    return out.squeeze(0) if squeeze else out


def compress(mel: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    """Map linear mel energies to the model's input range."""
    if spec.compression == "lmnt_db":
        db = 20.0 * torch.log10(torch.clamp(mel, min=spec.clip_min)) - 20.0
        return torch.clamp((db + 100.0) / 100.0, 0.0, 1.0)
    if spec.compression == "ln":
        return torch.log(torch.clamp(mel, min=spec.clip_min))
    raise ValueError(f"unknown compression {spec.compression!r} (lmnt_db or ln)")


#: Named presets: a front end's convention is a set of values, not new code.
PRESETS: dict[str, FeatureSpec] = {
    "lmnt": FeatureSpec(),
    # Natural-log Slaney mels up to 8 kHz on an un-normalised magnitude, the convention of many
    # TTS front ends (Tacotron 2 style); framing stays centred as in lmnt's recipe.
    "ln-slaney": FeatureSpec(
        preset="ln-slaney", f_min=0.0, f_max=8000.0, mel_scale="slaney", mel_norm="slaney", normalized=False, compression="ln"
    ),
}
