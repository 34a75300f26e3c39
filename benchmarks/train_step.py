"""Experiment: what bfloat16 autocast and torch.compile buy a training step (benchmarks/README.md).

    python benchmarks/train_step.py [--config small|base|PATH.json ...] [--rounds 5] [--steps 3]
        [--device cpu|cuda] [--precisions fp32,bf16] [--compile]

Times ``Learner.train_step`` (the step ``diffwave train`` runs: forward, L1 loss, backward,
gradient clipping, Adam, the weight average) in each variant on the same network and batch, in
interleaved rounds, and prints seconds per step, steps per second, the paired speed-up over the
first variant and the arithmetic rate reached. FLOPs per step are counted, not assumed: forward
FLOPs per output sample come from the same count as ``step_cost.py`` (convolutions only, which
carry over 99 % of them), times three for forward + backward, times the batch. ``--compile``
adds each precision again with ``diffwave train --compile`` (its compilation, on the first
step, is reported apart and not timed into the rounds).

Why it matters: steps per hour is what limits a model's quality when training time is scarce
(the CPU that trained the shipped default model; a GPU lent for minutes at a time). On CPUs with
AVX512-BF16 or AMX, bfloat16 dot products run at twice the float32 rate or more; on a GPU a step
of the base model is expected to be bound by the memory traffic of its unfused elementwise
operators rather than by arithmetic, which is what compiling (fused operators) addresses. The
weights, the optimizer and the loss stay float32 in every variant.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from interleaved import paired_speedup, print_table, time_interleaved  # this folder is on sys.path when run as a script

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


def make_learner(config: DiffWaveConfig, precision: str, device: str, compiled: bool = False) -> Learner:
    options = TrainOptions(model_dir=Path("."), data_dirs=(), precision=precision, device=device, compile=compiled)
    return Learner(config, options, DistContext(), torch.device(device))


def synchronize(device: str) -> None:
    """Wait for the GPU: a CUDA call returns when its kernels are queued, not when they ran."""
    if device == "cuda":
        torch.cuda.synchronize()


def make_batch(config: DiffWaveConfig) -> Batch:
    generator = torch.Generator().manual_seed(0)
    frames, hop = config.train.crop_mel_frames, config.features.hop_samples
    audio = 0.3 * torch.randn(config.train.batch_size, frames * hop, generator=generator)
    spectrogram = torch.rand(config.train.batch_size, config.features.n_mels, frames, generator=generator)
    return Batch(audio, spectrogram)


def bench(
    config: DiffWaveConfig, name: str, rounds: int, steps: int, device: str, precisions: list[str], compiled: bool
) -> list[tuple[str, ...]]:
    batch = make_batch(config)
    variants = [(p, False) for p in precisions] + ([(p, True) for p in precisions] if compiled else [])
    learners = {f"{p}{' compiled' if c else ''}": make_learner(config, p, device, c) for p, c in variants}

    def run(learner: Learner) -> None:
        for _ in range(steps):
            learner.train_step(batch)
        synchronize(device)

    warm_up = {}
    for label, learner in learners.items():  # kernel choice (oneDNN, cuDNN) and compilation
        started = time.perf_counter()
        run(learner)
        warm_up[label] = time.perf_counter() - started
    times = time_interleaved({label: (lambda lr=lr: run(lr)) for label, lr in learners.items()}, rounds)
    flops = 3 * conv_flops_per_sample(config) * batch.audio.numel()
    reference = next(iter(times))
    rows = []
    for label, values in times.items():
        per_step = statistics.median(values) / steps
        ratio = paired_speedup(times[reference], values)
        rows.append((name, label, f"{per_step * 1e3:.1f}", f"{1 / per_step:.2f}", f"{batch.audio.numel() / per_step / 1e3:.0f}",
                     f"{ratio:.2f}×", f"{flops / per_step / 1e9:.0f}", f"{warm_up[label]:.1f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="small, base or a JSON of params keys (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed call")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per step (the shipped model's 8; lmnt's base 16)")
    parser.add_argument("--crop-frames", type=int, default=32, help="mel frames per crop (the shipped model's 32; lmnt's base 62)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16 (CUDA only)")
    parser.add_argument("--compile", action="store_true", help="also time each precision with diffwave train --compile")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precisions.split(",")
    header = ("config", "variant", "ms/step", "steps/s", "k samples/s", f"vs {precisions[0]}", "GFLOP/s", "warm-up s")
    rows = []
    for name in args.config or ["small", "base"]:
        config = load_config(name, args.batch_size, args.crop_frames)
        rows += bench(config, name, args.rounds, args.steps, args.device, precisions, args.compile)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"training step on {where}, torch {torch.__version__}, batch {args.batch_size} × {args.crop_frames} frames, "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps")
    print_table(header, rows)


if __name__ == "__main__":
    main()
