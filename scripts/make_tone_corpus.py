"""Write a corpus of voiced-speech-like harmonic tones: a sanity check that training can make harmonics.

    python scripts/make_tone_corpus.py OUT_DIR [--train 300] [--heldout 12] [--seconds 3] [--seed 0]

Writes OUT_DIR/train/NNNN.wav and OUT_DIR/heldout/NNNN.wav (22 050 Hz, 16-bit). Each file is a
harmonic series on a smoothly gliding f0 (90-260 Hz), shaped by three random formant-like
resonances and cut into syllable-like bursts separated by digital silence.

Why: speech makes it hard to tell whether a vocoder that outputs shaped noise is under-trained
or broken. These files hold nothing but harmonics, so a network that has learnt anything about
periodicity shows harmonic lines on them first (models/README.md, stop 12: the 12 x 32 CPU
network shows none after 5500 steps; a GPU session can run the base network on them for a few
minutes before spending its budget on the espeak-ng corpus). Deterministic given the seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from diffwave.audio import write_wav
from runtime.bundle import FeatureSpec

SAMPLE_RATE = FeatureSpec().sample_rate  # the rate the default features (and preprocess) expect
F0_RANGE_HZ = (90.0, 260.0)  # low male to high female voices
TOP_HZ = 7_500.0  # harmonics above this are dropped (the features stop at 8 kHz)
HARMONICS = 59  # per file before the TOP_HZ cut; the stop-12 corpus was made with these numbers
PEAK = 0.3


def harmonic_tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """One file: gliding f0, formant-weighted harmonics, syllable envelope; float32 with peak PEAK."""
    n = int(SAMPLE_RATE * seconds)
    t = np.arange(n) / SAMPLE_RATE
    knots = np.exp(rng.uniform(np.log(F0_RANGE_HZ[0]), np.log(F0_RANGE_HZ[1]), 6))
    f0 = np.interp(t, np.linspace(0.0, seconds, len(knots)), knots)
    phase = 2.0 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = rng.uniform([300.0, 900.0, 2200.0], [900.0, 2200.0, 3500.0])
    audio = np.zeros(n)
    for k in range(1, HARMONICS + 1):
        freq = k * f0
        resonance = sum(1.0 / (1.0 + ((freq - f) / 120.0) ** 2) for f in formants)
        gain = np.where(freq < TOP_HZ, resonance / np.sqrt(k), 0.0)
        audio += gain * np.sin(k * phase + rng.uniform(0.0, 2.0 * np.pi))
    audio *= syllable_envelope(rng, n)
    return (PEAK * audio / max(np.abs(audio).max(), 1e-9)).astype(np.float32)


def syllable_envelope(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bursts of 0.25-0.7 s with 0.08-0.3 s of exact zeros between them."""
    envelope = np.zeros(n)
    pos = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
    while pos < n:
        length = int(rng.uniform(0.25, 0.7) * SAMPLE_RATE)
        burst = np.sqrt(np.hanning(length))
        envelope[pos : pos + length] = burst[: max(0, min(length, n - pos))]
        pos += length + int(rng.uniform(0.08, 0.3) * SAMPLE_RATE)
    return envelope


def make_tone_corpus(out: Path, train: int = 300, heldout: int = 12, seconds: float = 3.0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("heldout", heldout)):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_wav(folder / f"{i:04d}.wav", harmonic_tone(rng, seconds), SAMPLE_RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write train/ and heldout/ into")
    parser.add_argument("--train", type=int, default=300, help="training files (default 300)")
    parser.add_argument("--heldout", type=int, default=12, help="held-out files (default 12)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each file (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    make_tone_corpus(args.out, args.train, args.heldout, args.seconds, args.seed)
    print(f"wrote {args.train} training and {args.heldout} held-out files under {args.out}")


if __name__ == "__main__":
    main()
