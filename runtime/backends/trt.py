"""TensorRT backend: one implementation for data-centre TensorRT and TensorRT for RTX.

It takes the module object of a :class:`~runtime.trt_target.TrtTarget` (``tensorrt`` or
``tensorrt_rtx``) and uses only the name-based API both share (DESIGN.md, "TensorRT facts"):
``set_input_shape`` (checked), ``infer_shapes`` (must name nothing), ``set_tensor_address`` and
``execute_async_v3`` on the backend's own non-default CUDA stream, with torch CUDA tensors as
the bound buffers. The loop around it may be captured in a CUDA graph (runtime.loop).

Before touching plan bytes it checks the plan's ``model.json`` entry against this machine:
library version, precision and source graph, and the GPU's compute capability, so every
refusal is one line naming what differs instead of a deserialisation crash. TensorRT-RTX
compiles kernels just in time on first use of a shape; its runtime cache is kept beside the
plan (``<plan>.runtime-cache``) so a second process skips that work.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import numpy as np

from ..arrays import TorchOps
from ..bundle import BundleMetadata, PlanInfo, write_bytes_atomic
from ..errors import DeviceUnsupported, VocoderError
from ..trt_target import TrtTarget, target_for_plan
from .base import AUDIO, EPS, SPECTROGRAM, STEP, Backend, Limits, Session

PRECISIONS = ("fp32", "fp16")
RUNTIME_CACHE_SUFFIX = ".runtime-cache"


@dataclass(frozen=True)
class GpuInfo:
    name: str
    capability: str  #: "major.minor", e.g. "9.0"


def probe_gpu() -> GpuInfo:
    """The current CUDA device, or :class:`DeviceUnsupported` saying why there is none usable."""
    try:
        import torch
    except ImportError:
        raise DeviceUnsupported("TensorRT plans need PyTorch with CUDA for their buffers, and PyTorch is not installed") from None
    if torch.version.cuda is None:
        raise DeviceUnsupported(f"no CUDA GPU usable: PyTorch {torch.__version__} is a CPU-only build")
    if not torch.cuda.is_available():
        raise DeviceUnsupported("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    major, minor = torch.cuda.get_device_capability()
    return GpuInfo(torch.cuda.get_device_name(), f"{major}.{minor}")


def supported_capabilities(info: PlanInfo, target: TrtTarget) -> tuple[str, ...]:
    """Compute capabilities a plan runs on: as recorded, else as the target documents, else the build GPU's."""
    if info.compute_capabilities:
        return tuple(info.compute_capabilities)
    if target.compute_capabilities:
        return tuple(target.compute_capabilities)
    return (info.compute_capability,) if info.compute_capability else ()


def check_plan_metadata(plan: Path, info: PlanInfo, metadata: BundleMetadata, target: TrtTarget, installed: str) -> None:
    """Refuse a plan whose ``model.json`` entry does not fit this bundle or the installed library."""
    problems = []
    if info.target != target.name:
        problems.append(f"recorded target {info.target!r} but the file name says {target.name!r}")
    if info.precision not in PRECISIONS:
        problems.append(f"precision {info.precision!r} is not one of {', '.join(PRECISIONS)}")
    elif metadata.onnx and metadata.onnx.get(info.precision) != info.onnx_file:
        problems.append(
            f"precision {info.precision} plan built from {info.onnx_file!r}, but the bundle's {info.precision} graph is "
            f"{metadata.onnx.get(info.precision)!r}"
        )
    recorded_hash = metadata.onnx_sha256.get(info.onnx_file)
    if recorded_hash and info.onnx_sha256 and recorded_hash != info.onnx_sha256:
        problems.append(f"built from a different {info.onnx_file} than the one in this bundle (sha256 differs)")
    if info.library_version != installed:
        problems.append(f"built with {target.module_name} {info.library_version}, installed is {installed}")
    if problems:
        raise VocoderError(f"{plan}: does not match ({'; '.join(problems)}); rebuild it with `diffwave export`")


