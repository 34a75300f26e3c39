"""JSON that every parser accepts: non-finite floats become null.

``json.dumps`` writes NaN and Infinity as bare tokens that strict parsers (jq, JavaScript,
most dashboards) reject. The bench and eval reports have such values (a speed-up over a
skipped row, the SNR of identical outputs), so both write through this one function.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every non-finite float, at any depth of dicts/lists/tuples, replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def dumps_strict(obj: Any) -> str:
    """Indented strict JSON with a final newline."""
    return json.dumps(finite_or_null(obj), indent=2, allow_nan=False) + "\n"
