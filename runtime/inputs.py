"""Checking what a caller hands the vocoder, before any buffer is touched.

Each problem is one :class:`~runtime.errors.VocoderError` line saying what is wrong with the
spectrogram (the CLI prefixes the file name). The checks run on the caller's array as given
(NumPy or torch, any device), so a bad request never reaches an engine.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from .errors import VocoderError, first_line


@dataclass
class Conditioning:
    """A validated batch: float32 [batch, n_mels, frames] (trimmed to the longest item) and lengths."""

    spectrogram: Any  #: np.ndarray, or a torch tensor (kept on its device)
    lengths: tuple[int, ...]  #: frames per item
    torch_device: Optional[str]  #: the input's torch device, or None for NumPy input (outputs follow it)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """The array in a .npy file; anything else (an .npz, a pickle, a torn file, a header asking for
    more memory than there is) is one :class:`VocoderError` naming the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except MemoryError:
        raise VocoderError(f"{path}: unreadable .npy (its header asks for more memory than there is)") from None
    except Exception as exc:  # numpy raises OSError, ValueError, EOFError, … for foreign or torn files
        raise VocoderError(f"{path}: unreadable .npy ({first_line(exc)})") from None
    if not isinstance(array, np.ndarray):  # np.load returns an NpzFile for a zip archive
        raise VocoderError(f"{path}: not a .npy array (it is an .npz archive)")
    return array


def torch_tensor_type() -> Optional[type]:
    """torch.Tensor when the process has imported torch already, else None (never imports it)."""
    import sys

    torch = sys.modules.get("torch")  # only when the caller already uses torch: never import it here
    return getattr(torch, "Tensor", None) if torch is not None else None


def check_spectrogram(spectrogram: Any, n_mels: int, lengths: Optional[Sequence[int]] = None) -> Conditioning:
    tensor_type = torch_tensor_type()
    torch_device = None
    if tensor_type is not None and isinstance(spectrogram, tensor_type):
        import torch  # already imported by the caller

        torch_device = str(spectrogram.device)
        spec = spectrogram.detach()
        if spec.dtype != torch.float32:
            spec = spec.float()
        shape = tuple(spec.shape)
    else:
        if np.iscomplexobj(spectrogram):  # casting would drop the imaginary part with only a warning
            raise VocoderError("spectrogram is complex; expected a real log-mel spectrogram")
        try:
            spec = np.asarray(spectrogram, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise VocoderError(f"spectrogram is not a numeric array ({exc})") from None
        shape = spec.shape
    if len(shape) == 2:
        spec = spec[None]
        shape = (1,) + tuple(shape)
    if len(shape) != 3:
        raise VocoderError(f"spectrogram must be [n_mels, frames] or [batch, n_mels, frames], got shape {tuple(shape)}")
    batch, bands, frames = shape
    if bands != n_mels:
        raise VocoderError(f"spectrogram has {bands} mel bands (shape {tuple(shape)}), the model expects {n_mels}")
    if batch == 0 or frames == 0:
        raise VocoderError(f"empty spectrogram: shape {tuple(shape)} has no {'items' if batch == 0 else 'frames'}")
    if lengths is None:
        item_lengths = (frames,) * batch
    else:
        item_lengths = _whole_numbers(lengths)
        if len(item_lengths) != batch:
            raise VocoderError(f"lengths has {len(item_lengths)} entries for a batch of {batch} items")
        bad = [n for n in item_lengths if not 1 <= n <= frames]
        if bad:
            raise VocoderError(f"lengths must lie in 1…{frames} (the spectrogram's frames), got {bad[0]}")
    spec = spec[:, :, : max(item_lengths)]
    _check_finite(spec, item_lengths, torch_device is not None)
    return Conditioning(spec, item_lengths, torch_device)


def _whole_numbers(lengths: Sequence[int]) -> tuple[int, ...]:
    """Frame counts as ints. Anything that is not an integer (2.7, "3", None) is refused rather
    than rounded: it is a caller's bug, and rounding would vocode the wrong number of frames."""
    try:
        items = list(lengths)
    except TypeError:
        raise VocoderError(f"lengths must be a sequence of frame counts, got {lengths!r}") from None
    out = []
    for n in items:
        try:
            if isinstance(n, bool):
                raise TypeError
            out.append(operator.index(n))  # int, NumPy and torch integers
        except TypeError:
            raise VocoderError(f"lengths must be integers (frames per item), got {n!r}") from None
    return tuple(out)


def _check_finite(spec: Any, lengths: tuple[int, ...], is_torch: bool) -> None:
    for i, n in enumerate(lengths):
        item = spec[i, :, :n]
        finite = item.isfinite() if is_torch else np.isfinite(item)
        if not bool(finite.all()):
            bad = (~finite).nonzero()
            band, frame = (int(bad[0][0]), int(bad[0][1])) if is_torch else (int(bad[0][0]), int(bad[1][0]))
            raise VocoderError(f"spectrogram contains NaN or inf (item {i}, band {band}, frame {frame})")
