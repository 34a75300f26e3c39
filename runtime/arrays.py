"""The few array operations the reverse loop needs, on NumPy (CPU) or PyTorch (CUDA).

The loop is written once against the methods :class:`NumpyOps` and :class:`TorchOps` share; a
backend says which flavour its buffers are. Every operation works in place on preallocated buffers, so the step loop allocates no
arrays: the update ``x = clamp(c1·(x − c2·ε) + σ·z, −1, 1)`` is computed as
``ε *= −c2; x += ε; x += z'; x *= c1; clamp`` with z' = (σ/c1)·z scaled once per call.

Noise is a pure function of (seed, slot, length): ``slot`` 0 is the initial x_N, slot k ≥ 1 the
noise added after the k-th network evaluation. Drawing all slots up front or one per step (long
inputs) gives the same numbers, so chunked and whole-signal runs see the same noise.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def _entropy(seed: int, slot: int) -> list[int]:
    return [int(seed), int(slot)]


class NumpyOps:
    """Host buffers; used by ONNX Runtime's CPU provider and the PyTorch CPU backend."""

    kind = "numpy"
    device = "cpu"

    def zeros(self, count: int) -> np.ndarray:
        return np.zeros(count, dtype=np.float32)

    @staticmethod
    def view(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return flat[: int(np.prod(shape))].reshape(shape)

    @staticmethod
    def pointer(array: np.ndarray) -> int:
        return int(array.__array_interface__["data"][0])

    @staticmethod
    def copy(dst: np.ndarray, src: Any) -> None:
        np.copyto(dst, src, casting="same_kind")

    @staticmethod
    def fill(dst: np.ndarray, value: float) -> None:
        dst.fill(value)

    @staticmethod
    def scale(dst: np.ndarray, factor: float) -> None:
        dst *= np.float32(factor)

    @staticmethod
    def update(x: np.ndarray, eps: np.ndarray, c1: float, c2: float, scaled_noise: Optional[np.ndarray]) -> None:
        eps *= np.float32(-c2)
        x += eps
        if scaled_noise is not None:
            x += scaled_noise
        x *= np.float32(c1)
        np.clip(x, -1.0, 1.0, out=x)

    @staticmethod
    def normal(dst: np.ndarray, seed: int, slot: int) -> None:
        """Standard normal float32 into the contiguous 1-D ``dst``, from (seed, slot) alone."""
        np.random.default_rng(_entropy(seed, slot)).standard_normal(out=dst, dtype=np.float32)

    @staticmethod
    def to_host(array: np.ndarray) -> np.ndarray:
        return np.array(array, dtype=np.float32, copy=True)

    @staticmethod
    def all_finite(array: np.ndarray) -> bool:
        return bool(np.isfinite(array).all())

    def synchronize(self) -> None:
        pass


class TorchOps:
    """CUDA buffers (torch tensors) for TensorRT, PyTorch on CUDA and ONNX Runtime's CUDA provider.

    All work is issued on ``stream`` (the backend's non-default stream), the stream TensorRT
    or the model also runs on, so no extra synchronisation is needed between them. On CPU
    (``stream=None``) the same code runs with torch CPU tensors.
    """

    kind = "torch"

    def __init__(self, device: str, stream: Any):
        import torch

        self._torch = torch
        self.device = device
        self.stream = stream

    def zeros(self, count: int):
        return self._torch.zeros(count, dtype=self._torch.float32, device=self.device)

    @staticmethod
    def view(flat, shape: tuple[int, ...]):
        return flat[: int(np.prod(shape))].view(shape)

    @staticmethod
    def pointer(array) -> int:
        return int(array.data_ptr())

    def copy(self, dst, src) -> None:
        if isinstance(src, np.ndarray):
            src = self._torch.from_numpy(np.ascontiguousarray(src, dtype=np.float32))
        dst.copy_(src, non_blocking=False)

    @staticmethod
    def fill(dst, value: float) -> None:
        dst.fill_(value)

    @staticmethod
    def scale(dst, factor: float) -> None:
        dst.mul_(factor)

    @staticmethod
    def update(x, eps, c1: float, c2: float, scaled_noise) -> None:
        x.add_(eps, alpha=-c2)
        if scaled_noise is not None:
            x.add_(scaled_noise)
        x.mul_(c1).clamp_(-1.0, 1.0)

    def normal(self, dst, seed: int, slot: int) -> None:
        state = np.random.SeedSequence(_entropy(seed, slot)).generate_state(1, np.uint64)[0]
        generator = self._torch.Generator(device=self.device)
        generator.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
        dst.normal_(generator=generator)

    @staticmethod
    def to_host(array) -> np.ndarray:
        return array.detach().float().cpu().numpy().copy()

    @staticmethod
    def all_finite(array) -> bool:
        return bool(array.isfinite().all())  # one device-to-host read, after the loop's own sync

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()
