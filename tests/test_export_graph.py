"""The ONNX step-graph contract (DESIGN.md): names, dtypes, dynamic dims, op set, FP16 layout."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from diffwave.config import DiffWaveConfig
from export.fp16 import convert_to_fp16, write_fp16_variant
from export.step_graph import (StepGraphError, check_step_graph, export_step_onnx, graph_io, load_step_graph,
                               op_types)
from helpers import random_model, tiny_config

#: ONNX operators TensorRT's parser supports, transcribed from the "Supported ONNX Operators" matrix
#: of onnx-tensorrt (docs/operators.md, TensorRT 8.5+/10.x): the rows marked "Y" that a
#: convolutional vocoder could plausibly produce. Deliberately not derived from our own graphs.
TENSORRT_ONNX_OPS = frozenset({
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "CumSum", "Div", "Einsum", "Elu", "Equal", "Erf", "Exp",
    "Expand", "Flatten", "Floor", "Gather", "GatherElements", "Gemm", "GlobalAveragePool", "Greater", "Identity",
    "InstanceNormalization", "LeakyRelu", "Less", "Log", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pad",
    "Pow", "PRelu", "Range", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceSum", "Relu", "Reshape", "Resize",
    "Selu", "Shape", "Sigmoid", "Sign", "Sin", "Slice", "Softplus", "Split", "Sqrt", "Squeeze", "Sub", "Sum",
    "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
})
#: operators whose listed restriction is "this input must be an initializer" (same page), input index
INITIALIZER_INPUTS = {"Conv": 1, "ConvTranspose": 1, "Slice": 3, "Squeeze": 1, "Unsqueeze": 1}
STEP_PATH_OPS = {"Floor", "Ceil", "Gather", "Sub", "Cast"}


def _export(tmp_path_factory, name, config):
    folder = tmp_path_factory.mktemp(name)
    fp32 = export_step_onnx(random_model(config), folder / "model.onnx")
    fp16 = write_fp16_variant(fp32, folder / "model.fp16.onnx")
    return onnx.load(str(fp32)), onnx.load(str(fp16))


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """(fp32, fp16, n_mels, unconditional) for tiny conditional, tiny unconditional and base conditional."""
    out = {}
    for name, config in (("tiny", tiny_config()), ("tiny_uncond", tiny_config(unconditional=True)),
                         ("base", DiffWaveConfig())):
        fp32, fp16 = _export(tmp_path_factory, name, config)
        out[name] = (fp32, fp16, config.features.n_mels, config.model.unconditional)
    return out


@pytest.mark.parametrize("name", ["tiny", "tiny_uncond", "base"])
@pytest.mark.parametrize("precision", [0, 1], ids=["fp32", "fp16"])
def test_io_names_dtypes_and_dynamic_dims(graphs, name, precision):
    model, n_mels, unconditional = graphs[name][precision], graphs[name][2], graphs[name][3]
    inputs, outputs = graph_io(model)
    f32 = TensorProto.FLOAT
    expected_inputs = [("audio", f32, ("batch", "samples")), ("diffusion_step", f32, (1,))]
    if not unconditional:
        expected_inputs.append(("spectrogram", f32, ("batch", 80, "frames")))
    assert [(s.name, s.dtype, s.shape) for s in inputs] == expected_inputs
    assert [(s.name, s.dtype, s.shape) for s in outputs] == [("eps", f32, ("batch", "samples"))]
    check_step_graph(model, n_mels, unconditional)  # the exporter's own contract check agrees


@pytest.mark.parametrize("name", ["tiny", "tiny_uncond", "base"])
def test_graphs_pass_full_check_and_opset(graphs, name):
    for model in graphs[name][:2]:
        onnx.checker.check_model(model, full_check=True)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert {o.domain for o in model.opset_import} <= {"", "ai.onnx"}


def test_op_types_are_on_tensorrts_support_list(graphs):
    used = set()
    for fp32, fp16, *_ in graphs.values():
        used |= op_types(fp32) | op_types(fp16)
    assert used <= TENSORRT_ONNX_OPS, f"not on TensorRT's ONNX support page: {sorted(used - TENSORRT_ONNX_OPS)}"
    # The step embedding is the lerp between two table rows, as the contract says.
    assert {"Floor", "Ceil", "Gather"} <= used
    print("ONNX op types used:", ", ".join(sorted(used)))


def test_parser_restrictions_weights_and_axes_are_initializers(graphs):
    for fp32, fp16, *_ in graphs.values():
        for model in (fp32, fp16):
            inits = {i.name for i in model.graph.initializer}
            for node in model.graph.node:
                index = INITIALIZER_INPUTS.get(node.op_type)
                if index is not None and index < len(node.input) and node.input[index]:
                    assert node.input[index] in inits, f"{node.op_type} {node.name}: input {index} is not an initializer"


def test_constant_folding_removed_shape_arithmetic(graphs):
    fp32 = graphs["base"][0]
    counts = Counter(n.op_type for n in fp32.graph.node)
    assert counts["Shape"] == 0  # torch.chunk's dynamic Shape/Gather/Div arithmetic is folded away
    assert counts["Conv"] == 30 * 3 + 3  # dilated, conditioner, output per layer + input/skip/output


def _value_types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({i.name: i.data_type for i in g.initializer})
    return types


@pytest.mark.parametrize("name", ["tiny", "tiny_uncond", "base"])
def test_fp16_layout(graphs, name):
    fp32, fp16 = graphs[name][:2]
    types = _value_types(fp16)
    # Every weight of the network is float16 (convolutions, upsampler, all Gemms of the embedding)...
    for node in fp16.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm"):
            assert types[node.input[1]] == TensorProto.FLOAT16, node.name
            assert types[node.output[0]] == TensorProto.FLOAT16, node.name
    float_inits = [i for i in fp16.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    fp32_inits = [i.name for i in float_inits if i.data_type == TensorProto.FLOAT]
    # ... except the sin/cos table the step indexes into: the one float32 initializer.
    gathers = [n for n in fp16.graph.node if n.op_type == "Gather" and n.input[0] in fp32_inits]
    assert len(gathers) == 2 and fp32_inits == [gathers[0].input[0]]
    # The step path (Floor/Ceil/Cast/Gather/Sub and the lerp) reads and writes float32.
    step_nodes = []
    frontier = {"diffusion_step"}
    for node in fp16.graph.node:
        if node.op_type in ("Gemm", "MatMul") or (node.op_type == "Cast" and types[node.output[0]] == TensorProto.FLOAT16):
            continue  # where the float16 part begins
        if frontier & set(node.input):
            step_nodes.append(node)
            frontier |= set(node.output)
    assert STEP_PATH_OPS <= {n.op_type for n in step_nodes}
    for node in step_nodes:
        for tensor in list(node.input) + list(node.output):
            assert types.get(tensor) != TensorProto.FLOAT16, f"{node.op_type} {node.name}: {tensor} is float16"
    # Graph I/O stays float32 (checked in detail above); the output comes from a Cast back to float32.
    producer = {o: n for n in fp16.graph.node for o in n.output}
    assert producer["eps"].op_type == "Cast"


def test_fp16_weights_are_the_fp32_weights_rounded(graphs):
    fp32, fp16 = graphs["tiny"][:2]
    old = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    new = {i.name: numpy_helper.to_array(i) for i in fp16.graph.initializer}
    name = "model.residual_layers.0.dilated_conv.weight"
    assert new[name].dtype == np.float16
    np.testing.assert_array_equal(new[name], old[name].astype(np.float16))


def test_broken_conversion_runs_the_step_path_in_fp16(graphs):
    """The fault the parity gate must catch (tests/test_export_parity.py) really is in the graph."""
    bad = convert_to_fp16(graphs["tiny"][0], keep_step_fp32=False)
    types = _value_types(bad)
    floors = [n for n in bad.graph.node if n.op_type == "Floor"]
    assert floors and types[floors[0].input[0]] == TensorProto.FLOAT16
    assert [(s.name, s.dtype) for s in graph_io(bad)[0]][1] == ("diffusion_step", TensorProto.FLOAT)


def test_contract_check_names_what_differs(graphs):
    fp32 = graphs["tiny"][0]
    with pytest.raises(StepGraphError, match="inputs are .* needs"):
        check_step_graph(fp32, 80, unconditional=True)
    with pytest.raises(StepGraphError, match=r"'spectrogram' is FLOAT\['batch', 80, 'frames'\], the contract needs "
                                             r"FLOAT\['batch', 100, 'frames'\]"):
        check_step_graph(fp32, 100, unconditional=False)


def test_load_step_graph_refuses_missing_and_truncated_files(tmp_path, graphs):
    with pytest.raises(StepGraphError, match="no such ONNX file"):
        load_step_graph(tmp_path / "absent.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(graphs["tiny"][0].SerializeToString()[:999])
    with pytest.raises(StepGraphError, match="unreadable ONNX file"):
        load_step_graph(truncated)
