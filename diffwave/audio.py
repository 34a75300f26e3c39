"""Reading and writing waveforms with soundfile, with one-line errors that name the file."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from runtime.bundle import atomic_output
from runtime.errors import first_line


class AudioError(ValueError):
    """A wav file cannot be used (message is one line naming the file)."""


def read_wav(path: str | os.PathLike, sample_rate: int, min_samples: int = 1) -> np.ndarray:
    """Mono float32 samples in [-1, 1]. Stereo is downmixed (with a warning); any other rate is refused.

    Resampling is refused rather than done silently: a vocoder trained at one rate and fed
    another produces pitch-shifted speech that is easy to miss in a pipeline. ``min_samples``:
    features need more than half an FFT window (the centred STFT reflects that much at each end),
    so callers that compute them pass :func:`feature_min_samples`.
    """
    path = Path(path)
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, …
        raise AudioError(f"{path}: unreadable audio ({first_line(exc)})") from None
    if sr != sample_rate:
        raise AudioError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz (resample it first, e.g. with sox)")
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if audio.shape[0] < min_samples:
        raise AudioError(f"{path}: {audio.shape[0]} samples is too short: the features need at least {min_samples}")
    if audio.shape[1] > 1:
        warnings.warn(f"{path}: {audio.shape[1]} channels, downmixed to mono", stacklevel=2)
    mono = audio.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: audio contains NaN or inf")
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def feature_min_samples(n_fft: int) -> int:
    """Fewest samples a centred STFT of ``n_fft`` accepts (its reflect padding needs n_fft/2 + 1)."""
    return n_fft // 2 + 1


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write a mono wav atomically (temp name in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".wav") as tmp:
        try:
            sf.write(tmp, np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, subtype=subtype, format="WAV")
        except sf.LibsndfileError as exc:  # a full disk reaches us as libsndfile's "System error"
            raise OSError(errno.EIO, f"cannot write the wav ({exc.error_string})", str(path)) from None
    return path
