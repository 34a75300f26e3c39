"""lmnt's interfaces on top of ours: ``diffwave.inference.predict`` and the ``python -m`` forms.

Every model here has random weights (helpers.random_model), the audio is espeak-ng speech, and
the ``python -m`` forms run as real subprocesses with this interpreter. The reference for
``predict`` is ``runtime.Vocoder`` / ``diffwave vocode --checkpoint``: the issue asks for the
same audio bit for bit, so the comparisons are exact.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import speak
from diffwave import inference
from diffwave.audio import read_wav
from diffwave.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from diffwave.compat import lmnt_train_argv
from diffwave.compat import main as python_m_diffwave
from diffwave.compat import inference_main
from diffwave.features import log_mel_spectrogram
from diffwave.inference import predict
from helpers import random_model, tiny_config
from runtime import DeviceUnsupported, Vocoder, VocoderError
from runtime.bundle import FeatureSpec

HOP = 256
REPO = Path(__file__).resolve().parents[1]
#: lmnt's training betas and fast schedule, written out here rather than taken from our config.
LMNT_BETAS = np.linspace(1e-4, 0.05, 50).tolist()
LMNT_FAST = [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5]

pytestmark = pytest.mark.usefixtures("one_thread")


def lmnt_params(**changes) -> dict:
    """The ``params`` dict lmnt's learner saves (``dict(params)`` of its params.py): lmnt's keys only."""
    params = dict(
        batch_size=16, learning_rate=2e-4, max_grad_norm=None,
        sample_rate=22050, n_mels=80, n_fft=1024, hop_samples=256, crop_mel_frames=62,
        residual_layers=30, residual_channels=64, dilation_cycle_length=10, unconditional=False,
        noise_schedule=LMNT_BETAS, inference_noise_schedule=LMNT_FAST, audio_len=22050 * 5,
    )
    params.update(changes)
    return params


def python_m(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m …`` with the interpreter running the tests (the project's .venv)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=300
    )


def pointer_of(stderr: str) -> list[str]:
    """The arguments of the one ``diffwave …`` command the lmnt form says it is."""
    lines = [line for line in stderr.splitlines() if "the equivalent is: diffwave " in line]
    assert len(lines) == 1, stderr
    return shlex.split(lines[0].split("the equivalent is: diffwave ", 1)[1])


@pytest.fixture(autouse=True)
def fresh_cache():
    inference.clear_cache()
    yield
    inference.clear_cache()


@pytest.fixture(scope="module")
def hello_wav(tmp_path_factory) -> Path:
    """A short espeak-ng utterance (about half a second: the full 50-step schedule stays cheap)."""
    return speak("Hello.", tmp_path_factory.mktemp("hello") / "hello.wav")


@pytest.fixture(scope="module")
def mel(hello_wav) -> np.ndarray:
    return log_mel_spectrogram(read_wav(hello_wav, 22050), FeatureSpec()).numpy()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    model = random_model(tiny_config(), seed=11)
    folder = tmp_path_factory.mktemp("model")
    save_checkpoint(folder, Checkpoint(step=7, model=model.state_dict(), params=model.config.to_params()))
    return folder


@pytest.fixture(scope="module")
def uncond_dir(tmp_path_factory) -> Path:
    model = random_model(tiny_config(unconditional=True, audio_len=1500), seed=12)
    folder = tmp_path_factory.mktemp("uncond")
    save_checkpoint(folder, Checkpoint(step=3, model=model.state_dict(), params=model.config.to_params()))
    return folder


def count_network_calls(model_dir: Path) -> list[int]:
    """A forward hook on the output layer of the very module predict() samples with: one hit per evaluation."""
    module = inference.load(model_dir, "cpu").vocoder.backend.module
    calls = [0]

    def hook(*_):
        calls[0] += 1

    module.output_projection.register_forward_hook(hook)
    return calls


# -- predict() --------------------------------------------------------------------------------

@pytest.mark.parametrize("fast", [True, False])
def test_predict_equals_the_vocoder_for_a_fixed_seed(model_dir, mel, fast):
    audio, sample_rate = predict(torch.from_numpy(mel), model_dir, device="cpu", fast_sampling=fast, seed=5)
    reference = Vocoder.load(model_dir, device="cpu")(mel, steps="fast" if fast else "full", seed=5)
    assert isinstance(audio, torch.Tensor) and audio.device.type == "cpu" and audio.dtype == torch.float32
    assert sample_rate == 22050
    assert tuple(audio.shape) == (1, mel.shape[-1] * HOP)
    np.testing.assert_array_equal(audio.numpy(), reference)
    assert audio.abs().max() > 0.05  # random weights move the audio away from zero
    again, _ = predict(mel, model_dir, device="cpu", fast_sampling=fast, seed=5)  # NumPy input too
    assert torch.equal(again, audio)


def test_batched_spectrogram_and_torch_manual_seed(model_dir, mel):
    batch = torch.from_numpy(np.stack([mel, mel[:, ::-1].copy()]))  # [N, C, W]
    audio, _ = predict(batch, model_dir, device="cpu", fast_sampling=True, seed=9)
    reference = Vocoder.load(model_dir, device="cpu")(batch.numpy(), steps="fast", seed=9)
    assert tuple(audio.shape) == (2, mel.shape[-1] * HOP)
    np.testing.assert_array_equal(audio.numpy(), reference)
    # Without seed= the noise follows torch's global generator, as lmnt's torch.randn did.
    torch.manual_seed(123)
    a, _ = predict(mel, model_dir, device="cpu", fast_sampling=True)
    b, _ = predict(mel, model_dir, device="cpu", fast_sampling=True)
    torch.manual_seed(123)
    c, _ = predict(mel, model_dir, device="cpu", fast_sampling=True)
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_fast_sampling_makes_six_network_calls_and_the_full_schedule_fifty(model_dir, mel):
    calls = count_network_calls(model_dir)
    fast, _ = predict(mel, model_dir, device="cpu", fast_sampling=True, seed=1)
    assert calls[0] == 6
    full, _ = predict(mel, model_dir, device="cpu", fast_sampling=False, seed=1)
    assert calls[0] == 6 + 50
    assert not torch.allclose(fast, full)


def test_params_override_the_inference_schedule_for_that_call_only(model_dir, mel):
    calls = count_network_calls(model_dir)
    betas = [0.001, 0.05, 0.5]
    custom, _ = predict(mel, model_dir, params={"inference_noise_schedule": betas}, device="cpu", fast_sampling=True, seed=4)
    assert calls[0] == 3
    reference = Vocoder.load(model_dir, device="cpu")(mel, steps=betas, seed=4)
    np.testing.assert_array_equal(custom.numpy(), reference)
    # lmnt's override accepted a list of dicts; the last one wins.
    listed, _ = predict(mel, model_dir, params=[{"inference_noise_schedule": LMNT_FAST}, {"inference_noise_schedule": betas}],
                        device="cpu", fast_sampling=True, seed=4)
    assert torch.equal(listed, custom)
    # Unlike lmnt, the override did not stick to the cached model.
    predict(mel, model_dir, device="cpu", fast_sampling=True, seed=4)
    assert calls[0] == 3 + 3 + 6


def test_lmnt_base_params_are_accepted_and_the_network_keys_stay_the_checkpoints(model_dir, mel):
    """lmnt's own CLI passed its whole default params (a 30 × 64 model) to predict: that must not break a tiny model."""
    plain, _ = predict(mel, model_dir, device="cpu", fast_sampling=True, seed=2)
    with pytest.warns(UserWarning, match=r"residual_channels, residual_layers ignored"):
        with_base, rate = predict(mel, model_dir, params=lmnt_params(), device="cpu", fast_sampling=True, seed=2)
    assert rate == 22050
    assert torch.equal(with_base, plain)
    with pytest.warns(UserWarning, match="unknown params key"):
        predict(mel, model_dir, params={"inference_noise_shedule": [0.5]}, device="cpu", fast_sampling=True, seed=2)
    with pytest.raises(TypeError, match="params must be a dict"):
        predict(mel, model_dir, params="fast", device="cpu")


