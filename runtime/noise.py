"""Per-item seeds and the noise of one call: drawn once, or one step at a time for very long inputs.

Item i of a call with ``seed=s`` uses seed s + i, and its noise depends only on (seed, slot,
length) (:mod:`runtime.arrays`). So vocoding items one by one with seeds s, s+1, … gives the same
audio as one batch with ``seed=s``, and a long input chunked into windows sees the same noise as
the whole signal would.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .errors import VocoderError
from .inputs import torch_tensor_type

#: Above this many bytes of noise per call ([steps, batch, samples] float32), noise is drawn one step
#: at a time into a [batch, samples] buffer (same values), so long inputs stay in bounded memory.
NOISE_BUDGET_BYTES = 64 << 20


def item_seeds(seed: Optional[int | Sequence[int]], batch: int) -> tuple[int, ...]:
    """One non-negative seed per item: ``s`` → s, s+1, …; a sequence as given; None → fresh entropy."""
    if seed is None:
        base = int(np.random.SeedSequence().entropy % (1 << 62))
        return tuple(base + i for i in range(batch))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seeds = tuple(int(seed) + i for i in range(batch))
    else:
        try:
            if isinstance(seed, (str, bytes)):
                raise TypeError
            seeds = tuple(int(s) for s in seed)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise VocoderError(f"seed must be an int, a sequence of ints (one per item) or None, got {seed!r}") from None
        if len(seeds) != batch:
            raise VocoderError(f"seed has {len(seeds)} values for a batch of {batch} items")
    if any(s < 0 for s in seeds):
        raise VocoderError("seeds must be non-negative integers")
    return seeds


def check_injected_noise(noise: Any, steps: int, batch: int, samples: int) -> np.ndarray:
    """Explicit noise [steps, batch, samples]: slot 0 is the initial x, slot k the k-th step's noise."""
    tensor_type = torch_tensor_type()  # torch only when the caller already uses it
    if tensor_type is not None and isinstance(noise, tensor_type):
        noise = noise.detach().cpu().numpy()
    noise = np.asarray(noise, dtype=np.float32)
    if noise.shape != (steps, batch, samples):
        raise VocoderError(f"noise must have shape [steps, batch, samples] = {(steps, batch, samples)}, got {noise.shape}")
    if not np.all(np.isfinite(noise)):
        raise VocoderError("noise contains NaN or inf")
    return noise
