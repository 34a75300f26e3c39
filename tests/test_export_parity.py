"""Parity of the exported graphs with PyTorch (every weight random), and the gate's failure path.

Each test compares ONNX Runtime CPU with the PyTorch module the graph was exported from, through
the exporter's gate and directly here (an ORT session and ``model(...)`` in a few lines).
Random weights have scale 0.1: at scale 0.2 some random networks cancel so much in their
output that PyTorch float32 itself is 3.4e-5 away from float64 (tiny config, seed 3), above the
FP32 limit of 1e-5, and the test would measure float32 instead of the exporter. At 0.1 that floor
is <= 1.1e-6 for tiny and base, conditional and unconditional (seeds 0 and 3).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from diffwave.model import DiffWave
from export.fp16 import write_fp16_variant
from export.parity import (FP16_LIMIT, FP32_LIMIT, SNR_LIMIT_DB, ParityGateFailed, between_float16_values, gate_cases,
                           relative_errors, reverse_process, run_parity_gate, snr_db)
from export.step_graph import export_step_onnx, save_onnx_atomic
from helpers import CONFIGS, random_model, randomize_weights
from runtime.bundle import Profile
from runtime.schedule import FAST_BETAS, TRAINING_BETAS, ReverseSchedule

SMALL = Profile(min_frames=8, opt_frames=16, max_frames=32, max_batch=2)
#: the base model costs ~1 s per PyTorch evaluation on the 2-core CI machine: shortest useful lengths
BASE_PROFILE = Profile(min_frames=2, opt_frames=4, max_frames=8, max_batch=2)
SCALE = 0.1

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            model = randomize_weights(DiffWave(CONFIGS[name]()), seed=3, scale=SCALE).eval()
            folder = tmp_path_factory.mktemp(name)
            fp32 = export_step_onnx(model, folder / "model.onnx")
            cache[name] = (model, fp32, write_fp16_variant(fp32, folder / "model.fp16.onnx"))
        return cache[name]

    return get


def _direct_rel_err(model, path, frames, batch, step, seed=11):
    """ORT vs PyTorch written out here, independent of the gate's helpers."""
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, frames * 256, generator=gen)
    spec = None if model.unconditional else torch.rand(batch, 80, frames, generator=gen)
    with torch.no_grad():
        expected = model(audio, torch.tensor([step]), spec)[:, 0].numpy().astype(np.float64)
    feeds = {"audio": audio.numpy(), "diffusion_step": np.array([step], np.float32)}
    if spec is not None:
        feeds["spectrogram"] = spec.numpy()
    actual = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["eps"], feeds)[0]
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    return np.linalg.norm(actual - expected) / np.linalg.norm(expected)


@pytest.mark.parametrize("name", ["tiny", "tiny_uncond", "base"])
def test_gate_passes_with_random_weights(exported, name):
    model, fp32, fp16 = exported(name)
    report = run_parity_gate(model, fp32, fp16, BASE_PROFILE if name == "base" else SMALL, progress=False)
    assert report.passed
    assert len(report.cases) == 6 and len(report.snr) == 1
    for line in report.lines():
        print(name, line)
    assert report.worst("model.onnx") <= FP32_LIMIT
    assert report.worst("model.fp16.onnx") <= FP16_LIMIT
    assert report.snr[0].snr_db >= SNR_LIMIT_DB
    # The FP16 graph really is less exact than the FP32 one: the comparison sees precision.
    assert report.worst("model.fp16.onnx") > 10 * report.worst("model.onnx")
    (headroom,) = report.headroom
    assert headroom.graph == "model.fp16.onnx" and headroom.passed and 1.0 < headroom.peak < headroom.limit


