"""Training: the ε-prediction objective of DiffWave, on one process or many.

One training step (as lmnt): draw a training step t and noise ε per example, make
``x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε`` (ᾱ from :mod:`runtime.schedule`, the one copy of the
schedule math), and minimise ``|ε − ε̂(x_t, t, mel)|₁`` with Adam.

A run is reproducible and resumable: the model starts from ``seed``, the data order and
crops are a function of (seed, step) (:mod:`diffwave.data`), and the noise of step s on
rank r comes from a generator seeded with (seed, s, r). So a run that is killed and
restarted from its last checkpoint reaches the same weights as one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from runtime.schedule import align_to_training_steps, cumulative_alphas

from . import distributed as ddp, interrupts
from .checkpoint import (
    LATEST_NAME,
    Checkpoint,
    CheckpointError,
    check_state_dict,
    load_checkpoint,
    resolve_checkpoint_path,
    save_checkpoint,
    weights_label,
)
from .config import SHAPE_FREE_NETWORK_KEYS, DiffWaveConfig, network_param_keys
from .audio import AudioError
from .data import Batch, CropBatchSampler, CropDataset, DataError, Inventory, Record, collate, scan
from .distributed import DistContext
from .model import DiffWave
from .spectral_loss import low_noise_spectral_loss
from .validation import ValidationSet

PRECISIONS = ("fp32", "fp16", "bf16")
_DIVERGED = "training diverged (lower the learning rate, set max_grad_norm, or check the data); the last checkpoint is intact"
_CHECKPOINT_RE = re.compile(r"^weights-(\d+)\.pt$")


class TrainingError(RuntimeError):
    """Training cannot start or go on (message is one line, naming the step or file involved)."""


@dataclass(frozen=True)
class TrainOptions:
    """How to run (not saved in checkpoints: the model does not depend on them)."""

    model_dir: Path
    data_dirs: tuple[Path, ...]
    max_steps: Optional[int] = None  #: total steps to reach (a resumed run counts from its checkpoint); None = forever
    #: Wall-clock budget of this sitting: stop (and checkpoint) after the first step that ends past it.
    #: Lets training run in slices on machines lent for a few minutes at a time; rerunning resumes.
    max_minutes: Optional[float] = None
    checkpoint_every: int = 1000
    log_every: int = 50  #: TensorBoard scalars every N steps
    precision: str = "fp32"  #: fp32, fp16 (autocast + GradScaler, CUDA only) or bf16 (autocast)
    device: str = "cpu"  #: "cpu" or "cuda"
    data_workers: int = 2  #: DataLoader worker processes per rank
    keep_checkpoints: int = 5  #: newest weights-<step>.pt files kept; 0 keeps all
    #: Held-out folders: their loss per noise level is measured at every checkpoint (and before a new run's first step).
    valid_dirs: tuple[Path, ...] = ()
    #: A new run starts from this checkpoint's inference weights and step instead of ``seed``'s
    #: random ones (fine-tuning); ignored once ``model_dir`` has a checkpoint of its own.
    init_from: Optional[Path] = None
    progress: bool = True
    #: Run the forward and backward through torch.compile (Inductor). Why: a base-model step on a
    #: GPU is predicted to be bound by the memory traffic of its unfused elementwise operators
    #: (gate, residual, skip), not by arithmetic (benchmarks/README.md); fused, they move a fraction
    #: of the bytes and launch fewer kernels. Costs a compilation on the first step.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise TrainingError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.device not in ("cpu", "cuda"):
            raise TrainingError(f"device {self.device!r}: expected cpu or cuda")
        if self.precision == "fp16" and self.device != "cuda":
            raise TrainingError("--fp16 needs CUDA (float16 autocast with a GradScaler); on the CPU use --bf16 or full precision")
        if self.max_steps is not None and self.max_steps < 0:
            raise TrainingError(f"max steps must be >= 0, got {self.max_steps}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise TrainingError(f"max minutes must be > 0, got {self.max_minutes}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise TrainingError("checkpoint and log intervals must be >= 1 step")


@dataclass
class TrainResult:
    step: int  #: steps completed, counting those of the checkpoint it resumed from
    start_step: int
    losses: list[float] = field(default_factory=list)  #: mean loss over ranks, one per step of this run
    model: Optional[DiffWave] = None  #: the trained network (this rank's replica)
    out_of_time: bool = False  #: stopped by ``max_minutes`` before ``max_steps``


# -- configuration --------------------------------------------------------------------

def existing_checkpoint(model_dir: Path) -> Optional[Path]:
    """The model directory's ``weights.pt``, None if there is none; a dangling link is an error."""
    latest = Path(model_dir) / LATEST_NAME
    if latest.is_symlink() and not latest.exists():
        raise CheckpointError(f"{latest}: links to {os.readlink(latest)}, which is missing")
    return latest if latest.exists() else None


