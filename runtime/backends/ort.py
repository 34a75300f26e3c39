"""ONNX Runtime backend: the step graph through IOBinding on preallocated buffers.

On the CPU provider the binding points at NumPy buffers and ONNX Runtime reads x and writes ε
in place, so a step moves no data through Python. With onnxruntime-gpu and a CUDA GPU the same
binding points at torch CUDA buffers, and ONNX Runtime runs on the loop's own stream
(``user_compute_stream``). ONNX Runtime's CUDA provider is supported, not fast (DESIGN.md, GPU
facts): TensorRT is the GPU fast path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import NumpyOps, TorchOps
from ..bundle import BundleMetadata
from ..errors import DeviceUnsupported, VocoderError, first_line
from .base import AUDIO, EPS, SPECTROGRAM, STEP, Backend, Session


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_onnx_in_bundle(path: Path, metadata: BundleMetadata) -> None:
    """The ONNX file must be the one ``model.json`` describes (by name and, where recorded, hash)."""
    if not path.is_file():
        raise VocoderError(f"{path}: missing from its bundle (re-export it)")
    listed = set(metadata.onnx.values())
    if listed and path.name not in listed:
        raise VocoderError(
            f"{path}: model.json does not describe this file (it lists {', '.join(sorted(listed))})"
        )
    expected = metadata.onnx_sha256.get(path.name)
    if expected and sha256_of(path) != expected:
        raise VocoderError(f"{path}: contents differ from the sha256 recorded in model.json (a stale or edited file)")


class OrtSession(Session):
    def __init__(self, backend: "OnnxRuntimeBackend", slot: int, rows: int, samples: int):
        audio, spectrogram, eps = backend.io_buffers(slot, rows, samples)
        super().__init__(rows, samples, audio, spectrogram, eps)
        self._backend = backend
        # The step value stays in host memory on every provider: it feeds the step embedding's
        # Floor/Gather, which ONNX Runtime places on the CPU anyway.
        self._step = np.zeros(1, dtype=np.float32)
        self._steps = np.zeros(0, dtype=np.float32)
        self._binding = backend.session_object.io_binding()
        device = backend.device_type
        for name, array in ((AUDIO, audio), (SPECTROGRAM, spectrogram)):
            if array is not None:
                self._bind(self._binding.bind_input, name, array, device)
        self._bind(self._binding.bind_input, STEP, self._step, "cpu")
        self._bind(self._binding.bind_output, EPS, eps, device)

    def _bind(self, bind: Any, name: str, array: Any, device: str) -> None:
        pointer = NumpyOps.pointer(array) if isinstance(array, np.ndarray) else self._backend.ops.pointer(array)
        bind(name, device, self._backend.device_id, np.float32, tuple(array.shape), pointer)

    def set_steps(self, steps: np.ndarray) -> None:
        self._steps = np.asarray(steps, dtype=np.float32)

    def run(self, index: int) -> None:
        self._step[0] = self._steps[index]
        try:
            self._backend.session_object.run_with_iobinding(self._binding)
        except Exception as exc:  # onnxruntime's own Fail/RuntimeException types
            first = first_line(exc)
            raise VocoderError(f"{self._backend.path}: ONNX Runtime failed on a step of shape {self.rows}x{self.samples} ({first})") from None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self, path: str | Path, metadata: BundleMetadata, device: str = "auto", threads: int | None = None, spinning: bool = False
    ):
        """``threads``: intra-op threads (None: ONNX Runtime's default, one per physical core).
        ``spinning``: let idle worker threads spin-wait between operators (ONNX Runtime's default).
        Off here: a step is ~500 operators, and on a machine whose cores are shared the spinning
        threads take CPU time from the ones doing the work (measured with ``diffwave bench``, rows
        ``onnxruntime-cpu`` vs ``onnxruntime-cpu-spinning``: see benchmarks/README.md).
        """
        import onnxruntime as ort

        path = Path(path)
        check_onnx_in_bundle(path, metadata)
        self.on_cuda = _want_cuda(device, ort)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The memory-pattern planner allocates a second full block on a shape's second run while
        # the arena keeps the first: peak memory doubles (measured 1.2 -> 2.3 GB, base model at 256
        # frames) for no speed gain on this graph.
        options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
        self.threads = threads  #: intra-op threads asked for (None: ONNX Runtime's default, one per core)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if self.on_cuda:
            import torch

            stream = torch.cuda.Stream()
            ops: Any = TorchOps("cuda", stream)
            providers: list[Any] = [
                ("CUDAExecutionProvider", {"device_id": 0, "user_compute_stream": str(stream.cuda_stream)}),
                "CPUExecutionProvider",
            ]
            self.device_type, self.device_id = "cuda", 0
        else:
            ops = NumpyOps()
            providers = ["CPUExecutionProvider"]
            self.device_type, self.device_id = "cpu", 0
        super().__init__(metadata, ops)
        try:
            self.session_object = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = first_line(exc)
            raise VocoderError(f"{path}: ONNX Runtime cannot load this graph ({first})") from None
        self.path = path
        self._check_io()

    def _check_io(self) -> None:
        inputs = {i.name: i for i in self.session_object.get_inputs()}
        outputs = [o.name for o in self.session_object.get_outputs()]
        expected = {AUDIO, STEP} | (set() if self.metadata.unconditional else {SPECTROGRAM})
        if set(inputs) != expected or outputs != [EPS]:
            raise VocoderError(
                f"{self.path}: graph I/O {sorted(inputs)} -> {outputs} does not match the step-graph contract "
                f"{sorted(expected)} -> ['{EPS}'] for this {'un' if self.metadata.unconditional else ''}conditional model.json"
            )
        for name, node in inputs.items():
            if node.type != "tensor(float)":
                raise VocoderError(f"{self.path}: input {name!r} is {node.type}, expected tensor(float) graph I/O")
        if SPECTROGRAM in inputs:
            bands = inputs[SPECTROGRAM].shape[1]
            if isinstance(bands, int) and bands != self.metadata.n_mels:
                raise VocoderError(
                    f"{self.path}: graph expects {bands} mel bands but model.json says n_mels={self.metadata.n_mels}"
                )

    def _create_session(self, slot: int, rows: int, samples: int) -> Session:
        return OrtSession(self, slot, rows, samples)

    def close(self) -> None:
        super().close()
        self.session_object = None  # ONNX Runtime frees its arena and weights with the session

    def describe(self) -> str:
        threads = "" if self.on_cuda else f", {self.threads or 'default'} thread{'' if self.threads == 1 else 's'}"
        return f"onnxruntime ({'CUDA' if self.on_cuda else 'CPU'}{threads}) {self.path.name}"


def _want_cuda(device: str, ort: Any) -> bool:
    has_provider = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cpu":
        return False
    has_gpu = False
    if has_provider:
        try:
            import torch

            has_gpu = torch.cuda.is_available()
        except ImportError:
            has_gpu = False
    if device == "cuda" and not (has_provider and has_gpu):
        why = "onnxruntime-gpu is not installed" if not has_provider else "no CUDA GPU is visible to PyTorch"
        raise DeviceUnsupported(f"--device cuda for ONNX Runtime: {why}; use --device cpu")
    if device not in ("auto", "cuda"):
        raise VocoderError(f"unknown device {device!r} (auto, cpu or cuda)")
    return has_provider and has_gpu
