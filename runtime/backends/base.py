"""The small interface every backend implements: bind one shape to fixed buffers, run one step.

The reverse loop (:mod:`runtime.loop`) owns the sampling math and the per-call state; a
backend only evaluates the network. For each exact call shape (rows × samples) the loop asks
for a :class:`Session` once, writes the spectrogram into ``session.spectrogram`` and calls
:meth:`Session.condition` once per call (backends hoist step-independent work there, e.g. the
upsampler), :meth:`Session.set_steps` once per call, then per step writes x into
``session.audio``, calls :meth:`Session.run` and reads ``session.eps``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..buffers import BufferPool
from ..bundle import BundleMetadata

#: The ONNX step graph's I/O names (DESIGN.md, "ONNX step graph"); runtime restates the contract.
AUDIO, STEP, SPECTROGRAM, EPS = "audio", "diffusion_step", "spectrogram", "eps"

#: Sessions kept per backend; a TTS service sees a handful of shapes (a session is cheap to rebuild).
MAX_SESSIONS = 32


@dataclass(frozen=True)
class Limits:
    """Shapes one network call accepts (an engine's optimisation profile; unlimited elsewhere)."""

    min_batch: int = 1
    max_batch: Optional[int] = None
    min_samples: int = 1
    max_samples: Optional[int] = None


class Session(ABC):
    """A network bound to one exact shape and to buffers that never move."""

    def __init__(self, rows: int, samples: int, audio: Any, spectrogram: Any, eps: Any):
        self.rows = rows
        self.samples = samples
        self.audio = audio  #: [rows, samples], x at the current step (written by the loop)
        self.spectrogram = spectrogram  #: [rows, n_mels, frames], or None for unconditional models
        self.eps = eps  #: [rows, samples], the network's output after :meth:`run`

    def condition(self) -> None:
        """The spectrogram buffer holds new content: recompute anything derived from it."""

    @abstractmethod
    def set_steps(self, steps: np.ndarray) -> None:
        """The continuous training-step value of every inference step of the coming call."""

    @abstractmethod
    def run(self, index: int) -> None:
        """eps ← network(audio, steps[index], spectrogram)."""


class Backend(ABC):
    """One loaded model: metadata, buffer flavour (``ops``), limits and a cache of sessions."""

    name: str = "backend"
    #: True where the whole loop may be captured in a CUDA graph (fixed addresses, one stream).
    supports_cuda_graphs: bool = False

    def __init__(self, metadata: BundleMetadata, ops: Any, limits: Limits = Limits()):
        self.metadata = metadata
        self.ops = ops
        self.limits = limits
        self.pool = BufferPool(ops)
        self._sessions: "OrderedDict[tuple[int, int, int], Session]" = OrderedDict()

    @property
    def device(self) -> str:
        return self.ops.device

    @property
    def stream(self) -> Any:
        """The CUDA stream the loop must run on, or None on CPU."""
        return getattr(self.ops, "stream", None)

    def session(self, slot: int, rows: int, samples: int) -> Session:
        """The session for this exact shape; ``slot`` keeps sessions used together in one call apart."""
        key = (slot, rows, samples)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._create_session(slot, rows, samples)
            if len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(key)
        return session

    def io_buffers(self, slot: int, rows: int, samples: int) -> tuple[Any, Any, Any]:
        """audio, spectrogram (or None) and eps views from the pool for one session."""
        hop = self.metadata.hop_samples
        audio = self.pool.get(("audio", slot), (rows, samples))
        eps = self.pool.get(("eps", slot), (rows, samples))
        spectrogram = None
        if not self.metadata.unconditional:
            spectrogram = self.pool.get(("spectrogram", slot), (rows, self.metadata.n_mels, samples // hop))
        return audio, spectrogram, eps

    @abstractmethod
    def _create_session(self, slot: int, rows: int, samples: int) -> Session:
        ...

    def capturable(self) -> bool:
        """Whether the loop may be captured in a CUDA graph right now (backends may veto)."""
        return self.supports_cuda_graphs

    def after_call(self) -> None:
        """Hook run after every vocoder call (TensorRT-RTX saves its runtime cache here)."""

    def close(self) -> None:
        """Release sessions and buffers; the backend is not used again."""
        self._sessions.clear()
        self.pool.clear()

    def describe(self) -> str:
        return f"{self.name} on {self.device}"
