"""Build a serialized TensorRT engine (plan) from a step graph: one implementation, two modules.

The code takes the module object of a :class:`runtime.trt_target.TrtTarget`: data-centre
``tensorrt`` (>= 10) or ``tensorrt_rtx``. It only uses the name-based API both share (DESIGN.md,
"TensorRT facts" and "TensorRT for RTX"); the few differences (network flags, version,
compute-capability targets) are asked of the target. The stages mirror polygraphy's loaders:
parse the ONNX into a network, describe its I/O, make a config with one optimisation
profile, build. Every failure is an :class:`EngineBuildError` whose message is one line
carrying TensorRT's own first error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from runtime.trt_target import TrtTarget

from .profile import ShapeRange


class EngineBuildError(RuntimeError):
    """The parser rejected the graph, the profile was refused or the build returned nothing."""


@dataclass(frozen=True)
class NetworkTensor:
    """One network input or output as TensorRT sees it (-1 marks a dynamic dimension)."""

    name: str
    dtype: str  #: TensorRT DataType name: "FLOAT", "HALF", ...
    shape: tuple[int, ...]
    is_input: bool


@dataclass(frozen=True)
class BuiltPlan:
    plan: bytes
    library_version: str
    seconds: float
    io: tuple[NetworkTensor, ...]
    #: data types of the network's convolution outputs: "HALF" everywhere for an FP16 graph
    conv_dtypes: tuple[str, ...]


def make_logger(trt: ModuleType):
    """An ILogger that keeps TensorRT's messages instead of printing them (we print one line)."""

    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)
    kept = errors + (severity.WARNING,)

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[object, str]] = []

        def log(self, level, msg) -> None:  # TensorRT's callback; INFO/VERBOSE (thousands per build) are dropped
            if level in kept:
                self.messages.append((level, msg))

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s in errors]

    return CollectingLogger()


def make_progress_monitor(trt: ModuleType, description: str):
    """A tqdm bar over the builder's top-level phase (data-centre builds take minutes on a GPU)."""
    from tqdm import tqdm

    class TqdmMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bar: Optional[tqdm] = None
            self.top: Optional[str] = None

        def phase_start(self, parent_phase, phase_name, num_steps) -> None:
            if parent_phase is None and self.bar is None:
                self.top = phase_name
                self.bar = tqdm(total=num_steps, desc=description, unit="phase", leave=False)

        def step_complete(self, phase_name, step) -> bool:
            if phase_name == self.top and self.bar is not None:
                self.bar.update(1)
            return True  # never cancel

        def phase_finish(self, phase_name) -> None:
            if phase_name == self.top and self.bar is not None:
                self.bar.close()
                self.bar = None

    return TqdmMonitor()


def parse_onnx(trt: ModuleType, target: TrtTarget, onnx_path: str | os.PathLike, logger):
    """(builder, network, parser) for ``onnx_path``; the parser is the judge of op support."""
    builder = trt.Builder(logger)
    network = builder.create_network(target.network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineBuildError(f"{onnx_path}: {_library(trt, target)} cannot parse the graph: {first_parser_error(parser)}")
    return builder, network, parser


def first_parser_error(parser) -> str:
    if parser.num_errors == 0:
        return "no error recorded"
    err = parser.get_error(0)
    where = f" (node {err.node()} {err.node_operator()})" if err.node() >= 0 and err.node_operator() else ""
    return f"{err.desc()}{where}"


def network_io(trt: ModuleType, network) -> tuple[NetworkTensor, ...]:
    tensors = [(network.get_input(i), True) for i in range(network.num_inputs)]
    tensors += [(network.get_output(i), False) for i in range(network.num_outputs)]
    return tuple(NetworkTensor(t.name, t.dtype.name, tuple(t.shape), is_in) for t, is_in in tensors)


def convolution_dtypes(trt: ModuleType, network) -> tuple[str, ...]:
    kinds = (trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION)
    layers = (network.get_layer(i) for i in range(network.num_layers))
    return tuple(layer.get_output(0).dtype.name for layer in layers if layer.type in kinds)


def build_plan(
    target: TrtTarget,
    onnx_path: str | os.PathLike,
    shapes: dict[str, ShapeRange],
    *,
    compute_capabilities: Sequence[str] = (),
    workspace_bytes: Optional[int] = None,
    progress: bool = True,
    trt: Optional[ModuleType] = None,
) -> BuiltPlan:
    """Parse ``onnx_path``, add one optimisation profile from ``shapes``, build the plan bytes.

    Raises :class:`runtime.trt_target.TensorRTMissing` when the target's module is not
    importable and :class:`EngineBuildError` for everything TensorRT refuses.
    """
    trt = trt or target.import_module()
    started = time.perf_counter()
    logger = make_logger(trt)
    builder, network, _parser = parse_onnx(trt, target, onnx_path, logger)
    io = network_io(trt, network)

    dynamic = {t.name for t in io if t.is_input and -1 in t.shape}
    missing = sorted(dynamic - set(shapes))
    unknown = sorted(set(shapes) - {t.name for t in io if t.is_input})
    if missing or unknown:
        raise EngineBuildError(
            f"{onnx_path}: the profile does not match the graph inputs "
            f"(no shapes for {missing or 'none'}; shapes for unknown inputs {unknown or 'none'})"
        )
    profile = builder.create_optimization_profile()
    for name, r in shapes.items():
        profile.set_shape(name, r.min, r.opt, r.max)
    config = builder.create_builder_config()
    for flag in target.builder_flags(trt):
        config.set_flag(flag)
    if config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"{onnx_path}: {_library(trt, target)} refused the optimisation profile: "
                               f"{_last_error(logger)}")
    if compute_capabilities:
        try:
            target.set_compute_capabilities(trt, config, compute_capabilities)
        except ValueError as exc:
            raise EngineBuildError(str(exc)) from None
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if progress:
        config.progress_monitor = make_progress_monitor(trt, f"building {target.plan_name}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: {_library(trt, target)} returned no engine: {_last_error(logger)}")
    return BuiltPlan(
        plan=bytes(memoryview(serialized)),
        library_version=target.version(trt),
        seconds=time.perf_counter() - started,
        io=io,
        conv_dtypes=convolution_dtypes(trt, network),
    )


def _library(trt: ModuleType, target: TrtTarget) -> str:
    return f"{target.display_name} {target.version(trt)}"


def _last_error(logger) -> str:
    errors = logger.errors()
    if not errors:
        return "no error logged"
    return " ".join(errors[0].split())


def build_gpu() -> tuple[Optional[str], Optional[str]]:
    """(name, compute capability) of the CUDA GPU this process sees, or (None, None).

    Asked through torch (already a dependency of ``export``), lazily: a GPU-less builder
    such as TensorRT-RTX's records that it built without one.
    """
    try:
        import torch

        if not torch.cuda.is_available():
            return None, None
        major, minor = torch.cuda.get_device_capability(0)
        return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except Exception:  # a broken driver must not stop a GPU-less build
        return None, None


def plan_path(bundle_dir: str | os.PathLike, target: TrtTarget) -> Path:
    return Path(bundle_dir) / target.plan_name
