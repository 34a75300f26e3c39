"""Copy a trained checkpoint into the package as the default model (weights only), with its loss curve.

    python scripts/ship_default_model.py RUN_DIR [--sample HELDOUT.wav] [--loss-plot PNG | --no-loss-plot] [--force]

Writes diffwave/assets/default/weights.pt (step, model, params: no optimizer state, so the
file stays small), the demo sample's spectrogram computed with the new model's features (from
--sample, which is copied in as the demo input, or else from the sample already shipped; kept as
it is when only float rounding would change it), and models/loss.png (or --loss-plot) from the
run's TensorBoard scalars.

Everything is read and checked before anything is written (a sample at another rate, a run with
no scalars, a file over the 16 MB the package allows), and each file is replaced atomically, so
a refused or failed call leaves the shipped model as it was.
"""

from __future__ import annotations

import argparse
import glob
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from diffwave.audio import AudioError, read_wav
from diffwave.checkpoint import Checkpoint, CheckpointError, inference_checkpoint, resolve_checkpoint_path
from diffwave.default_model import ASSETS, SAMPLE_SPEC, SAMPLE_WAV, WEIGHTS
from diffwave.features import log_mel_spectrogram
from runtime.bundle import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
#: The issue's limit for the weights file inside the package.
MAX_WEIGHTS_BYTES = 16 * 1024 * 1024
#: Largest difference (log-mel units) at which the shipped sample spectrogram counts as unchanged.
#: Recomputing it on another host differs by float rounding alone (6.4e-6 measured at stop 40); a
#: change of features moves it by orders of magnitude more, or changes its shape.
SPEC_KEEP_TOLERANCE = 1e-4


class ShipError(RuntimeError):
    """One line: why nothing was shipped."""


@dataclass(frozen=True)
class Shipment:
    """Every file the call will write, as bytes, prepared before any of them is written."""

    ckpt: Checkpoint
    label: str
    weights: bytes
    sample_wav: Optional[bytes]  #: None keeps the shipped wav
    sample_spec: bytes
    spec_shape: tuple[int, ...]


def weights_payload(run: Path) -> tuple[Checkpoint, str, bytes]:
    """The weights inference uses (the average when the run kept one), one set, no optimizer state."""
    ckpt, slim = inference_checkpoint(run)
    buf = io.BytesIO()
    torch.save(slim.to_dict(), buf)
    return ckpt, slim.inference_label, buf.getvalue()


def ship_weights(run: Path) -> Checkpoint:
    ckpt, label, payload = weights_payload(run)
    install_weights(run, label, payload)
    return ckpt


def install_weights(run: Path, label: str, payload: bytes) -> None:
    ASSETS.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(WEIGHTS, payload)
    print(f"{resolve_checkpoint_path(run)} ({label}) -> {WEIGHTS} ({len(payload) / 1e6:.1f} MB)")


def prepare(run: Path, sample: Optional[Path], force: bool) -> Shipment:
    ckpt, label, payload = weights_payload(run)
    if len(payload) > MAX_WEIGHTS_BYTES and not force:
        raise ShipError(f"{run}: the weights come to {len(payload) / 2**20:.1f} MiB, over the package's "
                        f"{MAX_WEIGHTS_BYTES / 2**20:.0f} MiB (pass --force to ship them anyway)")
    features = ckpt.config.features
    source = sample or SAMPLE_WAV
    if not source.is_file():
        raise ShipError(f"{source}: no demo sample to compute the spectrogram from (pass --sample HELDOUT.wav)")
    wav_bytes = source.read_bytes()  # read before anything is written: --sample may be the shipped file itself
    audio = read_wav(source, features.sample_rate)  # another rate is refused here, not after the weights are replaced
    spec = log_mel_spectrogram(audio, features).numpy().astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, spec)
    return Shipment(ckpt, label, payload, wav_bytes if sample else None, buf.getvalue(), tuple(spec.shape))


def same_spectrogram(path: Path, new: bytes) -> bool:
    """Whether the spectrogram at ``path`` equals ``new`` up to float rounding (so rewriting it would only add noise to git)."""
    try:
        old = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return False
    fresh = np.load(io.BytesIO(new))
    return old.shape == fresh.shape and old.dtype == fresh.dtype and bool(
        np.all(np.abs(old - fresh) <= SPEC_KEEP_TOLERANCE))


