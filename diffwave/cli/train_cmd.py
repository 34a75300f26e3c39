"""`diffwave train` (placeholder until its issue lands)."""

from __future__ import annotations

from .app import app, fail


@app.command("train")
def train_command() -> None:
    """Not yet available."""
    raise fail("'diffwave train' is not yet available", code=2)
