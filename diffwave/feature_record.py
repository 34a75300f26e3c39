"""Which feature settings made a folder's spectrograms: ``.features.json`` beside them.

A ``.spec.npy`` is a bare array (lmnt's format), so nothing in it says which mel scale, FFT
size or f_max made it. Without a record, a config that changes one of those trains on the old
spectrograms without a word (only the band count and the frame count can be checked), and
``preprocess`` with the new settings calls the old files up to date. ``preprocess`` writes this
record into every folder whose spectrograms it has made with one set of settings; ``train``
refuses a folder whose record disagrees with its config. The name starts with a dot, so it is
never taken for data. Folders preprocessed before the record existed have none: ``preprocess``
makes their spectrograms again once, ``train`` takes them as they are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Optional

from runtime.bundle import FeatureSpec, write_text_atomic

RECORD_NAME = ".features.json"


def read_record(folder: Path) -> Optional[dict]:
    """The settings recorded in ``folder`` (a dict of FeatureSpec fields), None when there is no usable record."""
    try:
        data = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(folder: Path, features: FeatureSpec) -> None:
    write_text_atomic(folder / RECORD_NAME, json.dumps(asdict(features), indent=1) + "\n")


def remove_record(folder: Path) -> None:
    (folder / RECORD_NAME).unlink(missing_ok=True)


def differences(recorded: dict, features: FeatureSpec) -> list[str]:
    """``name recorded -> wanted`` for every setting that differs (empty when they agree)."""
    wanted = asdict(features)
    return [f"{f.name} {recorded.get(f.name)!r} -> {wanted[f.name]!r}" for f in fields(FeatureSpec) if recorded.get(f.name) != wanted[f.name]]
