"""The typer application every ``diffwave`` sub-command registers itself with."""

from __future__ import annotations

import contextlib
import errno
import inspect
import sys
from typing import Any, Iterator, Optional

import typer
import typer.core
from typer import Abort

try:  # typer 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException


class OneLineErrors(typer.core.TyperGroup):
    """The ``diffwave`` command group, printing every failure the commands do not handle as one line.

    Two kinds reach here. Usage errors (a bad option value, a missing argument), which click would
    print as a framed block with the usage text, become ``error: <what>`` and a pointer to
    ``--help`` (exit 2). Operating-system errors from any command (disk full, a read-only folder,
    a path through a file) become ``error: <path>: <reason>`` (exit 1) instead of a traceback.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # output piped into `head`: click's own quiet handling
                raise
            raise fail(os_error_line(exc)) from None

    def main(self, args: Optional[Any] = None, prog_name: Optional[str] = None, *rest: Any, **extra: Any) -> Any:
        if extra.get("standalone_mode", True) is False or rest:
            return super().main(args, prog_name, *rest, **extra)
        extra["standalone_mode"] = False
        try:
            result = super().main(args, prog_name, **extra)
        except ClickException as exc:  # UsageError, BadParameter, NoSuchOption, …
            command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else (prog_name or "diffwave")
            typer.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
            sys.exit(exc.exit_code)
        except Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def os_error_line(exc: OSError) -> str:
    """``path: reason`` for an OSError (``path -> other: reason`` for a failed rename or link)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {reason}"


app = typer.Typer(
    name="diffwave",
    help="Train the DiffWave neural vocoder and serve it with TensorRT, ONNX Runtime or PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
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


#: Exit codes shared by the commands: bad input (a file), a usage error (options), cannot run here (no GPU, no TensorRT).
EXIT_BAD_INPUT, EXIT_USAGE, EXIT_CANNOT_RUN = 1, 2, 3


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
