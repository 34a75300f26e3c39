"""Experiment: does a window that stays in cache make ONNX Runtime's CPU step faster? (benchmarks/README.md)

    python benchmarks/chunks.py [--onnx build/model.onnx] [--seconds 5] [--rounds 3] [--threads 0]

Two measurements on the same graph:

1. one network evaluation on windows of 16 … 512 frames: time per output sample. If the
   elementwise operators (a third of a step) were bound by DRAM bandwidth, windows whose
   activations fit in L2/L3 would cost less per sample;
2. a whole 6-step call of ``--seconds`` through ``runtime.Vocoder`` with ``max_frames`` (the
   window of its exact halo chunking) from 64 to 512 frames, interleaved rounds: what chunking
   costs or gains end to end, halo (13 frames = 3328 samples each side for the base model) included.

Without ``--onnx`` a random-weight base model is exported to a temporary bundle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from interleaved import paired_speedup, time_interleaved  # this folder is on sys.path when run as a script
from probe import export_random_base


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    from runtime import Vocoder
    from runtime.backends.ort import OnnxRuntimeBackend
    from runtime.bundle import BundleMetadata

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx or export_random_base(Path(tmp))
        meta = BundleMetadata.read(onnx_path.parent)
        threads = args.threads or None
        backend = OnnxRuntimeBackend(onnx_path, meta, device="cpu", threads=threads)
        hop = meta.hop_samples
        print(f"1. one step, time per output sample (threads {args.threads or 'default'})")
        rng = np.random.default_rng(0)
        for frames in (16, 32, 64, 128, 256, 512):
            session = backend.session(0, 1, frames * hop)
            session.audio[...] = rng.standard_normal(session.audio.shape, dtype=np.float32)
            session.spectrogram[...] = rng.uniform(0, 1, session.spectrogram.shape)
            session.set_steps(np.array([10.5], np.float32))
            session.run(0)
            values = []
            for _ in range(max(2, 256 // frames)):
                started = time.perf_counter()
                session.run(0)
                values.append(time.perf_counter() - started)
            per = statistics.median(values) / (frames * hop)
            print(f"   {frames:4d} frames ({frames * hop:6d} samples): {per * 1e6:6.2f} µs/sample")

        frames = round(args.seconds * meta.sample_rate / hop)
        mel = rng.uniform(0, 1, (1, meta.n_mels, frames)).astype(np.float32)
        vocoders = {m: Vocoder(OnnxRuntimeBackend(onnx_path, meta, device="cpu", threads=threads), max_frames=m)
                    for m in (64, 128, 256, 512)}
        for v in vocoders.values():
            v(mel, seed=0)
        times = time_interleaved({m: (lambda v=v: v(mel, seed=0)) for m, v in vocoders.items()}, args.rounds)
        print(f"2. whole call, {args.seconds:g} s ({frames} frames), 6 steps: median, and paired ratio to max_frames=512")
        for m, values in times.items():
            ratio = paired_speedup(times[512], values)
            print(f"   max_frames {m:3d}: {statistics.median(values):7.3f} s  {ratio:4.2f}×  {[round(v, 2) for v in values]}")


if __name__ == "__main__":
    main(sys.argv[1:])
