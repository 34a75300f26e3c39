"""Exact chunking: the receptive field measured on a real network, window plans, chunked == whole."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import random_model, randomize_weights, tiny_config
from diffwave.model import DiffWave
from runtime import Vocoder
from runtime.chunking import fitted_window, plan_windows
from runtime.receptive_field import Halo, StepReach, residual_reach, upsampler_frame_span
from runtime_helpers import random_mel, rel_err, write_onnx_bundle

HOP = 256


def test_base_model_reach_is_3069_samples_and_13_frames():
    assert residual_reach(30, 10) == 3069
    assert StepReach(3069, conditional=True, hop=HOP).halo() == Halo(13, 13)
    assert StepReach(3069, conditional=False, hop=HOP).halo() == Halo(3069, 3069)


def _changed(model, audio, mel, step=7.3):
    with torch.no_grad():
        return model(audio, torch.tensor([step], dtype=torch.float64), mel).squeeze(1)[0]


@pytest.mark.parametrize("layers,cycle", [(4, 2), (5, 3)])
def test_computed_reach_equals_measured_reach(layers, cycle):
    """Perturb one audio sample / one mel frame of a random network; see exactly which outputs move."""
    model = randomize_weights(DiffWave(tiny_config(residual_layers=layers, dilation_cycle_length=cycle)), seed=2).double().eval()
    frames = 24
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(1, frames * HOP, generator=gen, dtype=torch.float64)
    mel = torch.rand(1, 80, frames, generator=gen, dtype=torch.float64)
    base = _changed(model, audio, mel)
    reach = residual_reach(layers, cycle)

    s0 = 12 * HOP + 37
    bumped = audio.clone()
    bumped[0, s0] += 1.0
    moved = torch.nonzero(_changed(model, bumped, mel) != base).flatten()
    assert (int(moved.min()), int(moved.max())) == (s0 - reach, s0 + reach)

    f0 = 11
    bumped = mel.clone()
    bumped[0, :, f0] += 0.5
    moved = torch.nonzero(_changed(model, audio, bumped) != base).flatten()
    reads_f0 = [j for j in range(frames * HOP) if upsampler_frame_span(j)[0] <= f0 <= upsampler_frame_span(j)[1]]
    # The conditioner joins each layer after its dilated convolution, so it spreads through all
    # but the first layer's (1-sample) reach; the halo uses the full reach, one sample to spare.
    assert (int(moved.min()), int(moved.max())) == (min(reads_f0) - reach + 1, max(reads_f0) + reach - 1)


@pytest.mark.parametrize("seed", range(5))
def test_window_plans_cover_every_unit_once_with_a_full_halo(seed):
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in rng.integers(1, 200, size=rng.integers(1, 6))]
    halo = Halo(int(rng.integers(0, 6)), int(rng.integers(0, 6)))
    window = halo.total + int(rng.integers(1, 30))
    budget = window * int(rng.integers(1, 4))
    plan = plan_windows(lengths, window=window, halo=halo, max_units_per_call=budget, max_rows=3)
    kept = {i: [] for i in range(len(lengths))}
    for p in plan.passes:
        assert p.rows <= 3 and (p.rows == 1 or p.rows * p.units <= budget)
        for w in p.windows:
            n = lengths[w.item]
            assert 0 <= w.start and w.start + p.units <= n
            assert w.start == 0 or w.keep_start - w.start >= halo.before
            assert w.start + p.units == n or w.start + p.units - w.keep_stop >= halo.after
            if n <= window:
                assert p.units == n  # short items run at their exact length, never padded
            kept[w.item].append((w.keep_start, w.keep_stop))
    for i, n in enumerate(lengths):
        spans = sorted(kept[i])
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        if n > window:  # no more windows than the limit itself would need
            assert len(spans) == -(-(n - halo.total) // (window - halo.total))


def test_long_items_get_the_shortest_windows_that_suffice():
    halo = Halo(13, 13)  # the base model
    assert fitted_window(862, 512, halo) == 444  # 10 s: two windows of 444 frames, not 512
    plan = plan_windows([862], window=512, halo=halo, max_units_per_call=512)
    (p,) = plan.passes
    assert p.units == 444 and [(w.start, w.keep_start, w.keep_stop) for w in p.windows] == [(0, 0, 431), (418, 431, 862)]


@pytest.fixture(scope="module")
def wide_model_onnx(tmp_path_factory):
    """Ten layers with dilations 1…512: a 1023-sample reach, so halos span several frames."""
    model = randomize_weights(DiffWave(tiny_config(residual_layers=10, dilation_cycle_length=10, residual_channels=8)), seed=5, scale=0.1)
    return write_onnx_bundle(tmp_path_factory.mktemp("wide"), model.eval())


def test_chunked_equals_whole_signal_on_onnx(wide_model_onnx):
    whole = Vocoder.load(wide_model_onnx)
    chunked = Vocoder.load(wide_model_onnx, max_frames=20)
    halo = chunked.halo
    assert halo.before >= 4  # 1023 samples + the upsampler's reach
    mels = random_mel(80, 70, batch=2, seed=1)
    lengths = [70, 53]
    plan = chunked.plan(lengths)
    assert len(plan.passes) == 1 and len(plan.passes[0].windows) >= 8
    a = whole(mels, seed=3, lengths=lengths)
    b = chunked(mels, seed=3, lengths=lengths)
    for x, y in zip(a, b):
        assert rel_err(y, x) <= 1e-5
    # The comparison notices a short halo (the exact reach itself is measured above; with random
    # weights the outermost taps of the 512-dilation layer are too weak to show at 1e-5).
    chunked._halo = Halo(1, 1)
    c = chunked(mels, seed=3, lengths=lengths)
    assert rel_err(c[0], a[0]) > 1e-3


def test_chunked_generate_equals_whole_for_unconditional(tmp_path):
    model = randomize_weights(DiffWave(tiny_config(unconditional=True, residual_layers=6, dilation_cycle_length=6)), seed=1, scale=0.1)
    onnx_path = write_onnx_bundle(tmp_path, model.eval())
    whole = Vocoder.load(onnx_path)
    chunked = Vocoder.load(onnx_path, max_frames=2)  # 512-sample windows, 63-sample halo
    assert chunked.halo == Halo(63, 63)
    assert len(chunked.plan([3000]).passes[0].windows) > 5
    assert rel_err(chunked.generate(3000 / 22050, seed=1), whole.generate(3000 / 22050, seed=1)) <= 1e-5


def test_noise_drawn_per_step_equals_noise_drawn_at_once(wide_model_onnx):
    mel = random_mel(80, 30, seed=2)
    at_once = Vocoder.load(wide_model_onnx)(mel, seed=9)
    per_step = Vocoder.load(wide_model_onnx, noise_budget_bytes=0)(mel, seed=9)
    np.testing.assert_array_equal(at_once, per_step)


MEMORY_PROBE = """
import json, resource, sys
import numpy as np
from runtime import Vocoder
voc = Vocoder.load(sys.argv[1], max_frames=64)
peaks = []
for seconds in (3, 24):
    mel = np.random.default_rng(0).uniform(0, 1, (80, int(seconds * 22050 / 256))).astype(np.float32)
    voc(mel, steps=[1e-4, 0.05], seed=0)
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps(peaks))
"""


def test_long_input_memory_does_not_grow_with_activations(tmp_path):
    """24 s through a 2-channel model: whole-signal activations would be >0.5 GB; chunks need a few MB."""
    model = random_model(tiny_config(residual_layers=2, residual_channels=2), seed=0)
    onnx_path = write_onnx_bundle(tmp_path, model)
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(onnx_path)], capture_output=True, text=True, check=True)
    short_peak, long_peak = json.loads(out.stdout)
    # Per-call state for 24 s is ≈ 8 floats per sample (x, ε, two noise slots, mel, output) ≈ 17 MB.
    assert long_peak - short_peak < 60 << 20, (short_peak, long_peak)
