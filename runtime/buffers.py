"""Preallocated buffers, one per name and size bucket, reused across calls.

A buffer is a flat array whose capacity is the requested element count rounded up to a power of
two; callers get a contiguous view of the exact shape at its start. The bucket depends on the
element count alone, not on the shape, so a 4.1 s and a 4.3 s call share memory, and so do a batch
of four short items and one long one. Memory for a name is then at most the sum of the power-of-two
buckets up to its largest request: under four times that request, however many different shapes a
service sends (keying on the shape would keep one buffer per batch size and length).

Addresses stay fixed for as long as the pool lives (CUDA graphs and ONNX Runtime bindings rely on
that): a buffer is never moved or freed until :meth:`BufferPool.clear`. Two sessions of one name
may share a buffer, which is safe because a vocoder runs one call at a time and every call
rewrites its buffers before it reads them.
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
        count = 1
        for d in shape:
            count *= d
        key = (name, bucket(count))
        flat = self._flat.get(key)
        if flat is None:
            flat = self._flat[key] = self.ops.zeros(key[1])
        return self.ops.view(flat, shape)

    def clear(self) -> None:
        """Drop every buffer (sessions bound to them must be gone first)."""
        self._flat.clear()

    @property
    def nbytes(self) -> int:
        return sum(4 * int(f.shape[0]) for f in self._flat.values())
