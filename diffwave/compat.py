"""lmnt's command lines, translated to ours.

The original package was driven by three ``python -m`` forms; scripts and READMEs still use them:

    python -m diffwave.preprocess DIR
    python -m diffwave MODEL_DIR DATA_DIR... [--max_steps N] [--fp16]
    python -m diffwave.inference MODEL [SPECTROGRAM] [-s SPECTROGRAM] [-o out.wav] [--fast]

Each parses lmnt's arguments, prints one line (stderr) naming the ``diffwave`` command that does
the same, and runs that command: preprocess and train go through the typer commands themselves,
inference through :func:`diffwave.inference.predict` (the typer ``vocode`` names its outputs
after its inputs, lmnt's command writes the one file given by ``-o``).

``python -m diffwave`` stays our typer CLI as well (``python -m diffwave train …``,
``torchrun -m diffwave train …``): :func:`main` runs the typer app when the first argument is one
of its commands or an option, and lmnt's positional form otherwise (so a model directory named
like one of our commands, e.g. ``train``, must be written ``./train`` in lmnt's form).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import NoReturn, Optional, Sequence

PROG = "diffwave"
#: Options of lmnt's training form (``python -m diffwave --fp16 MODEL DATA`` is lmnt's form too).
LMNT_TRAIN_OPTIONS = ("--max_steps", "--fp16")


def pointer(our_argv: Sequence[str]) -> str:
    """The one line telling an lmnt user which ``diffwave`` command this is."""
    return f"{PROG}: lmnt-style command; the equivalent is: {PROG} {shlex.join(str(a) for a in our_argv)}"


def run_app(argv: Sequence[str]) -> None:
    """Run our typer CLI with ``argv`` (exits like the ``diffwave`` command would)."""
    from .cli import app

    app(args=[str(a) for a in argv], prog_name=PROG)


def command_names() -> set[str]:
    """The typer app's sub-commands (train, vocode, …), read from the app itself."""
    import typer.main

    from .cli import app

    group = typer.main.get_command(app)
    return set(getattr(group, "commands", {}))


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


# -- python -m diffwave ----------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m diffwave``: our sub-commands and options go to typer, anything else is lmnt's train form."""
    argv = list(sys.argv[1:] if argv is None else argv)
    lmnt_option_first = bool(argv) and argv[0].split("=")[0] in LMNT_TRAIN_OPTIONS
    if not argv or (argv[0].startswith("-") and not lmnt_option_first) or argv[0] in command_names():
        run_app(argv)
    else:
        train_main(argv)


def lmnt_train_argv(argv: Sequence[str]) -> list[str]:
    """lmnt's ``MODEL_DIR DATA_DIR... [--max_steps N] [--fp16]`` as ``diffwave train`` arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m diffwave",
        description="Train (or resume training) a DiffWave model, lmnt's form of `diffwave train`.",
    )
    parser.add_argument("model_dir", help="directory in which to store model checkpoints and training logs")
    parser.add_argument("data_dirs", nargs="*", help="directories searched recursively for preprocessed .wav files")
    parser.add_argument("--max_steps", "--max-steps", type=int, default=None, help="stop at this many training steps in total")
    parser.add_argument("--fp16", action="store_true", help="float16 mixed precision (CUDA)")
    args = parser.parse_args(list(argv))
    if not args.data_dirs:
        commands = ", ".join(sorted(command_names()))
        parser.error(
            f"{args.model_dir!r} is not a diffwave command ({commands}); lmnt's training form needs MODEL_DIR and DATA_DIR..."
        )
    ours = ["train", args.model_dir, *args.data_dirs]
    if args.max_steps is not None:
        ours += ["--max-steps", str(args.max_steps)]
    if args.fp16:
        ours.append("--fp16")
    return ours


def train_main(argv: Optional[Sequence[str]] = None) -> None:
    ours = lmnt_train_argv(sys.argv[1:] if argv is None else argv)
    print(pointer(ours), file=sys.stderr)
    run_app(ours)


# -- python -m diffwave.preprocess --------------------------------------------------------------

def preprocess_main(argv: Optional[Sequence[str]] = None) -> None:
    """lmnt's ``python -m diffwave.preprocess DIR`` → ``diffwave preprocess DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m diffwave.preprocess",
        description="Write x.wav.spec.npy beside every x.wav under DIR, lmnt's form of `diffwave preprocess`.",
    )
    parser.add_argument("dirs", nargs="+", metavar="dir", help="directory containing .wav files for training")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    ours = ["preprocess", *args.dirs]
    print(pointer(ours), file=sys.stderr)
    run_app(ours)


