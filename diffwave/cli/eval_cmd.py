"""`diffwave eval`: copy-synthesis quality of one or more models, beside Griffin-Lim and the original."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import EXIT_USAGE, app, fail, stop_signals_end_with
from .steps_option import STEPS_HELP, parse_steps


HELP = (
    "Vocode each recording's features and score the audio against the recording.\n\n"
    "Per file and on average: mel-cycle distance (features of the output vs the input features, dB), "
    "multi-resolution STFT distance to the recording (auraloss), periodicity of the loud frames "
    "(1 = harmonics, near 0 = shaped noise; compare with the original's), PESQ wide-band and DNSMOS. "
    "The original recording (ceiling) and Griffin-Lim on the same features (weight-free anchor) "
    "are always in the table. With two or more models, also the SNR between their outputs from identical noise."
)


@app.command("eval", help=HELP)
def eval_command(
    data: List[Path] = typer.Argument(..., help="Folders of wavs (non-recursive) and/or wav files: the recordings to copy-synthesise."),
    onnx: List[Path] = typer.Option([], "--onnx", help="ONNX step graph with its model.json (ONNX Runtime). Repeatable."),
    checkpoint: List[Path] = typer.Option([], "--checkpoint", help="Training checkpoint file or model folder (PyTorch). Repeatable."),
    engine: List[Path] = typer.Option([], "--engine", help="TensorRT plan with its model.json. Repeatable."),
    steps: str = typer.Option("fast", "--steps", help=STEPS_HELP),
    seed: int = typer.Option(0, "--seed", help="Noise seed, the same for every model so backends can be compared."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the rows and means as JSON (schema diffwave-eval/1).", dir_okay=False),
    griffin_lim_iterations: int = typer.Option(64, "--griffin-lim-iters", min=1, help="Iterations of the Griffin-Lim anchor."),
    perceptual: bool = typer.Option(
        True, "--perceptual/--no-perceptual", help="PESQ-WB and DNSMOS (needs the \\[eval] extra; about 1 s per file and system)."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N files (sorted by name)."),
    save_audio: Optional[Path] = typer.Option(None, "--save-audio", help="Write every system's output under this folder, one subfolder per system.", file_okay=False),
    spectrograms: Optional[Path] = typer.Option(
        None, "--spectrograms", help="Draw each file's spectrogram beside every system's (one PNG per file) into this folder; needs the \\[plot] extra.", file_okay=False
    ),
) -> None:
    """Vocode each recording's features and score the audio against the recording (see HELP)."""
    from diffwave.evaluation.copy_synthesis import Synthesizer, check_outputs, evaluate, find_wavs, system_names
    from diffwave.evaluation.metrics import MissingExtraError, require
    from diffwave.evaluation.report import SystemInfo

    models = [("checkpoint", p) for p in checkpoint] + [("onnx", p) for p in onnx] + [("engine", p) for p in engine]
    if not models:
        raise fail("give at least one model: --onnx FILE, --checkpoint DIR or --engine PLAN")
    schedule = parse_steps(steps)
    try:
        files = find_wavs(data)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    found, files = files, (files[:limit] if limit else files)
    labels = _labels(models)
    try:  # no output may land on a recording (also one --limit leaves out) or on another output
        names = system_names(labels, griffin_lim_iterations)
        check_outputs(files, names, save_audio, spectrograms, json_file=json_file, inputs=found)
    except ValueError as exc:
        raise fail(str(exc)) from None
    for option, target, folder in (
        ("--json", json_file, json_file.parent if json_file else None),
        ("--save-audio", save_audio, save_audio),
        ("--spectrograms", spectrograms, spectrograms),
    ):
        blocker = _file_in_the_way(folder)
        if blocker is not None:  # found now, not after minutes of vocoding
            raise fail(f"{option} {target}: {blocker} is a file, not a folder")
    try:  # fail before any vocoding if an optional package is missing
        require("auraloss", "the multi-resolution STFT distance")
        if spectrograms is not None:
            require("matplotlib", "--spectrograms")
        if perceptual:
            require("pesq", "PESQ")
            require("soxr", "resampling for PESQ/DNSMOS")
            require("librosa", "DNSMOS (speechmos's P.808 features)")
            require("speechmos.dnsmos", "DNSMOS", package="speechmos")
    except MissingExtraError as exc:
        raise fail(f"{exc} (or run with --no-perceptual)" if perceptual else str(exc)) from None

    from runtime import Vocoder
    from runtime.errors import VocoderError

    with stop_signals_end_with("nothing half-written is left; no table was produced"):
        synthesizers, spec, first = [], None, None
        for (kind, path), label in zip(models, labels):
            try:
                vocoder = Vocoder.load(path)
            except (VocoderError, OSError, ValueError) as exc:
                raise fail(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
            try:
                vocoder.schedule(schedule)  # an unknown name or a bad beta fails before any file is vocoded
            except VocoderError as exc:
                raise fail(f"{label}: {exc}", code=EXIT_USAGE) from None
            features = vocoder.metadata.features
            if spec is None:
                spec, first = features, label
            elif features != spec:
                raise fail(f"{label} uses different features than {first} ({_differs(spec, features)}); compare models with the same front end")
            synthesizers.append(Synthesizer(SystemInfo(label, kind, str(path)), _vocode_fn(vocoder, schedule, seed)))

        try:
            report = evaluate(
                files, synthesizers, spec, steps=schedule, seed=seed, griffin_lim_iterations=griffin_lim_iterations,
                perceptual=perceptual, save_audio=save_audio, spectrograms=spectrograms,
            )
        except ValueError as exc:  # AudioError, VocoderError: one line naming the file
            raise fail(str(exc)) from None
    typer.echo(report.table())
    if json_file is not None:
        typer.echo(f"wrote {report.write_json(json_file)}")


def _vocode_fn(vocoder, steps, seed: int):
    def vocode(features):
        return vocoder(features, steps=steps, seed=seed)[0]

    return vocode


def _file_in_the_way(folder: Optional[Path]) -> Optional[Path]:
    """The nearest existing path at or above ``folder`` when it is not a folder (writing under it would fail)."""
    if folder is None:
        return None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def _labels(models: list[tuple[str, Path]]) -> list[str]:
    """"kind:file-name", or the full path where two models share a file name."""
    short = [f"{kind}:{path.name}" for kind, path in models]
    labels = [s if short.count(s) == 1 else f"{kind}:{path}" for s, (kind, path) in zip(short, models)]
    return [s if labels.count(s) == 1 else f"{s}#{labels[:i].count(s) + 1}" for i, s in enumerate(labels)]


def _differs(a, b) -> str:
    from dataclasses import fields

    return ", ".join(f"{f.name} {getattr(a, f.name)!r} vs {getattr(b, f.name)!r}" for f in fields(a) if getattr(a, f.name) != getattr(b, f.name))