def check_device(plan: Path, info: PlanInfo, target: TrtTarget, gpu: Optional[GpuInfo], why_none: str = "") -> None:
    """One line when this GPU (or no GPU) cannot run the plan, naming the capabilities it runs on."""
    supported = supported_capabilities(info, target)
    runs_on = f"compute capability {', '.join(supported)}" if supported else "the GPU it was built on"
    if gpu is None:
        raise DeviceUnsupported(
            f"{plan}: cannot run here: {why_none}; this {target.display_name} plan runs on {runs_on} "
            f"(use model.onnx with ONNX Runtime on this machine)"
        )
    if supported and gpu.capability not in supported:
        raise DeviceUnsupported(
            f"{plan}: {gpu.name} has compute capability {gpu.capability}, which this {target.display_name} plan does not "
            f"support (it runs on {runs_on})"
        )


@dataclass(frozen=True)
class TensorIO:
    name: str
    is_input: bool
    dtype: str  #: "float32", "float16", …
    shape: tuple[int, ...]  #: -1 for dynamic dimensions
    profile: Optional[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = None  #: min/opt/max (inputs)


def check_engine_io(plan: Path, tensors: dict[str, TensorIO], metadata: BundleMetadata) -> Limits:
    """The engine must have the step graph's I/O (float32) for this model.json; return its shape limits."""
    expected_inputs = {AUDIO, STEP} | (set() if metadata.unconditional else {SPECTROGRAM})
    inputs = {n for n, t in tensors.items() if t.is_input}
    outputs = {n for n, t in tensors.items() if not t.is_input}
    if inputs != expected_inputs or outputs != {EPS}:
        raise VocoderError(
            f"{plan}: engine I/O {sorted(inputs)} -> {sorted(outputs)} does not match model.json's "
            f"{sorted(expected_inputs)} -> ['{EPS}']"
        )
    for t in tensors.values():
        if t.dtype != "float32":
            raise VocoderError(f"{plan}: engine tensor {t.name!r} is {t.dtype}; the step graph's I/O must be float32")
    audio = tensors[AUDIO].profile
    if audio is None:
        raise VocoderError(f"{plan}: engine has no optimisation profile for {AUDIO!r}")
    (min_b, min_s), _, (max_b, max_s) = audio[0], audio[1], audio[2]
    if SPECTROGRAM in tensors:
        spec = tensors[SPECTROGRAM]
        bands = spec.shape[1]
        if bands != metadata.n_mels:
            raise VocoderError(f"{plan}: engine expects {bands} mel bands but model.json says n_mels={metadata.n_mels}")
        if spec.profile is None:
            raise VocoderError(f"{plan}: engine has no optimisation profile for {SPECTROGRAM!r}")
        (_, _, min_f), _, (_, _, max_f) = spec.profile
        hop = metadata.hop_samples
        if min_s != min_f * hop or max_s != max_f * hop:
            raise VocoderError(
                f"{plan}: engine profile pairs {min_s}..{max_s} samples with {min_f}..{max_f} frames, "
                f"which is not model.json's hop of {hop} samples"
            )
    return Limits(min_batch=min_b, max_batch=max_b, min_samples=min_s, max_samples=max_s)


def _invalidity(trt: ModuleType, runtime: Any, blob: bytes) -> str:
    """TensorRT-RTX's own verdict on a plan for this GPU and driver, in words ("" when valid or unknown)."""
    check = getattr(runtime, "get_engine_validity", None)
    if check is None:
        return ""
    try:
        validity, diagnostics = check(blob)
    except Exception:  # a diagnostic aid only: deserialisation reports real failures anyway
        return ""
    if validity != trt.EngineValidity.INVALID:
        return ""
    flags = getattr(trt, "EngineInvalidityDiagnostics", None)
    members = getattr(flags, "__members__", {})
    reasons = [name.lower().replace("_", " ") for name, flag in members.items() if int(diagnostics) & int(flag)]
    return "plan reported invalid here: " + (", ".join(reasons) or f"diagnostics {int(diagnostics)}")


def _capturing_logger(trt: ModuleType) -> Any:
    """A TensorRT logger that keeps errors for our one-line messages instead of printing them."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(" ".join(str(msg).split()))

    return Logger()


class TrtSession(Session):
    def __init__(self, backend: "TensorRTBackend", slot: int, rows: int, samples: int):
        audio, spectrogram, eps = backend.io_buffers(slot, rows, samples)
        super().__init__(rows, samples, audio, spectrogram, eps)
        self._backend = backend
        self._step = backend.pool.get(("step", slot), (1,))
        self._table: Any = None
        self._shapes = {AUDIO: (rows, samples), STEP: (1,)}
        if spectrogram is not None:
            self._shapes[SPECTROGRAM] = tuple(spectrogram.shape)
        self._addresses = {AUDIO: audio, STEP: self._step, EPS: eps}
        if spectrogram is not None:
            self._addresses[SPECTROGRAM] = spectrogram
        self.bind()  # checks the shape against the profile now, not in the middle of a call

    def bind(self) -> None:
        """Set this session's shapes and buffer addresses on the (single) execution context."""
        context, plan = self._backend.context, self._backend.plan_path
        for name, shape in self._shapes.items():
            if not context.set_input_shape(name, shape):
                raise VocoderError(f"{plan}: engine rejected input {name!r} of shape {shape} (outside its profile)")
        missing = context.infer_shapes()
        if missing:
            raise VocoderError(f"{plan}: engine shapes incomplete after binding: {', '.join(missing)}")
        out_shape = tuple(context.get_tensor_shape(EPS))
        if out_shape != (self.rows, self.samples):
            raise VocoderError(f"{plan}: engine output {EPS!r} has shape {out_shape}, expected {(self.rows, self.samples)}")
        for name, array in self._addresses.items():
            context.set_tensor_address(name, array.data_ptr())
        self._backend.bound = self

    def set_steps(self, steps: np.ndarray) -> None:
        self._table = self._backend.pool.get(("steps", len(steps)), (len(steps),))
        self._backend.ops.copy(self._table, np.asarray(steps, dtype=np.float32))

    def run(self, index: int) -> None:
        backend = self._backend
        if backend.bound is not self:
            self.bind()
        self._step.copy_(self._table[index : index + 1])
        if not backend.context.execute_async_v3(backend.ops.stream.cuda_stream):
            detail = f": {backend.logger.errors[-1]}" if backend.logger.errors else ""
            raise VocoderError(f"{backend.plan_path}: TensorRT failed to enqueue a step{detail}")


class TensorRTBackend(Backend):
    name = "tensorrt"
    supports_cuda_graphs = True

    def __init__(self, plan_path: str | Path, device: str = "auto"):
        plan_path = Path(plan_path)
        if device == "cpu":
            raise DeviceUnsupported(f"{plan_path}: a TensorRT plan runs on a CUDA GPU, not --device cpu (use model.onnx)")
        target = target_for_plan(plan_path)
        metadata = BundleMetadata.read(plan_path.parent)
        info = metadata.plan(plan_path.name)
        trt = target.import_module()
        check_plan_metadata(plan_path, info, metadata, target, target.version(trt))
        blob = plan_path.read_bytes()
        if info.plan_sha256 and hashlib.sha256(blob).hexdigest() != info.plan_sha256:
            raise VocoderError(f"{plan_path}: contents differ from the sha256 recorded in model.json (a swapped or truncated plan)")
        try:
            gpu: Optional[GpuInfo] = probe_gpu()
            why = ""
        except DeviceUnsupported as exc:
            gpu, why = None, str(exc)
        check_device(plan_path, info, target, gpu, why)

        import torch

        self.trt, self.target, self.plan_path, self.info, self.gpu = trt, target, plan_path, info, gpu
        self.logger = _capturing_logger(trt)
        stream = torch.cuda.Stream()  # also makes the CUDA context current for the runtime cache
        self.runtime = trt.Runtime(self.logger)
        invalid = _invalidity(trt, self.runtime, blob)
        self.engine = None if invalid else self.runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            reason = invalid or (self.logger.errors[0] if self.logger.errors else "no reason given")
            raise DeviceUnsupported(
                f"{plan_path}: {target.module_name} cannot load this plan on {gpu.name} (compute capability "
                f"{gpu.capability}; the plan runs on {', '.join(supported_capabilities(info, target)) or 'its build GPU'}): {reason}"
            )
        limits = check_engine_io(plan_path, self._engine_io(), metadata)
        super().__init__(metadata, TorchOps("cuda", stream), limits)
        self.cache_path = plan_path.with_name(plan_path.name + RUNTIME_CACHE_SUFFIX)
        self._runtime_cache: Any = None
        self._cache_dirty = False
        self._calls_since_save = 0
        self.context = self._create_context()
        self.bound: Optional[TrtSession] = None

    def _engine_io(self) -> dict[str, TensorIO]:
        trt, engine = self.trt, self.engine
        dtype_names = {trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16"}
        tensors = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            profile = None
            if is_input:
                try:
                    profile = tuple(tuple(int(d) for d in dims) for dims in engine.get_tensor_profile_shape(name, 0))
                except Exception:  # static inputs may have no profile entry
                    profile = None
            dtype = engine.get_tensor_dtype(name)
            tensors[name] = TensorIO(
                name=name,
                is_input=is_input,
                dtype=dtype_names.get(dtype, str(dtype)),
                shape=tuple(int(d) for d in engine.get_tensor_shape(name)),
                profile=profile,
            )
        return tensors

    def _create_context(self) -> Any:
        """An execution context, with TensorRT-RTX's runtime cache for JIT kernels where it exists."""
        engine = self.engine
        config = engine.create_runtime_config() if hasattr(engine, "create_runtime_config") else None
        if config is not None and not hasattr(config, "create_runtime_cache"):
            config = None  # data-centre TensorRT: nothing to configure, keep its plain constructor
        if config is not None:
            cache = config.create_runtime_cache()
            if self.cache_path.is_file():
                if not cache.deserialize(self.cache_path.read_bytes()):
                    warnings.warn(f"{self.cache_path}: runtime cache is from another GPU, driver or version; rebuilding it")
            config.set_runtime_cache(cache)
            self._runtime_cache = cache
        context = engine.create_execution_context(config) if config is not None else engine.create_execution_context()
        if context is None:
            reason = self.logger.errors[-1] if self.logger.errors else "no reason given"
            raise VocoderError(f"{self.plan_path}: TensorRT could not create an execution context ({reason})")
        return context

    def _create_session(self, slot: int, rows: int, samples: int) -> Session:
        self._cache_dirty = True  # a new shape: RTX compiles kernels for it on first run
        return TrtSession(self, slot, rows, samples)

    def capturable(self) -> bool:
        """TensorRT says whether its enqueue can be captured on our stream (it cannot with some plugins)."""
        check = getattr(self.context, "is_stream_capturable", None)
        return check is None or bool(check(self.ops.stream.cuda_stream))

    def after_call(self) -> None:
        if self._runtime_cache is None:
            return
        self._calls_since_save += 1
        if self._cache_dirty:
            self._save_runtime_cache()

    def close(self) -> None:
        # TensorRT-RTX compiles a new shape's specialised kernels in the background (its default lazy
        # strategy) while fallback kernels serve the first calls, so the cache saved after a shape's
        # first call may lack them: save it once more when the vocoder is closed.
        if self._runtime_cache is not None and self._calls_since_save:
            self._save_runtime_cache()
        super().close()

    def _save_runtime_cache(self) -> None:
        self._cache_dirty, self._calls_since_save = False, 0
        try:
            write_bytes_atomic(self.cache_path, bytes(self._runtime_cache.serialize()))
        except OSError as exc:
            warnings.warn(f"{self.cache_path}: cannot save the runtime cache ({exc}); the next process recompiles kernels")

    def describe(self) -> str:
        return f"{self.target.module_name} {self.target.version(self.trt)} on {self.gpu.name if self.gpu else 'GPU'}"

