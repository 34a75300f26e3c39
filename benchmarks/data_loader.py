"""Experiment: how many training batches per second the data loader delivers (benchmarks/README.md).

    python benchmarks/data_loader.py DATA_DIR... [--config base] [--batch-size 16] [--crop-frames 62]
        [--workers 0,1,2] [--batches 200]

Runs the DataLoader ``diffwave train`` builds (the same crops, sampler and collate) over
preprocessed data and prints, per worker count, the start-up time (until the first batch) and
the steady rate in batches per second, which is the most training steps per second the loader
can feed. Nothing trains, so the rate is the loader's alone.

Why it matters: a GPU step of the base model is predicted at tens of milliseconds. If the loader
cannot keep up, a lent GPU session (minutes, rarely drawn) trains at the loader's pace, and the
slice's steps/s would fall below the training-step benchmark's (which uses one synthetic batch).
"""

from __future__ import annotations

import argparse
import time

from interleaved import print_table  # this folder is on sys.path when run as a script

from diffwave.config import DiffWaveConfig
from diffwave.data import scan
from diffwave.distributed import DistContext
from diffwave.train import make_loader

#: Named networks as in train_step.py; only the crop settings matter here.
NAMED = {"small": {"crop_mel_frames": 32, "batch_size": 8}, "base": {}}


def rate(records, config: DiffWaveConfig, workers: int, batches: int) -> tuple[float, float]:
    """Seconds until the first batch, and batches per second over the next ``batches``."""
    started = time.perf_counter()
    loader = iter(make_loader(records, config, DistContext(), 0, workers, pin_memory=False))
    next(loader)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return first, batches / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dirs", nargs="+", help="preprocessed folders (wavs with .spec.npy)")
    parser.add_argument("--config", default="base", help="small, base or a JSON of params keys")
    parser.add_argument("--batch-size", type=int, default=None, help="crops per batch (default: the config's)")
    parser.add_argument("--crop-frames", type=int, default=None, help="mel frames per crop (default: the config's)")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts to time")
    parser.add_argument("--batches", type=int, default=200, help="batches timed per worker count")
    args = parser.parse_args()
    config = DiffWaveConfig().override(NAMED[args.config]) if args.config in NAMED else DiffWaveConfig.from_json(args.config)
    overrides = {"batch_size": args.batch_size, "crop_mel_frames": args.crop_frames}
    config = config.override({k: v for k, v in overrides.items() if v is not None})
    records = scan(args.data_dirs, config).records
    batch, frames = config.train.batch_size, config.train.crop_mel_frames
    print(f"data loader: {len(records)} files, batch {batch} × {frames} frames, {args.batches} batches per row")
    header = ("workers", "first batch s", "batches/s", "crops/s", "ms/batch")
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        first, per_second = rate(records, config, workers, args.batches)
        rows.append((str(workers), f"{first:.2f}", f"{per_second:.0f}", f"{per_second * batch:.0f}", f"{1e3 / per_second:.1f}"))
    print_table(header, rows)


if __name__ == "__main__":
    main()
