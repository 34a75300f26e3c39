"""``diffwave preprocess DIR...``: wavs -> ``.wav.spec.npy`` beside them."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app, fail, stop_signals_end_with


@app.command("preprocess")
def preprocess_command(
    paths: List[Path] = typer.Argument(..., help="Folders searched recursively for *.wav (or single .wav files)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Worker processes (default: one per CPU core)."),
    force: bool = typer.Option(False, "--force", help="Recompute spectrograms that are already newer than their wav."),
    config: Optional[Path] = typer.Option(
        None, "--config", help="JSON file of lmnt-style keys; its feature settings (sample_rate, n_mels, feature_*) apply."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Compute the log-mel spectrogram of every wav, written as x.wav.spec.npy beside x.wav.

    Files whose spectrogram is newer than the wav are skipped. Bad files (unreadable, wrong
    sample rate, empty, shorter than half an analysis window plus one sample) are listed at the end with the reason, the
    others are still processed, and the exit status is 1. Stereo files are downmixed with a
    warning; a wrong sample rate is refused, never resampled silently.
    """
    from diffwave.config import DiffWaveConfig
    from diffwave.data import DataError
    from diffwave.preprocess import preprocess

    try:
        resolved = DiffWaveConfig.from_json(config) if config else DiffWaveConfig()
        with stop_signals_end_with("the spectrograms written so far are complete; rerun to do the rest"):
            report = preprocess(paths, resolved.features, workers=workers, force=force, progress=progress)
    except (DataError, ValueError) as exc:
        raise fail(str(exc)) from None
    lines = report.summary_lines()
    typer.echo(lines[0], err=not report.ok)
    if not report.ok:
        for line in lines[1:]:
            typer.echo(line, err=True)
        raise fail(f"{len(report.failed)} file(s) could not be preprocessed (listed above)")
