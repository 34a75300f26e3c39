"""``--check``: run a freshly built plan and ONNX Runtime side by side with polygraphy.

Needs the GPU the plan is for (it executes the engine), so it only runs on the GPU box; the
comparison itself (:func:`compare_runners`) is plain polygraphy and is tested on CPU with two
ONNX Runtime runners. Inputs are random at the profile's min and opt shapes and at its two max edges (see check_feeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.bundle import BundleMetadata, Profile
from runtime.errors import first_line
from runtime.trt_target import TrtTarget

from .parity import relative_errors
from .step_graph import INPUT_AUDIO, INPUT_STEP

#: engine vs ONNX Runtime on the same graph. FP32 engines may use TF32 tensor cores (10-bit mantissa).
CHECK_LIMITS = {"fp16": 2e-2, "fp32": 5e-3}


class EngineCheckFailed(RuntimeError):
    """The engine's output differs from ONNX Runtime's, or it could not be run (message is one line)."""


@dataclass(frozen=True)
class CheckResult:
    shape: tuple[int, ...]
    rel_err: float
    limit: float

    @property
    def passed(self) -> bool:
        return self.rel_err <= self.limit


def check_feeds(metadata: BundleMetadata, profile: Profile, shapes, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """One feed dict per check point, with a late fractional step: the profile's min and opt, then
    its largest batch at the shortest length and its longest length at the smallest batch.

    Not the profile's max corner (largest batch × longest length): the reference runs on ONNX
    Runtime's CPU, where the default profile's corner would take about 17 GB of memory and minutes;
    the two edges reach every bound the corner does (the parity gate pairs them the same way).
    """
    rng = np.random.default_rng(seed)
    step = np.array([0.93 * (len(metadata.noise_schedule) - 1)], dtype=np.float32)
    points = (("min", "min"), ("opt", "opt"), ("max", "min"), ("min", "max"))  # (batch from, length from)
    feeds = []
    for batch_from, length_from in points:
        feed = {INPUT_STEP: step}
        for name, r in shapes.items():
            shape = (getattr(r, batch_from)[0], *getattr(r, length_from)[1:])
            values = rng.standard_normal(shape) if name == INPUT_AUDIO else rng.uniform(0, 1, shape)
            feed[name] = values.astype(np.float32)
        feeds.append(feed)
    return feeds


def compare_runners(reference, candidate, feeds, limit: float) -> list[CheckResult]:
    """Run two polygraphy runners on ``feeds`` and compare every output by relative L2 error."""
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.ERROR
    results = Comparator.run([reference, candidate], data_loader=feeds)
    (_, expected), (_, actual) = list(results.items())
    out = []
    for feed, exp, act in zip(feeds, expected, actual):
        for name in exp.keys():
            rel, _ = relative_errors(np.asarray(act[name], np.float32), np.asarray(exp[name], np.float32))
            out.append(CheckResult(tuple(feed[INPUT_AUDIO].shape), rel, limit))
    return out


def check_plan(target: TrtTarget, onnx_path: Path, plan: bytes, metadata: BundleMetadata, profile: Profile,
               precision: str) -> list[CheckResult]:
    """Engine (polygraphy TrtRunner) vs ONNX Runtime CPU on the graph it was built from.

    polygraphy picks ``tensorrt`` or ``tensorrt_rtx`` from ``polygraphy.config.USE_TENSORRT_RTX``
    when its TensorRT backend is first imported, so that switch is set before the import.
    """
    from polygraphy import config as polygraphy_config

    polygraphy_config.USE_TENSORRT_RTX = target.name == "rtx"
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from .profile import profile_shapes

    shapes = profile_shapes(profile, metadata.hop_samples, metadata.n_mels, metadata.unconditional)
    feeds = check_feeds(metadata, profile, shapes)
    reference = OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["cpu"]), name="onnxruntime")
    engine = TrtRunner(EngineFromBytes(plan), name=target.plan_name)
    try:
        results = compare_runners(reference, engine, feeds, CHECK_LIMITS[precision])
    except Exception as exc:  # CUDA / deserialisation failures surface as assorted exception types
        first = first_line(exc)
        raise EngineCheckFailed(f"--check could not run {target.plan_name}: {first}") from None
    failed = [r for r in results if not r.passed]
    if failed:
        worst = max(failed, key=lambda r: r.rel_err)
        raise EngineCheckFailed(f"--check: {target.plan_name} differs from ONNX Runtime: eps rel err "
                                f"{worst.rel_err:.2e} > {worst.limit:.0e} at audio shape {list(worst.shape)}")
    return results
