"""`diffwave vocode` (placeholder until its issue lands)."""

from __future__ import annotations

from .app import app, fail


@app.command("vocode")
def vocode_command() -> None:
    """Not yet available."""
    raise fail("'diffwave vocode' is not yet available", code=2)
