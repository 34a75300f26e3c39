"""The reverse loop of runtime.Vocoder against an independent sampler, across backends and batches."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from helpers import random_model, tiny_config
from runtime import Vocoder
from runtime.schedule import FAST_BETAS, TRAINING_BETAS
from runtime_helpers import bundle_metadata, random_mel, rel_err, write_onnx_bundle

HOP = 256


@pytest.fixture(scope="module")
def model():
    # Small weights keep most samples inside the clamp, so the comparisons are not of ±1 with ±1.
    from helpers import randomize_weights
    from diffwave.model import DiffWave

    return randomize_weights(DiffWave(tiny_config()), seed=1, scale=0.1).eval()


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    return write_onnx_bundle(tmp_path_factory.mktemp("bundle"), model)


@pytest.fixture(scope="module")
def onnx_vocoder(onnx_path):
    return Vocoder.load(onnx_path)


@pytest.fixture(scope="module")
def torch_vocoder(model):
    return Vocoder.from_module(model, bundle_metadata(model), device="cpu")


# -- an independent reference: the DiffWave paper's fast sampler, written from the equations --
def reference_sampler(model, mel: np.ndarray, noise: np.ndarray, train_betas, infer_betas) -> np.ndarray:
    """x_N = noise[0]; for n = N−1…0: x = clamp(c1·(x − c2·ε(x, t_n)) + σ_n·noise[k], −1, 1)."""
    train_betas = np.array(train_betas, dtype=np.float64)
    beta = np.array(infer_betas, dtype=np.float64)
    train_levels = np.cumprod(1 - train_betas)
    alpha = 1 - beta
    levels = np.cumprod(alpha)
    t_of = []
    for level in levels:  # the fractional training step whose √ᾱ matches, interpolated linearly
        t = next(t for t in range(len(train_levels) - 1) if train_levels[t + 1] <= level <= train_levels[t])
        hi, lo = np.sqrt(train_levels[t]), np.sqrt(train_levels[t + 1])
        t_of.append(t + (hi - np.sqrt(level)) / (hi - lo))
    x = torch.from_numpy(noise[0].copy())
    spec = torch.from_numpy(mel)
    with torch.no_grad():
        for k, n in enumerate(range(len(beta) - 1, -1, -1)):
            eps = model(x, torch.tensor([t_of[n]], dtype=torch.float32), spec).squeeze(1)
            x = (x - beta[n] / np.sqrt(1 - levels[n]) * eps) / np.sqrt(alpha[n])
            if n > 0:
                x = x + np.sqrt((1 - levels[n - 1]) / (1 - levels[n]) * beta[n]) * torch.from_numpy(noise[k + 1])
            x = torch.clamp(x, -1.0, 1.0).float()
    return x.numpy(), np.array(t_of)


def test_fast_schedule_steps_match_the_paper_alignment(torch_vocoder):
    schedule = torch_vocoder.schedule("fast")
    assert np.allclose(schedule.steps, [0, 0.894, 4.087, 10.452, 22.992, 42.919], atol=1e-3)


@pytest.fixture(scope="module")
def torch_buffer_vocoder(model):
    """PyTorch on CPU with torch-tensor buffers: the loop code CUDA runs (TorchOps), minus the GPU."""
    return Vocoder.from_module(model, bundle_metadata(model), device="cpu", torch_buffers=True)


@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime", "torch-buffers"])
def test_loop_matches_reference_sampler_with_injected_noise(model, torch_vocoder, onnx_vocoder, torch_buffer_vocoder, backend):
    mel = random_mel(80, 24, batch=2, seed=3)
    noise = np.random.default_rng(7).standard_normal((6, 2, 24 * HOP)).astype(np.float32)
    expected, t_of = reference_sampler(model, mel, noise, TRAINING_BETAS, FAST_BETAS)
    assert 0.05 < np.mean(np.abs(expected) < 1.0)  # a real signal, not everything clamped
    vocoder = {"pytorch": torch_vocoder, "onnxruntime": onnx_vocoder, "torch-buffers": torch_buffer_vocoder}[backend]
    assert np.allclose(vocoder.schedule("fast").steps, t_of)
    audio = vocoder(mel, noise=noise)
    assert audio.shape == (2, 24 * HOP) and audio.dtype == np.float32
    assert rel_err(audio, expected) <= 1e-5


def test_full_schedule_matches_reference(model, onnx_vocoder):
    mel = random_mel(80, 6, seed=4)
    noise = np.random.default_rng(8).standard_normal((50, 1, 6 * HOP)).astype(np.float32)
    expected, _ = reference_sampler(model, mel[None], noise, TRAINING_BETAS, TRAINING_BETAS)
    assert rel_err(onnx_vocoder(mel, steps="full", noise=noise), expected) <= 1e-5


def test_onnx_and_pytorch_agree_over_the_whole_loop_with_a_seed(torch_vocoder, onnx_vocoder):
    mel = random_mel(80, 40, seed=5)
    a = onnx_vocoder(mel, seed=11)
    b = torch_vocoder(mel, seed=11)
    assert rel_err(a, b) <= 1e-5
    assert not np.allclose(a, onnx_vocoder(mel, seed=12))  # the seed matters


def test_seed_reproducible_and_fresh_without_seed(onnx_vocoder):
    mel = random_mel(80, 16, seed=6)
    np.testing.assert_array_equal(onnx_vocoder(mel, seed=3), onnx_vocoder(mel, seed=3))
    assert not np.array_equal(onnx_vocoder(mel), onnx_vocoder(mel))


def test_torch_input_gives_torch_output(torch_vocoder):
    mel = random_mel(80, 8, seed=1)
    out = torch_vocoder(torch.from_numpy(mel), seed=0)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 8 * HOP) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), torch_vocoder(mel, seed=0))


def test_ragged_batch_equals_items_alone(onnx_vocoder):
    lengths = [30, 17, 30, 9]
    mels = random_mel(80, 30, batch=4, seed=9)
    batched = onnx_vocoder(mels, seed=[5, 6, 7, 8], lengths=lengths)
    assert [len(a) for a in batched] == [n * HOP for n in lengths]
    for i, n in enumerate(lengths):
        alone = onnx_vocoder(mels[i, :, :n], seed=5 + i)[0]
        assert rel_err(batched[i], alone) <= 1e-5
    # An int seed s means s, s+1, … per item: batch size does not change results.
    again = onnx_vocoder(mels, seed=5, lengths=lengths)
    for a, b in zip(batched, again):
        np.testing.assert_array_equal(a, b)


def test_torch_buffer_path_chunks_ragged_batches_and_seeds(model, torch_buffer_vocoder):
    """The CUDA code path (torch buffers, torch RNG) run on CPU: ragged + chunked + seeded."""
    chunked = Vocoder.from_module(model, bundle_metadata(model), device="cpu", torch_buffers=True, max_frames=8)
    mels = random_mel(80, 30, batch=2, seed=2)
    whole = torch_buffer_vocoder(mels, seed=[3, 4], lengths=[30, 21])
    parts = chunked(mels, seed=[3, 4], lengths=[30, 21])
    assert len(chunked.plan([30, 21]).passes[0].windows) > 4
    for a, b in zip(whole, parts):
        assert rel_err(b, a) <= 1e-5
    again = torch_buffer_vocoder(mels[1:, :, :21], seed=4)
    np.testing.assert_allclose(again[0], whole[1], rtol=0, atol=1e-6)


def test_ragged_items_are_never_padded_into_each_other(onnx_vocoder):
    plan = onnx_vocoder.plan([30, 17, 30])
    shapes = sorted((p.units, p.rows) for p in plan.passes)
    assert shapes == [(17, 1), (30, 2)]  # equal lengths share a call; others get their own shape


def test_buffers_fixed_across_steps_and_calls(onnx_vocoder, torch_vocoder):
    for vocoder in (onnx_vocoder, torch_vocoder):
        seen = []
        ops = vocoder.backend.ops
        vocoder.loop.step_observer = lambda e: seen.append(
            (ops.pointer(e.x), ops.pointer(e.eps), ops.pointer(e.sessions[0].audio), ops.pointer(e.sessions[0].eps))
        )
        try:
            mel = random_mel(80, 20, seed=2)
            vocoder(mel, seed=1)
            vocoder(mel * 0.5, seed=2)
            vocoder(random_mel(80, 19, seed=3), seed=3)  # another length in the same bucket
        finally:
            vocoder.loop.step_observer = None
        assert len(seen) == 18 and len(set(seen[:12])) == 1
        # A shorter call in the same bucket reuses the same memory.
        assert set(seen[12:]) == set(seen[:1])


def test_step_loop_allocates_no_arrays(onnx_vocoder):
    mel = random_mel(80, 64, seed=2)
    onnx_vocoder(mel, seed=0)  # buffers for this bucket exist from now on
    out_bytes = 64 * HOP * 4
    growth = []  # per step: the highest traced memory above where the previous step ended

    def between_steps(event):
        current, peak = tracemalloc.get_traced_memory()
        growth.append(peak - between_steps.current)
        between_steps.current = current
        tracemalloc.reset_peak()

    tracemalloc.start()
    onnx_vocoder.loop.step_observer = between_steps
    try:
        tracemalloc.reset_peak()
        base = between_steps.current = tracemalloc.get_traced_memory()[0]
        onnx_vocoder(mel, seed=1)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        onnx_vocoder.loop.step_observer = None
        tracemalloc.stop()
    # The call returns one new [1, samples] array (plus its trimmed copy) ...
    assert peak < 2.5 * out_bytes, peak
    # ... and no step makes a temporary of that size, even one freed before the next step (a
    # whole-call peak cannot see those: they never coexist). growth[0] includes the set-up.
    assert len(growth) == 6
    assert max(growth[1:]) < 0.5 * out_bytes, growth


def test_unconditional_generate_onnx_and_pytorch(tmp_path):
    model = random_model(tiny_config(unconditional=True), seed=3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    onnx_vocoder = Vocoder.load(write_onnx_bundle(tmp_path, model))
    torch_vocoder = Vocoder.from_module(model, bundle_metadata(model), device="cpu")
    a = onnx_vocoder.generate(0.05, batch=2, seed=4)
    b = torch_vocoder.generate(0.05, batch=2, seed=4)
    assert a.shape == (2, round(0.05 * 22050))
    assert rel_err(a, b) <= 1e-5
    assert not np.allclose(a[0], a[1])
    noise = np.random.default_rng(0).standard_normal((6, 1, 300)).astype(np.float32)
    expected, _ = _reference_unconditional(model, noise)
    assert rel_err(onnx_vocoder.generate(300 / 22050, noise=noise), expected) <= 1e-5


def _reference_unconditional(model, noise):
    class NoMel(torch.nn.Module):
        def forward(self, x, t, spec):
            return model(x, t)

    return reference_sampler(NoMel(), np.zeros((1, 1, 1), np.float32), noise, TRAINING_BETAS, FAST_BETAS)


@pytest.mark.parametrize("spinning", [False, True])
def test_spinning_reaches_the_onnx_runtime_session(onnx_path, onnx_vocoder, spinning):
    vocoder = Vocoder.load(onnx_path, device="cpu", threads=2, spinning=spinning)
    options = vocoder.backend.session_object.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")
    assert options.intra_op_num_threads == 2
    mel = np.random.default_rng(3).uniform(0, 1, (vocoder.n_mels, 12)).astype(np.float32)
    np.testing.assert_allclose(vocoder(mel, seed=7), onnx_vocoder(mel, seed=7), atol=1e-5)  # a speed knob only
