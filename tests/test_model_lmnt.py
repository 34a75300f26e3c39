"""lmnt compatibility: a checkpoint in lmnt's format loads, and the forward pass is DiffWave's.

The checkpoint is written here, by hand, with lmnt's key names and shapes and *every*
tensor random (lmnt zero-initialises the output projection, which would make any
comparison trivially pass). The reference forward pass below is an independent,
functional transcription of the DiffWave paper / lmnt's network, not our module.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffwave.checkpoint import CheckpointError, load_checkpoint
from diffwave.config import DiffWaveConfig
from diffwave.model import DiffWave

LMNT_TRAINING_BETAS = np.linspace(1e-4, 0.05, 50).tolist()


def lmnt_params(residual_layers=30, residual_channels=64, dilation_cycle_length=10, unconditional=False) -> dict:
    """The ``params`` dict lmnt's learner saves (``dict(params)`` of its params.py)."""
    return dict(
        batch_size=16,
        learning_rate=2e-4,
        max_grad_norm=None,
        sample_rate=22050,
        n_mels=80,
        n_fft=1024,
        hop_samples=256,
        crop_mel_frames=62,
        residual_channels=residual_channels,
        residual_layers=residual_layers,
        dilation_cycle_length=dilation_cycle_length,
        unconditional=unconditional,
        noise_schedule=LMNT_TRAINING_BETAS,
        inference_noise_schedule=[0.0001, 0.001, 0.01, 0.05, 0.2, 0.5],
        audio_len=22050 * 5,
    )


def lmnt_shapes(p: dict) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of lmnt's DiffWave, written out from its module definitions."""
    c, n_mels = p["residual_channels"], p["n_mels"]
    shapes = {
        "input_projection.weight": (c, 1, 1),
        "input_projection.bias": (c,),
        "diffusion_embedding.projection1.weight": (512, 128),
        "diffusion_embedding.projection1.bias": (512,),
        "diffusion_embedding.projection2.weight": (512, 512),
        "diffusion_embedding.projection2.bias": (512,),
    }
    if not p["unconditional"]:
        shapes.update({
            "spectrogram_upsampler.conv1.weight": (1, 1, 3, 32),
            "spectrogram_upsampler.conv1.bias": (1,),
            "spectrogram_upsampler.conv2.weight": (1, 1, 3, 32),
            "spectrogram_upsampler.conv2.bias": (1,),
        })
    for i in range(p["residual_layers"]):
        pre = f"residual_layers.{i}."
        shapes.update({
            pre + "dilated_conv.weight": (2 * c, c, 3),
            pre + "dilated_conv.bias": (2 * c,),
            pre + "diffusion_projection.weight": (c, 512),
            pre + "diffusion_projection.bias": (c,),
            pre + "output_projection.weight": (2 * c, c, 1),
            pre + "output_projection.bias": (2 * c,),
        })
        if not p["unconditional"]:
            shapes[pre + "conditioner_projection.weight"] = (2 * c, n_mels, 1)
            shapes[pre + "conditioner_projection.bias"] = (2 * c,)
    shapes.update({
        "skip_projection.weight": (c, c, 1),
        "skip_projection.bias": (c,),
        "output_projection.weight": (1, c, 1),
        "output_projection.bias": (1,),
    })
    return shapes


