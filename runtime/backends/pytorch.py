"""PyTorch backend: a DiffWave module (from a checkpoint or handed over), on CPU or CUDA.

Where the module offers them (``embed_steps``, ``upsample``, ``denoise``), the step-independent
parts run once per call: the step embeddings of the whole schedule in :meth:`set_steps`, the
spectrogram upsampler in :meth:`condition`; each step then runs only ``denoise``. Any other
module is called as ``module(audio, diffusion_step, spectrogram)`` every step.

On CPU the loop's buffers are NumPy arrays and the module reads and writes them through
zero-copy ``torch.from_numpy`` views. On CUDA they are torch tensors on the backend's stream,
and the embeddings and conditioner are copied into fixed buffers so the loop can be captured
in a CUDA graph.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..arrays import NumpyOps, TorchOps
from ..bundle import BundleMetadata
from ..errors import DeviceUnsupported, VocoderError
from .base import Backend, Session


class TorchSession(Session):
    def __init__(self, backend: "TorchBackend", slot: int, rows: int, samples: int):
        import torch

        audio, spectrogram, eps = backend.io_buffers(slot, rows, samples)
        super().__init__(rows, samples, audio, spectrogram, eps)
        self._torch = torch
        self._backend = backend
        self._slot = slot
        as_tensor = torch.from_numpy if backend.ops.kind == "numpy" else (lambda t: t)
        self._audio_t = as_tensor(audio)
        self._eps_t = as_tensor(eps)
        self._spec_t = None if spectrogram is None else as_tensor(spectrogram)
        self._cond: Optional[Any] = None
        self._embeddings: Optional[Any] = None
        self._steps_t: Optional[Any] = None

    def condition(self) -> None:
        backend = self._backend
        if self._spec_t is None or not backend.hoisted:
            return
        with self._torch.inference_mode():
            cond = backend.module.upsample(self._spec_t)
            if backend.ops.kind == "torch":  # a fixed address for CUDA graphs
                if self._cond is None or self._cond.shape != cond.shape:
                    self._cond = backend.pool.get(("conditioner", self._slot), tuple(cond.shape))
                self._cond.copy_(cond)
            else:
                self._cond = cond

    def set_steps(self, steps: np.ndarray) -> None:
        torch, backend = self._torch, self._backend
        values = torch.tensor(np.asarray(steps, dtype=np.float32), device=backend.device)
        with torch.inference_mode():
            if backend.hoisted:
                embeddings = backend.module.embed_steps(values)
                if backend.ops.kind == "torch":
                    fixed = backend.pool.get(("embeddings", len(steps)), tuple(embeddings.shape))
                    fixed.copy_(embeddings)
                    embeddings = fixed
                self._embeddings = embeddings
            else:
                if backend.ops.kind == "torch":
                    fixed = backend.pool.get(("steps", len(steps)), (len(steps),))
                    fixed.copy_(values)
                    values = fixed
                self._steps_t = values

    def run(self, index: int) -> None:
        module = self._backend.module
        with self._torch.inference_mode():
            if self._backend.hoisted:
                out = module.denoise(self._audio_t, self._embeddings[index : index + 1], self._cond)
            else:
                out = module(self._audio_t, self._steps_t[index : index + 1], self._spec_t)
            self._eps_t.copy_(out.reshape(self.rows, self.samples))


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, module: Any, metadata: BundleMetadata, device: str = "auto", torch_buffers: Optional[bool] = None):
        """``torch_buffers``: keep the loop's buffers as torch tensors (default: on CUDA only).

        On CPU the default is NumPy buffers shared with the module through ``torch.from_numpy``;
        ``torch_buffers=True`` runs the loop's math in torch instead, the code path CUDA uses.
        """
        import torch

        device = _resolve_device(device, torch)
        if device == "cuda":
            ops: Any = TorchOps("cuda", torch.cuda.Stream())
        elif torch_buffers:
            ops = TorchOps("cpu", None)
        else:
            ops = NumpyOps()
        super().__init__(metadata, ops)
        self.module = module.to(device).eval()
        self.hoisted = all(hasattr(module, name) for name in ("embed_steps", "upsample", "denoise"))
        self.supports_cuda_graphs = device == "cuda"

    def _create_session(self, slot: int, rows: int, samples: int) -> Session:
        return TorchSession(self, slot, rows, samples)

    def describe(self) -> str:
        return f"pytorch ({self.device}{', hoisted' if self.hoisted else ''})"


def _resolve_device(device: str, torch: Any) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnsupported("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise VocoderError(f"unknown device {device!r} (auto, cpu or cuda)")
    return device
