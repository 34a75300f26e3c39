"""Shared test utilities (imported by tests; fixtures live in conftest.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

from diffwave.config import DiffWaveConfig
from diffwave.model import DiffWave

#: A network small enough to train and export in seconds on 2 CPU cores.
TINY_PARAMS = {"residual_layers": 4, "residual_channels": 16, "dilation_cycle_length": 2, "crop_mel_frames": 16, "batch_size": 4}


def tiny_config(**overrides) -> DiffWaveConfig:
    return DiffWaveConfig().override({**TINY_PARAMS, **overrides})


#: the architectures the export and engine tests run through, by name (built lazily: the base
#: model costs seconds per evaluation on the CI machine)
CONFIGS = {
    "tiny": lambda: tiny_config(),
    "tiny_uncond": lambda: tiny_config(unconditional=True),
    "base": lambda: DiffWaveConfig(),
    "base_uncond": lambda: DiffWaveConfig().override({"unconditional": True}),
}


def randomize_weights(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Overwrite every parameter with random values.

    DiffWave zero-initialises its output layer, so an untrained model predicts ε̂ = 0 and
    any parity test on it would compare zeros with zeros. Every weight, that layer
    included, gets non-zero noise here.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * scale)
    assert all(p.abs().sum() > 0 for p in model.parameters())
    return model


def random_model(config: DiffWaveConfig | None = None, seed: int = 0) -> DiffWave:
    return randomize_weights(DiffWave(config or tiny_config()), seed).eval()


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str, monkeypatch=None) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (the scripts are not a package), to test its functions.

    Pass pytest's ``monkeypatch`` for a script that defines dataclasses: ``dataclasses`` looks a
    class's module up in ``sys.modules`` while the module runs, so it is registered there for the
    test (and removed again after it).
    """
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module