def random_lmnt_state(p: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in lmnt_shapes(p).items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 16
        state[name] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    state["output_projection.weight"] *= 3.0  # well away from lmnt's zero initialisation
    return state


def write_lmnt_checkpoint(directory, p: dict, state: dict, step: int = 1000):
    """A model directory as lmnt's learner leaves it: weights-<step>.pt and a weights.pt link."""
    params = [torch.nn.Parameter(t.clone()) for t in state.values()]
    optimizer = torch.optim.Adam(params, lr=p["learning_rate"])
    sum(q.sum() for q in params).backward()
    optimizer.step()
    checkpoint = {
        "step": step,
        "model": state,
        "optimizer": optimizer.state_dict(),
        "params": p,
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
    }
    path = directory / f"weights-{step}.pt"
    torch.save(checkpoint, path)
    (directory / "weights.pt").symlink_to(path.name)
    return path


# -- the independent reference ------------------------------------------------------------

def reference_embedding(t: torch.Tensor) -> torch.Tensor:
    """128-d sinusoidal step encoding of the DiffWave paper, lerped between integer steps (per element).

    The angles n·10^(4d/63) are formed in float32 as lmnt forms them: at n = 49 and d = 63 the
    angle is 4.9e5 rad, where one float32 ulp is 0.03 rad, so this rounding is part of what a
    checkpoint was trained with. Sine, cosine and the interpolation are then done in float64.
    """
    freqs = 10.0 ** (torch.arange(64, dtype=torch.float32) * 4.0 / 63.0)

    def row(n: int) -> torch.Tensor:
        angles = (torch.tensor(float(n), dtype=torch.float32) * freqs).double()
        return torch.cat([torch.sin(angles), torch.cos(angles)])

    rows = []
    for value in t.double().tolist():
        lo, hi = math.floor(value), math.ceil(value)
        w = value - lo
        rows.append((1 - w) * row(lo) + w * row(hi))
    return torch.stack(rows)


def reference_forward(state: dict, p: dict, audio: torch.Tensor, t: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
    s = {k: v.double() for k, v in state.items()}
    n_layers = p["residual_layers"]
    emb = reference_embedding(t)
    emb = F.silu(F.linear(emb, s["diffusion_embedding.projection1.weight"], s["diffusion_embedding.projection1.bias"]))
    emb = F.silu(F.linear(emb, s["diffusion_embedding.projection2.weight"], s["diffusion_embedding.projection2.bias"]))
    if emb.shape[0] == 1:
        emb = emb.expand(audio.shape[0], -1)
    cond = None
    if mel is not None:
        m = mel.double().unsqueeze(1)
        for conv in ("conv1", "conv2"):
            w, b = s[f"spectrogram_upsampler.{conv}.weight"], s[f"spectrogram_upsampler.{conv}.bias"]
            m = F.leaky_relu(F.conv_transpose2d(m, w, b, stride=(1, 16), padding=(1, 8)), 0.4)
        cond = m.squeeze(1)
    x = F.relu(F.conv1d(audio.double().unsqueeze(1), s["input_projection.weight"], s["input_projection.bias"]))
    skips = torch.zeros_like(x)
    for i in range(n_layers):
        pre = f"residual_layers.{i}."
        dilation = 2 ** (i % p["dilation_cycle_length"])
        d = F.linear(emb, s[pre + "diffusion_projection.weight"], s[pre + "diffusion_projection.bias"])[:, :, None]
        y = F.conv1d(x + d, s[pre + "dilated_conv.weight"], s[pre + "dilated_conv.bias"], padding=dilation, dilation=dilation)
        if cond is not None:
            y = y + F.conv1d(cond, s[pre + "conditioner_projection.weight"], s[pre + "conditioner_projection.bias"])
        c = y.shape[1] // 2
        z = torch.sigmoid(y[:, :c]) * torch.tanh(y[:, c:])
        z = F.conv1d(z, s[pre + "output_projection.weight"], s[pre + "output_projection.bias"])
        x = (x + z[:, :c]) / math.sqrt(2.0)
        skips = skips + z[:, c:]
    out = F.relu(F.conv1d(skips / math.sqrt(n_layers), s["skip_projection.weight"], s["skip_projection.bias"]))
    return F.conv1d(out, s["output_projection.weight"], s["output_projection.bias"]).float()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# -- tests ---------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(residual_layers=6, residual_channels=16, dilation_cycle_length=3)


@pytest.fixture(scope="module")
def lmnt_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lmnt")
    p = lmnt_params(**SMALL)
    state = random_lmnt_state(p)
    write_lmnt_checkpoint(directory, p, state)
    return directory, p, state


def test_base_model_has_lmnt_parameter_names_and_shapes():
    model = DiffWave()
    expected = lmnt_shapes(lmnt_params())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert 2.5e6 < sum(v.numel() for v in model.parameters()) < 2.7e6


def test_base_lmnt_checkpoint_loads_unchanged(tmp_path):
    p = lmnt_params()
    state = random_lmnt_state(p, seed=3)
    write_lmnt_checkpoint(tmp_path, p, state, step=1000578)
    model = DiffWave.from_checkpoint(tmp_path)
    assert model.checkpoint_step == 1000578
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert model.config.model.residual_layers == 30 and model.config.diffusion.noise_schedule == tuple(LMNT_TRAINING_BETAS)


@pytest.mark.parametrize("via", ["directory", "file"])
def test_lmnt_checkpoint_loads_from_directory_or_file(lmnt_dir, via):
    directory, p, state = lmnt_dir
    model = DiffWave.from_checkpoint(directory if via == "directory" else directory / "weights-1000.pt")
    assert not model.training
    assert model.config.model.residual_layers == p["residual_layers"]
    assert model.config.model.residual_channels == p["residual_channels"]
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value), key
    ckpt = load_checkpoint(directory)
    assert ckpt.step == 1000 and ckpt.optimizer["state"]  # the optimizer state survives for fine-tuning


def _inputs(p, batch=2, frames=6, seed=1):
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, frames * p["hop_samples"], generator=gen) * 0.5
    mel = torch.rand(batch, p["n_mels"], frames, generator=gen)
    return audio, mel


