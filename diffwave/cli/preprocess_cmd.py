"""`diffwave preprocess` (placeholder until its issue lands)."""

from __future__ import annotations

from .app import app, fail


@app.command("preprocess")
def preprocess_command() -> None:
    """Not yet available."""
    raise fail("'diffwave preprocess' is not yet available", code=2)