def resolve_config(
    model_dir: Path,
    config_file: Optional[Path] = None,
    overrides: Optional[dict[str, Any]] = None,
    init_from: Optional[Path] = None,
) -> DiffWaveConfig:
    """The run's configuration: the checkpoint's (when resuming) or lmnt's defaults, then the file, then flags.

    Resuming keeps the network the checkpoint was trained as; a config that would change it
    (layers, channels, features, training schedule) is refused, naming the keys. A new run with
    ``init_from`` starts from that checkpoint's configuration and is held to its network the same way,
    except for the keys that leave the weights' shapes alone (``SHAPE_FREE_NETWORK_KEYS``).
    """
    latest = existing_checkpoint(model_dir)
    source = latest or (resolve_checkpoint_path(init_from) if init_from is not None else None)
    base = load_checkpoint(source).config if source else DiffWaveConfig()
    config = DiffWaveConfig.from_json(config_file, base=base) if config_file else base
    if overrides:
        config = config.override(overrides)
    if source:
        old, new = base.to_params(), config.to_params()
        fixed = network_param_keys() - (SHAPE_FREE_NETWORK_KEYS if latest is None else frozenset())
        changed = sorted(k for k in fixed if old.get(k) != new.get(k))
        if changed:
            detail = ", ".join(f"{k}={old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
            remedy = "use a new model directory to change it" if latest else "its weights fit no other network"
            raise TrainingError(f"{source} was trained with another architecture ({detail}): {remedy}")
    return config


# -- one process ------------------------------------------------------------------------

def _step_seed(seed: int, step: int, rank: int, *stream: int) -> int:
    """Seed of one rank's draws at one step; ``stream`` names further independent draws of that step."""
    return int(np.random.SeedSequence([seed, step, rank, *stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def fast_training_steps(config: DiffWaveConfig) -> tuple[int, ...]:
    """The training steps nearest the fast schedule's inference steps (lmnt's: 0, 1, 4, 10, 23, 43)."""
    aligned = align_to_training_steps(config.diffusion.noise_schedule, config.diffusion.inference_noise_schedule)
    return tuple(sorted({int(s) for s in np.rint(aligned)}))


class Learner:
    """Model, optimizer, scaler and (optional) weight average, and the step that updates them."""

    def __init__(self, config: DiffWaveConfig, options: TrainOptions, ctx: DistContext, device: torch.device):
        self.config, self.options, self.ctx, self.device = config, options, ctx, device
        torch.manual_seed(config.train.seed)  # same initial weights on every rank and every fresh run
        if device.type == "cuda":
            # Crops have one shape for the whole run, so timing cuDNN's convolution algorithms once
            # (first step) pays: its default heuristics need not pick the fastest for dilated 1-D convs.
            torch.backends.cudnn.benchmark = True
        self.model = DiffWave(config).to(device)
        self.network: torch.nn.Module = self.model
        if ctx.distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        if options.compile:
            # Only the call is compiled: self.model stays the plain module, so checkpoints, the
            # weight average and validation see the usual parameter names.
            self.network = torch.compile(self.network)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.learning_rate)
        self.scaler = torch.amp.GradScaler(device.type, enabled=options.precision == "fp16")
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(options.precision)
        alpha_cum = cumulative_alphas(config.diffusion.noise_schedule)
        self.alpha_cum = torch.tensor(alpha_cum, dtype=torch.float32, device=device)
        self.fast_steps = torch.tensor(fast_training_steps(config), dtype=torch.long, device=device)
        self.ema: Optional[dict[str, torch.Tensor]] = self._weights_copy() if config.train.ema_decay is not None else None
        self._averaged: Optional[DiffWave] = None  #: scratch network holding the average, for validation
        self.step = 0
        self.saved_step = 0  #: the step of the newest checkpoint this run wrote (or resumed from)

    def _weights_copy(self) -> dict[str, torch.Tensor]:
        """Where a weight average starts: a float32 copy of the network's current weights."""
        return {k: v.detach().clone().float() for k, v in self.model.state_dict().items()}

    def inference_model(self) -> DiffWave:
        """The weights inference would get from the next checkpoint: the average when kept (see load_model)."""
        if self.ema is None:
            return self.model
        if self._averaged is None:
            self._averaged = DiffWave(self.config).to(self.device)
        self._averaged.load_state_dict(self.ema)
        return self._averaged

    # -- state ----------------------------------------------------------------------------
    def restore(self, ckpt: Checkpoint, source: str) -> None:
        """Continue from a checkpoint: weights, optimizer moments, loss scale, EMA and step."""
        check_state_dict(self.model, ckpt.model, source)
        self.model.load_state_dict(ckpt.model)
        if ckpt.optimizer:
            try:
                self.optimizer.load_state_dict(ckpt.optimizer)
            except (ValueError, KeyError) as exc:
                raise CheckpointError(f"{source}: optimizer state does not fit the model ({exc})") from None
        for group in self.optimizer.param_groups:  # a --config may change the learning rate on resume
            group["lr"] = self.config.train.learning_rate
        if ckpt.scaler and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt.scaler)
        if self.ema is not None and ckpt.ema is not None:
            check_state_dict(self.model, ckpt.ema, source + " (ema)")
            self.ema = {k: v.to(self.device).float() for k, v in ckpt.ema.items()}
        elif self.ema is not None:
            # ema_decay switched on for a run trained without it: average from the resumed weights,
            # not from the random initialisation (which would take thousands of steps to decay away).
            self.ema = self._weights_copy()
        self.step = ckpt.step

    def start_from(self, ckpt: Checkpoint, source: str) -> None:
        """Begin a new run from another run's checkpoint: its inference weights and its step.

        The average is taken when the checkpoint kept one, because those are the weights that were
        evaluated and shipped; the raw weights of the last step are a noisier point. The optimizer
        starts fresh (Adam's moments belong to the raw weights' trajectory), and an average, when
        this run keeps one, starts at the loaded weights. The step carries on, so checkpoint names
        and ``max_steps`` count every update the weights have had.
        """
        averaged = ckpt.ema is not None
        state = ckpt.ema if averaged else ckpt.model
        check_state_dict(self.model, state, f"{source} (ema)" if averaged else source)
        self.model.load_state_dict(state)
        if self.ema is not None:
            self.ema = self._weights_copy()
        self.step = ckpt.step

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            step=self.step,
            model=_to_cpu(self.model.state_dict()),
            params=self.config.to_params(),
            optimizer=_to_cpu(self.optimizer.state_dict()),
            scaler=self.scaler.state_dict(),
            ema=_to_cpu(self.ema) if self.ema is not None else None,
        )

    # -- the update -------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> tuple[float, float]:
        """One optimizer step on this rank's batch; returns (loss averaged over ranks, gradient norm)."""
        audio = batch.audio.to(self.device)
        spectrogram = None if batch.spectrogram is None else batch.spectrogram.to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(
            _step_seed(self.config.train.seed, self.step, self.ctx.rank)
        )
        t = torch.randint(0, len(self.alpha_cum), (audio.shape[0],), device=self.device, generator=generator)
        noise = torch.randn(audio.shape, device=self.device, generator=generator)
        if self.config.train.fast_step_share > 0:
            t = self._move_rows_to_fast_steps(t)
        level = self.alpha_cum[t].unsqueeze(1)
        noisy = level.sqrt() * audio + (1.0 - level).sqrt() * noise

        mixed = torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype else contextlib.nullcontext()
        with mixed:
            predicted = self.network(noisy, t, spectrogram)
        predicted_noise = predicted.squeeze(1).float()
        loss = F.l1_loss(predicted_noise, noise)
        if self.config.train.spectral_loss_weight > 0:
            extra = low_noise_spectral_loss(
                noisy, predicted_noise, audio, t, self.alpha_cum, self.config.train.spectral_loss_max_step
            )
            loss = loss + self.config.train.spectral_loss_weight * extra

        # Checked before the update (and agreed on by all ranks), so no non-finite weights are ever stored.
        mean_loss = float(ddp.mean_over_ranks(loss.detach(), self.ctx))
        if not math.isfinite(mean_loss):
            raise TrainingError(f"loss is {mean_loss} at step {self.step + 1}: {_DIVERGED}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.config.train.max_grad_norm
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm if max_norm else float("inf"))
        # With fp16 the GradScaler skips steps whose gradients overflowed (that is its job); otherwise
        # a non-finite gradient would turn every weight into NaN, so it stops training like a NaN loss.
        # The gradients are already averaged over ranks, so every rank agrees.
        if not self.scaler.is_enabled() and not math.isfinite(float(grad_norm)):
            raise TrainingError(f"gradient norm is {float(grad_norm)} at step {self.step + 1}: {_DIVERGED}")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._update_ema()
        self.step += 1
        return mean_loss, float(grad_norm)

    def _move_rows_to_fast_steps(self, t: torch.Tensor) -> torch.Tensor:
        """Give a random ``fast_step_share`` of the rows one of the fast schedule's training steps.

        Why: with a uniform draw each of the six steps the fast schedule samples with gets 1 row in
        50, so the finest ones (which decide how much hiss is left) are rarely trained (models/README.md,
        stop 14). The choice comes from its own random stream, so the noise and the other rows' steps
        are those of a run without the option.
        """
        generator = torch.Generator(device=self.device).manual_seed(
            _step_seed(self.config.train.seed, self.step, self.ctx.rank, 1)
        )
        moved = torch.rand(t.shape, device=self.device, generator=generator) < self.config.train.fast_step_share
        which = torch.randint(0, len(self.fast_steps), t.shape, device=self.device, generator=generator)
        return torch.where(moved, self.fast_steps[which], t)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        # One fused update over every tensor (ema += (1 − decay)·(w − ema)): a loop over the base
        # model's 254 tensors is 508 operator launches per step, which a GPU step notices.
        current = self.model.state_dict()
        averages = list(self.ema.values())
        torch._foreach_lerp_(averages, [current[key].float() for key in self.ema], 1.0 - float(self.config.train.ema_decay))


def _to_cpu(obj: Any) -> Any:
    """Tensors to CPU, recursively: checkpoints load on machines without the GPU they came from."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


class _Summary:
    """TensorBoard on the main rank: scalars every ``log_every`` steps, a sample with each checkpoint."""

    def __init__(self, model_dir: Path, config: DiffWaveConfig, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.config = config
        # purge_step drops the events an interrupted sitting wrote after the checkpoint this one starts
        # from (for a new run, all those of a sitting killed before its first checkpoint), and keeps
        # the checkpoint step's own: its held-out loss is logged there, and a resume does not redo it.
        self.writer = SummaryWriter(str(model_dir), purge_step=start_step + 1)

    def scalars(self, step: int, loss: float, grad_norm: float, learner: Learner) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/grad_norm", grad_norm, step)
        self.writer.add_scalar("train/learning_rate", learner.optimizer.param_groups[0]["lr"], step)
        if learner.scaler.is_enabled():
            self.writer.add_scalar("train/loss_scale", learner.scaler.get_scale(), step)

    def validation(self, result) -> None:
        self.writer.add_scalar("valid/loss", result.mean, result.step)
        for t, value in zip(result.levels, result.losses):
            self.writer.add_scalar(f"valid/loss_t{t:02d}", value, result.step)
        self.writer.flush()

    def sample(self, step: int, batch: Batch) -> None:
        """The first training crop: its audio and its spectrogram (low frequencies at the bottom)."""
        audio = batch.audio[0].detach().float().cpu()
        if batch.spectrogram is not None:
            spec = batch.spectrogram[0].detach().float().cpu()
        else:
            from .features import log_mel_spectrogram

            spec = log_mel_spectrogram(audio, self.config.features)
        spec = (spec - spec.min()) / (spec.max() - spec.min()).clamp(min=1e-8)
        self.writer.add_audio("train/audio", audio.clamp(-1, 1), step, sample_rate=self.config.features.sample_rate)
        self.writer.add_image("train/spectrogram", spec.flip(0).unsqueeze(0), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def train(
    options: TrainOptions,
    config: DiffWaveConfig,
    ctx: DistContext = DistContext(),
    inventory: Optional[Inventory] = None,
) -> TrainResult:
    """Train in this process (as rank ``ctx.rank`` of an already joined group when distributed).

    Resumes from ``model_dir/weights.pt`` when it exists; stops at ``options.max_steps``.
    """
    model_dir = Path(options.model_dir)
    device = ctx.device(options.device)
    if ctx.is_main:
        model_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(model_dir)
    learner = Learner(config, options, ctx, device)
    latest = existing_checkpoint(model_dir)
    if latest:
        # Loaded on the CPU: Optimizer.load_state_dict moves Adam's moments to the parameters' device
        # but leaves its step counters where they arrive, and on a GPU each would cost a host sync per
        # parameter per step (a fresh run keeps them on the CPU).
        learner.restore(load_checkpoint(latest, map_location="cpu"), str(latest))
    elif options.init_from is not None:
        _start_from(learner, options, ctx)
    result = TrainResult(step=learner.step, start_step=learner.step, model=learner.model)
    if options.max_steps is not None and learner.step >= options.max_steps:
        return result
    if inventory is None:
        inventory = scan(options.data_dirs, config)
    loader = make_loader(inventory.records, config, ctx, learner.step, options.data_workers, pin_memory=device.type == "cuda")
    validation = _validation_set(options, config) if ctx.is_main and options.valid_dirs else None
    summary = _Summary(model_dir, config, learner.step) if ctx.is_main else None
    if ctx.is_main:  # said once every check has passed (with a bar or without, e.g. in a GPU slice's log)
        tqdm.write(f"training data: {inventory.summary()}", file=sys.stderr)
    try:  # the events file is closed on every way out: an open writer re-creates it on a later flush
        if validation is not None and latest is None:  # a new run: where it starts, for the curve
            _validate(learner, validation, summary, options)
        _run_steps(learner, loader, options, summary, validation, result, device)
    finally:
        if summary:
            summary.close()
    ddp.barrier(ctx)
    result.step = learner.step
    return result


def _run_steps(learner: Learner, loader: DataLoader, options: TrainOptions, summary: Optional[_Summary],
               validation: Optional[ValidationSet], result: TrainResult, device: torch.device) -> None:
    """The training loop: steps until ``max_steps`` or the time budget, a checkpoint every
    ``checkpoint_every`` steps and at the end; Ctrl-C saves what was done unless it broke into a step."""
    bar = tqdm(
        initial=learner.step, total=options.max_steps, desc="train", unit="step", disable=not (options.progress and learner.ctx.is_main)
    )
    learner.saved_step = learner.step
    # Without a bar (a log file, a batch job) each checkpoint gets one plain line instead.
    pace = _Pace() if learner.ctx.is_main and not options.progress else None
    deadline = None if options.max_minutes is None else time.monotonic() + 60.0 * options.max_minutes
    batches = iter(loader)
    try:
        while options.max_steps is None or learner.step < options.max_steps:
            # Every rank must stop after the same step, so the main rank's clock decides for all.
            if deadline is not None and ddp.main_rank_says(time.monotonic() >= deadline, learner.ctx, device):
                result.out_of_time = True
                break
            with interrupts.deferred():  # Ctrl-C and SIGTERM land between steps (see interrupts.py)
                batch = _next_batch(batches)
                loss, grad_norm = learner.train_step(batch)
            result.losses.append(loss)
            bar.update()
            if pace:
                pace.add(loss)
            if learner.step % options.log_every == 0 or learner.step == result.start_step + 1:
                bar.set_postfix(loss=f"{loss:.4f}")
                if summary:
                    summary.scalars(learner.step, loss, grad_norm, learner)
            if learner.step % options.checkpoint_every == 0:
                _save(learner, options, summary, batch, validation, pace)
        if learner.step > learner.saved_step:
            _save(learner, options, summary, batch, validation, pace)
    except KeyboardInterrupt:
        # Ctrl-C keeps the work done so far, unless a second one broke into a half-done step.
        if not learner.ctx.distributed and learner.step > learner.saved_step and not interrupts.interrupted_mid_step():
            _save(learner, options, summary, None, hold_signals=False)  # a second Ctrl-C still stops at once
        raise
    finally:
        # Stop the loader's workers now, not when a traceback that still holds the iterator is
        # collected at exit: on SIGTERM they would outlive the main process's pipes and print.
        del batches
        bar.close()


def _next_batch(batches) -> Batch:
    """The next batch; a data error raised in a DataLoader worker comes back as its own one line.

    The loader re-raises a worker's exception with the worker's whole traceback as its message;
    our data errors end it with ``<module>.<Type>: <file>: <what>``, which is all a user needs.
    """
    try:
        return next(batches)
    except (DataError, AudioError) as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        name = f"{type(exc).__module__}.{type(exc).__name__}: "
        if last.startswith(name):
            raise type(exc)(last[len(name):]) from None
        raise


def _start_from(learner: Learner, options: TrainOptions, ctx: DistContext) -> None:
    """A new run's weights and step from ``options.init_from`` (see :meth:`Learner.start_from`)."""
    path = resolve_checkpoint_path(options.init_from)
    ckpt = load_checkpoint(path, map_location=learner.device)
    learner.start_from(ckpt, str(path))
    if ctx.is_main:
        tqdm.write(f"starting from {path} ({weights_label(ckpt.step, ckpt.ema is not None)}), fresh optimizer", file=sys.stderr)
        old, new = ckpt.config.to_params(), learner.config.to_params()
        for key in sorted(k for k in SHAPE_FREE_NETWORK_KEYS if old.get(k) != new.get(k)):
            tqdm.write(f"  {key}: {old.get(key)!r} -> {new.get(key)!r} (same weights, arranged anew)", file=sys.stderr)


def _save(
    learner: Learner,
    options: TrainOptions,
    summary: Optional[_Summary],
    batch: Optional[Batch],
    validation: Optional[ValidationSet] = None,
    pace: Optional[_Pace] = None,
    hold_signals: bool = True,
) -> None:
    """Write a checkpoint (main rank), after checking that every replica holds the same weights."""
    if not ddp.replicas_agree(learner.model, learner.ctx):
        raise TrainingError(f"data-parallel replicas hold different weights at step {learner.step}")
    if not learner.ctx.is_main:
        learner.saved_step = learner.step
        return
    # A stop signal that lands in the write waits for it: torch's zip writer, broken off halfway,
    # raised a second error over the first (a traceback, exit 1, and the step lost).
    with interrupts.deferred() if hold_signals else contextlib.nullcontext():
        saved = save_checkpoint(options.model_dir, learner.checkpoint())
        learner.saved_step = learner.step
    if pace:
        tqdm.write(pace.line(learner.step, Path(saved).name), file=sys.stderr)
    _prune(Path(options.model_dir), options.keep_checkpoints)
    if summary and batch is not None:
        summary.sample(learner.step, batch)
    if validation is not None:
        _validate(learner, validation, summary, options)
    if pace:
        pace.restart()


def _validation_set(options: TrainOptions, config: DiffWaveConfig) -> ValidationSet:
    return ValidationSet.build(scan(options.valid_dirs, config).records, config, seed=config.train.seed)


def _validate(learner: Learner, validation: ValidationSet, summary: Optional[_Summary], options: TrainOptions) -> None:
    result = validation.evaluate(learner.inference_model(), step=learner.step)
    if summary:
        summary.validation(result)
    tqdm.write(result.summary(), file=sys.stderr)  # above the bar when there is one


class _Pace:
    """Mean loss and steps per second since the last checkpoint line, for runs without a bar."""

    def __init__(self) -> None:
        self.started, self.losses = time.monotonic(), []

    def add(self, loss: float) -> None:
        """One step's loss (every step passes here, so their count is the steps since the last line)."""
        self.losses.append(loss)

    def line(self, step: int, saved: str) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        steps, mean = len(self.losses), float(np.mean(self.losses)) if self.losses else float("nan")
        self.losses = []
        return f"step {step}: loss {mean:.4f} over {steps} steps, {steps / seconds:.2f} steps/s; saved {saved}"

    def restart(self) -> None:
        """Start the clock again after the checkpoint's own work (saving, held-out loss)."""
        self.started = time.monotonic()


def _prune(model_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` numbered checkpoints (never the one weights.pt names)."""
    if keep <= 0:
        return
    numbered = sorted(
        (int(m.group(1)), p) for p in model_dir.iterdir() if (m := _CHECKPOINT_RE.match(p.name))
    )
    current = (model_dir / LATEST_NAME).resolve()
    for _, path in numbered[:-keep]:
        if path.resolve() != current:
            path.unlink(missing_ok=True)


def make_loader(
    records: Sequence[Record], config: DiffWaveConfig, ctx: DistContext, start_step: int, workers: int, pin_memory: bool
) -> DataLoader:
    """This rank's batches from ``start_step`` on (the crops depend on the step, not on ``workers``)."""
    sampler = CropBatchSampler(len(records), config.train.batch_size, ctx.rank, ctx.world_size, config.train.seed, start_step)
    return DataLoader(CropDataset(records, config), batch_sampler=sampler, collate_fn=collate,
                      num_workers=workers, pin_memory=pin_memory)


def _remove_stale_temporaries(model_dir: Path) -> None:
    """Temporary files a killed save left behind (the checkpoints themselves are never partial)."""
    for path in model_dir.glob(".weights*.tmp"):
        path.unlink(missing_ok=True)


# -- the whole job ------------------------------------------------------------------------

def launch(options: TrainOptions, config: DiffWaveConfig, processes: Optional[int] = None) -> Optional[TrainResult]:
    """Run training as the command line asks: alone, under torchrun, or spawning one process per GPU.

    ``processes``: how many to spawn (default: every visible GPU with ``device="cuda"``, one
    on the CPU). Under torchrun the environment decides and this process is one rank of it.
    Returns the result in the single-process case (or when there is nothing left to do), None otherwise.
    """
    if options.device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available (use --device cpu)")
    _check_init_step(options)
    env_ctx = ddp.context_from_env()
    if env_ctx is not None:
        if processes is not None and processes != env_ctx.world_size:
            raise TrainingError(f"--processes {processes} conflicts with torchrun's WORLD_SIZE={env_ctx.world_size}")
        _check_split(config, env_ctx.world_size)
        ddp.join(env_ctx, options.device, "env://")
        try:
            with _nothing_left_if_it_never_saved(Path(options.model_dir), env_ctx.is_main):
                train(options, config, env_ctx)
        finally:
            ddp.leave()
        return None
    if processes is None:
        processes = torch.cuda.device_count() if options.device == "cuda" else 1
    if processes < 1:
        raise TrainingError(f"--processes must be >= 1, got {processes}")
    if options.device == "cuda" and processes > torch.cuda.device_count():
        raise TrainingError(f"--processes {processes}: only {torch.cuda.device_count()} CUDA device(s) visible")
    _check_split(config, processes)
    latest = existing_checkpoint(Path(options.model_dir))
    if processes > 1 and latest and options.max_steps is not None:
        step = load_checkpoint(latest).step
        if step >= options.max_steps:  # nothing to do: do not start a process per GPU to find that out
            return TrainResult(step=step, start_step=step)
    with _nothing_left_if_it_never_saved(Path(options.model_dir)):
        inventory = scan(options.data_dirs, config)  # once, here: errors surface before any process starts
        if processes == 1:
            return train(options, config, DistContext(), inventory)
        _spawn(options, config, processes, inventory)
    return None


@contextlib.contextmanager
def _nothing_left_if_it_never_saved(model_dir: Path, is_main: bool = True):
    """A run that fails before it holds any checkpoint takes back what it wrote.

    Without this a new run that stops at once (NaN at step 1, a bad ``--valid`` folder, a
    data error) leaves a model directory holding only a TensorBoard events file: it looks
    like a run in TensorBoard and in ``ls``, yet has nothing to resume or vocode. Only the
    events files this run created go, and the directory only if this run created it and it
    is then empty; a directory that holds a checkpoint is never touched.
    """
    created = not model_dir.exists()
    before = set(model_dir.glob("events.out.tfevents.*")) if not created else set()
    try:
        yield
    except BaseException:
        if is_main and not _holds_a_checkpoint(model_dir):
            for path in set(model_dir.glob("events.out.tfevents.*")) - before:
                path.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    model_dir.rmdir()
        raise


def _holds_a_checkpoint(model_dir: Path) -> bool:
    try:
        return existing_checkpoint(model_dir) is not None
    except CheckpointError:  # a dangling weights.pt: not this run's to clean up
        return True


def _check_init_step(options: TrainOptions) -> None:
    """Refuse a new run whose ``max_steps`` its ``init_from`` checkpoint has already reached."""
    if options.init_from is None or options.max_steps is None or existing_checkpoint(Path(options.model_dir)):
        return
    path = resolve_checkpoint_path(options.init_from)
    step = load_checkpoint(path).step
    if step >= options.max_steps:
        raise TrainingError(
            f"{path} is at step {step} already, and --max-steps {options.max_steps} counts its steps too: ask for more than {step}"
        )


def _check_split(config: DiffWaveConfig, world_size: int) -> None:
    if config.train.batch_size % world_size:
        raise TrainingError(
            f"batch size {config.train.batch_size} does not split evenly over {world_size} processes "
            f"(the batch size is global: use a multiple of {world_size})"
        )


def _spawn(options: TrainOptions, config: DiffWaveConfig, processes: int, inventory: Inventory) -> None:
    import logging

    import torch.multiprocessing as mp

    # When one rank fails, torch stops the others and logs a warning line per process it
    # terminates; the failing rank's own one-line error (below) is all a user needs.
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    port = ddp.free_port()
    with tempfile.TemporaryDirectory(prefix="diffwave-ranks-") as errors:
        try:
            mp.spawn(_spawned_rank, args=(processes, port, options, config, inventory, errors), nprocs=processes, join=True)
        except Exception as exc:  # ProcessExitedException / ProcessRaisedException
            messages = sorted(Path(errors).glob("rank*.txt"))
            if messages:
                raise TrainingError(messages[0].read_text().strip()) from None
            raise TrainingError(f"a training process failed: {str(exc).strip().splitlines()[0]}") from None


def spawn_rank(
    rank: int, world_size: int, port: int, options: TrainOptions, config: DiffWaveConfig, inventory: Inventory
) -> TrainResult:
    """Body of one spawned process: join the group on ``127.0.0.1:port``, train, leave."""
    ctx = DistContext(rank=rank, local_rank=rank, world_size=world_size, local_world_size=world_size)
    ddp.join(ctx, options.device, f"tcp://127.0.0.1:{port}")
    try:
        return train(options, config, ctx, inventory)
    finally:
        ddp.leave()


def _spawned_rank(rank, world_size, port, options, config, inventory, error_dir) -> None:
    try:
        spawn_rank(rank, world_size, port, options, config, inventory)
    except (TrainingError, DataError, CheckpointError) as exc:
        # The parent turns this into its one-line error; the traceback would only repeat it.
        Path(error_dir, f"rank{rank}.txt").write_text(str(exc))
        sys.exit(1)
