"""The model and sample that ship inside the package, so ``diffwave demo`` works offline.

The weights (``assets/default/weights.pt``, a small CPU-friendly configuration trained on an
espeak-ng corpus made by ``diffwave corpus``; see models/README.md) are exported to an ONNX
bundle on first use, into a cache folder keyed by the hash of the weights and of the exporter's
source (a newer exporter makes a new bundle instead of reusing one it would not write).
Exporting at first use instead of shipping the graph keeps one source of truth: the bundle
always passes today's parity gate for today's exporter.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from runtime.bundle import METADATA_NAME, Profile

from .folder_lock import folder_lock

ASSETS = Path(__file__).parent / "assets" / "default"
WEIGHTS = ASSETS / "weights.pt"
SAMPLE_WAV = ASSETS / "sample.wav"
SAMPLE_SPEC = ASSETS / "sample.wav.spec.npy"
#: The exported bundle's optimisation profile: enough for the sample, cheap to gate.
DEMO_PROFILE = Profile(min_frames=16, opt_frames=128, max_frames=512)


@dataclass(frozen=True)
class DefaultModel:
    weights: Path
    sample_wav: Path
    sample_spectrogram: Path


def default_model() -> DefaultModel:
    """The shipped files; one clear error if the package was installed without them."""
    for path in (WEIGHTS, SAMPLE_WAV, SAMPLE_SPEC):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the bundled default model is missing from this installation")
    return DefaultModel(WEIGHTS, SAMPLE_WAV, SAMPLE_SPEC)


def cache_root() -> Path:
    base = os.environ.get("DIFFWAVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffwave"
    )
    return Path(base)


def exporter_sources() -> list[Path]:
    """The files whose change can change an exported bundle: the exporter and the bundle format."""
    import export
    import runtime.bundle

    return sorted(Path(export.__file__).parent.glob("*.py")) + [Path(runtime.bundle.__file__)]


def bundle_key(weights: Path, sources: list[Path]) -> str:
    """Cache key of an exported bundle: what was exported, by which code, for which profile.

    Why not the weights alone: a cached bundle that still loads would outlive an upgrade whose
    exporter writes something else (another graph, another metadata field, a stricter gate).
    """
    digest = hashlib.sha256(weights.read_bytes())
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(repr(DEMO_PROFILE).encode())
    return digest.hexdigest()[:16]


def default_bundle(log: Callable[[str], None] = lambda _m: None, refresh: bool = False) -> Path:
    """The ONNX bundle of the shipped weights: exported (and gated) once, then reused.

    ``refresh`` exports again over a cached bundle that no longer loads (edited, truncated).
    One process exports at a time per cache folder: a second ``diffwave demo`` started meanwhile
    waits and then uses the first one's bundle (before, each took the other's staging folder for
    a killed export's leftovers and removed it).
    """
    weights = default_model().weights
    bundle = cache_root() / f"default-{bundle_key(weights, exporter_sources())}"
    if (bundle / METADATA_NAME).is_file() and not refresh:
        return bundle
    with folder_lock(cache_root(), "demo export"):
        if (bundle / METADATA_NAME).is_file() and not refresh:
            return bundle  # exported by another process while this one waited
        from export.bundle_export import ExportSettings, export_bundle

        from .checkpoint import load_model

        log(f"{'exporting the bundled model again' if refresh else 'first use: exporting the bundled model'} to {bundle}")
        # force: the folder is this tool's own, so what a killed export left there (files, but no
        # model.json) is replaced rather than refused with advice about options demo does not have.
        settings = ExportSettings(precision="fp32", profile=DEMO_PROFILE, progress=False, force=True)
        export_bundle(load_model(weights), bundle, settings, log=log)
    return bundle
