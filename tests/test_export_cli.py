"""``diffwave export`` end to end: bundles, plans, and every input that must fail cleanly.

Most runs go through typer's CliRunner (the real command, in process); the exit-3 path also
runs as a subprocess, to check the installed entry point's status and one-line stderr.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

import export.bundle_export as bundle_export
from diffwave.checkpoint import Checkpoint, save_checkpoint
from diffwave.cli import app
from diffwave.config import DiffWaveConfig
from diffwave.model import DiffWave
from export.bundle_export import sha256_file
from export.fp16 import write_fp16_variant
from helpers import random_model, randomize_weights, tiny_config
from runtime.bundle import BundleMetadata
from runtime.trt_target import TENSORRT

PROFILE_ARGS = ["--min-frames", "8", "--opt-frames", "16", "--max-frames", "32", "--max-batch", "2", "--no-progress"]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def error_line(result) -> str:
    """The command's error: the last stderr line, which must be the only 'error:' line."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = random_model(tiny_config())
    folder = tmp_path_factory.mktemp("run")
    save_checkpoint(folder, Checkpoint(step=12, model=model.state_dict(), params=model.config.to_params()))
    return folder


@pytest.fixture(scope="module")
def onnx_bundle(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    result = invoke(model_dir, "-o", out, "--onnx-only", *PROFILE_ARGS)
    assert result.exit_code == 0, result.stderr
    return out


def test_onnx_only_bundle(onnx_bundle, model_dir):
    assert sorted(p.name for p in onnx_bundle.iterdir()) == ["model.fp16.onnx", "model.json", "model.onnx"]
    raw = json.loads((onnx_bundle / "model.json").read_text())
    meta = BundleMetadata.read(onnx_bundle)
    config = tiny_config()
    assert raw["format_version"] == 1
    assert (meta.sample_rate, meta.hop_samples, meta.n_mels, meta.unconditional) == (22050, 256, 80, False)
    assert meta.noise_schedule == tuple(config.diffusion.noise_schedule)
    assert meta.inference_schedules["fast"] == (0.0001, 0.001, 0.01, 0.05, 0.2, 0.5)
    assert meta.inference_schedules["full"] == meta.noise_schedule
    assert meta.features == config.features
    assert meta.onnx == {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}
    for name in meta.onnx.values():
        assert meta.onnx_sha256[name] == sha256_file(onnx_bundle / name)
    assert meta.plans == ()
    assert meta.params["residual_layers"] == 4
    # published readable (mkstemp/mkdtemp would leave 0600/0700)
    assert (onnx_bundle / "model.onnx").stat().st_mode & 0o044 == 0o044
    assert not [p for p in onnx_bundle.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_rtx_export_writes_plan_and_plan_info(model_dir, tmp_path):
    out = tmp_path / "build"
    result = invoke(model_dir, "-o", out, "--target", "rtx", "--fp16", *PROFILE_ARGS)
    assert result.exit_code == 0, result.stderr
    assert (out / "model.rtx.plan").stat().st_size > 1_000_000
    meta = BundleMetadata.read(out)
    info = meta.plan("model.rtx.plan")
    assert (info.target, info.precision, info.onnx_file) == ("rtx", "fp16", "model.fp16.onnx")
    assert (info.profile.min_frames, info.profile.opt_frames, info.profile.max_frames) == (8, 16, 32)
    assert (info.profile.min_batch, info.profile.opt_batch, info.profile.max_batch) == (1, 1, 2)
    assert info.onnx_sha256 == sha256_file(out / "model.fp16.onnx")
    assert "8.9" in info.compute_capabilities and "9.0" not in info.compute_capabilities
    assert "model.rtx.plan" in result.stdout and "parity gate" in result.stdout
    # The GPU box step: build again from the bundle (FP32 this time, replacing the RTX entry).
    again = invoke(out, "--target", "rtx", "--fp32", *PROFILE_ARGS)
    assert again.exit_code == 0, again.stderr
    assert BundleMetadata.read(out).plan("model.rtx.plan").onnx_file == "model.onnx"


def test_missing_tensorrt_keeps_onnx_bundle_and_prints_polygraphy_command(model_dir, tmp_path):
    if TENSORRT.available():
        pytest.skip("tensorrt is installed here; the missing-TensorRT path cannot be reached")
    out = tmp_path / "build"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "diffwave", "export", str(model_dir), "-o", str(out), "--fp16",
                           *PROFILE_ARGS], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the 'tensorrt' Python package is not installed")
    assert "pip install 'diffwave[gpu]'" in last and "polygraphy convert" in last
    assert sorted(p.name for p in out.iterdir()) == ["model.fp16.onnx", "model.json", "model.onnx"]
    assert BundleMetadata.read(out).plans == ()

    # The printed command is real: polygraphy builds the same profile with TensorRT-RTX here.
    command = last.split(": polygraphy convert ", 1)[1]
    words = ["polygraphy", "convert", *shlex.split(command)]
    assert words[words.index("-o") + 1] == str(out / "model.plan")
    words[words.index("-o") + 1] = str(tmp_path / "by-polygraphy.plan")
    polygraphy = Path(sys.executable).parent / "polygraphy"
    built = subprocess.run([str(polygraphy), *words[1:]], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "POLYGRAPHY_USE_TENSORRT_RTX": "1"})
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert (tmp_path / "by-polygraphy.plan").stat().st_size > 1_000_000


