"""Experiment: what bfloat16 autocast buys a CPU training step (benchmarks/README.md).

    python benchmarks/train_step.py [--config small|base|PATH.json ...] [--rounds 5] [--steps 3]

Times ``Learner.train_step`` (the step ``diffwave train`` runs: forward, L1 loss, backward,
gradient clipping, Adam, the weight average) in float32 and under ``--bf16`` on the same
network and batch, in interleaved rounds, and prints seconds per step, steps per second, the
paired speed-up and the arithmetic rate reached. FLOPs per step are counted, not assumed:
forward FLOPs per output sample come from the same count as ``step_cost.py`` (convolutions
only, which carry over 99 % of them), times three for forward + backward, times the batch.

Why it matters: a CPU is the only trainer some users have (and the only one the shipped default
model has had), and steps per hour is what limits its quality. Zen 4/5 and Sapphire Rapids cores
execute bfloat16 dot products (AVX512-BF16 / AMX) at twice the float32 rate or more; the weights,
the optimizer and the loss stay float32, so only the convolutions' inputs are rounded.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from interleaved import time_interleaved  # this folder is on sys.path when run as a script

from diffwave.config import DiffWaveConfig
from diffwave.data import Batch
from diffwave.distributed import DistContext
from diffwave.train import Learner, TrainOptions

#: Named networks: the shipped CPU model's and lmnt's base (the defaults).
NAMED = {
    "small": {"residual_layers": 12, "residual_channels": 32, "dilation_cycle_length": 6},
    "base": {},
}


def load_config(name: str, batch_size: int, crop_frames: int) -> DiffWaveConfig:
    """The network named (or read from JSON), trained on ``batch_size`` crops of ``crop_frames`` frames."""
    config = DiffWaveConfig().override(NAMED[name]) if name in NAMED else DiffWaveConfig.from_json(Path(name))
    return config.override({"batch_size": batch_size, "crop_mel_frames": crop_frames})


def conv_flops_per_sample(config: DiffWaveConfig) -> float:
    """Forward multiply-adds × 2 per output sample of the x-dependent convolutions and the conditioner."""
    c, layers, mels = config.model.residual_channels, config.model.residual_layers, config.features.n_mels
    per_layer = 3 * c * 2 * c + mels * 2 * c + c * 2 * c  # dilated k=3, conditioner 1×1, output 1×1
    return 2.0 * (layers * per_layer + c + c * c + c)  # + input, skip and output projections


def make_learner(config: DiffWaveConfig, precision: str) -> Learner:
    options = TrainOptions(model_dir=Path("."), data_dirs=(), precision=precision, device="cpu")
    return Learner(config, options, DistContext(), torch.device("cpu"))


def make_batch(config: DiffWaveConfig) -> Batch:
    generator = torch.Generator().manual_seed(0)
    frames, hop = config.train.crop_mel_frames, config.features.hop_samples
    audio = 0.3 * torch.randn(config.train.batch_size, frames * hop, generator=generator)
    spectrogram = torch.rand(config.train.batch_size, config.features.n_mels, frames, generator=generator)
    return Batch(audio, spectrogram)


def bench(config: DiffWaveConfig, name: str, rounds: int, steps: int) -> list[tuple[str, ...]]:
    batch = make_batch(config)
    learners = {p: make_learner(config, p) for p in ("fp32", "bf16")}

    def run(learner: Learner) -> None:
        for _ in range(steps):
            learner.train_step(batch)

    for learner in learners.values():  # warm-up: oneDNN picks and caches its kernels
        learner.train_step(batch)
    times = time_interleaved({p: (lambda lr=lr: run(lr)) for p, lr in learners.items()}, rounds)
    flops = 3 * conv_flops_per_sample(config) * batch.audio.numel()
    rows = []
    for precision, values in times.items():
        per_step = statistics.median(values) / steps
        ratio = statistics.median(a / b for a, b in zip(times["fp32"], values))
        rows.append((name, precision, f"{per_step * 1e3:.0f}", f"{1 / per_step:.2f}", f"{ratio:.2f}×",
                     f"{flops / per_step / 1e9:.0f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="small, base or a JSON of params keys (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed call")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per step (the shipped model's 8)")
    parser.add_argument("--crop-frames", type=int, default=32, help="mel frames per crop (the shipped model's 32)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    header = ("config", "precision", "ms/step", "steps/s", "vs fp32", "GFLOP/s")
    rows = []
    for name in args.config or ["small", "base"]:
        config = load_config(name, args.batch_size, args.crop_frames)
        rows += bench(config, name, args.rounds, args.steps)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print(f"training step on CPU ({torch.get_num_threads()} threads), batch {args.batch_size} × {args.crop_frames} frames, "
          f"median of {args.rounds} interleaved rounds")
    for row in [header] + rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