# -- python -m diffwave.inference ----------------------------------------------------------------

def inference_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffwave.inference",
        description="Vocode one spectrogram from diffwave.preprocess into one wav (lmnt's command; "
        "`diffwave vocode --checkpoint` does the same for many files).",
    )
    parser.add_argument("model_dir", help="directory containing a trained model (or full path to a weights .pt file)")
    parser.add_argument("spectrogram", nargs="?", default=None, help="spectrogram .npy file (same as -s)")
    parser.add_argument("--spectrogram_path", "--spectrogram-path", "-s", default=None, help="spectrogram .npy file generated by diffwave.preprocess")
    parser.add_argument("--output", "-o", default="output.wav", help="output wav (32-bit float, as lmnt's)")
    parser.add_argument("--fast", "-f", action="store_true", help="fast sampling: the six-step inference schedule")
    parser.add_argument("--seed", type=int, default=None, help="reproducible noise (as `diffwave vocode --seed`)")
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    return parser


def inference_main(argv: Optional[Sequence[str]] = None) -> None:
    """lmnt's inference command: one spectrogram (or none, unconditional) → one float wav."""
    import numpy as np

    from runtime import DeviceUnsupported

    from .audio import write_wav
    from .inference import load, predict

    parser = inference_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.seed is not None and args.seed < 0:
        parser.error("--seed must be a non-negative integer")
    if args.spectrogram and args.spectrogram_path and args.spectrogram != args.spectrogram_path:
        parser.error(f"two spectrograms given ({args.spectrogram} and -s {args.spectrogram_path}): give one")
    spec_path = args.spectrogram or args.spectrogram_path
    output = Path(args.output)

    try:
        model = load(args.model_dir, args.device)
    except DeviceUnsupported as exc:
        _fail(str(exc), code=3)
    except ValueError as exc:  # CheckpointError, VocoderError: already one line naming the file
        _fail(str(exc))
    vocoder = model.vocoder

    spectrogram = None
    if spec_path is not None:
        if vocoder.unconditional:
            _fail(f"{model.source}: this model is unconditional: give no spectrogram")
        spectrogram = _load_spectrogram(Path(spec_path))
    elif not vocoder.unconditional:
        _fail(f"{model.source}: this model is conditional: give a spectrogram (positional or -s FILE.npy)")

    ours = ["vocode", "--checkpoint", args.model_dir, "--steps", "fast" if args.fast else "full", "--float"]
    if spectrogram is None:
        ours += ["--seconds", f"{model.config.train.audio_len / vocoder.sample_rate:g}"]
    if args.seed is not None:
        ours += ["--seed", str(args.seed)]
    if args.device is not None:
        ours += ["--device", args.device]
    ours += ["-o", str(output.parent)]
    if spec_path is not None:
        ours.append(spec_path)
    print(pointer(ours), file=sys.stderr)

    try:
        audio, sample_rate = predict(spectrogram, args.model_dir, device=args.device, fast_sampling=args.fast, seed=args.seed)
    except ValueError as exc:  # e.g. the spectrogram's mel bands do not fit the model
        _fail(f"{spec_path or args.model_dir}: {exc}")
    write_wav(output, np.asarray(audio[0].cpu().numpy()), sample_rate, subtype="FLOAT")
    print(f"{output}: {audio.shape[-1] / sample_rate:.2f} s at {sample_rate} Hz ({'fast' if args.fast else 'full'} schedule, {vocoder.describe()})")


def _load_spectrogram(path: Path):
    """A [n_mels, frames] or [1, n_mels, frames] array from a .npy file (one wav out, so one item in)."""
    import numpy as np

    from runtime import VocoderError
    from runtime.inputs import load_npy

    if not path.is_file():
        _fail(f"{path}: no such file")
    try:
        spec = load_npy(path)
    except VocoderError as exc:
        _fail(str(exc))
    if spec.ndim == 3 and spec.shape[0] != 1:
        _fail(f"{path}: holds a batch of {spec.shape[0]} spectrograms; this command writes one wav (use diffwave vocode)")
    if spec.ndim not in (2, 3) or not np.issubdtype(spec.dtype, np.number):
        _fail(f"{path}: expected a numeric [n_mels, frames] array, got {spec.dtype} of shape {spec.shape}")
    return spec