def test_lmnt_format_checkpoint_file(tmp_path, mel):
    """A .pt written the way lmnt's learner writes it (lmnt's params keys only, an Adam state, a scaler)."""
    model = random_model(tiny_config(), seed=21)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    lmnt_file = tmp_path / "diffwave-lmnt-1000.pt"
    torch.save(
        {
            "step": 1000,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "params": lmnt_params(residual_layers=4, residual_channels=16, dilation_cycle_length=2),
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0},
        },
        lmnt_file,
    )
    assert not any(k.startswith("feature_") for k in torch.load(lmnt_file, weights_only=True)["params"])
    ours = tmp_path / "ours"
    save_checkpoint(ours, Checkpoint(step=1000, model=model.state_dict(), params=model.config.to_params()))
    for fast in (True, False):
        from_lmnt, rate = predict(mel, lmnt_file, device="cpu", fast_sampling=fast, seed=3)
        from_ours, _ = predict(mel, ours, device="cpu", fast_sampling=fast, seed=3)
        assert rate == 22050
        assert torch.equal(from_lmnt, from_ours)
    # the file, not a directory: its own path is the cache key
    assert inference.load(lmnt_file, "cpu").source == lmnt_file.resolve()


def test_models_are_cached_per_path_and_reloaded_after_a_new_save(tmp_path, model_dir, mel):
    first = inference.load(model_dir, "cpu")
    assert inference.load(model_dir, "cpu") is first
    assert inference.load(str(model_dir) + "/", "cpu") is first  # same directory, spelled differently

    run = tmp_path / "run"
    shutil.copytree(model_dir, run, symlinks=True)
    before, _ = predict(mel, run, device="cpu", fast_sampling=True, seed=6)
    loaded = inference.load(run, "cpu")
    assert loaded.source.name == "weights-7.pt"
    newer = random_model(tiny_config(), seed=99)
    save_checkpoint(run, Checkpoint(step=8, model=newer.state_dict(), params=newer.config.to_params()))
    after, _ = predict(mel, run, device="cpu", fast_sampling=True, seed=6)
    assert inference.load(run, "cpu") is not loaded and inference.load(run, "cpu").source.name == "weights-8.pt"
    np.testing.assert_array_equal(after.numpy(), Vocoder.load(run / "weights-8.pt", device="cpu")(mel, steps="fast", seed=6))
    assert not torch.equal(before, after)


