"""Held-out loss: the training objective on fixed crops, fixed noise and fixed noise levels.

The training loss is one small batch at random noise levels, so it jumps by a factor of two
from one step to the next and says little once the first thousand steps are past. This loss
is measured on the same held-out crops, with the same noise, at the same levels every time:
it moves only when the weights do. Split by noise level it also shows *which* part of the
reverse process is learned: the high-noise levels (where the waveform's structure is decided)
are learned first; the low-noise ones, which remove the last hiss, last. An untrained network
(zero output layer) scores E|ε| ≈ 0.80 at every level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from runtime.schedule import cumulative_alphas

from .config import DiffWaveConfig
from .data import CropDataset, CropKey, Record, collate

DEFAULT_CROPS = 16
DEFAULT_LEVELS = 8


def validation_levels(num_steps: int, count: int = DEFAULT_LEVELS) -> tuple[int, ...]:
    """Training steps spread geometrically from 0 to the last (50 steps, 8 levels: 0 1 2 4 8 15 28 49).

    Geometric because the noise standard deviation grows fastest over the first steps, and the
    low-noise end is where an undertrained model differs most.
    """
    return tuple(int(t) for t in np.unique(np.round(np.geomspace(1, num_steps, count)).astype(int) - 1))


@dataclass(frozen=True)
class ValidationResult:
    step: int  #: training step of the weights measured
    levels: tuple[int, ...]
    losses: tuple[float, ...]  #: mean |ε − ε̂| at each level

    @property
    def mean(self) -> float:
        return float(np.mean(self.losses))

    def summary(self) -> str:
        per_level = " ".join(f"t{t}:{v:.3f}" for t, v in zip(self.levels, self.losses))
        return f"held-out loss at step {self.step}: {self.mean:.4f} ({per_level})"


@dataclass(frozen=True)
class ValidationSet:
    """Crops of held-out records and the noise drawn for each of them at each level, fixed once."""

    audio: torch.Tensor  #: [N, samples]
    spectrogram: Optional[torch.Tensor]  #: [N, n_mels, frames], None for an unconditional model
    levels: tuple[int, ...]
    noise: torch.Tensor  #: [levels, N, samples]
    alpha_cum: torch.Tensor  #: [training steps]

    @classmethod
    def build(
        cls, records: Sequence[Record], config: DiffWaveConfig, crops: int = DEFAULT_CROPS, seed: int = 0
    ) -> "ValidationSet":
        """One crop (the training crop length) from each of ``crops`` records spread over the list."""
        if not records:
            raise ValueError("no held-out records to validate on")
        chosen = np.unique(np.linspace(0, len(records) - 1, min(crops, len(records))).round().astype(int))
        dataset = CropDataset(records, config)
        batch = collate([dataset[CropKey(int(i), (seed, int(i)))] for i in chosen])
        levels = validation_levels(len(config.diffusion.noise_schedule))
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn((len(levels),) + tuple(batch.audio.shape), generator=generator)
        alpha_cum = torch.tensor(cumulative_alphas(config.diffusion.noise_schedule), dtype=torch.float32)
        return cls(batch.audio, batch.spectrogram, levels, noise, alpha_cum)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, step: int = 0, batch_size: int = 8) -> ValidationResult:
        """The held-out loss of ``model`` at each level (float32, eval mode; the model is left as found)."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        losses = []
        try:
            for level_index, t in enumerate(self.levels):
                total = 0.0
                for start in range(0, len(self.audio), batch_size):
                    stop = start + batch_size
                    audio, noise = self.audio[start:stop].to(device), self.noise[level_index, start:stop].to(device)
                    spec = None if self.spectrogram is None else self.spectrogram[start:stop].to(device)
                    level = self.alpha_cum[t].to(device)
                    noisy = level.sqrt() * audio + (1.0 - level).sqrt() * noise
                    steps = torch.full((len(audio),), t, dtype=torch.long, device=device)
                    predicted = model(noisy, steps, spec).squeeze(1).float()
                    total += float(F.l1_loss(predicted, noise, reduction="sum"))
                losses.append(total / self.audio.numel())
        finally:
            model.train(was_training)
        return ValidationResult(step, self.levels, tuple(losses))
