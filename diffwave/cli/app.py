"""The typer application every ``diffwave`` sub-command registers itself with."""

from __future__ import annotations

import contextlib
import inspect
from typing import Iterator

import typer

app = typer.Typer(
    name="diffwave",
    help="Train the DiffWave neural vocoder and serve it with TensorRT, ONNX Runtime or PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def reflow(text: str) -> str:
    """``text`` with each paragraph on one line (paragraphs stay apart).

    Typer's rich help keeps a docstring's line breaks after its first paragraph, so source
    wrapped at 100 columns printed ragged in every terminal of another width; rich wraps a
    one-line paragraph to the terminal itself.
    """
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def reflow_command_help(typer_app: typer.Typer) -> None:
    """Give every registered command its help (``help=`` or the docstring) reflowed, see :func:`reflow`."""
    for info in typer_app.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if text:
            info.help = reflow(text)


def fail(message: str, code: int = 1) -> "typer.Exit":
    """Print one line to stderr and return the Exit to raise: ``raise fail(...)``."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def stop_signals_end_with(resume: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM inside the block end the command with one line saying ``resume``:
    ``error: interrupted (…)`` exit 130, ``error: terminated (…)`` exit 143 (see diffwave.interrupts)."""
    from diffwave.interrupts import Terminated, stop_signals_raise

    try:
        with stop_signals_raise():
            yield
    except Terminated:
        raise fail(f"terminated ({resume})", code=143) from None
    except KeyboardInterrupt:
        raise fail(f"interrupted ({resume})", code=130) from None