def test_bundle_source_without_tensorrt_exits_3(onnx_bundle):
    if TENSORRT.available():
        pytest.skip("tensorrt is installed here")
    result = invoke(onnx_bundle, "--fp16", *PROFILE_ARGS)
    assert result.exit_code == 3
    assert "polygraphy convert" in error_line(result)
    assert not (onnx_bundle / "model.plan").exists()


# -- inputs that must fail cleanly ----------------------------------------------------------------


def test_missing_checkpoint(tmp_path):
    result = invoke(tmp_path / "nope.pt", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "nope.pt" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint(model_dir, tmp_path):
    broken = tmp_path / "weights.pt"
    broken.write_bytes((model_dir / "weights.pt").read_bytes()[:2000])
    result = invoke(broken, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "unreadable checkpoint" in error_line(result) and str(broken) in error_line(result)
    assert not (tmp_path / "out").exists()


def test_state_dict_from_another_architecture_names_first_key(tmp_path):
    model = random_model(tiny_config())
    state = model.state_dict()
    state["residual_layers.0.gate_projection.weight"] = torch.zeros(3)  # not a DiffWave key
    torch.save({"step": 1, "model": state, "params": model.config.to_params()}, tmp_path / "other.pt")
    result = invoke(tmp_path / "other.pt", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "unexpected key 'residual_layers.0.gate_projection.weight'" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_not_a_bundle_needs_force(model_dir, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not a bundle")
    result = invoke(model_dir, "-o", out, "--onnx-only", *PROFILE_ARGS)
    assert result.exit_code == 1 and "is not a bundle" in error_line(result) and "--force" in error_line(result)
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]
    forced = invoke(model_dir, "-o", out, "--onnx-only", "--force", *PROFILE_ARGS)
    assert forced.exit_code == 0, forced.stderr
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg", "model.fp16.onnx", "model.json", "model.onnx"]


def test_profile_bounds_out_of_order(model_dir, tmp_path, onnx_bundle):
    result = invoke(model_dir, "-o", tmp_path / "out", "--min-frames", "64", "--opt-frames", "16")
    assert result.exit_code == 1 and "bad optimisation profile" in error_line(result)
    assert "64/16/1024" in error_line(result) and not (tmp_path / "out").exists()
    on_bundle = invoke(onnx_bundle, "--target", "rtx", "--max-batch", "0")
    assert on_bundle.exit_code == 1 and "batch bounds" in error_line(on_bundle)


def test_failed_gate_leaves_nothing_behind(model_dir, tmp_path, monkeypatch):
    """A deliberately broken FP16 conversion (step path in float16) through the real command."""
    broken = functools.partial(write_fp16_variant, keep_step_fp32=False)
    monkeypatch.setattr(bundle_export, "write_fp16_variant", broken)
    out = tmp_path / "build"
    result = invoke(model_dir, "-o", out, "--onnx-only", *PROFILE_ARGS)
    assert result.exit_code == 4
    line = error_line(result)
    assert line.startswith("error: parity gate failed: model.fp16.onnx") and "no bundle written" in line
    assert "eps rel err" in result.stderr and "limit 2e-02" in result.stderr  # the numbers are printed
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor its staging directory


def test_failed_gate_keeps_an_existing_bundle(model_dir, onnx_bundle, tmp_path, monkeypatch):
    out = _copy_bundle(onnx_bundle, tmp_path / "build")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(bundle_export, "write_fp16_variant", functools.partial(write_fp16_variant, keep_step_fp32=False))
    assert invoke(model_dir, "-o", out, "--onnx-only", *PROFILE_ARGS).exit_code == 4
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# -- an output folder on another filesystem (a mount point), and replacing a bundle safely ---------


@pytest.fixture
def mount_point(monkeypatch):
    """``mount_point(out)`` makes ``out`` behave as another filesystem than its parent (a Docker volume,
    a tmpfs): rename(2) fails with EXDEV between a path inside ``out`` (itself included) and one
    outside it, and with EBUSY on ``out`` itself, as the kernel does. Returns the renames made."""

    def install(out: Path) -> list[tuple[Path, Path]]:
        out = Path(os.path.realpath(out))
        renames = []

        def inside(path) -> bool:
            path = Path(os.path.realpath(path))
            return path == out or out in path.parents

        def guard(real):
            def rename(src, dst, *args, **kwargs):
                failure = (errno.EBUSY if out in (Path(os.path.realpath(src)), Path(os.path.realpath(dst)))
                           else errno.EXDEV if inside(src) != inside(dst) else None)
                if failure is not None:
                    raise OSError(failure, os.strerror(failure), os.fspath(src), None, os.fspath(dst))
                renames.append((Path(src), Path(dst)))
                return real(src, dst, *args, **kwargs)
            return rename

        monkeypatch.setattr(os, "replace", guard(os.replace))
        monkeypatch.setattr(os, "rename", guard(os.rename))
        return renames

    return install


def _old_bundle(onnx_bundle: Path, out: Path) -> dict[str, bytes]:
    """A copy of ``onnx_bundle`` with plans built from it (and a model.json whose bytes differ from a new
    export's, so that a half-replaced bundle shows); returns its files' contents."""
    _copy_bundle(onnx_bundle, out)
    (out / "model.plan").write_bytes(b"a TensorRT plan of the old graph")
    (out / "model.rtx.plan").write_bytes(b"a TensorRT-RTX plan of the old graph")
    (out / "model.json").write_text(json.dumps(json.loads((out / "model.json").read_text()), indent=4) + "\n")
    return _contents(out)


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() if p.is_file() else None for p in folder.iterdir()}


@pytest.mark.parametrize("holding", ["nothing", "a killed export's staging", "a bundle with plans"])
def test_export_into_a_mount_point(model_dir, onnx_bundle, tmp_path, mount_point, holding):
    """-o a folder on another filesystem than its parent: staged and published inside it, renames only."""
    out = tmp_path / "volume"
    if holding == "a bundle with plans":
        _old_bundle(onnx_bundle, out)
    else:
        out.mkdir()
    if holding == "a killed export's staging":  # SIGKILL'd mid-export: hidden, so not data, and removed
        (out / ".export.k1ll3d00.staging").mkdir()
        (out / ".export.k1ll3d00.staging" / "model.onnx").write_bytes(b"half")
    renames = mount_point(out)
    result = invoke(model_dir, "-o", out, "--onnx-only", *PROFILE_ARGS)
    assert result.exit_code == 0, result.stderr
    # the stale plans (built from another graph) are gone, and so is every staging folder
    assert sorted(p.name for p in out.iterdir()) == ["model.fp16.onnx", "model.json", "model.onnx"]
    meta = BundleMetadata.read(out)
    assert meta.plans == ()
    for name in meta.onnx.values():
        assert meta.onnx_sha256[name] == sha256_file(out / name)
    assert (out / "model.onnx").stat().st_mode & 0o044 == 0o044
    assert [p.name for p in tmp_path.iterdir()] == ["volume"]  # nothing staged beside the mount point
    assert (out / "model.json") in [dst for _, dst in renames]


def _fail_on_rename_onto(monkeypatch, target: Path) -> None:
    """The first rename onto ``target`` fails (EIO), as publishing reaches model.json."""
    real, failed = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst) == target and not failed:
            failed.append(dst)
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(src), None, os.fspath(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _raise(exc: BaseException):
    def fail(*_args, **_kwargs):
        raise exc
    return fail


@pytest.mark.parametrize("when", ["writing", "interrupted", "publishing"])
def test_failed_export_keeps_an_existing_bundle_and_its_plans(model_dir, onnx_bundle, tmp_path, mount_point,
                                                              monkeypatch, when):
    """An existing bundle on a volume is untouched until every new file is written, and put back whole
    when publishing fails halfway: the plans built from it survive."""
    out = tmp_path / "volume"
    before = _old_bundle(onnx_bundle, out)
    mount_point(out)
    if when == "writing":  # the volume fills up while the FP16 graph is written
        monkeypatch.setattr(bundle_export, "write_fp16_variant",
                            _raise(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    elif when == "interrupted":
        monkeypatch.setattr(bundle_export, "export_step_onnx", _raise(KeyboardInterrupt()))
    else:  # the new graphs are in place when the rename of model.json fails
        _fail_on_rename_onto(monkeypatch, out / "model.json")
    result = invoke(model_dir, "-o", out, "--onnx-only", *PROFILE_ARGS)
    expected = {"writing": (1, os.strerror(errno.ENOSPC)), "interrupted": (130, "interrupted"),
                "publishing": (1, os.strerror(errno.EIO))}[when]
    assert result.exit_code == expected[0], result.stderr
    assert expected[1] in error_line(result)
    assert _contents(out) == before  # byte for byte, plans included; no staging folder left inside
    assert [p.name for p in tmp_path.iterdir()] == ["volume"]


def test_check_needs_a_gpu(model_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    result = invoke(model_dir, "-o", tmp_path / "out", "--target", "rtx", "--check", *PROFILE_ARGS)
    assert result.exit_code == 1 and "--check" in error_line(result) and "GPU" in error_line(result)
    assert not (tmp_path / "out").exists()


def test_bundle_source_refuses_output_and_onnx_only(onnx_bundle, tmp_path):
    assert "leave out -o" in error_line(invoke(onnx_bundle, "-o", tmp_path / "x", "--target", "rtx"))
    assert "nothing to do" in error_line(invoke(onnx_bundle, "--onnx-only"))
    assert "is not one of" in error_line(invoke(onnx_bundle, "--target", "cuda"))


# -- TensorRT-RTX failure paths through the command: one line, no plan ----------------------------


def _copy_bundle(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_rtx_build_that_returns_nothing(onnx_bundle, tmp_path):
    bundle = _copy_bundle(onnx_bundle, tmp_path / "b")
    before = (bundle / "model.json").read_bytes()
    result = invoke(bundle, "--target", "rtx", "--workspace-mib", "0", *PROFILE_ARGS)
    assert result.exit_code == 1
    line = error_line(result)
    assert "TensorRT-RTX" in line and "returned no engine" in line and "no plan written" in line
    assert not (bundle / "model.rtx.plan").exists()
    assert (bundle / "model.json").read_bytes() == before
    assert not [p for p in bundle.iterdir() if p.name.startswith(".")]


def test_rtx_parser_rejection(onnx_bundle, tmp_path):
    """A graph the ONNX checker accepts but the TensorRT-RTX parser does not (a Unique node)."""
    import onnx
    from onnx import helper

    bundle = _copy_bundle(onnx_bundle, tmp_path / "b")
    graph = onnx.load(str(bundle / "model.onnx"))
    eps = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = ["eps_raw" if o == eps else o for o in node.output]
    graph.graph.node.append(helper.make_node("Unique", ["eps_raw"], [eps], sorted=0))
    onnx.checker.check_model(graph, full_check=False)
    onnx.save(graph, bundle / "model.onnx")
    meta = BundleMetadata.read(bundle)
    meta.onnx_sha256["model.onnx"] = sha256_file(bundle / "model.onnx")  # as if exported like this
    meta.write(bundle)
    result = invoke(bundle, "--target", "rtx", "--fp32", *PROFILE_ARGS)
    assert result.exit_code == 1
    line = error_line(result)
    assert "cannot parse the graph" in line and "Unique" in line and "no plan written" in line
    assert not (bundle / "model.rtx.plan").exists()


# -- an lmnt-format checkpoint, unchanged ---------------------------------------------------------


def test_lmnt_checkpoint_exports_unchanged(tmp_path):
    """The dict lmnt's learner saves: step, model, optimizer, params (its keys only), scaler."""
    params = dict(batch_size=16, learning_rate=2e-4, max_grad_norm=None, sample_rate=22050, n_mels=80, n_fft=1024,
                  hop_samples=256, crop_mel_frames=62, residual_channels=16, residual_layers=4,
                  dilation_cycle_length=2, unconditional=False, noise_schedule=np.linspace(1e-4, 0.05, 50).tolist(),
                  inference_noise_schedule=[0.0001, 0.001, 0.01, 0.05, 0.2, 0.5], audio_len=22050 * 5)
    model = randomize_weights(DiffWave(DiffWaveConfig.from_params(params)), seed=5, scale=0.1).eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    model(torch.randn(1, 512), torch.tensor([3]), torch.rand(1, 80, 2)).sum().backward()
    optimizer.step()
    torch.save({"step": 1000, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "params": params,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                           "_growth_tracker": 0}}, tmp_path / "lmnt-weights.pt")
    out = tmp_path / "build"
    result = invoke(tmp_path / "lmnt-weights.pt", "-o", out, "--onnx-only", *PROFILE_ARGS)
    assert result.exit_code == 0, result.stderr

    # Parity of the bundle's graph with the weights as stored in the file (not through our loader).
    fresh = DiffWave(DiffWaveConfig.from_params(params))
    fresh.load_state_dict(torch.load(tmp_path / "lmnt-weights.pt", weights_only=True)["model"])
    fresh.eval()
    audio, spec = torch.randn(2, 10 * 256), torch.rand(2, 80, 10)
    with torch.no_grad():
        expected = fresh(audio, torch.tensor([17.25]), spec)[:, 0].numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"audio": audio.numpy(), "diffusion_step": np.array([17.25], np.float32),
                                "spectrogram": spec.numpy()})[0]
    assert np.linalg.norm(actual - expected) / np.linalg.norm(expected) <= 1e-5
    assert BundleMetadata.read(out).params["audio_len"] == 22050 * 5


def test_exports_the_averaged_weights_unless_told_otherwise(tmp_path):
    # A run trained with ema_decay keeps two sets of weights: the bundle must hold the average by
    # default (what inference wants) and the raw ones with --no-ema; both are random and distinct.
    from runtime import Vocoder
    from runtime_helpers import random_mel

    raw, averaged = random_model(tiny_config(), seed=1), random_model(tiny_config(), seed=0)
    save_checkpoint(tmp_path / "run", Checkpoint(step=5, model=raw.state_dict(), params=raw.config.to_params(),
                                                 ema=averaged.state_dict()))
    mel = random_mel(80, 16, seed=3)
    for flags, expected, label in (([], averaged, "averaged (EMA)"), (["--no-ema"], raw, "raw")):
        out = tmp_path / f"bundle{len(flags)}"
        result = invoke(tmp_path / "run", "-o", out, "--onnx-only", "--fp32", *flags, *PROFILE_ARGS)
        assert result.exit_code == 0, result.stderr
        assert f"step 5, {label} weights" in result.stderr
        with Vocoder.load(out) as exported:
            got = exported(mel, seed=0)
        want = Vocoder.from_module(expected.eval(), expected.config.bundle_metadata())(mel, seed=0)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
