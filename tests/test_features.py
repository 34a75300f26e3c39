"""Log-mel features against an independent NumPy implementation, on real (espeak-ng) speech.

The reference below is written from the recipe in DESIGN.md ("Features"): framing,
window, DFT, filterbank and compression are each done here in float64 NumPy, without
calling anything in ``diffwave.features``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from diffwave.audio import read_wav
from diffwave.features import PRESETS, log_mel_spectrogram
from runtime.bundle import FeatureSpec


def reference_stft_magnitude(audio: np.ndarray, n_fft: int, hop: int, normalized: bool) -> np.ndarray:
    """|STFT| [n_fft//2+1, frames]: reflect-padded by n_fft/2, periodic Hann, frames every hop."""
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / n_fft) for n in range(n_fft)])
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    columns = [np.abs(np.fft.rfft(padded[i * hop : i * hop + n_fft] * window)) for i in range(frames)]
    magnitude = np.stack(columns, axis=1)
    if normalized:
        magnitude /= math.sqrt(float(np.sum(window**2)))
    return magnitude


def reference_filterbank(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float, scale: str, norm: bool) -> np.ndarray:
    """Triangles with corners evenly spaced in mel, evaluated at each DFT bin's frequency."""
    if scale == "htk":
        to_mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
        to_hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    else:  # Slaney's Auditory Toolbox: linear to 1 kHz (200/3 Hz per mel), then log steps of 6.4^(1/27)
        step = math.log(6.4) / 27.0
        to_mel = lambda f: f / (200.0 / 3) if f < 1000 else 15.0 + math.log(f / 1000.0) / step  # noqa: E731
        to_hz = lambda m: m * (200.0 / 3) if m < 15.0 else 1000.0 * math.exp(step * (m - 15.0))  # noqa: E731
    lo_mel, hi_mel = to_mel(f_min), to_mel(f_max)
    corners = [to_hz(lo_mel + (hi_mel - lo_mel) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bins = [k * (sr // 2) / (n_fft // 2) for k in range(n_fft // 2 + 1)]
    bank = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        left, centre, right = corners[m], corners[m + 1], corners[m + 2]
        for k, f in enumerate(bins):
            if left <= f <= centre:
                bank[m, k] = (f - left) / (centre - left)
            elif centre < f <= right:
                bank[m, k] = (right - f) / (right - centre)
        if norm:
            bank[m] *= 2.0 / (right - left)
    return bank


def reference_features(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    magnitude = reference_stft_magnitude(audio, spec.n_fft, spec.hop_samples, spec.normalized) ** spec.power
    bank = reference_filterbank(
        spec.sample_rate, spec.n_fft, spec.n_mels, spec.f_min, spec.fmax, spec.mel_scale, spec.mel_norm == "slaney"
    )
    mel = bank @ magnitude
    if spec.compression == "lmnt_db":
        db = 20.0 * np.log10(np.maximum(mel, 1e-5)) - 20.0
        return np.clip((db + 100.0) / 100.0, 0.0, 1.0)
    return np.log(np.maximum(mel, 1e-5))


def test_default_features_match_numpy_reference_on_speech(speech_dir):
    spec = FeatureSpec()
    for wav in sorted(speech_dir.glob("*.wav")):
        audio = read_wav(wav, 22050)
        ours = log_mel_spectrogram(audio, spec).numpy()
        expected = reference_features(audio, spec)
        assert ours.shape == (80, 1 + len(audio) // 256) == expected.shape
        assert ours.dtype == np.float32
        assert 0.2 < expected.mean() < 0.9 and expected.std() > 0.05  # speech, not silence or saturation
        assert np.abs(ours - expected).max() <= 1e-4, wav.name


def test_default_preset_is_lmnt_recipe():
    spec = FeatureSpec()
    assert (spec.sample_rate, spec.n_fft, spec.win_length, spec.hop_samples, spec.n_mels) == (22050, 1024, 1024, 256, 80)
    assert (spec.f_min, spec.fmax, spec.mel_scale, spec.mel_norm) == (20.0, 11025.0, "htk", None)
    assert spec.normalized and spec.power == 1.0 and spec.compression == "lmnt_db"
    assert PRESETS["lmnt"] == spec


def test_other_preset_is_config_and_matches_reference(speech_wav):
    spec = PRESETS["ln-slaney"]
    audio = read_wav(speech_wav, 22050)
    ours = log_mel_spectrogram(audio, spec).numpy()
    expected = reference_features(audio, spec)
    assert np.abs(ours - expected).max() <= 1e-3  # natural-log units, unbounded below: looser than the [0, 1] preset
    assert np.abs(ours - log_mel_spectrogram(audio, FeatureSpec()).numpy()).max() > 0.5  # really a different front end


def test_batched_features_equal_single(speech_dir):
    a = read_wav(speech_dir / "utt0.wav", 22050)[:20000]
    b = read_wav(speech_dir / "utt1.wav", 22050)[:20000]
    batch = log_mel_spectrogram(np.stack([a, b]))
    assert batch.shape == (2, 80, 1 + 20000 // 256)
    assert np.abs(batch[1].numpy() - log_mel_spectrogram(b).numpy()).max() <= 1e-6


@pytest.mark.parametrize("samples", [1024, 1025, 256 * 40, 256 * 40 + 255])
def test_frame_count(samples):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, samples).astype(np.float32)
    assert log_mel_spectrogram(audio).shape == (80, 1 + samples // 256)


def test_speech_fixture_is_real_speech(speech_wav):
    info = sf.info(str(speech_wav))
    assert info.samplerate == 22050 and info.channels == 1 and info.frames > 22050
