"""`diffwave export` (placeholder until its issue lands)."""

from __future__ import annotations

from .app import app, fail


@app.command("export")
def export_command() -> None:
    """Not yet available."""
    raise fail("'diffwave export' is not yet available", code=2)
