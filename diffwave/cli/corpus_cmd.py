"""`diffwave corpus`: render a speech corpus with espeak-ng (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .app import app, fail, stop_signals_end_with


@app.command("corpus")
def corpus_command(
    out_dir: Path = typer.Argument(..., help="Folder to fill with train/, heldout/ and manifest.jsonl.", file_okay=False),
    sentences: int = typer.Option(3000, "--sentences", "-n", min=2, help="Distinct sentences to speak (one wav each)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and --sentences give the same corpus, byte for byte."),
    heldout_fraction: float = typer.Option(
        0.05, "--heldout-fraction", min=0.0, max=0.99, help="Share of sentences held out (never spoken in train/)."
    ),
    workers: int = typer.Option(
        os.cpu_count() or 1, "--workers", "-j", min=1, help="espeak-ng processes run in parallel."
    ),
) -> None:
    """Speak generated English sentences with several espeak-ng voices, speeds and pitches at 22 050 Hz.

    Held-out sentences are never spoken in train/; rerun with the same arguments to resume.
    """
    from diffwave.corpus import CorpusError, MANIFEST_NAME, make_corpus, summarize

    resume = "the wavs written so far are complete; rerun with the same arguments to do the rest"
    try:
        with stop_signals_end_with(resume):  # SIGTERM too: the voices in flight finish and no temporary is left
            entries = make_corpus(out_dir, sentences=sentences, seed=seed, heldout_fraction=heldout_fraction, workers=workers)
    except CorpusError as exc:
        raise fail(str(exc)) from None
    for split, (count, hours) in summarize(entries).items():
        typer.echo(f"{split:8s} {count:6d} wavs  {hours * 60:8.1f} min  {out_dir / split}")
    typer.echo(f"manifest {out_dir / MANIFEST_NAME}")
