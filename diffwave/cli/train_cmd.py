"""``diffwave train MODEL_DIR DATA_DIR...``: train (or resume), on the CPU, one GPU or all of them."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import EXIT_USAGE, app, fail, stop_signals_end_with


@app.command("train")
def train_command(
    model_dir: Path = typer.Argument(..., help="Where checkpoints (weights-<step>.pt, weights.pt) and TensorBoard logs go."),
    data_dirs: List[Path] = typer.Argument(..., help="Folders of preprocessed wavs (x.wav + x.wav.spec.npy), searched recursively."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=0, help="Stop when this many steps are done in total (default: never)."),
    max_minutes: Optional[float] = typer.Option(
        None, "--max-minutes", help="Stop after this many minutes of training in this sitting, with a checkpoint; rerun to go on "
        "(training in slices on a machine lent for minutes at a time). Start-up and the final checkpoint are not counted."
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Global batch, split evenly over processes (default: the config's; lmnt's is 16)."),
    fp16: bool = typer.Option(False, "--fp16", help="float16 autocast with a GradScaler (CUDA only)."),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (CUDA or CPU; on CPUs with AVX512-BF16 or AMX a training step is 1.4–2.5× faster, but in one small-model comparison its held-out loss ended worse, see benchmarks/README.md)."),
    config: Optional[Path] = typer.Option(
        None, "--config", help='JSON of lmnt params keys overriding the defaults (or, when resuming, the checkpoint\'s), '
        'e.g. {"residual_layers": 4, "learning_rate": 1e-4, "ema_decay": 0.9999}.'
    ),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    checkpoint_every: int = typer.Option(1000, "--checkpoint-every", min=1, help="Write weights-<step>.pt every N steps (and at the end)."),
    log_every: int = typer.Option(50, "--log-every", min=1, help="Write TensorBoard scalars every N steps."),
    processes: Optional[int] = typer.Option(
        None, "--processes", min=1, help="Data-parallel processes to spawn (default: every visible GPU; 1 on the CPU). Under torchrun, its WORLD_SIZE decides."
    ),
    valid: List[Path] = typer.Option(
        [], "--valid", help="Held-out folder of preprocessed wavs (repeatable): at every checkpoint its loss per noise level "
        "goes to TensorBoard (valid/) and the log, measured on fixed crops and noise so it moves only when the weights do."
    ),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="Fine-tune: a new run starts from this checkpoint (.pt file or model directory) instead of "
        "random weights: its averaged weights when it kept them, its network and settings (a --config may change the "
        "training ones, and the network's dilation_cycle_length, which leaves every weight's shape alone) and its step "
        "count (--max-steps counts those steps too); the optimizer starts fresh. Once MODEL_DIR has a checkpoint of its "
        "own the run resumes from that, so the same command trains in slices."
    ),
    workers: int = typer.Option(2, "--workers", min=0, help="DataLoader worker processes per training process."),
    keep_checkpoints: int = typer.Option(5, "--keep-checkpoints", min=0, help="Numbered checkpoints to keep (0 = all)."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show a progress bar (without one, each checkpoint prints a line: loss, steps/s)."
    ),
    compile_network: bool = typer.Option(
        False, "--compile/--no-compile", help="torch.compile the network (Inductor): fuses each layer's elementwise operators, "
        "whose memory traffic is predicted to bound a base-model step on a GPU; the first step compiles (30-45 s for the base "
        "model on a CPU). Little gain on CPU (benchmarks/README.md)."
    ),
) -> None:
    """Train DiffWave on preprocessed wavs; rerunning with the same MODEL_DIR resumes from weights.pt.

    A new MODEL_DIR starts from random weights (the config's seed), or from another run's
    checkpoint with --init-from (fine-tuning on new data, or with other training settings).

    The resolved configuration is stored in every checkpoint's params. Several GPUs: all are
    used by default (one spawned process each), or start the ranks with
    `torchrun --nproc_per_node=N -m diffwave train ...`. Ctrl-C or SIGTERM lets the current step
    finish and saves it (single process); a second Ctrl-C stops at once.
    """
    import torch

    from diffwave.checkpoint import CheckpointError
    from diffwave.data import DataError
    from diffwave.train import TrainingError, TrainOptions, existing_checkpoint, launch, resolve_config

    if fp16 and bf16:
        raise fail("--fp16 and --bf16 exclude each other (see `diffwave train --help`)", code=EXIT_USAGE)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = {"batch_size": batch_size} if batch_size is not None else {}
    try:
        if init_from is not None and existing_checkpoint(model_dir):
            typer.echo(f"{model_dir}: resuming from its own weights.pt (--init-from only starts a new run)", err=True)
            init_from = None
        options = TrainOptions(
            model_dir=model_dir,
            data_dirs=tuple(data_dirs),
            max_steps=max_steps,
            max_minutes=max_minutes,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            precision="fp16" if fp16 else "bf16" if bf16 else "fp32",
            device=device,
            data_workers=workers,
            keep_checkpoints=keep_checkpoints,
            valid_dirs=tuple(valid),
            progress=progress,
            compile=compile_network,
            init_from=init_from,
        )
        resolved = resolve_config(model_dir, config, overrides, init_from)
        with stop_signals_end_with("the last checkpoint is in place; rerun to resume"):
            result = launch(options, resolved, processes)
    except (TrainingError, DataError, CheckpointError, ValueError) as exc:
        raise fail(str(exc)) from None
    if result is not None:
        if result.step == result.start_step:
            typer.echo(f"{model_dir}: already at step {result.step}, nothing to do (raise --max-steps to go on)")
        else:
            why = f" (the {max_minutes:g}-minute budget is spent; rerun to go on)" if result.out_of_time else ""
            typer.echo(f"{model_dir}: trained steps {result.start_step}..{result.step}, latest checkpoint weights-{result.step}.pt{why}")
