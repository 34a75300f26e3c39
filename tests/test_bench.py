"""`diffwave bench` on tiny random models: the reference loop, rows, JSON schema, plot, memory, errors.

The speed numbers themselves are not asserted (the CI machine is shared); what is asserted is
that the harness measures what it says: every requested row exists, its statistics agree
with its own raw timings, the reference loop is lmnt's sampler (same audio as the runtime on
identical noise), and the memory worker sees memory grow with the input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffwave.benchmark import SCHEMA, BenchReport
from diffwave.benchmark.memory import MemoryJob, measure_in_subprocess
from diffwave.benchmark.reference import reference_sample
from diffwave.cli import app
from helpers import random_model, tiny_config
from runtime import Vocoder
from runtime.schedule import ReverseSchedule
from runtime_helpers import random_mel, rel_err, save_model_dir, write_onnx_bundle

BACKENDS = ("reference-cpu", "pytorch-cpu", "onnxruntime-cpu", "onnxruntime-cpu-spinning")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two OpenMP threads on two shared cores stall whenever another job holds a core (measured:
    a tiny forward from 5 ms to 700 ms); one thread keeps this file's run time predictable."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_config(), seed=5)


@pytest.fixture(scope="module")
def run_dir(model, tmp_path_factory) -> Path:
    return save_model_dir(tmp_path_factory.mktemp("run"), model)


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory) -> Path:
    return write_onnx_bundle(tmp_path_factory.mktemp("bundle"), model)


def bench(*args) -> "CliRunner.Result":
    return CliRunner().invoke(app, ["bench", *map(str, args)])


def test_reference_loop_is_the_runtime_sampler_on_identical_noise(model):
    """The baseline must be a correct sampler: lmnt's algorithm gives the runtime's audio for the same noise."""
    meta = model.config.bundle_metadata()
    schedule = ReverseSchedule.create(meta.noise_schedule, meta.inference_schedules["fast"])
    mel = random_mel(80, 12, batch=2, seed=3)
    noise = np.random.default_rng(4).standard_normal((schedule.num_steps, 2, 12 * 256)).astype(np.float32)
    expected = Vocoder.from_module(model, meta, device="cpu")(mel, noise=noise)
    got = reference_sample(model, torch.from_numpy(mel), schedule, noise=noise).numpy()
    assert got.shape == expected.shape == (2, 12 * 256)
    assert np.abs(expected).max() > 0.05  # random weights: a real signal, not clamped zeros
    assert rel_err(got, expected) < 1e-4
    # Without injected noise it draws its own, every call anew (lmnt's torch.randn per step).
    generator = torch.Generator().manual_seed(0)
    a = reference_sample(model, torch.from_numpy(mel), schedule, generator=generator)
    b = reference_sample(model, torch.from_numpy(mel), schedule, generator=generator)
    assert not torch.equal(a, b)


def test_rows_json_and_plot_for_every_requested_backend(run_dir, onnx_path, tmp_path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "plots" / "bench.png"
    result = bench(
        "--checkpoint", run_dir, "--onnx", onnx_path, "--seconds", "0.05,0.1", "--batch", "1,2", "--repeats", 3,
        "--warmup", 1, "--backends", ",".join(BACKENDS[1:]), "--no-memory", "--torch-threads", 1, "--no-progress",
        "--json", out_json, "--plot", out_png,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert data["schema"] == SCHEMA
    assert set(data) == {"schema", "created", "machine", "settings", "models", "rows", "skipped"}
    report = BenchReport.from_json(out_json.read_text())

    shapes = {(b, s) for b in (1, 2) for s in (0.05, 0.1)}
    got = {(r.backend, r.batch, r.seconds) for r in report.rows}
    assert got == {(name, b, s) for name in BACKENDS for b, s in shapes}  # the reference came by itself
    for row in report.rows:
        assert row.device == "cpu" and row.steps == 6
        assert row.samples == round(row.seconds * 22050 / 256) * 256
        assert len(row.times_ms) == 3 and row.min_ms <= row.median_ms <= row.max_ms
        assert row.median_ms == pytest.approx(statistics.median(row.times_ms))
        audio_seconds = row.batch * row.samples / 22050
        assert row.rtf == pytest.approx(row.median_ms / 1e3 / audio_seconds)
        assert row.x_realtime == pytest.approx(1 / row.rtf)
        ref = next(r for r in report.rows if r.backend == "reference-cpu" and (r.batch, r.seconds) == (row.batch, row.seconds))
        paired = statistics.median(a / b for a, b in zip(ref.times_ms, row.times_ms))
        assert row.speedup == pytest.approx(paired)
        assert row.speedup_of_medians == pytest.approx(ref.median_ms / row.median_ms)
        rounds = [a / b for a, b in zip(ref.times_ms, row.times_ms)]
        assert row.speedup_range == pytest.approx((min(rounds), max(rounds)))  # the spread the median hides
        assert row.peak_mb is None and row.warmup_ms > 0
        # every timed row computed the reference's audio first (float32 rows: far above the 30 dB bar)
        assert row.agreement_db is None if row.backend == "reference-cpu" else row.agreement_db > 100, row
        if row.backend != "reference-cpu":
            low, high = row.speedup_range
            assert f"{row.speedup:.2f}× ({low:.2f}–{high:.2f})" in result.stdout
    assert all(r.speedup == 1.0 for r in report.rows if r.backend == "reference-cpu")
    # No --threads: ONNX Runtime gets torch's count (1 here), not its own default of one per core,
    # which ignores OMP_NUM_THREADS; the report and the row say so.
    assert report.settings["threads"] == 1
    assert "onnxruntime (CPU, 1 thread) model.onnx" in next(r.detail for r in report.rows if r.backend == "onnxruntime-cpu")

    machine = data["machine"]
    assert machine["cpu_model"] and machine["cpu_cores"] >= 1 and machine["cpus_usable"] >= 1
    assert {"torch", "numpy", "onnxruntime"} <= set(machine["libraries"])
    assert machine["torch_threads"] == 1 and report.settings["torch_threads"] == 1
    assert report.models["weights"] == f"checkpoint {run_dir}" and report.models["onnx"] == str(onnx_path)
    assert {s["backend"] for s in data["skipped"]} == set()  # all requested rows ran

    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 5000
    for name in BACKENDS:
        assert name in result.stdout
    assert "speed-up (rounds)" in result.stdout and "peak MiB" in result.stdout and "machine:" in result.stdout


def test_memory_worker_sees_memory_grow_with_the_input(run_dir, onnx_path, model):
    meta = model.config.bundle_metadata().to_dict()

    def job(frames: int, contender: str = "onnxruntime-cpu") -> MemoryJob:
        return MemoryJob(contender, meta, str(run_dir), str(onnx_path), None, batch=1, frames=frames, steps="fast", torch_threads=1)

    small, large, ref = (measure_in_subprocess(job(4)), measure_in_subprocess(job(600)),
                         measure_in_subprocess(job(4, "reference-cpu")))
    for r in (small, large, ref):
        assert r.error is None, r.error
        assert r.first_call_ms > 0 and r.load_ms > 0 and r.peak_rss_mb > 10 and r.reset_ok
    # 600 frames = 153 600 samples: the tiny model's [16, L] activations alone are ~10 MB each.
    assert large.peak_mb > small.peak_mb + 20


def test_memory_columns_in_the_report(run_dir, onnx_path, tmp_path):
    out = tmp_path / "mem.json"
    result = bench("--checkpoint", run_dir, "--onnx", onnx_path, "--seconds", "0.05", "--batch", 1, "--repeats", 1,
                   "--warmup", 0, "--backends", "onnxruntime-cpu", "--torch-threads", 1, "--no-progress", "--json", out)
    assert result.exit_code == 0, result.output
    rows = BenchReport.from_json(out.read_text()).rows
    assert [r.backend for r in rows] == ["reference-cpu", "onnxruntime-cpu"]
    for row in rows:
        assert row.memory_error is None and row.peak_mb is not None and row.peak_mb >= 0 and row.first_call_ms > 0
        assert row.load_ms > 0
    # The printed cold start is opening the model plus the first call, both in the fresh process.
    header = next(line for line in result.output.splitlines() if line.startswith("backend"))
    assert "cold ms" in header
    for row in rows:
        printed = next(line for line in result.output.splitlines() if line.startswith(row.backend + " "))
        assert f" {row.load_ms + row.first_call_ms:.0f} " in printed, printed


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["--backends", "onnxruntime-cpu,warp-drive"], 2, "unknown backend 'warp-drive'"),
        (["--backends", ","], 2, "--backends ',': name at least one; known: reference-cpu"),
        (["--seconds", "1,abc"], 2, "--seconds"),
        (["--seconds", "0"], 2, "positive"),
        (["--batch", "0"], 2, "at least 1"),
        (["--steps", "medium"], 2, "unknown schedule 'medium'"),
        (["--steps", "0.1,medium"], 2, "not a schedule name nor comma-separated betas"),
        (["--steps", "2.0"], 2, "--steps: "),  # one beta, read as betas (it was a schedule name) and refused as a beta
        (["--seconds", "inf"], 2, "at most 3600 s of audio per row"),
        (["--batch", "100000000"], 2, "at most 1024 items per call"),
    ],
)
def test_bad_usage_is_one_line_and_writes_nothing(run_dir, onnx_path, tmp_path, args, code, words):
    out = tmp_path / "out.json"
    result = bench("--checkpoint", run_dir, "--onnx", onnx_path, "--no-memory", "--json", out, *args)
    assert result.exit_code == code, result.output
    assert words in result.output and result.output.count("error:") == 1
    assert not out.exists()


def test_missing_or_broken_model_files(tmp_path):
    out = tmp_path / "out.json"
    result = bench("--checkpoint", tmp_path / "nowhere", "--json", out)
    assert result.exit_code == 1 and "no such file" in result.output and not out.exists()
    broken = tmp_path / "weights.pt"
    broken.write_bytes(b"not a checkpoint")
    result = bench("--checkpoint", broken, "--json", out)
    assert result.exit_code == 1 and str(broken) in result.output and not out.exists()


def test_an_unconditional_checkpoint_is_a_bad_model_not_a_machine_limit(tmp_path):
    # Before: exit 3, which says "nothing could run on this machine"; the model is what is wrong.
    uncond = save_model_dir(tmp_path / "uncond", random_model(tiny_config(unconditional=True, audio_len=1500), seed=3))
    out = tmp_path / "out.json"
    result = bench("--checkpoint", uncond, "--backends", "onnxruntime-cpu", "--no-memory", "--json", out)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        f"error: {uncond}: an unconditional model; diffwave bench times conditional ones (spectrogram in)"
    )
    assert not out.exists()


def test_a_bundle_of_another_network_than_the_checkpoint_is_refused(run_dir, tmp_path):
    # Its rows would time another model than the reference rows: the speed-ups would mean nothing.
    other = write_onnx_bundle(tmp_path / "other", random_model(tiny_config(residual_layers=3), seed=1))
    out = tmp_path / "out.json"
    result = bench("--checkpoint", run_dir, "--onnx", other, "--no-memory", "--json", out)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        f"error: {other}: another network than --checkpoint {run_dir} (residual_layers 3 vs 4): "
        "the speed-ups would compare different models"
    )
    assert not out.exists()


def test_a_row_that_computes_other_audio_is_not_timed(run_dir, tmp_path):
    """A bundle of the same architecture but other weights passes the network check; its audio does
    not match the reference's, so it must not be timed and reported as a speed-up."""
    other = write_onnx_bundle(tmp_path / "other", random_model(tiny_config(), seed=9))
    out = tmp_path / "out.json"
    result = bench("--checkpoint", run_dir, "--onnx", other, "--seconds", "0.05", "--batch", 1, "--repeats", 1, "--warmup", 0,
                   "--backends", "onnxruntime-cpu,pytorch-cpu", "--no-memory", "--torch-threads", 1, "--no-progress",
                   "--json", out)
    assert result.exit_code == 0, result.output
    report = BenchReport.from_json(out.read_text())
    assert [r.backend for r in report.rows] == ["reference-cpu", "pytorch-cpu"]
    (skipped,) = report.skipped
    assert skipped.backend == "onnxruntime-cpu" and skipped.batch == 1
    assert "its audio differs from reference-cpu's on the same noise (SNR" in skipped.reason
    assert "dB < 30 dB): another model or a broken backend" in skipped.reason


