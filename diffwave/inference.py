"""lmnt's ``diffwave.inference`` API, kept for scripts written against the original package.

    from diffwave.inference import predict as diffwave_predict
    audio, sample_rate = diffwave_predict(spectrogram, model_dir)                    # full schedule
    audio, sample_rate = diffwave_predict(spectrogram, model_dir, fast_sampling=True)  # six steps

This is an adapter, not a second sampler: the checkpoint is opened with ``runtime.Vocoder.load``
(the PyTorch backend, exactly what ``diffwave vocode --checkpoint`` uses), so ``predict`` and
the command give the same audio for the same seed. What differs from lmnt, on purpose:

* the network is rebuilt from the checkpoint's own ``params`` (lmnt always built its default
  30 × 64 model), so any checkpoint of ours or lmnt's loads;
* the device defaults to CUDA when PyTorch sees one, else the CPU (lmnt required CUDA);
* ``params`` applies to that call only (lmnt's override stuck to the cached model), and only
  its sampling keys take effect: the ones that define the trained network are the checkpoint's;
* ``seed=`` makes a call reproducible; without it the noise still follows ``torch.manual_seed``.

``python -m diffwave.inference`` (lmnt's command line) is in :mod:`diffwave.compat`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import torch

from runtime import DeviceUnsupported, Vocoder

from .checkpoint import resolve_checkpoint_path
from .config import DiffWaveConfig, network_param_keys

#: ``params`` keys that change how a loaded model is sampled (lmnt's ``predict`` reads these).
SAMPLING_KEYS = ("inference_noise_schedule", "audio_len")


@dataclass
class LoadedModel:
    """A cached checkpoint: the vocoder serving it and the configuration stored in it."""

    source: Path  #: the checkpoint file that was read (a model directory's weights.pt, resolved)
    stamp: tuple[int, int]  #: (mtime_ns, size) of that file when it was read: a new save reloads
    vocoder: Vocoder
    config: DiffWaveConfig
    device: torch.device
    #: A Vocoder reuses its buffers, so it serves one call at a time; predict() may be called from threads.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_models: dict[tuple[str, str], LoadedModel] = {}
_models_lock = threading.Lock()


def resolve_device(device: Any = None) -> torch.device:
    """``None`` → CUDA when PyTorch sees a GPU, else the CPU; otherwise a cpu/cuda device as given."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r}: {exc}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: predict runs on 'cpu' or 'cuda'")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnsupported(f"device {device!r}: no CUDA GPU is visible to PyTorch; pass device='cpu' or leave it out")
        if resolved.index is None:  # one cache entry for "cuda" and "cuda:<current>"
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def load(model_dir: str | os.PathLike, device: Any = None) -> LoadedModel:
    """The cached model for ``model_dir`` (a directory with weights.pt, or a checkpoint file) on ``device``.

    One load per path and device; a checkpoint rewritten since (e.g. training went on and
    ``weights.pt`` now points at a newer step) is loaded again.
    """
    dev = resolve_device(device)
    source = Path(os.path.realpath(resolve_checkpoint_path(model_dir)))
    stat = source.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    key = (os.path.abspath(os.fspath(model_dir)), str(dev))
    with _models_lock:
        cached = _models.get(key)
        if cached is not None and cached.source == source and cached.stamp == stamp:
            return cached
        with _on(dev):
            vocoder = Vocoder.load(source, device=dev.type)
        config = DiffWaveConfig.from_params(vocoder.metadata.params, strict=False)
        loaded = _models[key] = LoadedModel(source, stamp, vocoder, config, dev)
        return loaded


def clear_cache() -> None:
    """Forget every loaded model (frees their memory; the next predict() loads again)."""
    with _models_lock:
        for model in _models.values():
            model.vocoder.close()
        _models.clear()