@pytest.mark.parametrize(
    "steps",
    [
        torch.tensor([7]),  # one integer step shared by the batch
        torch.tensor([3, 41]),  # one integer step per item
        torch.tensor([12.25]),  # a continuous step, as the fast schedule uses
        torch.tensor([0.5, 37.8]),  # distinct continuous steps: lmnt's interpolation cannot do this
        torch.tensor([48.999, 2.0]),
    ],
    ids=["int-shared", "int-per-item", "float-shared", "float-per-item", "float-edges"],
)
def test_forward_matches_functional_reference(lmnt_dir, steps):
    directory, p, state = lmnt_dir
    model = DiffWave.from_checkpoint(directory)
    audio, mel = _inputs(p)
    with torch.no_grad():
        ours = model(audio, steps, mel)
    expected = reference_forward(state, p, audio, steps, mel)
    assert ours.shape == (2, 1, audio.shape[1])
    assert expected.abs().mean() > 1e-2  # a real signal, not zeros
    assert rel_err(ours, expected) <= 1e-5


def test_distinct_float_steps_differ_per_item(lmnt_dir):
    """Each item gets its own step: the batched result equals running the items one by one."""
    directory, p, _ = lmnt_dir
    model = DiffWave.from_checkpoint(directory)
    audio, mel = _inputs(p)
    steps = torch.tensor([4.3, 30.7])
    with torch.no_grad():
        batched = model(audio, steps, mel)
        single = torch.cat([model(audio[i : i + 1], steps[i : i + 1], mel[i : i + 1]) for i in range(2)])
    assert rel_err(batched, single) <= 1e-5


def test_unconditional_lmnt_checkpoint_matches_reference(tmp_path):
    p = lmnt_params(**SMALL, unconditional=True)
    state = random_lmnt_state(p, seed=5)
    write_lmnt_checkpoint(tmp_path, p, state, step=10)
    model = DiffWave.from_checkpoint(tmp_path / "weights.pt")
    assert model.unconditional
    audio, _ = _inputs(p, frames=4)
    for steps in (torch.tensor([9]), torch.tensor([1.5, 22.25])):
        with torch.no_grad():
            ours = model(audio, steps)
        assert rel_err(ours, reference_forward(state, p, audio, steps, None)) <= 1e-5


def test_default_model_is_lmnt_base_and_zero_output():
    model = DiffWave()
    assert model.config == DiffWaveConfig()
    assert torch.count_nonzero(model.output_projection.weight) == 0  # lmnt's start: ε̂ = 0


def test_mismatched_checkpoint_names_the_key(tmp_path):
    p = lmnt_params(**SMALL)
    state = random_lmnt_state(p)
    state["residual_layers.2.dilated_conv.weight"] = torch.zeros(3, 3, 3)
    write_lmnt_checkpoint(tmp_path, p, state)
    with pytest.raises(CheckpointError, match=r"residual_layers\.2\.dilated_conv\.weight.*shape"):
        DiffWave.from_checkpoint(tmp_path)


def test_truncated_checkpoint_is_one_clear_error(tmp_path):
    p = lmnt_params(**SMALL)
    path = write_lmnt_checkpoint(tmp_path, p, random_lmnt_state(p))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        DiffWave.from_checkpoint(tmp_path)


@pytest.mark.parametrize("holding, refused", [
    ("an AttrDict", r"diffwave\.params\.AttrDict"),  # torch.save({..., "params": params}) by hand
    ("a numpy schedule", "numpy.*._reconstruct"),  # np.linspace left unconverted (numpy 1 says numpy.core)
])
def test_a_checkpoint_holding_python_objects_names_them_and_the_way_out(tmp_path, holding, refused):
    # Before: the message stopped at torch's "you have two options," with neither option shown.
    import numpy as np

    from diffwave.params import AttrDict

    p = lmnt_params(**SMALL)
    params = AttrDict(p) if holding == "an AttrDict" else {**p, "noise_schedule": np.asarray(p["noise_schedule"])}
    path = tmp_path / "weights.pt"
    torch.save({"step": 1, "model": random_lmnt_state(p), "params": params}, path)
    with pytest.raises(CheckpointError) as info:
        DiffWave.from_checkpoint(tmp_path)
    assert re.fullmatch(
        re.escape(f"{path}: unreadable checkpoint (it holds a ") + refused + re.escape(
            " object, which safe loading refuses; re-save it with tensors and plain Python values only, "
            "e.g. params as dict(params) with lists instead of numpy arrays)"),
        str(info.value),
    ), str(info.value)
