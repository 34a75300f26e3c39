"""Spectrogram images of one recording beside every system's copy-synthesis of it.

Numbers hide DiffWave's typical failure: broadband hiss where the recording is silent,
and smeared harmonics when the model is undertrained. One picture per file, one panel
per system on a shared dB colour scale, shows both at a glance. Needs matplotlib (the
``[plot]`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from runtime.bundle import FeatureSpec, atomic_output

#: dB below the loudest bin of the recording where the colour scale ends: enough to show
#: hiss at -60 dB in pauses without letting digital silence dominate the picture.
DYNAMIC_RANGE_DB = 80.0


def log_magnitude_db(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """|STFT| in dB, [freq bins, frames], with the features' own window and hop."""
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1))
    stft = torch.stft(
        x,
        n_fft=spec.n_fft,
        hop_length=spec.hop_samples,
        win_length=spec.win_length,
        window=torch.hann_window(spec.win_length),
        return_complex=True,
    )
    return (20.0 * torch.log10(stft.abs().clamp_min(1e-8))).numpy()


def write_spectrogram_figure(
    path: str | os.PathLike, outputs: Mapping[str, np.ndarray], spec: FeatureSpec, title: str = ""
) -> Path:
    """One PNG with a panel per system (in the mapping's order), all on the first one's scale.

    The first entry is taken as the reference (the original recording) and sets the top of
    the colour scale, so a system that adds energy shows up brighter, not rescaled away.
    Written to a temporary name and renamed: a crash never leaves half a PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not outputs:
        raise ValueError("no audio to draw")
    images = {name: log_magnitude_db(audio, spec) for name, audio in outputs.items()}
    top = float(next(iter(images.values())).max())
    seconds = len(next(iter(outputs.values()))) / spec.sample_rate
    extent = (0.0, seconds, 0.0, spec.sample_rate / 2000.0)
    fig, axes = plt.subplots(len(images), 1, figsize=(9, 2.2 * len(images)), sharex=True, squeeze=False)
    for ax, (name, image) in zip(axes[:, 0], images.items()):
        shown = ax.imshow(
            image, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=top - DYNAMIC_RANGE_DB, vmax=top
        )
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(shown, ax=axes[:, 0].tolist(), label="dB", fraction=0.03, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, Path(path))


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
