"""Experiment: which ONNX Runtime session options matter for a CPU step? (benchmarks/README.md)

    python benchmarks/session_options.py [--onnx build/model.onnx] [--seconds 5] [--rounds 3]

Times a whole 6-step call (the network six times plus the update, noise-free: the same
work as the runtime's loop) under each variant of the session options, in interleaved
rounds so that load from other jobs falls on every variant alike, and prints the median
and the paired ratio to the options ``runtime/backends/ort.py`` uses (``shipped``).
Without ``--onnx`` a random-weight base model is exported to a temporary file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from interleaved import print_paired, time_interleaved
from probe import (  # this folder is on sys.path when run as a script
    ProbeInputs,
    export_random_base,
)

Variant = Callable[[ort.SessionOptions], None]


def shipped(o: ort.SessionOptions) -> None:
    """What OnnxRuntimeBackend sets: all graph optimisations, no memory pattern, no spinning."""
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.enable_mem_pattern = False
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")


def with_level(level: ort.GraphOptimizationLevel) -> Variant:
    def apply(o: ort.SessionOptions) -> None:
        shipped(o)
        o.graph_optimization_level = level

    return apply


def arena_off(o: ort.SessionOptions) -> None:
    shipped(o)
    o.enable_cpu_mem_arena = False


def mem_pattern_on(o: ort.SessionOptions) -> None:
    shipped(o)
    o.enable_mem_pattern = True


VARIANTS: dict[str, Variant] = {
    "shipped": shipped,
    "opt-extended": with_level(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    "opt-basic": with_level(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "opt-disabled": with_level(ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    "arena-off": arena_off,
    "mem-pattern-on": mem_pattern_on,
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ort.set_default_logger_severity(3)
    from runtime.bundle import BundleMetadata

    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_random_base(Path(tmp))
        meta = BundleMetadata.read(path.parent)
        sessions = {}
        for name, variant in VARIANTS.items():
            options = ort.SessionOptions()
            variant(options)
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = ProbeInputs.create(meta, args.seconds)

    def call(session: ort.InferenceSession) -> np.ndarray:
        return inputs.call(lambda x, n: session.run(None, inputs.step_feeds(x, n))[0])

    reference = call(sessions["shipped"])
    for name, session in sessions.items():  # warm-up, and every variant computes the same audio
        diff = float(np.abs(call(session) - reference).max())
        assert diff < 1e-4, f"{name}: max |diff| {diff:.1e} vs shipped"
    times = time_interleaved({name: (lambda s=session: call(s)) for name, session in sessions.items()}, args.rounds)
    print_paired(times, "shipped", f"{args.seconds:g} s, {inputs.schedule.num_steps} steps, onnxruntime {ort.__version__}")

if __name__ == "__main__":
    main(sys.argv[1:])