def test_a_bundle_without_its_checkpoint_is_timed_without_the_audio_check(onnx_path, tmp_path):
    # The documented mode: --onnx alone, the torch rows on random weights of its architecture. Their
    # audio cannot match the bundle's, so that row is timed unchecked (agreement null), not skipped.
    out = tmp_path / "out.json"
    result = bench("--onnx", onnx_path, "--seconds", "0.05", "--batch", 1, "--repeats", 1, "--warmup", 0,
                   "--backends", "onnxruntime-cpu,pytorch-cpu", "--no-memory", "--torch-threads", 1, "--no-progress",
                   "--json", out)
    assert result.exit_code == 0, result.output
    rows = {r.backend: r for r in BenchReport.from_json(out.read_text()).rows}
    assert set(rows) == {"reference-cpu", "pytorch-cpu", "onnxruntime-cpu"}
    assert rows["onnxruntime-cpu"].agreement_db is None and rows["pytorch-cpu"].agreement_db > 100


def test_without_a_model_it_runs_a_random_base_model(tmp_path):
    """The default path: base architecture (30 × 64), random weights, exported to a temporary ONNX."""
    out = tmp_path / "base.json"
    result = bench("--backends", "onnxruntime-cpu", "--seconds", "0.03", "--batch", 1, "--repeats", 1, "--warmup", 0,
                   "--no-memory", "--torch-threads", 1, "--no-progress", "--json", out)
    assert result.exit_code == 0, result.output
    report = BenchReport.from_json(out.read_text())
    assert report.models["weights"] == "random, the base architecture"
    assert [r.backend for r in report.rows] == ["reference-cpu", "onnxruntime-cpu"]
    assert "model.onnx" in report.rows[1].detail
    assert not Path(report.models["onnx"]).exists()  # the temporary bundle is gone


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine: gpu.sh runs for real there")
def test_gpu_script_refuses_a_machine_without_a_gpu(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    out = tmp_path / "results"
    result = subprocess.run(["bash", str(script), str(out)], capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "nvidia-smi failed" in result.stderr
    assert (out / "nvidia-smi.txt").is_file() and not (out / "bench-cuda.json").exists()


def test_a_graph_row_that_ran_eager_says_so():
    """A *-graphs row captures only when the call's noise fits the budget and the input is one window;
    at benchmarks/gpu.sh's 60 s x batch 8 it times the eager loop, which the table must not hide."""
    from diffwave.benchmark.machine import describe_machine
    from diffwave.benchmark.report import BenchRow

    def row(backend, mode):
        return BenchRow(backend=backend, device="cuda", batch=8, seconds=60.0, samples=1323008, steps=6, median_ms=10.0,
                        min_ms=9.0, max_ms=11.0, times_ms=[9.0, 10.0, 11.0], rtf=0.1, x_realtime=10.0, speedup=2.0,
                        speedup_of_medians=2.0, speedup_range=(1.5, 2.5), mode=mode)

    report = BenchReport(machine=describe_machine(), settings={}, models={},
                         rows=[row("tensorrt-graphs", "eager"), row("pytorch-cuda-graphs", "replayed"), row("tensorrt", "eager")])
    names = [line.split("  ")[0] for line in report.table().splitlines()[2:]]
    assert names == ["tensorrt-graphs (eager)", "pytorch-cuda-graphs (graph)", "tensorrt"]
    assert "2.00× (1.50–2.50)" in report.table()
