"""From a :class:`runtime.bundle.Profile` (batch and frame ranges) to per-input TensorRT shapes.

``audio`` and ``spectrogram`` share one frame range so that samples = frames × hop holds at
min, opt and max alike: a profile that lets them disagree builds an engine whose opt shapes
violate the network's own elementwise constraints. ``diffusion_step`` is always [1].
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from runtime.bundle import Profile

from .step_graph import INPUT_AUDIO, INPUT_SPECTROGRAM

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max shape of one dynamic input."""

    min: Shape
    opt: Shape
    max: Shape


def profile_shapes(profile: Profile, hop_samples: int, n_mels: int, unconditional: bool) -> dict[str, ShapeRange]:
    """The optimisation-profile shapes of every dynamic input, in graph input order."""
    p = profile
    points = ((p.min_batch, p.min_frames), (p.opt_batch, p.opt_frames), (p.max_batch, p.max_frames))
    shapes = {INPUT_AUDIO: ShapeRange(*[(b, f * hop_samples) for b, f in points])}
    if not unconditional:
        shapes[INPUT_SPECTROGRAM] = ShapeRange(*[(b, n_mels, f) for b, f in points])
    return shapes


def make_profile(min_frames: int, opt_frames: int, max_frames: int, max_batch: int, opt_batch: int = 1,
                 min_batch: int = 1) -> Profile:
    """A :class:`Profile`, raising :class:`runtime.bundle.BundleError` (one line) when bounds are out of order."""
    return Profile(min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                   min_frames=min_frames, opt_frames=opt_frames, max_frames=max_frames)


def polygraphy_convert_command(onnx_path: str | Path, plan_path: str | Path, shapes: dict[str, ShapeRange],
                               rtx: bool = False) -> str:
    """The ``polygraphy convert`` command line that builds the same plan on another machine.

    Strongly typed like our builder, so an FP16 ONNX gives an FP16 engine on TensorRT 10.x too.
    For TensorRT-RTX, polygraphy switches module with ``POLYGRAPHY_USE_TENSORRT_RTX=1``.
    """

    def dims(which: str) -> list[str]:
        return [f"{name}:[{','.join(str(d) for d in getattr(r, which))}]" for name, r in shapes.items()]

    words = ["polygraphy", "convert", str(onnx_path), "--convert-to", "trt", "-o", str(plan_path), "--strongly-typed"]
    for flag, which in (("--trt-min-shapes", "min"), ("--trt-opt-shapes", "opt"), ("--trt-max-shapes", "max")):
        words += [flag, *dims(which)]
    command = " ".join(shlex.quote(w) for w in words)
    return f"POLYGRAPHY_USE_TENSORRT_RTX=1 {command}" if rtx else command
