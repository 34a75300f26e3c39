"""Experiment: fewer bytes per step with standard operators only (benchmarks/README.md).

    python benchmarks/split_convs.py [--checkpoint DIR] [--seconds 5] [--rounds 3]

``step_cost.py`` puts three quarters of a step's memory traffic in elementwise operators:
the Slices that cut the gate and output convolutions in halves, the 1/√2 Div, the Adds.
This graph is an exact rewrite of the same network that removes the Slices and the Div
without any contrib operator (``com.microsoft.FusedConv`` with a sum input measured slower
than Conv + Add, see the README):

* the dilated convolution and the conditioner projection are each split into a gate and a
  filter convolution (64 output channels each) instead of one of 128 cut in two;
* the output projection is split into a residual and a skip convolution;
* the residual stream is carried as 2^(l/2)·x_l, so the per-layer 1/√2 moves into the
  weights (dilated convolution ÷ 2^(l/2), residual projection × 2^(l/2)), and the final
  1/√layers into the skip projection.

It prints the relative error against PyTorch and times whole 6-step calls against
``model.onnx`` in interleaved rounds.
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
import torch.nn.functional as F
from interleaved import (  # this folder is on sys.path when run as a script
    print_paired,
    time_interleaved,
)
from probe import ProbeInputs, probe_model

from diffwave.model import DiffWave
from export.step_graph import export_step_onnx, finalize_graph


def _conv(weight: torch.Tensor, bias: torch.Tensor | None, dilation: int = 1) -> torch.nn.Conv1d:
    out, cin, k = weight.shape
    conv = torch.nn.Conv1d(cin, out, k, padding=dilation * (k // 2), dilation=dilation, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


class SplitLayer(torch.nn.Module):
    def __init__(self, layer, index: int):
        super().__init__()
        c, s = layer.output_projection.in_channels, math.sqrt(2.0) ** index
        d = int(layer.dilated_conv.dilation[0])
        wd, bd = layer.dilated_conv.weight.detach(), layer.dilated_conv.bias.detach()
        wc, bc = layer.conditioner_projection.weight.detach(), layer.conditioner_projection.bias.detach()
        wo, bo = layer.output_projection.weight.detach(), layer.output_projection.bias.detach()
        self.scale = s
        self.diffusion_projection = layer.diffusion_projection
        self.gate = _conv(wd[:c] / s, bd[:c], d)  # lmnt's chunk order: gate first, then filter
        self.filter = _conv(wd[c:] / s, bd[c:], d)
        self.gate_cond = _conv(wc[:c], bc[:c])
        self.filter_cond = _conv(wc[c:], bc[c:])
        self.residual = _conv(wo[:c] * s, bo[:c] * s)
        self.skip = _conv(wo[c:], bo[c:])

    def forward(self, x, emb, up):
        y = x + (self.diffusion_projection(emb) * self.scale).unsqueeze(-1)
        h = torch.sigmoid(self.gate(y) + self.gate_cond(up)) * torch.tanh(self.filter(y) + self.filter_cond(up))
        return x + self.residual(h), self.skip(h)


class SplitStep(torch.nn.Module):
    """audio [B, L], step [1], spectrogram [B, n_mels, F] -> eps [B, L], as ``model.onnx``."""

    def __init__(self, model: DiffWave):
        super().__init__()
        self.model = model
        self.layers = torch.nn.ModuleList(SplitLayer(layer, i) for i, layer in enumerate(model.residual_layers))
        sp = model.skip_projection
        self.skip_projection = _conv(sp.weight.detach() / math.sqrt(len(self.layers)), sp.bias.detach())

    def forward(self, audio, diffusion_step, spectrogram):
        emb, up = self.model.embed_steps(diffusion_step), self.model.upsample(spectrogram)
        x = F.relu(self.model.input_projection(audio.unsqueeze(1)))
        skip = None
        for layer in self.layers:
            x, s = layer(x, emb, up)
            skip = s if skip is None else skip + s
        return self.model.output_projection(F.relu(self.skip_projection(skip))).squeeze(1)


def export_split(model: DiffWave, path: Path) -> Path:
    axes = {"audio": {0: "batch", 1: "samples"}, "eps": {0: "batch", 1: "samples"}, "spectrogram": {0: "batch", 2: "frames"}}
    n_mels = model.config.features.n_mels
    inputs = (torch.zeros(1, 8 * model.config.features.hop_samples), torch.tensor([3.5]), torch.zeros(1, n_mels, 8))
    with torch.no_grad():
        torch.onnx.export(SplitStep(model).eval(), inputs, str(path), input_names=["audio", "diffusion_step", "spectrogram"],
                          output_names=["eps"], dynamic_axes=axes, opset_version=17, dynamo=False)
    onnx.save(finalize_graph(onnx.load(str(path))), str(path))
    return path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="weights (default: random base model)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ort.set_default_logger_severity(3)
    model = probe_model(args.checkpoint)
    inputs = ProbeInputs.create(model.config.bundle_metadata(), args.seconds)
    sched, mel, x0 = inputs.schedule, inputs.mel, inputs.x0

    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {
            "model.onnx": ort.InferenceSession(str(export_step_onnx(model, Path(tmp) / "model.onnx")), options),
            "split": ort.InferenceSession(str(export_split(model, Path(tmp) / "split.onnx")), options),
        }

    def call(session) -> np.ndarray:
        return inputs.call(lambda x, n: session.run(None, inputs.step_feeds(x, n))[0])

    feeds = inputs.step_feeds(x0, 2)
    with torch.no_grad():
        eps_torch = model(torch.from_numpy(x0), torch.tensor([float(sched.steps[2])]), torch.from_numpy(mel)).squeeze(1).numpy()
    reference = call(sessions["model.onnx"])
    for name, session in sessions.items():
        eps = session.run(None, feeds)[0]
        print(f"{name}: eps rel L2 vs PyTorch {np.linalg.norm(eps - eps_torch) / np.linalg.norm(eps_torch):.1e}; "
              f"6-step audio max |diff| vs model.onnx {np.abs(call(session) - reference).max():.1e}")
    times = time_interleaved({name: (lambda s=s: call(s)) for name, s in sessions.items()}, args.rounds)
    print_paired(times, "model.onnx", f"{args.seconds:g} s, {sched.num_steps} steps")


if __name__ == "__main__":
    main(sys.argv[1:])
