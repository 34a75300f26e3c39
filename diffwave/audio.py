"""Reading and writing waveforms with soundfile, with one-line errors that name the file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from runtime.bundle import atomic_output


class AudioError(ValueError):
    """A wav file cannot be used (message is one line naming the file)."""


def read_wav(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1]. Stereo is downmixed (with a warning); any other rate is refused.

    Resampling is refused rather than done silently: a vocoder trained at one rate and fed
    another produces pitch-shifted speech that is easy to miss in a pipeline.
    """
    path = Path(path)
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, …
        raise AudioError(f"{path}: unreadable audio ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    if sr != sample_rate:
        raise AudioError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz (resample it first, e.g. with sox)")
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if audio.shape[1] > 1:
        warnings.warn(f"{path}: {audio.shape[1]} channels, downmixed to mono", stacklevel=2)
    mono = audio.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"{path}: audio contains NaN or inf")
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """Write a mono wav atomically (temp name in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=".wav") as tmp:
        sf.write(tmp, np.asarray(audio, dtype=np.float32).reshape(-1), sample_rate, subtype=subtype, format="WAV")
    return path