def read_scalars(run: Path, tags: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(steps, values) of each TensorBoard scalar over every events file of the run, by step (each file read once)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for events in sorted(glob.glob(str(run / "events.out.tfevents.*"))):
        acc = EventAccumulator(events, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in set(tags) & set(acc.Tags()["scalars"]):
            points[tag].update((e.step, e.value) for e in acc.Scalars(tag))  # a later sitting overwrites a purged one
    return {tag: (np.array(sorted(p)), np.array([p[s] for s in sorted(p)])) for tag, p in points.items()}


def loss_plot_png(run: Path, extra_term: bool = False) -> tuple[bytes, int, int]:
    """The PNG of the training loss (one batch per point) and, when the run had --valid, the held-out loss.

    ``extra_term``: the run trained with spectral_loss_weight > 0, so its training loss includes
    that term (the held-out loss is L1 on ε alone). Returns (png, training points, held-out points).
    """
    scalars = read_scalars(run, ("train/loss", "valid/loss"))
    steps, values = scalars["train/loss"]
    valid_steps, valid_values = scalars["valid/loss"]
    if not len(steps):
        raise ShipError(f"{run}: no TensorBoard training loss to plot (copy the run's events.out.tfevents.* files "
                        "beside the checkpoint, or pass --no-loss-plot to keep the plot as it is)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, values, lw=0.5, alpha=0.4, label="training batch")
    if len(values) >= 40:  # one batch of 8 crops is noisy: a running mean over 20 logged points
        kernel = np.ones(20) / 20
        ax.plot(steps[19:], np.convolve(values, kernel, mode="valid"), lw=1.2, label="training, running mean of 20")
    if len(valid_steps):
        ax.plot(valid_steps, valid_values, "o-", ms=3, lw=1.2, label="held-out (fixed crops and noise, 8 levels)")
    ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (L1 on ε + extra terms)" if extra_term else "L1 loss on ε")
    ax.set_yscale("log")
    ax.set_title("default model: training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    return buf.getvalue(), len(steps), len(valid_steps)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run directory (or a .pt checkpoint inside it)")
    parser.add_argument("--sample", type=Path, help="held-out wav to ship as the demo input (default: keep the shipped one)")
    parser.add_argument(
        "--loss-plot", type=Path, default=ROOT / "models" / "loss.png",
        help="where the run's loss curve goes (a fine-tune of the shipped model can keep the base run's curve)",
    )
    parser.add_argument("--no-loss-plot", action="store_true", help="leave the loss plot as it is")
    parser.add_argument("--force", action="store_true", help=f"ship weights over {MAX_WEIGHTS_BYTES >> 20} MiB")
    args = parser.parse_args(argv)
    run_dir = args.run if args.run.is_dir() else args.run.parent
    try:
        shipment = prepare(args.run, args.sample, args.force)
        plot = None
        if not args.no_loss_plot:
            plot = loss_plot_png(run_dir, extra_term=shipment.ckpt.config.train.spectral_loss_weight > 0)
    except (ShipError, CheckpointError, AudioError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ASSETS.mkdir(parents=True, exist_ok=True)
    if shipment.sample_wav is not None:
        write_bytes_atomic(SAMPLE_WAV, shipment.sample_wav)
        print(f"{args.sample} -> {SAMPLE_WAV}")
    if shipment.sample_wav is None and same_spectrogram(SAMPLE_SPEC, shipment.sample_spec):
        print(f"{SAMPLE_SPEC.name} kept: the new model's features give it again (within {SPEC_KEEP_TOLERANCE:g})")
    else:
        write_bytes_atomic(SAMPLE_SPEC, shipment.sample_spec)
        print(f"{SAMPLE_SPEC.name} {shipment.spec_shape}, computed with the new model's features")
    if plot is not None:
        png, training, held_out = plot
        write_bytes_atomic(args.loss_plot, png)
        print(f"loss curve ({training} training, {held_out} held-out points) -> {args.loss_plot}")
    install_weights(args.run, shipment.label, shipment.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