def test_cpu_fallback_without_cuda(model_dir, mel, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference.resolve_device(None) == torch.device("cpu")
    audio, _ = predict(mel, model_dir, fast_sampling=True, seed=1)  # lmnt hard-coded CUDA here and crashed
    assert audio.device.type == "cpu"
    with pytest.raises(DeviceUnsupported, match="no CUDA GPU"):
        predict(mel, model_dir, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_defaults_to_cuda_when_there_is_one(model_dir, mel):
    audio, _ = predict(torch.from_numpy(mel), model_dir, fast_sampling=True, seed=1)
    assert audio.device.type == "cuda" and tuple(audio.shape) == (1, mel.shape[-1] * HOP)
    reference = Vocoder.load(model_dir, device="cuda")(torch.from_numpy(mel).cuda(), steps="fast", seed=1)
    torch.testing.assert_close(audio, reference, rtol=0, atol=0)

def test_unconditional_model_takes_no_spectrogram(uncond_dir):
    audio, rate = predict(None, uncond_dir, device="cpu", fast_sampling=True, seed=1)
    assert tuple(audio.shape) == (1, 1500) and rate == 22050
    reference = Vocoder.load(uncond_dir, device="cpu").generate(1500 / 22050, steps="fast", seed=1)
    np.testing.assert_array_equal(audio.numpy(), reference)
    shorter, _ = predict(None, uncond_dir, params={"audio_len": 700}, device="cpu", fast_sampling=True, seed=1)
    assert tuple(shorter.shape) == (1, 700)
    with pytest.raises(ValueError, match="unconditional"):
        predict(np.zeros((80, 10), np.float32), uncond_dir, device="cpu")


def test_predict_errors_are_one_clear_line(tmp_path, model_dir, mel):
    with pytest.raises(TypeError, match="needs model_dir"):
        predict(mel)
    with pytest.raises(CheckpointError, match=r"nowhere: no checkpoint found"):
        predict(mel, tmp_path / "nowhere", device="cpu")
    with pytest.raises(ValueError, match="conditional: predict\\(\\) needs a spectrogram"):
        predict(None, model_dir, device="cpu")
    with pytest.raises(VocoderError, match="40 mel bands"):
        predict(mel[:40], model_dir, device="cpu")
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        predict(mel, model_dir, device="meta")


# -- python -m diffwave.inference -----------------------------------------------------------------

def test_python_m_inference_both_forms_match_predict_and_the_pointed_command(tmp_path, model_dir, mel):
    spec = tmp_path / "hello.wav.spec.npy"
    np.save(spec, mel)
    positional = python_m("diffwave.inference", model_dir, spec, "-o", tmp_path / "a.wav", "--fast", "--seed", 3)
    assert positional.returncode == 0, positional.stderr
    flagged = python_m("diffwave.inference", "--fast", model_dir, "-s", spec, "-o", tmp_path / "b.wav", "--seed", 3)
    assert flagged.returncode == 0, flagged.stderr
    a, rate = sf.read(tmp_path / "a.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    assert rate == 22050 and sf.info(tmp_path / "a.wav").subtype == "FLOAT"  # float wav, as lmnt's torchaudio.save
    expected, _ = predict(mel, model_dir, device="cpu", fast_sampling=True, seed=3)
    np.testing.assert_array_equal(a, expected[0].numpy())
    np.testing.assert_array_equal(b, a)

    # The pointer is a real command: run it (through `python -m diffwave`, i.e. our typer CLI) and compare.
    ours = pointer_of(flagged.stderr)
    assert ours[:2] == ["vocode", "--checkpoint"] and ["--steps", "fast"] == ours[3:5] and str(spec) in ours
    pointed = python_m("diffwave", *ours)
    assert pointed.returncode == 0, pointed.stderr
    vocoded, _ = sf.read(tmp_path / "hello.wav", dtype="float32")
    np.testing.assert_array_equal(vocoded, a)


def test_inference_command_full_schedule_and_unconditional(tmp_path, model_dir, uncond_dir, mel, capsys):
    spec = tmp_path / "m.npy"
    np.save(spec, mel[None])  # [1, n_mels, frames] as lmnt's CLI also accepted
    inference_main([str(model_dir), "-s", str(spec), "-o", str(tmp_path / "full.wav"), "--seed", "2", "--device", "cpu"])
    full, _ = sf.read(tmp_path / "full.wav", dtype="float32")
    expected, _ = predict(mel, model_dir, device="cpu", fast_sampling=False, seed=2)
    np.testing.assert_array_equal(full, expected[0].numpy())
    assert "--steps full" in capsys.readouterr().err

    inference_main([str(uncond_dir), "-o", str(tmp_path / "noise.wav"), "--fast", "--seed", "1"])
    noise, _ = sf.read(tmp_path / "noise.wav", dtype="float32")
    assert noise.shape == (1500,)
    ours = pointer_of(capsys.readouterr().err)
    assert ours[ours.index("--seconds") + 1] == f"{1500 / 22050:g}" and ours[ours.index("--steps") + 1] == "fast"


@pytest.mark.parametrize(
    "case, message",
    [
        ("corrupt", "unreadable .npy"),
        ("batch", "holds a batch of 2 spectrograms"),
        ("bands", "40 mel bands"),
        ("missing", "no such file"),
        ("no-spec", "this model is conditional"),
        ("no-model", "no checkpoint found"),
    ],
)
def test_inference_command_bad_input_is_one_line_and_writes_nothing(tmp_path, model_dir, mel, capsys, case, message):
    spec = tmp_path / "bad.npy"
    if case == "corrupt":
        spec.write_bytes(b"\x93NUMPY garbage")
    elif case == "batch":
        np.save(spec, np.stack([mel, mel]))
    elif case == "bands":
        np.save(spec, mel[:40])
    args = [str(tmp_path / "nowhere" if case == "no-model" else model_dir)]
    if case != "no-spec":
        args.append(str(spec))
    out = tmp_path / "out.wav"
    with pytest.raises(SystemExit) as exit_info:
        inference_main([*args, "-o", str(out), "--device", "cpu"])
    assert exit_info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not any(p.suffix == ".wav" for p in tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_inference_command_on_cuda_without_a_gpu_exits_3(tmp_path, model_dir, mel, capsys):
    spec = tmp_path / "m.npy"
    np.save(spec, mel)
    with pytest.raises(SystemExit) as exit_info:
        inference_main([str(model_dir), str(spec), "-o", str(tmp_path / "out.wav"), "--device", "cuda"])
    assert exit_info.value.code == 3  # as `diffwave vocode`: this machine cannot run it
    assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "out.wav").exists()


# -- python -m diffwave.preprocess / python -m diffwave ----------------------------------------

def test_python_m_preprocess_on_an_espeak_wav(tmp_path, hello_wav):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(hello_wav, data / "hello.wav")
    result = python_m("diffwave.preprocess", data)
    assert result.returncode == 0, result.stderr
    assert pointer_of(result.stderr) == ["preprocess", str(data)]
    written = np.load(data / "hello.wav.spec.npy")
    expected = log_mel_spectrogram(read_wav(hello_wav, 22050), FeatureSpec()).numpy()
    assert written.dtype == np.float32 and written.shape == (80, 1 + len(read_wav(hello_wav, 22050)) // HOP)
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)


def test_python_m_diffwave_lmnt_training_form(tmp_path, preprocessed_dir):
    """lmnt's positional form resumes a tiny checkpoint and trains real steps on espeak-ng speech."""
    model = random_model(tiny_config(), seed=31)
    run = tmp_path / "run"
    save_checkpoint(run, Checkpoint(step=0, model=model.state_dict(), params=model.config.to_params()))
    result = python_m("diffwave", run, preprocessed_dir, "--max_steps", 2)
    assert result.returncode == 0, result.stderr
    assert pointer_of(result.stderr) == ["train", str(run), str(preprocessed_dir), "--max-steps", "2"]
    trained = load_checkpoint(run)
    assert trained.step == 2 and (run / "weights-2.pt").is_file()
    assert any(not torch.equal(trained.model[k], v) for k, v in model.state_dict().items())


def test_lmnt_training_arguments_translate_to_diffwave_train():
    assert lmnt_train_argv(["m", "d1", "d2", "--max_steps", "10", "--fp16"]) == [
        "train", "m", "d1", "d2", "--max-steps", "10", "--fp16"
    ]
    assert lmnt_train_argv(["--fp16", "m", "d"]) == ["train", "m", "d", "--fp16"]


def test_python_m_diffwave_dispatch(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        python_m_diffwave(["--help"])  # our typer CLI
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "vocode", "preprocess"))
    with pytest.raises(SystemExit) as exit_info:
        python_m_diffwave(["train", "--help"])
    assert exit_info.value.code == 0 and "--max-steps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        python_m_diffwave(["trian"])  # neither a command nor lmnt's MODEL_DIR DATA_DIR
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'trian' is not a diffwave command" in err and "vocode" in err
    with pytest.raises(SystemExit) as exit_info:  # lmnt's form with a missing data folder: our train's one-line error
        python_m_diffwave([str(tmp_path / "m"), str(tmp_path / "no-data"), "--max_steps", "1"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "the equivalent is: diffwave train" in err and "no-data" in err.splitlines()[-1]


def test_lmnt_params_module_mirrors_our_defaults():
    from diffwave.config import DiffWaveConfig
    from diffwave.params import AttrDict, params

    # lmnt's published defaults, typed in from its params.py (not produced by our code).
    assert params.batch_size == 16 and params.learning_rate == 2e-4 and params.max_grad_norm is None
    assert (params.sample_rate, params.n_mels, params.n_fft, params.hop_samples) == (22050, 80, 1024, 256)
    assert (params.residual_layers, params.residual_channels, params.dilation_cycle_length) == (30, 64, 10)
    assert params.crop_mel_frames == 62 and params.unconditional is False
    assert params.inference_noise_schedule == [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5]
    assert len(params.noise_schedule) == 50 and params.noise_schedule[0] == 1e-4 and params.noise_schedule[-1] == 0.05
    tweaked = AttrDict(params).override([{"residual_layers": 4}, {"residual_channels": 8}])
    assert DiffWaveConfig.from_params(dict(tweaked)).model.residual_layers == 4
    assert tweaked.residual_channels == 8 and params.residual_channels == 64


def test_lmnt_scripts_build_the_model_from_params_and_load_its_checkpoint(tmp_path, mel):
    """lmnt's own predict() does ``DiffWave(params); load_state_dict(torch.load(p)['model'])``, and
    scripts read ``model.params``; before, DiffWave(params) raised ``AttributeError: validate``."""
    from diffwave.model import DiffWave
    from diffwave.params import AttrDict, params

    saved = random_model(tiny_config(), seed=5)
    lmnt_file = tmp_path / "weights.pt"
    torch.save({"step": 1, "model": saved.state_dict(), "params": lmnt_params(residual_layers=4, residual_channels=16,
                                                                               dilation_cycle_length=2)}, lmnt_file)
    checkpoint = torch.load(lmnt_file, weights_only=True)
    model = DiffWave(AttrDict(checkpoint["params"]))
    model.load_state_dict(checkpoint["model"])
    assert model.params.residual_layers == 4 and model.params.noise_schedule == params.noise_schedule
    spectrogram = torch.as_tensor(mel)[None]
    x, t = torch.randn(1, spectrogram.shape[-1] * HOP, generator=torch.Generator().manual_seed(0)), torch.tensor([3])
    with torch.no_grad():
        assert torch.equal(model(x, t, spectrogram), saved(x, t, spectrogram))
    assert len(DiffWave(params).residual_layers) == 30  # lmnt's base defaults
    assert len(vars(params)) == len(params) and vars(params)["batch_size"] == 16  # lmnt's AttrDict, as a namespace
    with pytest.raises(TypeError, match="DiffWave takes a DiffWaveConfig or lmnt's params, got int"):
        DiffWave(3)


def test_lmnt_preprocess_transform_writes_the_spectrogram_beside_the_wav(tmp_path, hello_wav):
    from diffwave.audio import AudioError
    from diffwave.preprocess import transform

    wav = tmp_path / "hello.wav"
    shutil.copy(hello_wav, wav)
    transform(str(wav))  # lmnt passes a str
    written = np.load(str(wav) + ".spec.npy")
    expected = log_mel_spectrogram(read_wav(hello_wav, 22050), FeatureSpec()).numpy()
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)
    sf.write(tmp_path / "rate.wav", np.zeros(1600, np.float32), 16000)
    with pytest.raises(AudioError, match="rate.wav: sample rate 16000 Hz, expected 22050 Hz"):
        transform(tmp_path / "rate.wav")
