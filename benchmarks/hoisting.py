"""Experiment: hoist step-independent work out of ONNX Runtime's per-step graph (benchmarks/README.md).

    python benchmarks/hoisting.py [--checkpoint DIR] [--seconds 5] [--threads 2] [--rounds 3]

``model.onnx`` evaluates the whole network per step: the spectrogram upsampler, 30 conditioner
projections (24 % of a step's FLOPs) and the step-embedding MLP, none of which depends on x.
This script builds two alternative step graphs from the same weights, checks them against
PyTorch, and times a whole 6-step call against ``model.onnx`` in interleaved rounds:

* ``hoisted``: a prologue graph computes every layer's conditioner projection (dilated-conv
  bias folded in) once per call, [layers, B, 128, L]; the step graph takes them as 30 inputs
  and adds them inside the dilated convolution (``com.microsoft.FusedConv``'s ``Z`` input),
  accumulates residual and skip the same way, and carries ``x'_l = 2^(l/2)·x_l`` so that the
  per-layer ``/√2`` disappears into the weights. Step embeddings: once per call too.
* ``upsampled``: only the upsampler (and the step embeddings) move to the prologue; the
  conditioner projections stay in the step, fused as ``Z`` into the dilated convolution.

Both are exact rewrites (relative L2 error vs PyTorch ~4e-7, the same as ``model.onnx``).
This is a measurement, not a shipped path: see benchmarks/README.md for the numbers and why
the runtime keeps ``model.onnx``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from interleaved import (  # this folder is on sys.path when run as a script
    print_paired,
    time_interleaved,
)
from onnx import TensorProto, helper, numpy_helper
from probe import ProbeInputs, probe_model

from diffwave.model import DiffWave
from export.step_graph import export_step_onnx, finalize_graph

MS = "com.microsoft"


def _a(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().copy()


def layer_scale(layer: int) -> float:
    """The residual stream entering layer l is carried as 2^(l/2)·x_l (no per-layer division)."""
    return math.sqrt(2.0) ** layer


class StepBias(torch.nn.Module):
    """[S] steps -> [S, layers, C, 1]: scale_l · diffusion_projection_l(embedding(step))."""

    def __init__(self, model: DiffWave):
        super().__init__()
        self.model = model
        scales = [layer_scale(i) for i in range(len(model.residual_layers))]
        self.register_buffer("scales", torch.tensor(scales).view(1, -1, 1, 1))

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        emb = self.model.embed_steps(steps)
        return torch.stack([l.diffusion_projection(emb) for l in self.model.residual_layers], 1).unsqueeze(-1) * self.scales


class Conditioner(torch.nn.Module):
    """[B, n_mels, F] -> [layers, B, 2C, L] (``per_layer``) or the upsampled [B, n_mels, L]."""

    def __init__(self, model: DiffWave, per_layer: bool):
        super().__init__()
        self.model, self.per_layer = model, per_layer

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        up = self.model.upsample(spectrogram)
        if not self.per_layer:
            return up
        return torch.stack([torch.nn.functional.conv1d(up, l.conditioner_projection.weight,
                                                       l.conditioner_projection.bias + l.dilated_conv.bias)
                            for l in self.model.residual_layers], 0)


def torch_graph(module: torch.nn.Module, example: torch.Tensor, name_in: str, name_out: str, axes: dict) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        with torch.no_grad():
            torch.onnx.export(module, (example,), str(path), input_names=[name_in], output_names=[name_out],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        return finalize_graph(onnx.load(str(path)))


def denoiser(model: DiffWave, hoisted: bool) -> onnx.ModelProto:
    """The step graph: audio, step_bias and either cond_0..cond_{n-1} (hoisted) or the upsampled mel."""
    layers = list(model.residual_layers)
    c = layers[0].dilated_conv.in_channels
    nodes, inits = [], []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    def node(op, inputs, output, domain=None, **attrs):
        nodes.append(helper.make_node(op, inputs, [output] if isinstance(output, str) else output, domain=domain, **attrs))
        return output

    const("axis1", [1], np.int64), const("halves", [c, c], np.int64), const("per_layer", [1] * len(layers), np.int64)
    node("Unsqueeze", ["audio", "axis1"], "a3")
    ip = model.input_projection
    x = node("FusedConv", ["a3", const("w_in", _a(ip.weight)), const("b_in", _a(ip.bias))], "x_0", MS, activation="Relu")
    node("Split", ["step_bias", "per_layer"], [f"sb_{i}" for i in range(len(layers))], axis=0)
    skip = ""
    for i, l in enumerate(layers):
        s, d = layer_scale(i), int(l.dilated_conv.dilation[0])
        y = node("Add", [x, f"sb_{i}"], f"y_{i}")
        if hoisted:
            cond = f"cond_{i}"
        else:
            cp = l.conditioner_projection
            cond = node("Conv", ["up", const(f"wc_{i}", _a(cp.weight)), const(f"bc_{i}", _a(cp.bias) + _a(l.dilated_conv.bias))], f"c_{i}")
        z = node("FusedConv", [y, const(f"wd_{i}", _a(l.dilated_conv.weight) / s), "", cond], f"z_{i}", MS,
                 dilations=[d], pads=[d, d], kernel_shape=[3])
        node("Split", [z, "halves"], [f"g_{i}", f"f_{i}"], axis=1)
        h = node("Mul", [node("Sigmoid", [f"g_{i}"], f"sg_{i}"), node("Tanh", [f"f_{i}"], f"tf_{i}")], f"h_{i}")
        w, b = _a(l.output_projection.weight), _a(l.output_projection.bias)
        x = node("FusedConv", [h, const(f"wr_{i}", w[:c] * s), const(f"br_{i}", b[:c] * s), x], f"x_{i + 1}", MS)
        skip = node("FusedConv", [h, const(f"ws_{i}", w[c:]), const(f"bs_{i}", b[c:]), skip], f"s_{i}", MS)
    sp, op = model.skip_projection, model.output_projection
    o = node("FusedConv", [skip, const("w_sp", _a(sp.weight) / math.sqrt(len(layers))), const("b_sp", _a(sp.bias))], "so", MS,
             activation="Relu")
    node("Squeeze", [node("Conv", [o, const("w_out", _a(op.weight)), const("b_out", _a(op.bias))], "e3"), "axis1"], "eps")
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("audio", f32, ["b", "s"]), helper.make_tensor_value_info("step_bias", f32, [len(layers), c, 1])]
    if hoisted:
        inputs += [helper.make_tensor_value_info(f"cond_{i}", f32, ["b", 2 * c, "s"]) for i in range(len(layers))]
    else:
        inputs.append(helper.make_tensor_value_info("up", f32, ["b", model.config.features.n_mels, "s"]))
    graph = helper.make_graph(nodes, "denoiser", inputs, [helper.make_tensor_value_info("eps", f32, ["b", "s"])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    onnx.checker.check_model(proto)
    return proto


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="weights (default: random base model)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ort.set_default_logger_severity(3)
    model = probe_model(args.checkpoint)
    meta = model.config.bundle_metadata()
    inputs = ProbeInputs.create(meta, args.seconds)
    sched, mel, x0 = inputs.schedule, inputs.mel, inputs.x0

    def session(proto):
        o = ort.SessionOptions()
        o.enable_mem_pattern = False
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if args.threads:
            o.intra_op_num_threads = args.threads
        return ort.InferenceSession(proto.SerializeToString(), o, providers=["CPUExecutionProvider"])

    with tempfile.TemporaryDirectory() as tmp:
        plain = session(onnx.load(str(export_step_onnx(model, Path(tmp) / "model.onnx"))))
    steps_graph = session(torch_graph(StepBias(model), torch.tensor([1.5, 20.0]), "steps", "step_bias", {"steps": {0: "n"}, "step_bias": {0: "n"}}))
    graphs = {}
    for name, hoisted in (("hoisted", True), ("upsampled", False)):
        cond = torch_graph(Conditioner(model, hoisted), torch.rand(1, meta.n_mels, 8), "spectrogram", "conditioner",
                           {"spectrogram": {0: "b", 2: "f"}, "conditioner": {(1 if hoisted else 0): "b", (3 if hoisted else 2): "s"}})
        graphs[name] = (session(cond), session(denoiser(model, hoisted)), hoisted)

    def run_plain() -> np.ndarray:
        return inputs.call(lambda x, n: plain.run(None, inputs.step_feeds(x, n))[0])

    def run_variant(name: str) -> np.ndarray:
        cond_s, den_s, hoisted = graphs[name]
        cond = cond_s.run(None, {"spectrogram": mel})[0]
        biases = steps_graph.run(None, {"steps": sched.steps.astype(np.float32)})[0]
        feeds = {f"cond_{i}": cond[i] for i in range(cond.shape[0])} if hoisted else {"up": cond}
        return inputs.call(lambda x, n: den_s.run(None, {"audio": x, "step_bias": biases[n], **feeds})[0])

    calls = {"model.onnx": run_plain, "hoisted": lambda: run_variant("hoisted"), "upsampled": lambda: run_variant("upsampled")}
    reference = calls["model.onnx"]()
    with torch.no_grad():
        eps_torch = model(torch.from_numpy(x0), torch.tensor([float(sched.steps[2])]), torch.from_numpy(mel)).squeeze(1).numpy()
    for name, (cond_s, den_s, hoisted) in graphs.items():
        cond = cond_s.run(None, {"spectrogram": mel})[0]
        feeds = {f"cond_{i}": cond[i] for i in range(cond.shape[0])} if hoisted else {"up": cond}
        bias = steps_graph.run(None, {"steps": sched.steps[2:3].astype(np.float32)})[0][0]
        eps = den_s.run(None, {"audio": x0, "step_bias": bias, **feeds})[0]
        audio = calls[name]()
        print(f"{name}: eps rel L2 vs PyTorch {np.linalg.norm(eps - eps_torch) / np.linalg.norm(eps_torch):.1e}; "
              f"6-step audio max |diff| vs model.onnx {np.abs(audio - reference).max():.1e}")
    times = time_interleaved(calls, args.rounds)
    print_paired(times, "model.onnx", f"{args.seconds:g} s, {sched.num_steps} steps, threads {args.threads or 'default'}")

if __name__ == "__main__":
    main(sys.argv[1:])
