"""Copy a trained checkpoint into the package as the default model (weights only), with its loss curve.

    python scripts/ship_default_model.py RUN_DIR [--sample HELDOUT.wav] [--loss-plot PNG]

Writes diffwave/assets/default/weights.pt (step, model, params: no optimizer state, so the
file stays small) and models/loss.png (or --loss-plot) from the run's TensorBoard scalars. With --sample,
also copies a held-out wav and its spectrogram (computed by our feature code) as the demo input.
"""

from __future__ import annotations

import argparse
import glob
import shutil
from pathlib import Path

import numpy as np
import torch

from diffwave.audio import read_wav
from diffwave.checkpoint import Checkpoint, inference_checkpoint, resolve_checkpoint_path
from diffwave.default_model import ASSETS, SAMPLE_SPEC, SAMPLE_WAV, WEIGHTS
from diffwave.features import log_mel_spectrogram
from runtime.bundle import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]


def ship_weights(run: Path) -> Checkpoint:
    # The weights inference uses (the average when the run kept one), one set, no optimizer state.
    ckpt, slim = inference_checkpoint(run)
    ASSETS.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    torch.save(slim.to_dict(), buf)
    write_bytes_atomic(WEIGHTS, buf.getvalue())
    print(f"{resolve_checkpoint_path(run)} ({slim.inference_label}) -> {WEIGHTS} ({WEIGHTS.stat().st_size / 1e6:.1f} MB)")
    return ckpt


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


def plot_loss(run: Path, out: Path, extra_term: bool = False) -> None:
    """Training loss (one batch per point) and, when the run had --valid, the held-out loss.

    ``extra_term``: the run trained with spectral_loss_weight > 0, so its training loss includes
    that term (the held-out loss is L1 on ε alone).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scalars = read_scalars(run, ("train/loss", "valid/loss"))
    steps, values = scalars["train/loss"]
    valid_steps, valid_values = scalars["valid/loss"]
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
    fig.savefig(out, dpi=100)
    print(f"loss curve ({len(steps)} training, {len(valid_steps)} held-out points) -> {out}")


def ship_sample(wav: Path, sample_rate: int, features) -> None:
    shutil.copyfile(wav, SAMPLE_WAV)
    spec = log_mel_spectrogram(read_wav(wav, sample_rate), features).numpy().astype(np.float32)
    np.save(SAMPLE_SPEC, spec)
    print(f"{wav} -> {SAMPLE_WAV} + {SAMPLE_SPEC.name} {spec.shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run directory (or a .pt checkpoint inside it)")
    parser.add_argument("--sample", type=Path, help="held-out wav to ship as the demo input")
    parser.add_argument(
        "--loss-plot", type=Path, default=ROOT / "models" / "loss.png",
        help="where the run's loss curve goes (a fine-tune of the shipped model can keep the base run's curve)",
    )
    args = parser.parse_args()
    run_dir = args.run if args.run.is_dir() else args.run.parent
    ckpt = ship_weights(args.run)
    plot_loss(run_dir, args.loss_plot, extra_term=ckpt.config.train.spectral_loss_weight > 0)
    if args.sample:
        config = ckpt.config
        ship_sample(args.sample, config.features.sample_rate, config.features)


if __name__ == "__main__":
    main()
