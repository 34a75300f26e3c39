"""One denoising step of DiffWave as an ONNX graph (DESIGN.md, "ONNX step graph").

Inputs ``audio`` [batch, samples], ``diffusion_step`` [1] (continuous training step),
``spectrogram`` [batch, n_mels, frames] (absent for unconditional models); output
``eps`` [batch, samples]. Batch, samples and frames are dynamic.

Every graph this module writes has gone through :func:`finalize_graph`: constant folding
(onnxscript's optimizer folds the Shape/Gather/Div arithmetic that ``torch.chunk`` leaves on
dynamic shapes into static Slices: 1326 nodes become 538 for the base model), strict shape
inference, and ``onnx.checker.check_model(full_check=True)``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import onnx
import torch

from diffwave.model import DiffWave
from runtime.errors import first_line

INPUT_AUDIO, INPUT_STEP, INPUT_SPECTROGRAM, OUTPUT_EPS = "audio", "diffusion_step", "spectrogram", "eps"
DEFAULT_OPSET = 17
#: names of the dynamic axes in the graph (and in polygraphy / TensorRT shape strings)
AXIS_BATCH, AXIS_SAMPLES, AXIS_FRAMES = "batch", "samples", "frames"

Dim = Union[int, str]


class StepGraphError(ValueError):
    """An ONNX file is not a valid DiffWave step graph (message is one line)."""


class DenoisingStep(torch.nn.Module):
    """The network's forward with the step graph's I/O: float step [1], eps [batch, samples]."""

    def __init__(self, model: DiffWave):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, diffusion_step: torch.Tensor, spectrogram: torch.Tensor | None = None):
        return self.model(audio, diffusion_step, spectrogram).squeeze(1)


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as the contract defines it."""

    name: str
    dtype: int  #: onnx.TensorProto element type
    shape: tuple[Dim, ...]  #: ints for fixed dims, axis names for dynamic ones


def step_graph_io(n_mels: int, unconditional: bool) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The (inputs, outputs) the DESIGN.md contract prescribes, for both precisions (I/O is float32)."""
    f32 = onnx.TensorProto.FLOAT
    inputs = [
        TensorSpec(INPUT_AUDIO, f32, (AXIS_BATCH, AXIS_SAMPLES)),
        TensorSpec(INPUT_STEP, f32, (1,)),
    ]
    if not unconditional:
        inputs.append(TensorSpec(INPUT_SPECTROGRAM, f32, (AXIS_BATCH, n_mels, AXIS_FRAMES)))
    return tuple(inputs), (TensorSpec(OUTPUT_EPS, f32, (AXIS_BATCH, AXIS_SAMPLES)),)


def example_inputs(model: DiffWave, batch: int = 1, frames: int = 8) -> tuple[torch.Tensor, ...]:
    hop = model.config.features.hop_samples
    audio = torch.randn(batch, frames * hop)
    step = torch.tensor([1.5], dtype=torch.float32)
    if model.unconditional:
        return audio, step
    return audio, step, torch.rand(batch, model.config.features.n_mels, frames)


def export_step_onnx(model: DiffWave, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export one float32 network evaluation to ``path`` with dynamic batch/samples/frames.

    The file is folded, shape-inferred and fully checked before it is renamed into place.
    """
    path = Path(path)
    model = model.float().eval().cpu()
    inputs = example_inputs(model)
    names = [INPUT_AUDIO, INPUT_STEP] + ([] if model.unconditional else [INPUT_SPECTROGRAM])
    axes = {INPUT_AUDIO: {0: AXIS_BATCH, 1: AXIS_SAMPLES}, OUTPUT_EPS: {0: AXIS_BATCH, 1: AXIS_SAMPLES}}
    if not model.unconditional:
        axes[INPUT_SPECTROGRAM] = {0: AXIS_BATCH, 2: AXIS_FRAMES}
    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with torch.no_grad():
            # The TorchScript exporter: it keeps the step embedding's Floor/Ceil/Gather as plain
            # ops and produces a graph TensorRT's parser takes without onnxscript rewrites.
            torch.onnx.export(
                DenoisingStep(model),
                inputs,
                str(raw),
                input_names=names,
                output_names=[OUTPUT_EPS],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        graph = finalize_graph(onnx.load(str(raw)))
    graph.producer_name = "diffwave.export"
    return save_onnx_atomic(graph, path)


def finalize_graph(model: onnx.ModelProto, optimize: bool = True) -> onnx.ModelProto:
    """Constant-fold (optional), infer shapes strictly and run the full ONNX checker.

    Raises :class:`StepGraphError` with the checker's first line when the graph is invalid.
    """
    if optimize:
        import onnxscript.optimizer  # the exporter's own maintained folding passes

        model = onnxscript.optimizer.optimize(model)
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise StepGraphError(f"invalid ONNX graph: {first_line(exc)}") from None
    return model


def save_onnx_atomic(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Serialize to a temp file beside ``path``, fsync, rename: never a half-written graph."""
    from runtime.bundle import write_bytes_atomic

    path = Path(path)
    write_bytes_atomic(path, model.SerializeToString())
    return path


def load_step_graph(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file, turning a missing or corrupt file into one :class:`StepGraphError` line."""
    path = Path(path)
    if not path.is_file():
        raise StepGraphError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise StepGraphError(f"{path}: unreadable ONNX file ({first_line(exc)})") from None


def graph_io(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The (inputs, outputs) a graph actually declares, initializers excluded."""

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        t = value.type.tensor_type
        dims = tuple(d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim)
        return TensorSpec(value.name, t.elem_type, dims)

    inits = {i.name for i in model.graph.initializer}
    return (
        tuple(spec(v) for v in model.graph.input if v.name not in inits),
        tuple(spec(v) for v in model.graph.output),
    )


def check_step_graph(model: onnx.ModelProto, n_mels: int, unconditional: bool, source: str = "graph") -> None:
    """Raise :class:`StepGraphError` naming the first way ``model`` breaks the I/O contract."""
    expected = step_graph_io(n_mels, unconditional)
    actual = graph_io(model)
    for kind, want, got in (("input", expected[0], actual[0]), ("output", expected[1], actual[1])):
        if [s.name for s in want] != [s.name for s in got]:
            raise StepGraphError(
                f"{source}: {kind}s are {[s.name for s in got]}, the step-graph contract needs {[s.name for s in want]}"
            )
        for w, g in zip(want, got):
            if w != g:
                raise StepGraphError(
                    f"{source}: {kind} {g.name!r} is {onnx.TensorProto.DataType.Name(g.dtype)}{list(g.shape)}, "
                    f"the contract needs {onnx.TensorProto.DataType.Name(w.dtype)}{list(w.shape)}"
                )


def op_types(model: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in model.graph.node}


__all__ = [
    "INPUT_AUDIO", "INPUT_STEP", "INPUT_SPECTROGRAM", "OUTPUT_EPS", "DEFAULT_OPSET",
    "DenoisingStep", "TensorSpec", "StepGraphError", "example_inputs", "export_step_onnx",
    "finalize_graph", "save_onnx_atomic", "load_step_graph", "graph_io", "check_step_graph",
    "step_graph_io", "op_types",
]
