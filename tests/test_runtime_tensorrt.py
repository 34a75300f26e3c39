"""TensorRT backend: real TensorRT-RTX plans built here, and every refusal before plan bytes are trusted.

This machine has no GPU, so the runtime's refusal is tested for real; running a plan needs a
GPU the plan supports and skips (with the reason) elsewhere. Data-centre TensorRT cannot be
installed here: its tests skip unless it is importable.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from helpers import random_model, tiny_config
from runtime import DeviceUnsupported, Vocoder, VocoderError
from runtime.backends.base import Limits
from runtime.backends.trt import GpuInfo, TensorIO, check_device, check_engine_io, supported_capabilities
from runtime.bundle import BundleError, BundleMetadata, PlanInfo, Profile
from runtime.trt_target import RTX, TENSORRT, TensorRTMissing
from runtime_helpers import random_mel, rel_err, sha256, write_onnx_bundle

HOP = 256
PROFILE = Profile(min_batch=1, opt_batch=1, max_batch=2, min_frames=4, opt_frames=32, max_frames=128)


def build_plan(onnx_path: Path, target=RTX, profile: Profile = PROFILE) -> bytes:
    """The few builder calls both TensorRT flavours share: parse our ONNX, one dynamic profile, serialize."""
    trt = target.import_module()
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(target.network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    opt = builder.create_optimization_profile()
    lo, mid, hi = (
        (profile.min_batch, profile.min_frames),
        (profile.opt_batch, profile.opt_frames),
        (profile.max_batch, profile.max_frames),
    )
    opt.set_shape("audio", (lo[0], lo[1] * HOP), (mid[0], mid[1] * HOP), (hi[0], hi[1] * HOP))
    opt.set_shape("spectrogram", (lo[0], 80, lo[1]), (mid[0], 80, mid[1]), (hi[0], 80, hi[1]))
    opt.set_shape("diffusion_step", (1,), (1,), (1,))
    config = builder.create_builder_config()
    config.add_optimization_profile(opt)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None
    return bytes(plan)


def plan_info(metadata: BundleMetadata, trt_version: str, **changes) -> PlanInfo:
    info = PlanInfo(
        file=RTX.plan_name,
        target="rtx",
        library_version=trt_version,
        precision="fp32",
        profile=PROFILE,
        onnx_file="model.onnx",
        onnx_sha256=metadata.onnx_sha256["model.onnx"],
        compute_capabilities=RTX.compute_capabilities,
    )
    return replace(info, **changes)


@pytest.fixture(scope="module")
def rtx_bundle(tmp_path_factory) -> Path:
    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx not installed (pip install 'diffwave[rtx]')")
    folder = tmp_path_factory.mktemp("rtx")
    model = random_model(tiny_config(), seed=6)
    onnx_path = write_onnx_bundle(folder, model)
    (folder / RTX.plan_name).write_bytes(build_plan(onnx_path))
    metadata = BundleMetadata.read(folder)
    version = RTX.version(RTX.import_module())
    info = plan_info(metadata, version, plan_sha256=sha256(folder / RTX.plan_name))
    metadata.with_plan(info).write(folder)
    return folder


def _gpu() -> GpuInfo | None:
    from runtime.backends.trt import probe_gpu

    try:
        return probe_gpu()
    except DeviceUnsupported:
        return None


GPU = _gpu()


def with_metadata(bundle: Path, tmp_path: Path, edit) -> Path:
    """A copy of the bundle whose model.json has been passed through ``edit``."""
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(bundle, folder)
    data = json.loads((folder / "model.json").read_text())
    edit(data)
    (folder / "model.json").write_text(json.dumps(data))
    return folder / RTX.plan_name


@pytest.mark.skipif(GPU is not None, reason="this test is the refusal on a machine without a GPU")
def test_rtx_plan_refused_without_gpu_in_one_line(rtx_bundle):
    with pytest.raises(DeviceUnsupported) as exc:
        Vocoder.load(rtx_bundle / RTX.plan_name)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(str(rtx_bundle / RTX.plan_name))
    assert "cannot run here" in message and ("CPU-only build" in message or "no CUDA GPU" in message)
    assert "compute capability 8.0, 8.6, 8.9, 12.0, 12.1" in message
    assert "ONNX Runtime" in message


@pytest.mark.skipif(GPU is not None, reason="this test is the refusal on a machine without a GPU")
def test_vocode_cli_refuses_rtx_plan_without_gpu(rtx_bundle, tmp_path):
    mel_path = tmp_path / "utt.npy"
    np.save(mel_path, random_mel(80, 12))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "diffwave", "vocode", "--engine", str(rtx_bundle / RTX.plan_name), str(mel_path), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "compute capability 8.0" in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_capability_refusal_names_the_gpu_and_supported_list(rtx_bundle):
    metadata = BundleMetadata.read(rtx_bundle)
    info = metadata.plan(RTX.plan_name)
    plan = rtx_bundle / RTX.plan_name
    with pytest.raises(DeviceUnsupported) as exc:
        check_device(plan, info, RTX, GpuInfo("NVIDIA H100 80GB HBM3", "9.0"))
    message = str(exc.value)
    assert "\n" not in message
    assert "NVIDIA H100 80GB HBM3 has compute capability 9.0" in message
    assert "runs on compute capability 8.0, 8.6, 8.9, 12.0, 12.1" in message
    check_device(plan, info, RTX, GpuInfo("NVIDIA GeForce RTX 4090", "8.9"))  # no error
    check_device(plan, info, RTX, GpuInfo("NVIDIA A100-SXM4-80GB", "8.0"))


def test_data_center_plan_runs_only_on_its_build_capability():
    info = PlanInfo("model.plan", "tensorrt", "10.13.0", "fp16", PROFILE, "model.fp16.onnx", "x", "NVIDIA H100", "9.0")
    assert supported_capabilities(info, TENSORRT) == ("9.0",)
    check_device(Path("model.plan"), info, TENSORRT, GpuInfo("NVIDIA H100", "9.0"))
    with pytest.raises(DeviceUnsupported, match="compute capability 8.9, which this TensorRT plan does not support"):
        check_device(Path("model.plan"), info, TENSORRT, GpuInfo("NVIDIA L4", "8.9"))


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda d: d["plans"][0].update(library_version="1.0.0.1"), "built with tensorrt_rtx 1.0.0.1, installed is"),
        (lambda d: d["plans"][0].update(precision="fp16"), "bundle's fp16 graph is None"),
        (lambda d: d["plans"][0].update(precision="int8"), "precision 'int8' is not one of fp32, fp16"),
        (lambda d: d["plans"][0].update(onnx_sha256="0" * 64), "built from a different model.onnx"),
        (lambda d: d["plans"][0].update(target="tensorrt"), "recorded target 'tensorrt'"),
    ],
)
def test_plan_metadata_mismatch_is_one_line(rtx_bundle, tmp_path, edit, expected):
    plan = with_metadata(rtx_bundle, tmp_path, edit)
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(plan)
    message = str(exc.value)
    assert "\n" not in message and expected in message and "rebuild it with `diffwave export`" in message


def test_swapped_plan_bytes_are_refused(rtx_bundle, tmp_path):
    plan = with_metadata(rtx_bundle, tmp_path, lambda d: None)
    plan.write_bytes(plan.read_bytes()[:-10])
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(plan)
    assert "\n" not in str(exc.value) and "differ from the sha256 recorded in model.json" in str(exc.value)


def test_plan_without_model_json(rtx_bundle, tmp_path):
    folder = tmp_path / "lonely"
    folder.mkdir()
    (folder / RTX.plan_name).write_bytes((rtx_bundle / RTX.plan_name).read_bytes())
    with pytest.raises(BundleError, match="model.json: missing bundle metadata"):
        Vocoder.load(folder / RTX.plan_name)


def test_plan_not_recorded_in_model_json(rtx_bundle, tmp_path):
    plan = with_metadata(rtx_bundle, tmp_path, lambda d: d.update(plans=[]))
    with pytest.raises(BundleError, match="no entry for plan 'model.rtx.plan'"):
        Vocoder.load(plan)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="data-centre TensorRT is installed")
def test_data_center_plan_without_tensorrt_names_the_extra(rtx_bundle, tmp_path):
    folder = tmp_path / "dc"
    folder.mkdir()
    (folder / "model.plan").write_bytes(b"plan bytes")
    metadata = BundleMetadata.read(rtx_bundle)
    metadata = replace(metadata, plans=()).with_plan(plan_info(metadata, "10.13.0", file="model.plan", target="tensorrt"))
    metadata.write(folder)
    with pytest.raises(TensorRTMissing) as exc:
        Vocoder.load(folder / "model.plan")
    assert "\n" not in str(exc.value) and "pip install 'diffwave[gpu]'" in str(exc.value)
    from typer.testing import CliRunner
    from diffwave.cli import app

    mel = tmp_path / "m.npy"
    np.save(mel, random_mel(80, 8))
    result = CliRunner().invoke(app, ["vocode", "--engine", str(folder / "model.plan"), str(mel), "-o", str(tmp_path / "out")])
    assert result.exit_code == 3 and result.stderr.count("\n") == 1 and "diffwave[gpu]" in result.stderr
    assert not (tmp_path / "out").exists()


def test_rtx_plan_without_tensorrt_rtx_names_the_extra(rtx_bundle):
    code = (
        "import sys; sys.modules['tensorrt_rtx'] = None\n"
        "from runtime import Vocoder\n"
        "from runtime.trt_target import TensorRTMissing\n"
        f"try:\n    Vocoder.load({str(rtx_bundle / RTX.plan_name)!r})\n"
        "except TensorRTMissing as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'diffwave[rtx]'" in out.stdout


def engine_io(n_mels=80, frames=(4, 128), samples=(4 * HOP, 128 * HOP), dtype="float32") -> dict[str, TensorIO]:
    return {
        "audio": TensorIO("audio", True, dtype, (-1, -1), ((1, samples[0]), (1, 32 * HOP), (2, samples[1]))),
        "diffusion_step": TensorIO("diffusion_step", True, "float32", (1,), ((1,), (1,), (1,))),
        "spectrogram": TensorIO("spectrogram", True, "float32", (-1, n_mels, -1), ((1, n_mels, frames[0]), (1, n_mels, 32), (2, n_mels, frames[1]))),
        "eps": TensorIO("eps", False, "float32", (-1, -1)),
    }


def test_engine_io_checks(rtx_bundle):
    metadata = BundleMetadata.read(rtx_bundle)
    plan = Path("model.rtx.plan")
    assert check_engine_io(plan, engine_io(), metadata) == Limits(1, 2, 4 * HOP, 128 * HOP)
    with pytest.raises(VocoderError, match="engine expects 64 mel bands but model.json says n_mels=80"):
        check_engine_io(plan, engine_io(n_mels=64), metadata)
    with pytest.raises(VocoderError, match="not model.json's hop of 256"):
        check_engine_io(plan, engine_io(samples=(4 * 300, 128 * 300)), metadata)
    with pytest.raises(VocoderError, match="is float16; the step graph's I/O must be float32"):
        check_engine_io(plan, engine_io(dtype="float16"), metadata)
    without_spec = {k: v for k, v in engine_io().items() if k != "spectrogram"}
    with pytest.raises(VocoderError, match="does not match model.json"):
        check_engine_io(plan, without_spec, metadata)


def test_profile_limits_shape_the_plan(rtx_bundle):
    """What the vocoder does with an engine's profile: rows ≤ max batch, windows ≤ max frames, short refused."""
    from runtime.backends.base import Backend
    from runtime.arrays import NumpyOps

    class ProfileOnly(Backend):  # the planner only reads limits: no network needed for this check
        def _create_session(self, slot, rows, samples):
            raise AssertionError("not used")

    metadata = BundleMetadata.read(rtx_bundle)
    voc = Vocoder(ProfileOnly(metadata, NumpyOps(), Limits(1, 2, 4 * HOP, 128 * HOP)))
    plan = voc.plan([300, 40, 40, 40])
    assert all(p.rows <= 2 and p.units <= 128 for p in plan.passes)
    with pytest.raises(VocoderError, match="3 frames is shorter than this engine's profile minimum of 4 frames"):
        voc.plan([3])
    # A window shorter than the profile's minimum would cut long items into chunks the engine refuses.
    with pytest.raises(VocoderError, match=r"max_frames=3 is shorter than this engine's profile minimum of 4 frames: use max_frames >= 4"):
        Vocoder(ProfileOnly(metadata, NumpyOps(), Limits(1, 2, 4 * HOP, 128 * HOP)), max_frames=3)
    short_windows = Vocoder(ProfileOnly(metadata, NumpyOps(), Limits(1, 2, 4 * HOP, 128 * HOP)), max_frames=4)
    assert all(4 <= p.units <= 128 for p in short_windows.plan([300, 40]).passes)


