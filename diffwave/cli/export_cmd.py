"""``diffwave export SOURCE -o BUNDLE``: checkpoint -> ONNX step graphs + parity gate + model.json + plan."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import EXIT_USAGE, app, fail, stop_signals_end_with

#: exit statuses besides 0 (done) and 1 (bad input, build failure); 2 is the CLI's usage error.
EXIT_TENSORRT_MISSING = 3
EXIT_GATE_FAILED = 4


@app.command("export")
def export_command(
    source: Path = typer.Argument(
        ..., help="A checkpoint (.pt, ours or lmnt's), a model directory (its weights.pt), or an exported "
                  "bundle directory (model.json) to build a plan from."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Bundle directory to write (required for a checkpoint source)."),
    fp16: bool = typer.Option(
        True, "--fp16/--fp32", help="Precision of the plan. --fp16 also writes and gates model.fp16.onnx "
                                    "and builds the plan from it; --fp32 exports and builds from model.onnx only."),
    target: str = typer.Option(
        "tensorrt", "--target", help="Engine library: 'tensorrt' (data-centre TensorRT >= 10, model.plan) or "
                                     "'rtx' (TensorRT for RTX, model.rtx.plan, builds without a GPU)."),
    onnx_only: bool = typer.Option(False, "--onnx-only", help="Stop after the ONNX bundle; no TensorRT needed."),
    min_frames: int = typer.Option(16, "--min-frames", help="Shortest input of the optimisation profile, in frames."),
    opt_frames: int = typer.Option(256, "--opt-frames", help="Length the engine is tuned for, in frames."),
    max_frames: int = typer.Option(1024, "--max-frames", help="Longest input, in frames (samples = frames x hop)."),
    max_batch: int = typer.Option(4, "--max-batch", help="Largest batch of the profile (smallest is 1)."),
    opt_batch: int = typer.Option(1, "--opt-batch", help="Batch size the engine is tuned for."),
    force: bool = typer.Option(False, "--force", help="Write into an existing directory that is not a bundle."),
    check: bool = typer.Option(
        False, "--check", help="Run the built engine against ONNX Runtime with polygraphy before keeping it "
                               "(needs a GPU the plan runs on)."),
    compute_capability: Optional[List[str]] = typer.Option(
        None, "--compute-capability", help="TensorRT-RTX only, repeatable: build for these GPUs (e.g. 8.9) instead "
                                           "of its default portable set (8.0, 8.6, 8.9, 12.x); 7.5 (Turing) "
                                           "needs --fp16."),
    workspace_mib: Optional[int] = typer.Option(
        None, "--workspace-mib", min=0, help="Cap the builder's scratch memory, in MiB (default: TensorRT decides)."),
    ema: Optional[bool] = typer.Option(
        None, "--ema/--no-ema", help="Export the averaged weights (--ema) or the raw ones (--no-ema); default: "
                                     "the average when the run kept one (trained with ema_decay)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the parity gate's random inputs."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Export one denoising step to ONNX (FP32 and FP16), gate it against PyTorch, write model.json,
    and build a TensorRT or TensorRT-RTX plan.

    The parity gate runs ONNX Runtime on CPU at the profile's min, middle and max lengths
    (FP32: eps relative error <= 1e-5; FP16: <= 2e-2, a 6-step fast reverse process with
    SNR >= 30 dB, and no layer input or output of the float32 network above float16's largest
    value / 16). The bundle is staged in a hidden folder on OUTPUT's filesystem (beside a
    new OUTPUT, inside an existing one, which may be a mount point) and published only when the
    gate passes; an existing bundle is replaced only once every new file is written.
    For the base model and the default profile the gate takes about a minute of CPU and
    ~5 GB of memory (ONNX Runtime at 1024 frames); a smaller --max-frames is cheaper.

    With a bundle directory as SOURCE (on the GPU box), only the plan is built, from the
    bundle's ONNX after checking its sha256. Exit status: 0 done, 1 bad input or build
    failure, 3 the TensorRT module is not installed (the ONNX bundle is kept and the
    equivalent polygraphy command is printed), 4 the parity gate failed (nothing written).
    """
    from diffwave.checkpoint import CheckpointError, describe_weights, load_model
    from export.bundle_export import (ExportError, ExportSettings, PlanSettings, build_bundle_plan, export_bundle,
                                      polygraphy_command_for)
    from export.engine import EngineBuildError
    from export.engine_check import EngineCheckFailed
    from export.fp16 import Fp16ConversionError
    from export.parity import ParityGateFailed
    from export.profile import make_profile
    from export.step_graph import StepGraphError
    from runtime.bundle import METADATA_NAME, BundleError
    from runtime.trt_target import TARGETS, TensorRTMissing

    def log(message: str) -> None:
        typer.echo(message, err=True)

    if target not in TARGETS:
        raise fail(f"--target {target!r} is not one of: {', '.join(TARGETS)}", code=EXIT_USAGE)
    trt_target = TARGETS[target]
    try:
        profile = make_profile(min_frames, opt_frames, max_frames, max_batch, opt_batch)
    except BundleError as exc:
        raise fail(f"bad optimisation profile: {exc}") from None
    precision = "fp16" if fp16 else "fp32"
    capabilities = tuple(compute_capability or ())
    if check and not onnx_only and not _cuda_available():
        raise fail("--check runs the engine and needs a CUDA GPU; none is visible here (build without --check)")

    with stop_signals_end_with("nothing half-written is left; rerun to export"):
        is_bundle = source.is_dir() and (source / METADATA_NAME).is_file() and not (source / "weights.pt").exists()
        if is_bundle:
            if output is not None and output.resolve() != source.resolve():
                raise fail(f"{source} is a bundle: its plan is built in place, leave out -o")
            if onnx_only:
                raise fail(f"{source} is already an ONNX bundle; --onnx-only leaves nothing to do")
            bundle = source
        else:
            if not source.exists():
                raise fail(f"{source}: no such checkpoint, model directory or bundle")
            if output is None:
                raise fail("-o/--output is required when exporting a checkpoint")
            try:
                model = load_model(source, use_ema=ema)
            except CheckpointError as exc:
                raise fail(str(exc)) from None
            log(f"{source}: {describe_weights(model)}")
            settings = ExportSettings(precision=precision, profile=profile, seed=seed, force=force, progress=progress)
            try:
                result = export_bundle(model, output, settings, log=log)
            except ParityGateFailed as exc:
                for line in exc.report.lines():
                    log(line)
                raise fail(f"{exc}; no bundle written to {output}", code=EXIT_GATE_FAILED) from None
            except (ExportError, BundleError, StepGraphError, Fp16ConversionError) as exc:
                raise fail(str(exc)) from None
            typer.echo(f"wrote {output}: {', '.join(sorted(result.metadata.onnx_sha256))}, {METADATA_NAME} "
                       f"(export {result.export_seconds:.1f} s, parity gate {result.gate_seconds:.1f} s)")
            bundle = output
            if onnx_only:
                return

        plan_settings = PlanSettings(target=trt_target, precision=precision, profile=profile,
                                     compute_capabilities=capabilities,
                                     workspace_bytes=None if workspace_mib is None else workspace_mib * 2**20,
                                     progress=progress)
        def check_engine(onnx_path, plan, metadata):
            from export.engine_check import check_plan

            check_plan(trt_target, onnx_path, plan, metadata, profile, precision)
            log(f"--check: {trt_target.plan_name} matches ONNX Runtime")

        try:
            info, _ = build_bundle_plan(bundle, plan_settings, check=check_engine if check else None, log=log)
        except TensorRTMissing as exc:
            command = polygraphy_command_for(bundle, plan_settings)
            raise fail(f"{exc}; the ONNX bundle in {bundle} is complete; to build {trt_target.plan_name} on a machine "
                       f"with {trt_target.display_name}: {command}", code=EXIT_TENSORRT_MISSING) from None
        except (EngineBuildError, EngineCheckFailed, BundleError, ExportError) as exc:
            raise fail(f"{exc}; no plan written") from None
        typer.echo(f"wrote {bundle / info.file} ({info.precision}, {trt_target.display_name} {info.library_version}, "
                   f"runs on compute capability {', '.join(info.compute_capabilities) or 'of the build GPU'})")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False
