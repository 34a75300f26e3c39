"""`diffwave vocode` end to end: espeak-ng speech, tiny random models, real files on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from diffwave.cli import app
from helpers import random_model, tiny_config
from runtime_helpers import random_mel, save_model_dir, write_onnx_bundle

HOP = 256


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_config(), seed=8)


@pytest.fixture(scope="module")
def run_dir(model, tmp_path_factory) -> Path:
    return save_model_dir(tmp_path_factory.mktemp("run"), model)


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory) -> Path:
    return write_onnx_bundle(tmp_path_factory.mktemp("bundle"), model)


def vocode(*args: str):
    return CliRunner().invoke(app, ["vocode", *map(str, args)])


def test_wav_copy_synthesis_with_a_checkpoint(run_dir, speech_wav, tmp_path):
    out = tmp_path / "out"
    result = vocode(speech_wav, "--checkpoint", run_dir, "-o", out, "--seed", 1, "--device", "cpu")
    assert result.exit_code == 0, result.output
    samples = sf.info(str(speech_wav)).frames
    written = sf.read(str(out / "utt0.wav"), dtype="float32")
    info = sf.info(str(out / "utt0.wav"))
    assert info.samplerate == 22050 and info.subtype == "PCM_16"
    assert len(written[0]) == (1 + samples // HOP) * HOP
    assert np.abs(written[0]).max() > 0.01
    assert "real-time factor" in result.stdout and "1 file(s)" in result.stdout


def test_npy_inputs_onnx_batches_do_not_change_results(onnx_path, tmp_path):
    inputs = []
    for i, frames in enumerate((20, 13, 31)):
        path = tmp_path / f"utt{i}.wav.spec.npy"
        mel = random_mel(80, frames, seed=i)
        np.save(path, mel if i != 1 else mel[None])  # [1, n_mels, F] is accepted too
        inputs.append(path)
    results = {}
    # The CPU tuning flags change how ONNX Runtime schedules its threads, never the result.
    runs = {1: (), 3: (), "tuned": ("--threads", 1, "--spinning")}
    for batch, tuning in runs.items():
        out = tmp_path / f"out{batch}"
        size = 1 if batch == "tuned" else batch
        result = vocode(*inputs, "--onnx", onnx_path, "-o", out, "--seed", 5, "--batch-size", size, "--float", *tuning)
        assert result.exit_code == 0, result.output
        results[batch] = [sf.read(str(out / f"utt{i}.wav"), dtype="float32")[0] for i in range(3)]
        assert sf.info(str(out / "utt0.wav")).subtype == "FLOAT"
    for a, b, c, frames in zip(results[1], results[3], results["tuned"], (20, 13, 31)):
        assert len(a) == frames * HOP
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-6)


@pytest.mark.parametrize("text, betas", [("0.5", [0.5]), ("1e-4, 0.05,0.5", [1e-4, 0.05, 0.5])])
def test_betas_on_the_command_line_are_the_schedule(onnx_path, tmp_path, text, betas):
    # A lone beta was taken for a schedule name ("unknown schedule '0.5'"): only a comma made betas.
    from runtime import Vocoder

    mel = random_mel(80, 12, seed=3)
    np.save(tmp_path / "m.npy", mel)
    result = vocode(tmp_path / "m.npy", "--onnx", onnx_path, "-o", tmp_path / "out", "--seed", 2, "--float", "--steps", text)
    assert result.exit_code == 0, result.output
    written = sf.read(str(tmp_path / "out" / "m.wav"), dtype="float32")[0]
    with Vocoder.load(onnx_path) as vocoder:
        expected = vocoder(mel, steps=betas, seed=2)[0]
        other = vocoder(mel, steps="fast", seed=2)[0]
    np.testing.assert_allclose(written, expected, rtol=0, atol=1e-6)
    assert np.abs(written - other).max() > 1e-3  # the betas were used, not the default schedule


def test_unconditional_seconds(tmp_path):
    model = random_model(tiny_config(unconditional=True), seed=2)
    run = save_model_dir(tmp_path / "uncond", model)
    out = tmp_path / "out"
    result = vocode("--checkpoint", run, "--seconds", 0.05, "--count", 3, "--batch-size", 2, "-o", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    clips = sorted(p.name for p in out.iterdir())
    assert clips == ["sample-000.wav", "sample-001.wav", "sample-002.wav"]
    assert all(sf.info(str(out / c)).frames == round(0.05 * 22050) for c in clips)


def _assert_failed_cleanly(result, out: Path, code: int, expected: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "content,expected",
    [
        (np.zeros((64, 10), np.float32), "64 mel bands"),
        (np.full((80, 10), np.nan, np.float32), "NaN or inf (item 0, band 0, frame 0)"),
        (np.zeros((80, 0), np.float32), "empty spectrogram"),
        (np.zeros((2, 80, 10), np.float32), "holds a batch of 2 spectrograms"),
    ],
)
def test_bad_spectrogram_files(onnx_path, tmp_path, content, expected):
    good = tmp_path / "good.npy"
    np.save(good, random_mel(80, 10))
    bad = tmp_path / "bad.npy"
    np.save(bad, content)
    out = tmp_path / "out"
    result = vocode(good, bad, "--onnx", onnx_path, "-o", out)
    _assert_failed_cleanly(result, out, 1, f"{bad}: ")
    assert expected in result.stderr  # and nothing was written for the good file either


def test_unreadable_and_unsupported_inputs(onnx_path, tmp_path, speech_wav):
    out = tmp_path / "out"
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    _assert_failed_cleanly(vocode(broken, "--onnx", onnx_path, "-o", out), out, 1, f"{broken}: unreadable audio")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    _assert_failed_cleanly(vocode(text, "--onnx", onnx_path, "-o", out), out, 1, "unsupported input")
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY garbage")
    _assert_failed_cleanly(vocode(garbage, "--onnx", onnx_path, "-o", out), out, 1, "unreadable .npy")
    _assert_failed_cleanly(vocode(tmp_path / "absent.npy", "--onnx", onnx_path, "-o", out), out, 1, "no such file")
    # A wav vocoded into its own folder would overwrite itself.
    local = tmp_path / "speech"
    local.mkdir()
    shutil.copy(speech_wav, local / "utt0.wav")
    result = vocode(local / "utt0.wav", "--onnx", onnx_path, "-o", local)
    assert result.exit_code == 1 and "would overwrite this input" in result.stderr


def test_bundle_and_usage_errors(onnx_path, tmp_path):
    mel = tmp_path / "m.npy"
    np.save(mel, random_mel(80, 10))
    out = tmp_path / "out"
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(onnx_path, lonely / "model.onnx")
    _assert_failed_cleanly(vocode(mel, "--onnx", lonely / "model.onnx", "-o", out), out, 1, "missing bundle metadata")
    _assert_failed_cleanly(vocode(mel, "-o", out), out, 2, "exactly one of --engine, --onnx or --checkpoint")
    _assert_failed_cleanly(vocode(mel, "--onnx", onnx_path, "--checkpoint", tmp_path, "-o", out), out, 2, "exactly one")
    _assert_failed_cleanly(vocode("--onnx", onnx_path, "-o", out), out, 2, "no inputs")
    _assert_failed_cleanly(vocode(mel, "--onnx", onnx_path, "-o", out, "--steps", "slow"), out, 1, "unknown schedule 'slow'")
    _assert_failed_cleanly(vocode(mel, "--onnx", onnx_path, "-o", out, "--steps", "0.1,fast"), out, 2, "not a schedule name nor comma-separated betas")
    _assert_failed_cleanly(vocode(mel, "--onnx", onnx_path, "-o", out, "--steps", ","), out, 2, "--steps ',': empty")
    _assert_failed_cleanly(vocode("--onnx", onnx_path, "-o", out, "--seconds", 1), out, 1, "needs a spectrogram")
    _assert_failed_cleanly(vocode(mel, "--engine", tmp_path / "model.plan", "-o", out), out, 1, "no such file")


def test_foreign_npy_files_and_short_wavs_are_one_line(onnx_path, tmp_path):
    out = tmp_path / "out"
    npz = tmp_path / "archive.npy"  # an .npz archive under a .npy name
    with open(npz, "wb") as fh:
        np.savez(fh, a=random_mel(80, 10))
    _assert_failed_cleanly(vocode(npz, "--onnx", onnx_path, "-o", out), out, 1, f"{npz}: not a .npy array (it is an .npz archive)")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    _assert_failed_cleanly(vocode(empty, "--onnx", onnx_path, "-o", out), out, 1, f"{empty}: unreadable .npy")
    huge = tmp_path / "huge.npy"  # a header that asks for terabytes
    with open(huge, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (80, 10**12)})
        fh.write(b"\0" * 1000)
    _assert_failed_cleanly(vocode(huge, "--onnx", onnx_path, "-o", out), out, 1, f"{huge}: unreadable .npy")
    complex_mel = tmp_path / "complex.npy"
    np.save(complex_mel, random_mel(80, 10) + 1j)
    _assert_failed_cleanly(vocode(complex_mel, "--onnx", onnx_path, "-o", out), out, 1, "spectrogram is complex")
    tiny = tmp_path / "tiny.wav"  # shorter than half an FFT window: the STFT cannot pad it
    sf.write(tiny, np.zeros(10, np.float32), 22050)
    _assert_failed_cleanly(vocode(tiny, "--onnx", onnx_path, "-o", out), out, 1, f"{tiny}: 10 samples is too short: the features need at least 513")


def test_outputs_that_are_folders_or_the_source_recording_are_refused(onnx_path, tmp_path, speech_wav):
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(first, random_mel(80, 10))
    np.save(second, random_mel(80, 12))
    out = tmp_path / "out"
    (out / "b.wav").mkdir(parents=True)  # the second target is a folder: nothing may be written for the first
    result = vocode(first, second, "--onnx", onnx_path, "-o", out)
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {second}: its output {out / 'b.wav'} is an existing folder"
    assert sorted(p.name for p in out.iterdir()) == ["b.wav"]
    # x.wav.spec.npy vocoded into its own folder would replace the recording x.wav it came from.
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(speech_wav, folder / "utt0.wav")
    np.save(folder / "utt0.wav.spec.npy", random_mel(80, 10))
    before = (folder / "utt0.wav").read_bytes()
    result = vocode(folder / "utt0.wav.spec.npy", "--onnx", onnx_path, "-o", folder)
    assert result.exit_code == 1 and "would overwrite the recording it was computed from" in result.stderr
    assert (folder / "utt0.wav").read_bytes() == before


def test_operating_system_errors_are_one_line(onnx_path, tmp_path):
    mel = tmp_path / "m.npy"
    np.save(mel, random_mel(80, 10))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed")
    result = vocode(mel, "--onnx", onnx_path, "-o", blocker / "out")
    assert result.exit_code == 1, result.output
    # before any vocoding, so no progress bar either: the one line
    assert result.stderr.strip() == f"error: {blocker / 'out'}: Not a directory", result.stderr


def test_usage_errors_are_one_line(onnx_path, tmp_path):
    result = vocode(tmp_path / "m.npy", "--onnx", onnx_path, "--bogus")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: No such option: --bogus (see `diffwave vocode --help`)"
    result = CliRunner().invoke(app, ["nosuch"])
    assert result.exit_code == 2 and result.stderr.strip().startswith("error: No such command 'nosuch'")


def test_a_checkpoint_whose_network_makes_nan_writes_nothing(model, tmp_path):
    import torch

    from diffwave.checkpoint import Checkpoint, save_checkpoint

    broken = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    run = tmp_path / "broken"
    save_checkpoint(run, Checkpoint(step=1, model=broken, params=model.config.to_params()))
    mel = tmp_path / "m.npy"
    np.save(mel, random_mel(80, 10))
    out = tmp_path / "out"
    result = vocode(mel, "--checkpoint", run, "-o", out, "--device", "cpu")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    # the last line (a progress bar may stand above it when stderr is not a terminal)
    assert result.stderr.strip().splitlines()[-1] == f"error: {run}: the network produced NaN or inf (item 0): " \
        "its weights are broken; check the model with `diffwave export`'s gate"
    assert not out.exists() or not any(out.iterdir())
