"""Every way a request or a bundle can be wrong gives one line naming what is wrong, before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import random_model, tiny_config
from runtime import Vocoder, VocoderError
from runtime.bundle import BundleError
from runtime_helpers import bundle_metadata, random_mel, save_model_dir, write_onnx_bundle


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_config(), seed=4)


@pytest.fixture(scope="module")
def bundle(model, tmp_path_factory) -> Path:
    return write_onnx_bundle(tmp_path_factory.mktemp("bundle"), model).parent


@pytest.fixture(scope="module")
def vocoder(bundle):
    return Vocoder.load(bundle / "model.onnx")


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "spectrogram,expected",
    [
        (np.zeros((64, 10), np.float32), "64 mel bands"),
        (np.zeros((2, 64, 10), np.float32), "the model expects 80"),
        (np.zeros((80, 0), np.float32), "empty spectrogram"),
        (np.zeros((0, 80, 10), np.float32), "no items"),
        (np.zeros((10,), np.float32), "must be [n_mels, frames] or [batch, n_mels, frames]"),
        (np.zeros((1, 1, 80, 10), np.float32), "got shape (1, 1, 80, 10)"),
        ("mel", "not a numeric array"),
    ],
)
def test_bad_spectrograms(vocoder, spectrogram, expected):
    with pytest.raises(VocoderError) as exc:
        vocoder(spectrogram)
    assert expected in one_line(exc)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_spectrogram_names_where(vocoder, value):
    mel = random_mel(80, 12, batch=2)
    mel[1, 5, 7] = value
    with pytest.raises(VocoderError) as exc:
        vocoder(mel)
    assert "NaN or inf (item 1, band 5, frame 7)" in one_line(exc)


def test_non_finite_padding_beyond_lengths_is_ignored(vocoder):
    mel = random_mel(80, 12, batch=2)
    mel[1, :, 10:] = np.nan
    out = vocoder(mel, lengths=[12, 10], seed=0)
    assert all(np.isfinite(a).all() for a in out)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"lengths": [5]}, "lengths has 1 entries for a batch of 2"),
        ({"lengths": [5, 13]}, "lengths must lie in 1…12"),
        ({"lengths": [0, 3]}, "got 0"),
        ({"steps": "medium"}, "unknown schedule 'medium'"),
        ({"steps": [0.9, 0.99]}, "outside the training schedule"),
        ({"seed": -1}, "non-negative"),
        ({"seed": [1, 2, 3]}, "seed has 3 values for a batch of 2"),
        ({"seed": "abc"}, "seed must be"),
        ({"noise": np.zeros((6, 2, 5))}, "noise must have shape"),
        ({"steps": None}, "a schedule name (fast, full) or a list of betas, got None"),
        ({"steps": 5}, "got 5"),
        ({"steps": [[0.1]]}, "got [[0.1]]"),
        ({"lengths": [2.7, 3]}, "lengths must be integers (frames per item), got 2.7"),
        ({"lengths": ["3", 3]}, "got '3'"),
        ({"lengths": [None, 3]}, "got None"),
        ({"lengths": 5}, "lengths must be a sequence of frame counts"),
    ],
)
def test_bad_call_arguments(vocoder, kwargs, expected):
    with pytest.raises(VocoderError) as exc:
        vocoder(random_mel(80, 12, batch=2), **kwargs)
    assert expected in one_line(exc)


def test_conditional_model_refuses_generate(vocoder):
    with pytest.raises(VocoderError) as exc:
        vocoder.generate(1.0)
    assert "conditional" in one_line(exc)


def test_unconditional_model_refuses_spectrogram(tmp_path):
    model = random_model(tiny_config(unconditional=True))
    voc = Vocoder.from_module(model, bundle_metadata(model), device="cpu")
    with pytest.raises(VocoderError) as exc:
        voc(random_mel(80, 4))
    assert "unconditional" in one_line(exc)
    with pytest.raises(VocoderError) as exc:
        voc.generate(0.0)
    assert "nothing to generate" in one_line(exc)


def copy_bundle(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target)
    return target


def test_onnx_without_model_json(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    (folder / "model.json").unlink()
    with pytest.raises(BundleError) as exc:
        Vocoder.load(folder / "model.onnx")
    assert "model.json: missing bundle metadata" in one_line(exc)


def test_onnx_edited_after_export(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    with open(folder / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(folder / "model.onnx")
    assert "differ from the sha256 recorded in model.json" in one_line(exc)


def test_onnx_not_listed_in_model_json(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    shutil.copy(folder / "model.onnx", folder / "other.onnx")
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(folder / "other.onnx")
    assert "does not describe this file (it lists model.onnx)" in one_line(exc)


def test_model_json_disagrees_with_graph_on_mel_bands(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    data = json.loads((folder / "model.json").read_text())
    data["n_mels"] = data["features"]["n_mels"] = 64  # consistent with itself, not with the graph
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(folder / "model.onnx")
    assert "graph expects 80 mel bands but model.json says n_mels=64" in one_line(exc)


def _set(path: str, value):
    """An edit of model.json: ``path`` is dotted (``features.hop_samples``); value None deletes the key."""
    def edit(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
        return data
    return edit


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda d: [d], "expected a JSON object, got list"),
        (_set("hop_samples", "256"), "hop_samples must be a positive integer, got '256'"),
        (_set("hop_samples", 0), "hop_samples must be a positive integer, got 0"),
        (_set("n_mels", "80"), "n_mels must be a positive integer, got '80'"),
        (_set("sample_rate", 16000), "sample_rate=16000 disagrees with features.sample_rate=22050"),
        (_set("unconditional", "no"), "unconditional must be true or false"),
        (_set("inference_schedules", {"fast": "abc"}), "inference_schedules['fast'] must be a list of betas"),
        (_set("inference_schedules", {"fast": [0.5, 1.5]}), "betas in (0, 1), got [0.5, 1.5]"),
        (_set("inference_schedules", [0.1]), "inference_schedules must map names to lists of betas"),
        (_set("noise_schedule", []), "noise_schedule must be a non-empty list"),
        (_set("features.foo", 1), "features: unknown field(s) foo"),
        (_set("features", 3), "features must be an object, got 3"),
        (_set("params", [1]), "params must be an object"),
        (_set("inference_schedules", {"full": [0.1]}), "inference_schedules lacks 'fast'"),
        (_set("features.mel_scale", "bogus"), "features: mel_scale must be one of 'htk', 'slaney', got 'bogus'"),
        (_set("features.compression", "db"), "features: compression must be one of 'lmnt_db', 'ln'"),
        (_set("features.n_fft", 0), "features: n_fft must be a positive integer, got 0"),
        (_set("features.win_length", 4096), "features: win_length 4096 is longer than n_fft 1024"),
        (_set("features.f_max", 20000.0), "features: f_max must lie above f_min"),
    ],
)
def test_malformed_model_json_is_one_line_naming_the_file(bundle, tmp_path, edit, expected):
    folder = copy_bundle(bundle, tmp_path)
    data = edit(json.loads((folder / "model.json").read_text()))
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(BundleError) as exc:
        Vocoder.load(folder / "model.onnx")
    message = one_line(exc)
    assert message.startswith(f"{folder / 'model.json'}: ") and expected in message, message


@pytest.mark.parametrize("hop", [128, 512])
def test_hop_the_upsampler_cannot_make_is_refused_at_load(bundle, tmp_path, hop):
    # Consistent metadata, but the graph's upsampler makes 256 samples per frame: before this check
    # the load succeeded and the first call failed inside ONNX Runtime with a broadcast error.
    folder = copy_bundle(bundle, tmp_path)
    data = json.loads((folder / "model.json").read_text())
    data["hop_samples"] = data["features"]["hop_samples"] = hop
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(BundleError) as exc:
        Vocoder.load(folder / "model.onnx")
    assert f"hop_samples={hop}, but the network's upsampler makes 256 samples of every frame" in one_line(exc)


def test_model_json_disagrees_with_graph_on_conditioning(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    data = json.loads((folder / "model.json").read_text())
    data["unconditional"] = True
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(folder / "model.onnx")
    assert "does not match the step-graph contract" in one_line(exc)


def test_corrupt_onnx(bundle, tmp_path):
    folder = copy_bundle(bundle, tmp_path)
    (folder / "model.onnx").write_bytes(b"not a graph")
    data = json.loads((folder / "model.json").read_text())
    data["onnx_sha256"] = {}
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(folder / "model.onnx")
    assert "ONNX Runtime cannot load this graph" in one_line(exc)


@pytest.mark.parametrize("name,expected", [("missing.onnx", "no such file"), ("model.bin", "cannot tell the backend")])
def test_unknown_paths(tmp_path, name, expected):
    if name.endswith(".bin"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(tmp_path / name)
    assert expected in one_line(exc)


def test_checkpoint_errors_are_one_line(tmp_path, model):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(empty, device="cpu")
    assert "no checkpoint found" in one_line(exc)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"garbage")
    with pytest.raises(VocoderError) as exc:
        Vocoder.load(broken, device="cpu")
    assert "unreadable checkpoint" in one_line(exc)


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda d: {**d, "model": 5}, "'model' is not a state dict of tensors"),
        (lambda d: {**d, "model": {**d["model"], "extra": [1, 2]}}, "'model' is not a state dict of tensors"),
        (lambda d: {**d, "ema": "x"}, "'ema' is not a state dict of tensors"),
        (lambda d: {**d, "params": "abc"}, "params is str, expected a dict of settings"),
        (lambda d: {**d, "params": {**d["params"], "residual_channels": "x"}}, "its params do not describe a network"),
        (lambda d: {**d, "step": "abc"}, "step 'abc' is not a step count"),
    ],
)
def test_malformed_checkpoints_are_one_line_naming_the_file(tmp_path, model, edit, expected):
    import torch

    good = save_model_dir(tmp_path / "run", model) / "weights.pt"
    bad = tmp_path / "bad.pt"
    torch.save(edit(torch.load(good, weights_only=True)), bad)
    with pytest.raises(ValueError) as exc:
        Vocoder.load(bad, device="cpu")
    message = one_line(exc)
    assert message.startswith(f"{bad}: ") and expected in message, message


def test_checkpoint_loads_through_the_entry_point(tmp_path, model, vocoder):
    voc = Vocoder.load(save_model_dir(tmp_path / "run", model), device="cpu")
    assert voc.backend.name == "pytorch" and voc.backend.hoisted
    mel = random_mel(80, 10)
    assert np.abs(voc(mel, seed=1) - vocoder(mel, seed=1)).max() <= 1e-5


def test_a_bundle_directory_opens_its_onnx(bundle):
    assert Vocoder.load(bundle).backend.name == "onnxruntime"
