"""`diffwave bench`: speed of every backend against lmnt's loop, in one run, on the same weights.

Thin: it works out which weights and files the rows run (a checkpoint, the given ONNX/plan,
or a random-weight model of the base architecture exported to a temporary ONNX bundle:
speed does not depend on the weights), then calls :func:`diffwave.benchmark.run_bench`.
Exit codes: 1 bad input or model, 2 bad usage, 3 nothing could run on this machine.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from .app import EXIT_BAD_INPUT, EXIT_CANNOT_RUN, EXIT_USAGE, app, fail, stop_signals_end_with
from .steps_option import STEPS_HELP, parse_steps


HELP = (
    "Time every backend this machine has against lmnt's own sampling loop, in one run.\n\n"
    "Backends: TensorRT, ONNX Runtime CPU/CUDA, PyTorch CPU/CUDA, with and without CUDA graphs. The reference is "
    "lmnt's loop (eager PyTorch, whole network every step) on the same weights and inputs. Prints backend, batch, "
    "audio seconds, median ms, real-time factor, × real time, speed-up over that loop (the median of per-round "
    "ratios, with the lowest and highest round), cold start (open the model and make the first call in a fresh "
    "process: what a service's first request waits for) and peak memory. Before a row is timed its audio is compared with the "
    "reference's on the same noise; a row under 30 dB SNR (another model, a broken backend) is skipped, not timed. "
    "Without a model, a random-weight model of the base architecture is used (speed does not depend on weights)."
)


#: Bounds on --seconds and --batch: beyond them the input arrays alone outgrow any machine's memory
#: (an hour at 22.05 kHz is 79 M samples per item; 1024 items of that would be 325 GB).
MAX_SECONDS, MAX_BATCH = 3600.0, 1024


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise fail(f"{option} {text!r}: expected comma-separated numbers, e.g. 1,5,10", code=EXIT_USAGE) from None
    if not values or any(not (v > 0) for v in values):
        raise fail(f"{option} {text!r}: every value must be positive", code=EXIT_USAGE)
    if any(v > MAX_SECONDS for v in values):  # inf, or more audio than any buffer here could hold
        raise fail(f"{option} {text!r}: at most {MAX_SECONDS:g} s of audio per row", code=EXIT_USAGE)
    return values


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise fail(f"{option} {text!r}: expected comma-separated whole numbers, e.g. 1,4", code=EXIT_USAGE) from None
    if not values or any(v < 1 for v in values):
        raise fail(f"{option} {text!r}: every value must be at least 1", code=EXIT_USAGE)
    if any(v > MAX_BATCH for v in values):
        raise fail(f"{option} {text!r}: at most {MAX_BATCH} items per call", code=EXIT_USAGE)
    return values


@app.command("bench", help=HELP)
def bench_command(
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="ONNX step graph with its model.json (ONNX Runtime rows). Without --checkpoint the other rows run random weights of its architecture, and its audio is not checked against theirs: give the checkpoint it was exported from for that.", dir_okay=False),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Training checkpoint or model folder: the weights of the reference and PyTorch rows (and of a temporary ONNX export when --onnx is not given)."),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT plan with its model.json (TensorRT rows; needs a GPU); without --checkpoint the other rows run random weights and its audio is not checked against theirs.", dir_okay=False),
    seconds: str = typer.Option("1,5,10", "--seconds", help="Audio lengths per item, comma-separated."),
    batch: str = typer.Option("1,4", "--batch", help="Batch sizes, comma-separated."),
    steps: str = typer.Option("fast", "--steps", help=STEPS_HELP),
    backends: Optional[str] = typer.Option(
        None, "--backends", help="Comma-separated rows to run (default: all that can run here); the reference of each device always runs. "
        "Known: reference-cpu, pytorch-cpu, onnxruntime-cpu, reference-cuda, pytorch-cuda, pytorch-cuda-graphs, onnxruntime-cuda, "
        "tensorrt, tensorrt-graphs; opt-in rows for the CPU levers: onnxruntime-cpu-spinning, onnxruntime-cpu-1thread."
    ),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed calls per backend and shape (the median is reported)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed calls per backend and shape before timing."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="ONNX Runtime intra-op threads (default: as many as torch uses, so both sides match)."
    ),
    torch_threads: Optional[int] = typer.Option(
        None, "--torch-threads", min=1, help="torch.set_num_threads for the reference and PyTorch rows (default: torch's: OMP_NUM_THREADS when set, else one per core)."
    ),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Measure each row's cold start and peak memory in a fresh process (one more call per row)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the rows and machine details as JSON (schema diffwave-bench/1).", dir_okay=False),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw time against audio length per backend (PNG; needs matplotlib, the \\[plot] extra).", dir_okay=False),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random inputs (and of the random model)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
) -> None:
    """Time the backends against lmnt's loop (see HELP)."""
    from diffwave.benchmark import CONTENDERS, BenchSettings, run_bench

    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise fail("--plot needs matplotlib: pip install 'diffwave[plot]'", code=EXIT_USAGE) from None
    names = None
    if backends is not None:
        names = tuple(n.strip() for n in backends.split(",") if n.strip())
        if not names:
            raise fail(f"--backends {backends!r}: name at least one; known: {', '.join(CONTENDERS)}", code=EXIT_USAGE)
        unknown = [n for n in names if n not in CONTENDERS]
        if unknown:
            raise fail(f"--backends: unknown backend {unknown[0]!r}; known: {', '.join(CONTENDERS)}", code=EXIT_USAGE)
    settings = BenchSettings(
        seconds=_floats(seconds, "--seconds"),
        batches=_ints(batch, "--batch"),
        steps=parse_steps(steps),
        repeats=repeats,
        warmup=warmup,
        seed=seed,
        threads=threads,
        torch_threads=torch_threads,
        memory=memory,
        backends=names,
        progress=progress,
    )
    with stop_signals_end_with("no results; its temporary models were removed"):
        with tempfile.TemporaryDirectory(prefix="diffwave-bench-") as tmp:
            models = _prepare_models(Path(tmp), onnx, checkpoint, engine, names, seed)
            if models.metadata.unconditional:  # a bad model for this command (exit 1), not this machine's limit
                raise fail(f"{checkpoint or onnx or engine}: an unconditional model; "
                           "diffwave bench times conditional ones (spectrogram in)", code=EXIT_BAD_INPUT)
            _check_schedule(models.metadata, settings.steps)
            typer.echo(f"weights: {models.weights}", err=True)
            try:
                report = run_bench(settings, models, log=lambda m: typer.echo(m, err=True))
            except ValueError as exc:
                raise fail(str(exc), code=EXIT_CANNOT_RUN) from None
    typer.echo(f"machine: {report.machine.describe()}")
    typer.echo(report.table())
    if json_file is not None:
        typer.echo(f"wrote {report.write_json(json_file)}")
    if plot is not None:
        typer.echo(f"wrote {report.plot(plot)}")


