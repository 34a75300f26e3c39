"""`diffwave demo`: vocode the bundled sample with the bundled model on the CPU."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from runtime.bundle import REQUIRED_SCHEDULES

from .app import EXIT_USAGE, app, fail, os_error_line, stop_signals_end_with


def _open_default_bundle():
    """The cached bundle of the bundled weights, exported on first use and again if it no longer loads."""
    from runtime import Vocoder, VocoderError
    from runtime.bundle import BundleError

    from diffwave.default_model import cache_root, default_bundle

    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    try:
        bundle = default_bundle(log=log)
    except OSError as exc:  # a read-only home, a cache path through a file: say which setting moves it
        line = os_error_line(exc) if exc.filename is not None else f"{cache_root()}: {os_error_line(exc)}"
        raise fail(f"{line} (the demo exports the bundled model into this cache on first use: set DIFFWAVE_CACHE "
                   "to a writable folder)") from None
    try:
        return Vocoder.load(bundle, device="cpu")
    except (VocoderError, BundleError) as exc:
        log(f"the cached bundle does not load ({exc}); exporting it again")
        return Vocoder.load(default_bundle(log=log, refresh=True), device="cpu")


@app.command("demo")
def demo_command(
    output: Path = typer.Option(Path("out.wav"), "--output", "-o", help="Where to write the vocoded sample.", dir_okay=False),
    steps: str = typer.Option("fast", "--steps", help="fast (6 steps) or full (the training schedule)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Noise seed (the same seed gives the same audio)."),
) -> None:
    """Vocode the bundled espeak-ng sample with the bundled model (ONNX Runtime, CPU) and report the speed.

    The first run exports the bundled weights to an ONNX bundle in ~/.cache/diffwave
    (override with DIFFWAVE_CACHE) and checks it against PyTorch; later runs reuse it.
    """
    from export.bundle_export import ExportError
    from export.parity import ParityGateFailed
    from runtime import VocoderError
    from runtime.bundle import BundleError

    from diffwave.audio import write_wav
    from diffwave.default_model import default_model

    if steps not in REQUIRED_SCHEDULES:  # every bundle holds these; checked before the first run's export, a minute long
        raise fail(f"--steps {steps!r}: the demo runs {' or '.join(REQUIRED_SCHEDULES)} (diffwave vocode takes betas)", code=EXIT_USAGE)
    try:
        files = default_model()
        with stop_signals_end_with("nothing half-written is left"):
            vocoder = _open_default_bundle()
            mel = np.load(files.sample_spectrogram)
            vocoder(mel[:, :32], steps=steps, seed=seed)  # warm-up: sessions and buffers
            start = time.perf_counter()
            audio = vocoder(mel, steps=steps, seed=seed)[0]
            wall = time.perf_counter() - start
            write_wav(output, audio, vocoder.sample_rate)
    except (FileNotFoundError, VocoderError, BundleError, ExportError, ParityGateFailed) as exc:
        raise fail(str(exc)) from None
    seconds = len(audio) / vocoder.sample_rate
    typer.echo(
        f"vocoded {files.sample_wav.name} ({seconds:.2f} s of audio, {mel.shape[-1]} frames) in {wall:.2f} s "
        f"with {vocoder.describe()}: real-time factor {wall / seconds:.3f} -> {output}"
    )
