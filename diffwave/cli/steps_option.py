"""The ``--steps`` option of vocode, bench and eval: a schedule name or explicit betas, read one way.

Each command had its own reader, and both took a lone beta (``--steps 0.5``) for a schedule name
(no comma) and failed with "unknown schedule '0.5'". A value that reads as numbers is betas, one
or several; anything else is a name, checked against the model's ``model.json`` by the command.
"""

from __future__ import annotations

from .app import EXIT_USAGE, fail

STEPS_HELP = (
    "Noise schedule: a name from model.json (fast = 6 steps, full = the training schedule) "
    "or betas, comma-separated (one beta is a one-step schedule)."
)


def parse_steps(text: str) -> "str | tuple[float, ...]":
    """``"fast"`` -> ``"fast"``; ``"0.5"`` -> ``(0.5,)``; ``"1e-4,0.05,0.5"`` -> three betas; ``"a,b"`` -> usage error."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        betas = tuple(float(part) for part in parts)
    except ValueError:
        if "," in text:
            raise fail(f"--steps {text!r}: not a schedule name nor comma-separated betas", code=EXIT_USAGE) from None
        return text.strip()
    if not betas:
        raise fail(f"--steps {text!r}: empty (give a schedule name such as fast, or betas)", code=EXIT_USAGE)
    return betas
