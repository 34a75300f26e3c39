"""benchmarks/step_cost.py counts what benchmarks/README.md quotes: check it against the formula."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest

from diffwave.model import DiffWave
from export.step_graph import export_step_onnx
from helpers import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import step_cost  # noqa: E402 - a file of this repository: missing is a failure, not a skip


def conv_flops_per_sample(layers: int, channels: int, n_mels: int) -> int:
    """Multiply-adds × 2 of every 1-D convolution, per output sample (DESIGN.md's count)."""
    per_layer = 2 * (3 * channels * 2 * channels + n_mels * 2 * channels + channels * 2 * channels)
    return layers * per_layer + 2 * (channels + channels * channels + channels)  # input, skip, output projections


@pytest.mark.parametrize("layers, channels", [(4, 16), (6, 8)])
def test_counted_flops_match_the_formula(tmp_path, layers, channels):
    config = tiny_config(residual_layers=layers, residual_channels=channels)
    path = export_step_onnx(DiffWave(config), tmp_path / "model.onnx")
    frames, hop, n_mels = 20, config.features.hop_samples, config.features.n_mels
    flops, moved = step_cost.count(step_cost.fixed_shapes(onnx.load(str(path)), frames, hop))
    samples = frames * hop
    assert flops["Conv"] / samples == pytest.approx(conv_flops_per_sample(layers, channels, n_mels), rel=1e-9)
    # two transposed convolutions, [3, 32] kernels, stride 16 in time: 96 MACs per input element
    upsampler = 2 * 96 * n_mels * (frames + frames * 16)
    assert flops["ConvTranspose"] == pytest.approx(upsampler, rel=1e-9)
    # each residual layer writes at least its 128-channel (2C) convolution outputs in float32
    assert sum(moved.values()) / samples > layers * 3 * 2 * channels * 4