def test_gate_refuses_an_fp16_graph_whose_activations_overflow_float16(tmp_path):
    """A float16 overflow ONNX Runtime's CPU cannot show: it computes these operators in float32.

    Scaling the skip projection up by 2e5 and the output projection down by as much leaves ε̂
    unchanged (ReLU between them is positively homogeneous), but the skip projection's output then
    exceeds 65504, float16's largest value: a TensorRT FP16 engine, which keeps activations in
    float16, would return inf. Every comparison with ONNX Runtime still passes.
    """
    model = randomize_weights(DiffWave(CONFIGS["tiny"]()), seed=3, scale=SCALE).eval()
    with torch.no_grad():
        model.skip_projection.weight.mul_(2e5)
        model.skip_projection.bias.mul_(2e5)
        model.output_projection.weight.div_(2e5)
    fp32 = export_step_onnx(model, tmp_path / "model.onnx")
    fp16 = write_fp16_variant(fp32, tmp_path / "model.fp16.onnx")
    with pytest.raises(ParityGateFailed) as info:
        run_parity_gate(model, fp32, fp16, SMALL, progress=False)
    report = info.value.report
    assert all(r.passed for r in report.cases) and all(r.passed for r in report.snr)  # blind to it
    (headroom,) = report.headroom
    assert headroom.layer == "skip_projection" and headroom.peak > 65504 and not headroom.passed
    assert str(info.value) == "parity gate failed: " + headroom.line()
    assert "largest activation" in str(info.value) and "float16's largest value / 16" in str(info.value)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_direct_parity_independent_of_the_gate(exported, name):
    model, fp32, fp16 = exported(name)
    fp32_err = _direct_rel_err(model, fp32, frames=4, batch=2, step=37.3)
    fp16_err = _direct_rel_err(model, fp16, frames=4, batch=2, step=37.3)
    print(f"{name}: eps rel err fp32 {fp32_err:.2e}, fp16 {fp16_err:.2e}")
    assert fp32_err <= FP32_LIMIT and fp16_err <= FP16_LIMIT
    # integer steps go through the same lerp (floor == ceil)
    assert _direct_rel_err(model, fp32, frames=2, batch=1, step=5.0) <= FP32_LIMIT


def test_gate_cases_cover_profile_min_and_max():
    cases = gate_cases(Profile(min_frames=16, opt_frames=256, max_frames=1024, max_batch=4), 50)
    assert [c.frames for c in cases] == [16, 128, 1024]
    assert [c.batch for c in cases] == [4, 2, 1]
    assert cases[-1].step > 32  # where float16 steps are 1/32 apart
    for c in cases:  # halfway between float16 values, exactly representable in float32
        assert np.float32(c.step) == c.step and float(np.float16(c.step)) != c.step


def test_between_float16_values():
    assert between_float16_values(45.57) == 45.578125  # float16 grid 45.5625, 45.59375
    assert between_float16_values(3.43) == 3.4306640625


def test_metrics():
    ref = np.array([[3.0, 4.0]])
    assert relative_errors(ref * 1.01, ref)[0] == pytest.approx(0.01)
    assert relative_errors(np.array([[np.nan, 4.0]]), ref)[0] == np.inf
    assert snr_db(ref * 1.1, ref) == pytest.approx(20.0)


def test_reverse_process_matches_lmnts_update_rule():
    """The gate's loop against the update written out for one step with known numbers."""
    schedule = ReverseSchedule.create(TRAINING_BETAS, FAST_BETAS[:1])  # one step: no noise term
    x = np.array([[0.5, -0.25]], np.float32)
    eps = np.array([[0.1, 0.2]], np.float32)
    out = reverse_process(lambda x_, s: eps, schedule, x, [np.zeros_like(x)])
    beta = FAST_BETAS[0]
    expected = (x - beta / np.sqrt(beta) * eps) / np.sqrt(1 - beta)
    np.testing.assert_allclose(out, np.clip(expected, -1, 1), rtol=1e-6)


@pytest.mark.parametrize("name", ["tiny", "tiny_uncond"])
def test_gate_catches_step_path_in_fp16(tmp_path, name):
    # Weights of scale 0.2 (the helper's default): with 0.1 a random network's output barely
    # depends on the step at all, unlike a trained one, and no step error would show.
    model = random_model(CONFIGS[name]())
    fp32 = export_step_onnx(model, tmp_path / "model.onnx")
    broken = write_fp16_variant(fp32, tmp_path / "model.fp16.onnx", keep_step_fp32=False)
    with pytest.raises(ParityGateFailed) as info:
        run_parity_gate(model, fp32, broken, SMALL, progress=False)
    report = info.value.report
    failed = [r for r in report.cases if not r.passed]
    assert failed and all(r.graph == "model.fp16.onnx" for r in failed)
    assert any(r.case.step > 32 for r in failed)
    assert "parity gate failed" in str(info.value) and "rel err" in str(info.value)
    print(name, report.failure_line())


def test_gate_catches_a_corrupted_weight(exported, tmp_path):
    model, fp32, _ = exported("tiny")
    graph = onnx.load(str(fp32))
    for init in graph.graph.initializer:
        if init.name == "model.residual_layers.1.dilated_conv.weight":
            values = numpy_helper.to_array(init).copy()
            values.flat[7] += 0.05  # one weight of one layer, a quarter of the random weights' spread
            init.CopyFrom(numpy_helper.from_array(values, init.name))
    corrupted = save_onnx_atomic(graph, tmp_path / "model.onnx")
    with pytest.raises(ParityGateFailed) as info:
        run_parity_gate(model, corrupted, None, SMALL, progress=False)
    assert all(not r.passed for r in info.value.report.cases)
    assert all(r.rel_err > FP32_LIMIT for r in info.value.report.cases)