needs_supported_gpu = pytest.mark.skipif(
    GPU is None or GPU.capability not in RTX.compute_capabilities,
    reason=f"needs a GPU TensorRT-RTX supports ({', '.join(RTX.compute_capabilities)}); this machine has "
    f"{'none' if GPU is None else GPU.name + ' ' + GPU.capability}",
)


@needs_supported_gpu
def test_rtx_plan_vocodes_like_onnx_and_replays_a_cuda_graph(rtx_bundle):
    plan_voc = Vocoder.load(rtx_bundle / RTX.plan_name)
    onnx_voc = Vocoder.load(rtx_bundle / "model.onnx", device="cpu")
    mel = random_mel(80, 40, seed=3)
    noise = np.random.default_rng(0).standard_normal((6, 1, 40 * HOP)).astype(np.float32)
    expected = onnx_voc(mel, noise=noise)
    modes = []
    for _ in range(3):
        assert rel_err(plan_voc(mel, noise=noise), expected) <= 1e-3
        modes.append(plan_voc.loop.last_mode)
    assert modes == ["eager", "captured", "replayed"]
    cache = rtx_bundle / (RTX.plan_name + ".runtime-cache")
    assert cache.is_file()
    # saved again on close, with what TensorRT-RTX compiled in the background after the first call
    cache.unlink()
    plan_voc.close()
    assert cache.is_file()


