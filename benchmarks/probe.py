"""What the probes in this folder share: the model they time, its inputs, and a 6-step call.

Speed does not depend on the weights, so without a checkpoint every probe times the same
random-weight base model (seed 0, scale 0.05: non-zero everywhere, output layer included,
so parity checks between variants compare real numbers). A probe's call is the runtime's
loop minus the noise draws: the network once per step plus the update, the same work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from diffwave.checkpoint import load_model
from diffwave.config import DiffWaveConfig
from diffwave.model import DiffWave
from export.step_graph import export_step_onnx
from runtime.bundle import BundleMetadata
from runtime.schedule import ReverseSchedule


def probe_model(checkpoint: Optional[Path] = None) -> DiffWave:
    """The checkpoint's model, or the random-weight base model, in eval mode."""
    if checkpoint:
        return load_model(checkpoint).eval()
    model = DiffWave(DiffWaveConfig())
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def export_random_base(folder: Path) -> Path:
    """The random-weight base model as an ONNX bundle (model.onnx + model.json) in ``folder``."""
    model = probe_model()
    path = export_step_onnx(model, folder / "model.onnx")
    meta = replace(model.config.bundle_metadata(), onnx={"fp32": path.name},
                   onnx_sha256={path.name: hashlib.sha256(path.read_bytes()).hexdigest()})
    meta.write(folder)
    return path


@dataclass(frozen=True)
class ProbeInputs:
    """Seeded inputs of one call: spectrogram [1, n_mels, frames], start noise [1, samples]."""

    schedule: ReverseSchedule
    mel: np.ndarray
    x0: np.ndarray

    @classmethod
    def create(cls, meta: BundleMetadata, seconds: float) -> "ProbeInputs":
        schedule = ReverseSchedule.create(meta.noise_schedule, meta.inference_schedules["fast"])
        frames = round(seconds * meta.sample_rate / meta.hop_samples)
        rng = np.random.default_rng(0)
        mel = rng.uniform(0, 1, (1, meta.n_mels, frames)).astype(np.float32)
        x0 = rng.standard_normal((1, frames * meta.hop_samples)).astype(np.float32)
        return cls(schedule, mel, x0)

    def call(self, eps_of: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
        """The reverse loop with ``eps_of(x, n)`` as the network at step index n, noise-free."""
        sched, x = self.schedule, self.x0.copy()
        for n in range(sched.num_steps - 1, -1, -1):
            eps = eps_of(x, n).reshape(x.shape)
            x = np.clip(sched.c1[n] * (x - sched.c2[n] * eps), -1, 1).astype(np.float32)
        return x

    def step_feeds(self, x: np.ndarray, n: int) -> dict[str, np.ndarray]:
        """Inputs of ``model.onnx`` at step index n."""
        return {"audio": x, "diffusion_step": np.array([self.schedule.steps[n]], np.float32), "spectrogram": self.mel}
