"""The typer application every ``diffwave`` sub-command registers itself with."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="diffwave",
    help="Train the DiffWave neural vocoder and serve it with TensorRT, ONNX Runtime or PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one line to stderr and return the Exit to raise: ``raise fail(...)``."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