def _check_schedule(metadata, steps) -> None:
    from runtime.schedule import ReverseSchedule, resolve_inference_betas

    try:
        ReverseSchedule.create(metadata.noise_schedule, resolve_inference_betas(steps, metadata.inference_schedules))
    except ValueError as exc:
        raise fail(f"--steps: {exc}", code=EXIT_USAGE) from None


def _prepare_models(tmp: Path, onnx: Optional[Path], checkpoint: Optional[Path], engine: Optional[Path], names, seed: int):
    """The weights every row runs, and the files of the ONNX Runtime / TensorRT rows.

    A checkpoint gives the weights; otherwise the architecture comes from the bundle beside
    --onnx/--engine, else it is the base model, and the weights are random. The module is
    saved to a temporary checkpoint for the memory workers, and exported to a temporary ONNX
    bundle when ONNX Runtime rows may run and no --onnx was given.
    """
    import torch

    from diffwave.benchmark import BenchModels
    from diffwave.checkpoint import Checkpoint, CheckpointError, load_model, save_checkpoint
    from diffwave.config import DiffWaveConfig
    from diffwave.model import DiffWave
    from runtime.bundle import BundleError, BundleMetadata

    for option, path in (("--onnx", onnx), ("--engine", engine), ("--checkpoint", checkpoint)):
        if path is not None and not path.exists():
            raise fail(f"{option} {path}: no such file or directory", code=EXIT_BAD_INPUT)
    if checkpoint is not None:
        try:
            module = load_model(checkpoint)
        except (CheckpointError, OSError, ValueError) as exc:
            raise fail(str(exc), code=EXIT_BAD_INPUT) from None
        weights, checkpoint_file = f"checkpoint {checkpoint}", checkpoint
        _check_same_network(module.config, onnx, engine, checkpoint)
    else:
        config = DiffWaveConfig()
        bundle = onnx if onnx is not None else engine
        if bundle is not None:
            try:
                metadata = BundleMetadata.read(bundle.parent)
                config = DiffWaveConfig.from_params(metadata.params, strict=False)
            except (BundleError, ValueError, TypeError) as exc:
                raise fail(f"{bundle}: {exc}" if str(bundle) not in str(exc) else str(exc), code=EXIT_BAD_INPUT) from None
        module = DiffWave(config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # every weight random and small: no zero output layer, no overflow
            for param in module.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        where = f"the architecture of {bundle.parent / 'model.json'}" if bundle is not None else "the base architecture"
        weights = f"random, {where}"
        checkpoint_file = save_checkpoint(tmp / "checkpoint", Checkpoint(step=0, model=module.state_dict(), params=config.to_params()))
    module.eval()
    metadata = module.config.bundle_metadata()
    given_onnx = onnx
    if onnx is None and (names is None or any(n.startswith("onnxruntime") for n in names)):
        onnx = _export_onnx(module, tmp / "onnx")
    shared = checkpoint is not None or (given_onnx is None and engine is None)
    return BenchModels(metadata=metadata, checkpoint=Path(checkpoint_file), onnx=onnx, engine=engine, weights=weights, module=module,
                       files_share_weights=shared)


def _check_same_network(config, onnx: Optional[Path], engine: Optional[Path], checkpoint: Path) -> None:
    """Refuse a bundle of another network than --checkpoint's: its rows would time another model,
    and the speed-ups against the reference rows would mean nothing."""
    from diffwave.config import network_param_keys
    from runtime.bundle import BundleError, BundleMetadata

    ours = config.to_params()
    for bundle in (b for b in (onnx, engine) if b is not None):
        try:
            theirs = BundleMetadata.read(bundle.parent).params
        except BundleError as exc:
            raise fail(str(exc), code=EXIT_BAD_INPUT) from None
        differ = sorted(k for k in network_param_keys() if k in theirs and theirs[k] != ours.get(k))
        if differ:
            detail = ", ".join(f"{k} {theirs[k]!r} vs {ours.get(k)!r}" for k in differ[:3])
            raise fail(f"{bundle}: another network than --checkpoint {checkpoint} ({detail}): the speed-ups would compare different models",
                       code=EXIT_BAD_INPUT)


def _export_onnx(module, folder: Path) -> Path:
    """``model.onnx`` + ``model.json`` of ``module`` in ``folder`` (no parity gate: only speed is measured here)."""
    import hashlib

    from export.step_graph import export_step_onnx

    folder.mkdir(parents=True, exist_ok=True)
    path = export_step_onnx(module, folder / "model.onnx")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    metadata = replace(module.config.bundle_metadata(), onnx={"fp32": path.name}, onnx_sha256={path.name: digest})
    metadata.write(folder)
    return path
