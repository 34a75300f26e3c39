"""``diffwave`` command line: thin commands that parse arguments, then call the library.

Each sub-command lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

from .app import app, reflow_command_help
from . import preprocess_cmd, train_cmd, export_cmd, vocode_cmd, bench_cmd  # noqa: F401  (registration)
from . import corpus_cmd, demo_cmd, eval_cmd  # noqa: F401  (registration)

reflow_command_help(app)


def main() -> None:
    app()
