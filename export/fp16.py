"""The FP16 step graph ``model.fp16.onnx``: float16 weights and activations, float32 at the edges.

TensorRT 11 and TensorRT-RTX build strongly typed networks only, so an FP16 engine has to come
from a graph whose tensors are already float16 (DESIGN.md, "TensorRT facts"). This module
rewrites the exported float32 graph with plain ``onnx``; the rule is short enough to state
exactly, so no converter package and no list of node names is needed:

* every node that depends on ``audio`` or ``spectrogram`` computes in float16;
* the step path (nodes that depend only on ``diffusion_step``) stays float32 up to its first
  matrix product: Reshape, Floor/Ceil, the Casts to int64, both Gathers from the sin/cos
  table and the lerp (Sub/Mul/Add). Between 32 and 64 consecutive float16 values are 1/32
  apart, so a float16 step would lose the fraction the lerp interpolates with. The lerp's
  result is a sin/cos vector in [-1, 1], which float16 holds well: the embedding projections
  and every layer's ``diffusion_projection`` run in float16 behind one Cast;
* graph inputs and the output stay float32 (a Cast after ``audio``/``spectrogram``, one
  before ``eps``).

Measured (ONNX Runtime CPU vs PyTorch float32, base config, every weight random, parity-gate
cases): eps relative error 3.6e-4 … 1.1e-3 conditional and 8.7e-4 … 1.5e-3 unconditional
(limit 2e-2), 6-step fast reverse process SNR 79 / 90 dB (limit 30 dB). Keeping the whole step
path in float32 (projections included) measured 3.2e-4 … 5.4e-4 and 77 / 83 dB, but left half
of the base model's weights (1.3 M of 2.6 M) in float32: a 14.1 MB instead of 11.4 MB
TensorRT-RTX plan, and an FP32 GEMM that TensorRT-RTX cannot compile for Turing (7.5).
Running the step path in float16 too (``keep_step_fp32=False``, what a blanket fp32->fp16
conversion does) measured 3.9e-2 … 2.2e-1 at step 45.58: the parity gate's failure case.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .step_graph import INPUT_AUDIO, INPUT_SPECTROGRAM, INPUT_STEP, finalize_graph, save_onnx_atomic

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)

_MATRIX_OPS = {"Gemm", "MatMul"}
#: ops whose output dtype is an attribute we would have to rewrite; none occur in the step graph.
_DTYPE_ATTRIBUTE_OPS = {"ConstantOfShape", "EyeLike", "RandomNormal", "RandomNormalLike", "RandomUniform",
                        "RandomUniformLike", "Bernoulli", "Multinomial"}


class Fp16ConversionError(ValueError):
    """The graph cannot be converted as the rule above says (message is one line)."""


def convert_to_fp16(model: onnx.ModelProto, keep_step_fp32: bool = True) -> onnx.ModelProto:
    """Return a float16 copy of the float32 step graph ``model`` (see the module docstring).

    ``keep_step_fp32=False`` also runs the step path in float16. It exists to prove that the
    parity gate catches a wrong conversion; never ship its output.
    """
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = model.graph
    float_tensors = _float32_tensors(model)
    initializers = {init.name: init for init in graph.initializer}

    signal_inputs = {INPUT_AUDIO, INPUT_SPECTROGRAM} | (set() if keep_step_fp32 else {INPUT_STEP})
    half: set[str] = set()  # tensors computed in float16
    half_nodes = []
    for node in graph.node:
        reads_half = any(name in signal_inputs or name in half for name in node.input)
        # the step path's first matrix product (after the lerp) is where float16 starts
        starts_half = node.op_type in _MATRIX_OPS and any(
            name in float_tensors and name not in initializers for name in node.input)
        if reads_half or starts_half:
            if node.op_type in _DTYPE_ATTRIBUTE_OPS:
                raise Fp16ConversionError(f"node {node.name!r} ({node.op_type}) on the signal path is not supported")
            half_nodes.append(node)
            half.update(o for o in node.output if o in float_tensors)
    half_node_ids = {id(n) for n in half_nodes}

    # Which float32 initializers feed float16 nodes, and do float32 nodes need them too?
    users: Counter[str] = Counter()
    half_users: Counter[str] = Counter()
    for node in graph.node:
        for name in node.input:
            users[name] += 1
            if id(node) in half_node_ids:
                half_users[name] += 1

    new_inits: list[TensorProto] = []
    renamed_inits: dict[str, str] = {}
    for name, init in initializers.items():
        if init.data_type != FLOAT or half_users[name] == 0:
            new_inits.append(init)
            continue
        values = numpy_helper.to_array(init)
        if np.abs(values).max(initial=0.0) > FP16_MAX:
            raise Fp16ConversionError(f"initializer {name!r} has values beyond float16's range ({FP16_MAX})")
        shared = users[name] > half_users[name]
        half_name = f"{name}.fp16" if shared else name
        new_inits.append(numpy_helper.from_array(values.astype(np.float16), half_name))
        if shared:
            new_inits.append(init)
        renamed_inits[name] = half_name

    # Rewrite the node list: float16 nodes read float16 copies of everything float32 they consume.
    casts_in: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) not in half_node_ids:
            new_nodes.append(node)
            continue
        for i, name in enumerate(node.input):
            if name in renamed_inits:
                node.input[i] = renamed_inits[name]
            elif name in float_tensors and name not in half and name not in initializers:
                if name not in casts_in:
                    casts_in[name] = f"{name}.fp16"
                    new_nodes.append(helper.make_node("Cast", [name], [casts_in[name]], to=FLOAT16,
                                                      name=f"{name}.to_fp16"))
                node.input[i] = casts_in[name]
        if node.op_type == "Cast" and _attribute(node, "to") == FLOAT:
            _set_attribute(node, "to", FLOAT16)
        new_nodes.append(node)

    # Graph outputs produced in float16 get a Cast back to float32 under their public name.
    for out in graph.output:
        if out.name not in half:
            continue
        internal = f"{out.name}.fp16"
        for node in new_nodes:
            node.output[:] = [internal if o == out.name else o for o in node.output]
            node.input[:] = [internal if i == out.name else i for i in node.input]
        new_nodes.append(helper.make_node("Cast", [internal], [out.name], to=FLOAT, name=f"{out.name}.to_fp32"))

    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    del graph.value_info[:]
    return finalize_graph(model, optimize=False)


def write_fp16_variant(fp32_path: str | os.PathLike, fp16_path: str | os.PathLike,
                       keep_step_fp32: bool = True) -> Path:
    """Read ``model.onnx``, convert it, check it and write ``model.fp16.onnx`` atomically."""
    converted = convert_to_fp16(onnx.load(str(fp32_path)), keep_step_fp32=keep_step_fp32)
    return save_onnx_atomic(converted, fp16_path)


def _float32_tensors(model: onnx.ModelProto) -> set[str]:
    graph = model.graph
    infos = list(graph.input) + list(graph.output) + list(graph.value_info)
    names = {v.name for v in infos if v.type.tensor_type.elem_type == FLOAT}
    names.update(i.name for i in graph.initializer if i.data_type == FLOAT)
    for node in graph.node:  # Constant nodes are not always covered by value_info
        if node.op_type == "Constant":
            value = _attribute(node, "value")
            if value is not None and value.data_type == FLOAT:
                names.add(node.output[0])
    return names


def _attribute(node: onnx.NodeProto, name: str):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return None


def _set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    for i, attr in enumerate(node.attribute):
        if attr.name == name:
            node.attribute[i].CopyFrom(helper.make_attribute(name, value))
            return
    node.attribute.append(helper.make_attribute(name, value))
