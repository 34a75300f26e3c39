"""`diffwave bench` (placeholder until its issue lands)."""

from __future__ import annotations

from .app import app, fail


@app.command("bench")
def bench_command() -> None:
    """Not yet available."""
    raise fail("'diffwave bench' is not yet available", code=2)
