"""Preallocated buffers, one per name and shape bucket, reused across calls.

A buffer is a flat array whose capacity is the requested shape with its last (time) axis
rounded up to a power of two; callers get a contiguous view of the exact shape at its start.
So a 4.1 s and a 4.3 s call share memory, addresses stay fixed for as long as the pool lives
(CUDA graphs and ONNX Runtime bindings rely on that) and memory grows by at most a factor two
over the largest request. Buffers are never freed or moved while the pool lives.
"""

from __future__ import annotations

from typing import Any, Hashable

MIN_BUCKET = 256


def bucket(length: int, minimum: int = MIN_BUCKET) -> int:
    """The power of two ≥ ``length`` (and ≥ ``minimum``)."""
    size = minimum
    while size < length:
        size *= 2
    return size


class BufferPool:
    """Named float32 buffers on one device, allocated through an :mod:`runtime.arrays` ops object."""

    def __init__(self, ops: Any):
        self.ops = ops
        self._flat: dict[Hashable, Any] = {}

    def get(self, name: Hashable, shape: tuple[int, ...]) -> Any:
        shape = tuple(int(d) for d in shape)
        key = (name, shape[:-1], bucket(shape[-1]))
        flat = self._flat.get(key)
        if flat is None:
            capacity = key[2]
            for d in shape[:-1]:
                capacity *= d
            flat = self._flat[key] = self.ops.zeros(capacity)
        return self.ops.view(flat, shape)

    @property
    def nbytes(self) -> int:
        return sum(4 * int(f.shape[0]) for f in self._flat.values())
