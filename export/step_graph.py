"""One denoising step of DiffWave as an ONNX graph (DESIGN.md, "ONNX step graph").

Inputs ``audio`` [batch, samples], ``diffusion_step`` [1] (continuous training step),
``spectrogram`` [batch, n_mels, frames] (absent for unconditional models); output
``eps`` [batch, samples]. Batch, samples and frames are dynamic.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from diffwave.model import DiffWave

INPUT_AUDIO, INPUT_STEP, INPUT_SPECTROGRAM, OUTPUT_EPS = "audio", "diffusion_step", "spectrogram", "eps"
DEFAULT_OPSET = 17


class DenoisingStep(torch.nn.Module):
    """The network's forward with the step graph's I/O: float step [1], eps [batch, samples]."""

    def __init__(self, model: DiffWave):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, diffusion_step: torch.Tensor, spectrogram: torch.Tensor | None = None):
        return self.model(audio, diffusion_step, spectrogram).squeeze(1)


def example_inputs(model: DiffWave, batch: int = 1, frames: int = 8) -> tuple[torch.Tensor, ...]:
    hop = model.config.features.hop_samples
    audio = torch.randn(batch, frames * hop)
    step = torch.tensor([1.5], dtype=torch.float32)
    if model.unconditional:
        return audio, step
    return audio, step, torch.rand(batch, model.config.features.n_mels, frames)


def export_step_onnx(model: DiffWave, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export one float32 network evaluation to ``path`` with dynamic batch/samples/frames."""
    path = Path(path)
    model = model.float().eval().cpu()
    inputs = example_inputs(model)
    names = [INPUT_AUDIO, INPUT_STEP] + ([] if model.unconditional else [INPUT_SPECTROGRAM])
    axes = {INPUT_AUDIO: {0: "batch", 1: "samples"}, OUTPUT_EPS: {0: "batch", 1: "samples"}}
    if not model.unconditional:
        axes[INPUT_SPECTROGRAM] = {0: "batch", 2: "frames"}
    with torch.no_grad():
        # The TorchScript exporter: it keeps the step embedding's Floor/Ceil/Gather as plain
        # ops and produces a graph TensorRT's parser takes without onnxscript rewrites.
        torch.onnx.export(
            DenoisingStep(model),
            inputs,
            str(path),
            input_names=names,
            output_names=[OUTPUT_EPS],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path
