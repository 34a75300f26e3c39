"""lmnt-format checkpoints: ``{'step', 'model', 'optimizer', 'params', 'scaler'}``.

A model directory holds ``weights-<step>.pt`` files and ``weights.pt``, a link to the
newest. Every write goes to a temporary name first and is renamed into place, so a
``kill -9`` in the middle of a save never leaves a truncated ``weights.pt`` behind.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from runtime.bundle import atomic_output
from runtime.errors import first_line

from .config import DiffWaveConfig

LATEST_NAME = "weights.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model (message is one line)."""


@dataclass
class Checkpoint:
    step: int
    model: dict[str, torch.Tensor]
    params: dict[str, Any]
    optimizer: Optional[dict] = None
    scaler: Optional[dict] = None
    ema: Optional[dict[str, torch.Tensor]] = None  #: averaged weights, when training keeps them
    path: Optional[Path] = None  #: the file it was read from, for error messages

    @property
    def inference_label(self) -> str:
        """What :func:`load_model` serves from this checkpoint by default, as :func:`describe_weights` says it."""
        return weights_label(self.step, self.ema is not None)

    @property
    def config(self) -> DiffWaveConfig:
        # Unknown keys are tolerated here: a checkpoint from a newer lmnt may carry extra settings.
        try:
            return DiffWaveConfig.from_params(self.params, strict=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.path or 'checkpoint'}: its params do not describe a network ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "model": self.model, "params": self.params}
        out["optimizer"] = self.optimizer
        out["scaler"] = self.scaler
        if self.ema is not None:
            out["ema"] = self.ema
        return out


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A ``.pt`` file as given, or a model directory's ``weights.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / LATEST_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint found (expected a .pt file or a model directory with {LATEST_NAME})")
    return path


def _load_failure(exc: Exception) -> str:
    """One line on why torch.load refused a file: for a Python object that weights-only loading
    does not run, which object it is and how to re-save the file without it."""
    text = str(exc).strip()
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (f"it holds a {refused.group(1)} object, which safe loading refuses; re-save it with tensors and "
                "plain Python values only, e.g. params as dict(params) with lists instead of numpy arrays")
    return first_line(exc)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    path = resolve_checkpoint_path(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        raise CheckpointError(f"{path}: unreadable checkpoint ({_load_failure(exc)})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path}: not a DiffWave checkpoint (no 'model' state dict)")
    for key in ("model", "ema"):
        state = data.get(key)
        if key == "ema" and state is None:
            continue
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise CheckpointError(f"{path}: {key!r} is not a state dict of tensors")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"{path}: params is {type(params).__name__}, expected a dict of settings")
    step = data.get("step", 0)
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = step.item()  # some trainers store the step as a tensor
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: step {step!r} is not a step count")
    return Checkpoint(
        step=int(step),
        model=data["model"],
        params=dict(params),
        optimizer=data.get("optimizer"),
        scaler=data.get("scaler"),
        ema=data.get("ema"),
        path=path,
    )


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu", use_ema: Optional[bool] = None):
    """Rebuild the network from a checkpoint's ``params`` and load its weights, strictly.

    ``use_ema``: None (the default) loads the averaged weights when the run kept them (training
    with ``ema_decay``), because those are the ones meant for inference: the raw weights of a
    diffusion model wander from step to step and the average smooths that out. True insists on
    them (an error when there are none), False loads the raw weights. ``model.uses_ema`` says which.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    return _model_from(ckpt, use_ema).to(map_location).eval()


def _model_from(ckpt: Checkpoint, use_ema: Optional[bool]):
    """The network of a loaded checkpoint with the weights :func:`load_model` describes."""
    from .model import DiffWave

    where = ckpt.path
    config = ckpt.config  # names the file itself when the params are unusable
    try:
        model = DiffWave(config)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if use_ema and ckpt.ema is None:
        raise CheckpointError(f"{where}: has no averaged (EMA) weights; it was trained without ema_decay")
    ema = ckpt.ema is not None and use_ema is not False
    state = ckpt.ema if ema else ckpt.model
    check_state_dict(model, state, source=f"{where} (ema)" if ema else str(where))
    model.load_state_dict(state)
    model.checkpoint_step = ckpt.step
    model.uses_ema = ema
    return model


def inference_checkpoint(path: str | os.PathLike) -> tuple[Checkpoint, Checkpoint]:
    """(the checkpoint as stored, the weights inference uses alone), for shipping or bringing back.

    The second holds step, params and one set of weights, no optimizer state. When that set is the
    average it is stored under "model" and, as the very same tensors, under "ema": torch.save
    writes shared tensors once, so the file does not grow, and every later reader can tell.
    """
    ckpt = load_checkpoint(path)
    model = _model_from(ckpt, use_ema=None)
    weights = model.state_dict()
    slim = Checkpoint(step=ckpt.step, model=weights, params=ckpt.params, ema=weights if model.uses_ema else None)
    return ckpt, slim


def describe_weights(model) -> str:
    """'step N, averaged (EMA) weights' or 'step N, raw weights', for a model from :func:`load_model`."""
    return weights_label(model.checkpoint_step, model.uses_ema)


def weights_label(step: int, averaged: bool) -> str:
    """'step N, averaged (EMA) weights' or 'step N, raw weights'."""
    return f"step {step}, {'averaged (EMA)' if averaged else 'raw'} weights"


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise one line naming the first key that is missing, unexpected or of the wrong shape."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{source}: state dict does not match the architecture: missing key {key!r}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: state dict does not match the architecture: {key!r} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{source}: state dict does not match the architecture: unexpected key {key!r}")


def save_checkpoint(model_dir: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write ``weights-<step>.pt`` atomically, then point ``weights.pt`` at it atomically."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / f"weights-{ckpt.step}.pt"
    with atomic_output(target, suffix=".tmp") as tmp, open(tmp, "wb") as fh:
        torch.save(ckpt.to_dict(), fh)
        fh.flush()
        os.fsync(fh.fileno())  # on disk before the rename: a power cut must not leave weights.pt pointing at nothing
    _point_latest_at(model_dir, target.name)
    return target


def _point_latest_at(model_dir: Path, name: str) -> None:
    latest = model_dir / LATEST_NAME
    tmp = model_dir / f".{LATEST_NAME}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(name, tmp)
    except OSError:  # filesystems without symlinks: a copy, still renamed into place
        shutil.copyfile(model_dir / name, tmp)
    os.replace(tmp, latest)


def load_for_runtime(path: str | os.PathLike, device: str = "cpu"):
    """Entry point ``runtime.checkpoint_loaders``: (eval-mode module, bundle metadata) for ``Vocoder.load``.

    ``runtime`` never imports ``diffwave``; it finds this function through the entry point
    declared in pyproject.toml, so a checkpoint can be served whenever this package is installed.
    """
    model = load_model(path, map_location=device)
    return model, model.config.bundle_metadata()