@pytest.mark.skipif(GPU is None or GPU.capability != "9.0", reason="needs a Hopper GPU (compute capability 9.0)")
def test_rtx_plan_refused_on_hopper(rtx_bundle):
    with pytest.raises(DeviceUnsupported, match="compute capability 9.0, which this TensorRT-RTX plan does not support"):
        Vocoder.load(rtx_bundle / RTX.plan_name)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or GPU is None,
    reason="needs data-centre TensorRT (installable only from NVIDIA's index, not here) and a GPU",
)
def test_data_center_plan_vocodes_like_onnx(tmp_path):
    model = random_model(tiny_config(), seed=6)
    onnx_path = write_onnx_bundle(tmp_path, model)
    (tmp_path / TENSORRT.plan_name).write_bytes(build_plan(onnx_path, target=TENSORRT))
    metadata = BundleMetadata.read(tmp_path)
    version = TENSORRT.version(TENSORRT.import_module())
    info = plan_info(metadata, version, file=TENSORRT.plan_name, target="tensorrt", compute_capabilities=(GPU.capability,))
    metadata.with_plan(info).write(tmp_path)
    plan_voc = Vocoder.load(tmp_path / TENSORRT.plan_name)
    mel = random_mel(80, 24, batch=2, seed=1)
    noise = np.random.default_rng(0).standard_normal((6, 2, 24 * HOP)).astype(np.float32)
    expected = Vocoder.load(onnx_path, device="cpu")(mel, noise=noise)
    for _ in range(3):
        assert rel_err(plan_voc(mel, noise=noise), expected) <= 1e-3
    assert plan_voc.loop.last_mode == "replayed"
