"""The reference every speed-up is measured against: lmnt's sampling loop, run the way lmnt runs it.

lmnt-com/diffwave's ``predict`` evaluates the *whole* network at every reverse step (step
embedding and spectrogram upsampler included), in eager PyTorch, and builds fresh tensors
each step (``torch.tensor([T[n]])``, ``torch.randn_like``, out-of-place arithmetic, a new
clamped tensor). Nothing is hoisted, nothing is preallocated. That is the cost a user of the
original package pays, so it is the baseline the issue's "× faster than lmnt" targets mean.

The loop is our own code; the per-step constants come from :class:`runtime.schedule.ReverseSchedule`
(the project's only copy of the schedule math), which reproduces lmnt's values.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from runtime.schedule import ReverseSchedule


def reference_sample(
    model: torch.nn.Module,
    spectrogram: Optional[torch.Tensor],
    schedule: ReverseSchedule,
    *,
    samples: Optional[int] = None,
    batch: int = 1,
    generator: Optional[torch.Generator] = None,
    noise: Optional[np.ndarray] = None,
) -> torch.Tensor:
    """Vocode like lmnt's ``predict``: returns float32 audio [batch, samples] on the model's device.

    ``spectrogram`` [batch, n_mels, frames] (on the model's device) gives ``frames × hop``
    samples per item; unconditional models take ``spectrogram=None`` with ``samples`` and
    ``batch``. ``noise`` [steps, batch, samples] replaces the random draws with the runtime's
    convention (slot 0 the initial x, slot k the noise added after the k-th network call), so
    a test can compare this loop with :class:`runtime.Vocoder` on identical noise.
    """
    device = next(model.parameters()).device
    if spectrogram is not None:
        batch = spectrogram.shape[0]
        samples = spectrogram.shape[-1] * model.config.features.hop_samples
    elif samples is None:
        raise ValueError("an unconditional model needs samples=")
    count = schedule.num_steps

    def draw(slot: int) -> torch.Tensor:
        if noise is not None:
            return torch.as_tensor(np.asarray(noise[slot], dtype=np.float32), device=device)
        return torch.randn(batch, samples, generator=generator, device=device)

    with torch.no_grad():
        audio = draw(0)
        for n in range(count - 1, -1, -1):
            step = torch.tensor([float(schedule.steps[n])], device=device)  # a new tensor every step, as lmnt
            eps = model(audio, step, spectrogram).squeeze(1)  # embedding + upsampler + denoiser, every step
            audio = float(schedule.c1[n]) * (audio - float(schedule.c2[n]) * eps)
            if n > 0:
                audio = audio + float(schedule.sigma[n]) * draw(count - n)
            audio = torch.clamp(audio, -1.0, 1.0)
    return audio
