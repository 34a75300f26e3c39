"""Bundles for the runtime tests: real ONNX step graphs and checkpoints of tiny random models.

The full ``diffwave export`` is another issue; these fixtures write exactly what the runtime
reads (model.onnx + model.json with the config's bundle metadata) and nothing more.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from diffwave.checkpoint import Checkpoint, save_checkpoint
from diffwave.model import DiffWave
from export.step_graph import export_step_onnx
from runtime.bundle import BundleMetadata


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_onnx_bundle(folder: Path, model: DiffWave) -> Path:
    """``folder/model.onnx`` + ``folder/model.json`` for ``model``; returns the ONNX path."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = export_step_onnx(model, folder / "model.onnx")
    metadata = replace(
        model.config.bundle_metadata(), onnx={"fp32": onnx_path.name}, onnx_sha256={onnx_path.name: sha256(onnx_path)}
    )
    metadata.write(folder)
    return onnx_path


def bundle_metadata(model: DiffWave) -> BundleMetadata:
    return model.config.bundle_metadata()


def save_model_dir(folder: Path, model: DiffWave) -> Path:
    """A training-style model directory (weights-1.pt + weights.pt) holding ``model``."""
    save_checkpoint(folder, Checkpoint(step=1, model=model.state_dict(), params=model.config.to_params()))
    return folder


def random_mel(n_mels: int, frames: int, batch: int | None = None, seed: int = 0) -> np.ndarray:
    """Spectrogram-like values in [0, 1] (the lmnt feature range)."""
    shape = (n_mels, frames) if batch is None else (batch, n_mels, frames)
    return np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def rel_err(a, b) -> float:
    """max |a − b| / max |b|: stricter than a norm ratio, every sample counts."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
