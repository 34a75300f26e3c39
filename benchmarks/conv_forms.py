"""Probe: would a hand-written GEMM form of DiffWave's convolutions speed up CPU training?

    python benchmarks/conv_forms.py [--channels 32] [--batch 8] [--crop-frames 32] [--rounds 7]

A training step of the small CPU model spends about three quarters of its time in convolutions,
two thirds of that in their backward pass (torch.profiler, benchmarks/README.md), at a fraction of
the GEMM rate. This times forward + backward of one residual layer's dilated convolution
(C → 2C, kernel 3) and its 1×1 conditioner projection (80 mels → 2C) on a training batch, written
several exact ways, in interleaved rounds:

* ``F.conv1d``, oneDNN (what the model runs), and with oneDNN switched off;
* im2col + one GEMM, time-major (the three dilated taps side by side: [B·T, 3C] @ [3C, 2C]);
* im2col + one batched GEMM, channel-major ([2C, 3C] @ [B, 3C, T]);
* ``F.conv1d`` under bfloat16 autocast (``diffwave train --bf16``), for scale.

Each form is checked against ``F.conv1d`` before it is timed. The question is whether a second
code path for training (the export and checkpoints need the Conv1d one) would pay for itself.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from interleaved import paired_speedup, print_table, time_interleaved  # this folder is on sys.path when run as a script

N_MELS = 80


def dilated_forms(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, d: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Exact ways to compute conv1d(x, w, b, dilation=d, padding=d); x is [B, C, T], w is [2C, C, 3]."""
    batch, channels, length = x.shape
    x_time_major = x.detach().transpose(1, 2).contiguous().requires_grad_()

    def onednn() -> torch.Tensor:
        return F.conv1d(x, w, b, padding=d, dilation=d)

    def no_onednn() -> torch.Tensor:
        with torch.backends.mkldnn.flags(enabled=False):
            return F.conv1d(x, w, b, padding=d, dilation=d)

    def gemm_time_major() -> torch.Tensor:
        padded = F.pad(x_time_major, (0, 0, d, d))
        taps = torch.cat([padded[:, k * d:k * d + length] for k in range(3)], dim=2)
        weight = w.permute(2, 1, 0).reshape(3 * channels, -1)
        out = torch.addmm(b, taps.reshape(batch * length, 3 * channels), weight)
        return out.view(batch, length, -1).transpose(1, 2)

    def bmm_channel_major() -> torch.Tensor:
        padded = F.pad(x, (d, d))
        taps = torch.cat([padded[:, :, k * d:k * d + length] for k in range(3)], dim=1)
        weight = w.permute(0, 2, 1).reshape(w.shape[0], 3 * channels)
        return torch.baddbmm(b[None, :, None].expand(batch, -1, length), weight.expand(batch, -1, -1), taps)

    def bf16_autocast() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.conv1d(x, w, b, padding=d, dilation=d)

    return {"conv1d oneDNN": onednn, "conv1d, oneDNN off": no_onednn, "im2col GEMM, time-major": gemm_time_major,
            "im2col bmm, channel-major": bmm_channel_major, "conv1d bf16 autocast": bf16_autocast}


def projection_forms(s: torch.Tensor, w: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """Exact ways to compute conv1d(s, w) for a 1×1 kernel; s is [B, mels, T], w is [2C, mels, 1]."""
    batch, mels, length = s.shape
    s_time_major = s.transpose(1, 2).contiguous()

    def gemm_time_major() -> torch.Tensor:
        out = s_time_major.reshape(batch * length, mels) @ w[:, :, 0].t()
        return out.view(batch, length, -1).transpose(1, 2)

    return {"1×1 conv1d oneDNN": lambda: F.conv1d(s, w),
            "1×1 matmul, channel-major": lambda: w[:, :, 0] @ s,
            "1×1 GEMM, time-major": gemm_time_major}


def fwd_bwd(form: Callable[[], torch.Tensor], grad: torch.Tensor) -> Callable[[], None]:
    return lambda: form().backward(grad)


def check(forms: dict[str, Callable[[], torch.Tensor]]) -> dict[str, float]:
    """Relative max error of each form against the first, F.conv1d (float32 forms ~1e-6, bfloat16 ~4e-3)."""
    with torch.no_grad():
        reference = next(iter(forms.values()))()
        scale = reference.abs().max().item()
        return {name: (form().float() - reference).abs().max().item() / scale for name, form in forms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=32, help="residual channels (small 32, base 64)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop-frames", type=int, default=32, help="× hop 256 = samples per crop")
    parser.add_argument("--dilation", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    c, length = args.channels, args.crop_frames * 256
    x = torch.randn(args.batch, c, length, requires_grad=True)
    w = (torch.randn(2 * c, c, 3) / (3 * c) ** 0.5).requires_grad_()
    b = torch.randn(2 * c, requires_grad=True)
    s = torch.rand(args.batch, N_MELS, length)
    w1 = (torch.randn(2 * c, N_MELS, 1) / N_MELS ** 0.5).requires_grad_()
    grad = torch.randn(args.batch, 2 * c, length)

    # (forms, input channels × taps); each group's first form, F.conv1d, is its reference and baseline
    groups = [(dilated_forms(x, w, b, args.dilation), 3 * c), (projection_forms(s, w1), N_MELS)]
    forms = {name: form for group, _ in groups for name, form in group.items()}
    errors = {name: err for group, _ in groups for name, err in check(group).items()}
    calls = {name: fwd_bwd(form, grad) for name, form in forms.items()}
    for call in calls.values():  # oneDNN builds its backward primitives on the first call: keep that out of the rounds
        call()
    times = time_interleaved(calls, args.rounds)

    print(f"forward + backward, batch {args.batch} × {length} samples, C = {c}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    rows = []
    for group, fan_in in groups:
        flops = 3 * 2 * args.batch * length * 2 * c * fan_in  # forward + backward (×3) multiply-adds (×2)
        baseline = times[next(iter(group))]
        for name in group:
            seconds = statistics.median(times[name])
            rows.append((name, f"{seconds * 1e3:.1f}", f"{paired_speedup(baseline, times[name]):.2f}×",
                         f"{flops / seconds / 1e9:.0f}", f"{errors[name]:.1e}"))
    print_table(("form", "ms", "vs conv1d", "GFLOP/s", "max rel err"), rows)


if __name__ == "__main__":
    main()