def predict(
    spectrogram: Any = None,
    model_dir: Optional[str | os.PathLike] = None,
    params: Any = None,
    device: Any = None,
    fast_sampling: bool = False,
    *,
    seed: Optional[int] = None,
) -> tuple[torch.Tensor, int]:
    """Vocode ``spectrogram`` ([n_mels, frames] or [batch, n_mels, frames], torch or NumPy) with lmnt's sampler.

    Returns ``(audio, sample_rate)``: float32 audio [batch, frames × hop] on the model's device.
    Unconditional models take ``spectrogram=None`` and return [1, audio_len] samples.
    ``fast_sampling``: the six-step ``inference_noise_schedule`` instead of the training schedule.
    ``params``: a dict (or a list of dicts, as lmnt's ``override``) of lmnt keys; ``inference_noise_schedule``
    and ``audio_len`` apply to this call; keys of the trained network (layers, features, the training
    ``noise_schedule``) are the checkpoint's and a differing value is ignored with a warning, so lmnt's
    habit of passing its whole default ``params`` is harmless. ``seed``: item i uses seed + i, as
    ``diffwave vocode --seed``; None draws one from torch's global generator.
    """
    if model_dir is None:
        raise TypeError("predict() needs model_dir: a model directory (with weights.pt) or a checkpoint file")
    model = load(model_dir, device)
    config = _with_sampling_params(model.config, params)
    diffusion = config.diffusion
    betas = list(diffusion.inference_noise_schedule if fast_sampling else diffusion.noise_schedule)
    if seed is None:
        seed = int(torch.randint(0, 1 << 62, (1,)).item())
    vocoder = model.vocoder
    with model.lock, _on(model.device):
        if vocoder.unconditional:
            if spectrogram is not None:
                raise ValueError(f"{model.source}: this model is unconditional: call predict(None, model_dir)")
            samples = config.train.audio_len
            clips = vocoder.generate(samples / vocoder.sample_rate, batch=1, steps=betas, seed=seed)
            audio = torch.from_numpy(clips).to(model.device)
        else:
            if spectrogram is None:
                raise ValueError(f"{model.source}: this model is conditional: predict() needs a spectrogram")
            audio = vocoder(torch.as_tensor(spectrogram).to(model.device), steps=betas, seed=seed)
    return audio, vocoder.sample_rate


# -- params: lmnt's override, reduced to what can change for a trained network ------------

def _merged(params: Any) -> dict[str, Any]:
    """lmnt's ``AttrDict.override`` accepted a dict, or a list/tuple/set of them applied in order."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, (list, tuple, set)):
        merged: dict[str, Any] = {}
        for item in params:
            merged.update(_merged(item))
        return merged
    raise TypeError(f"params must be a dict of lmnt parameter names (or a list of them), got {type(params).__name__}")


def _with_sampling_params(config: DiffWaveConfig, params: Any) -> DiffWaveConfig:
    given = _merged(params)
    if not given:
        return config
    current = config.to_params()
    conflicting = sorted(k for k in given.keys() & network_param_keys() if not _same(given[k], current.get(k)))
    unknown = sorted(k for k in given if k not in current)
    if conflicting:
        detail = ", ".join(f"{k}={current.get(k)!r}" if k != "noise_schedule" else k for k in conflicting[:4])
        warnings.warn(
            f"predict(): params {', '.join(conflicting)} ignored: the checkpoint's network was trained with its own ({detail})",
            stacklevel=3,
        )
    if unknown:
        warnings.warn(f"predict(): unknown params key(s) {', '.join(unknown)} ignored", stacklevel=3)
    overrides = {k: given[k] for k in SAMPLING_KEYS if k in given}
    if "inference_noise_schedule" in overrides:
        overrides["inference_noise_schedule"] = np.asarray(overrides["inference_noise_schedule"], dtype=np.float64).reshape(-1).tolist()
    if "audio_len" in overrides:
        overrides["audio_len"] = int(overrides["audio_len"])
    return config.override(overrides) if overrides else config


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        try:
            return bool(np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))
        except (TypeError, ValueError):
            return False
    return a == b


@contextlib.contextmanager
def _on(device: torch.device) -> Iterator[None]:
    """Make ``cuda:N`` the current device while loading and sampling (the runtime uses the current one)."""
    if device.type == "cuda":
        with torch.cuda.device(device.index):
            yield
    else:
        yield


if __name__ == "__main__":  # lmnt's `python -m diffwave.inference MODEL [SPECTROGRAM] -o out.wav [--fast]`
    from diffwave.compat import inference_main

    inference_main()
