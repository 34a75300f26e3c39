"""Where one ONNX Runtime CPU step spends its time, per operator type (benchmarks/README.md).

    python benchmarks/profile_step.py [--onnx build/model.onnx] [--seconds 5] [--runs 4]

Runs the step graph ``--runs`` times with ONNX Runtime's profiler on (the shipped session
options otherwise) and sums the kernel times per operator type. The profiler adds a little
time per node, so read the shares, not the absolute milliseconds.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from probe import export_random_base  # this folder is on sys.path when run as a script


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args(argv)
    from runtime.bundle import BundleMetadata

    with tempfile.TemporaryDirectory() as tmp:
        path = args.onnx or export_random_base(Path(tmp))
        meta = BundleMetadata.read(path.parent)
        options = ort.SessionOptions()
        options.enable_mem_pattern = False
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        frames = round(args.seconds * meta.sample_rate / meta.hop_samples)
        rng = np.random.default_rng(0)
        feeds = {
            "audio": rng.standard_normal((1, frames * meta.hop_samples)).astype(np.float32),
            "diffusion_step": np.array([10.5], np.float32),
            "spectrogram": rng.uniform(0, 1, (1, meta.n_mels, frames)).astype(np.float32),
        }
        for _ in range(1 + args.runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    # the first run allocates the arena's blocks: leave it out of a step's cost
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    after_warmup = runs[0][1]
    per_op: dict[str, float] = collections.defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= after_warmup:
            per_op[event["args"]["op_name"]] += event["dur"] / 1e3
    runs = args.runs
    total = sum(per_op.values())
    print(f"{args.seconds:g} s ({frames} frames), kernel time per operator type, mean of {runs} runs after a warm-up")
    for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]):
        if ms / total >= 0.001:
            print(f"  {op:14s} {ms / runs:8.1f} ms per step  {100 * ms / total:5.1f} %")
    print(f"  {'total':14s} {total / runs:8.1f} ms per step")


if __name__ == "__main__":
    main(sys.argv[1:])
