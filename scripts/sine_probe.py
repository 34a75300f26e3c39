"""A quick check that a network can hold a partial's phase: train on one sine, measure its line.

    python scripts/sine_probe.py make DIR [--hz 220] [--train 200] [--heldout 4] [--seconds 2] [--seed 0]
    diffwave preprocess DIR/train DIR/heldout
    diffwave train RUN DIR/train --config CONFIG.json --checkpoint-every 250 --max-steps 500
    python scripts/sine_probe.py score RUN/weights-500.pt DIR [--seeds 3]

By default every file is the same constant sine (random phase, amplitude 0.3), so the spectrogram
tells the network nothing it could not learn unconditionally in a few hundred steps; what is left
is whether it can keep one phase over the whole clip. ``score`` vocodes the first held-out
spectrogram with the fast schedule and prints the share of the output's power within +-20 Hz of
the sine (a perfect vocoder: about 1; white noise: under 0.01).

With ``make --hz-range 100 300`` every file gets its own constant pitch instead (log-uniform in the
range, listed in DIR/pitches.json), so only the spectrogram says which: ``score`` then vocodes
every held-out file and reports, per file, its pitch, the output's strongest frequency and the
share of power within +-8 % of the pitch. This asks the other half of making a harmonic: does the
pitch come through the conditioning? A network that ignores the mel makes the same line for all.

Why (models/README.md, stop 18): a network sees +-R samples per reverse step (R = the sum of its
dilations, 126 for the 12-layer cycle-6 CPU network), so it cannot agree on a phase with samples
further away, and a partial it makes wanders in frequency. Measured here on 220 Hz: cycle 6 put
0.44/0.53/0.61 of the power in the band at steps 250/500/1000, cycle 10 (R = 1026, same FLOPs)
0.96/0.98 at steps 250/500. Harmonics of a voice are f0 apart, so a line as wide as cycle 6's
merges them, which is the "no harmonic lines" of every CPU model's spectrogram. On 100-300 Hz
pitches (stop 19), a network trained from scratch ignores the mel for its first 2000 steps; one
started from speech weights makes pitch-dependent lines within 500.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

AMPLITUDE = 0.3
BAND_HZ = 20.0  #: half-width of the band counted as the line
#: Half-width of the band around each file's own pitch, relative: 8 % is about 1.3 semitones, a
#: little wider than one mel band's spacing at 100-300 Hz, so a line in the right band counts.
PITCH_BAND = 0.08
PITCHES = "pitches.json"  #: the pitch of every file `make --hz-range` wrote, by path under DIR
EDGE = 2048  #: samples dropped at each end (the first and last frames see padding)


def sine_clip(rng: np.random.Generator, hz: float, seconds: float, sample_rate: int) -> np.ndarray:
    """``seconds`` of a ``hz`` sine with a random phase, float32 peak ``AMPLITUDE``."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (AMPLITUDE * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))).astype(np.float32)


def power_spectrum(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin frequencies and power of the Hann-windowed spectrum of the whole of ``audio``."""
    audio = np.asarray(audio, dtype=np.float64)
    power = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    return np.fft.rfftfreq(len(audio), 1.0 / sample_rate), power


def line_share(audio: np.ndarray, hz: float, sample_rate: int, band_hz: float = BAND_HZ) -> float:
    """Share of the power spectrum of ``audio`` within ``hz`` +- ``band_hz``."""
    freqs, power = power_spectrum(audio, sample_rate)
    total = power.sum()
    return float(power[np.abs(freqs - hz) <= band_hz].sum() / total) if total > 0 else 0.0


def peak_hz(audio: np.ndarray, sample_rate: int) -> float:
    """The frequency of the strongest bin of the power spectrum of ``audio``."""
    freqs, power = power_spectrum(audio, sample_rate)
    return float(freqs[np.argmax(power)])


def make(out: Path, hz: float, train: int, heldout: int, seconds: float, seed: int,
         hz_range: tuple[float, float] | None = None) -> None:
    from diffwave.audio import write_wav
    from runtime.bundle import FeatureSpec

    sample_rate = FeatureSpec().sample_rate
    rng = np.random.default_rng(seed)
    pitches: dict[str, float] = {}
    for split, count in (("train", train), ("heldout", heldout)):
        for i in range(count):
            name = f"{split}/{i:04d}.wav"
            pitch = hz if hz_range is None else float(np.exp(rng.uniform(np.log(hz_range[0]), np.log(hz_range[1]))))
            write_wav(out / name, sine_clip(rng, pitch, seconds, sample_rate), sample_rate)
            pitches[name] = pitch
    if hz_range is None:
        print(f"wrote {train} training and {heldout} held-out files of a {hz:g} Hz sine under {out}")
    else:
        (out / PITCHES).write_text(json.dumps(pitches, indent=0) + "\n")
        print(f"wrote {train} training and {heldout} held-out files of sines at {hz_range[0]:g}-{hz_range[1]:g} Hz "
              f"(one random pitch each, listed in {out / PITCHES}) under {out}")


def _heldout_spectrograms(corpus: Path) -> list[Path]:
    spectrograms = sorted((corpus / "heldout").glob("*.wav.spec.npy"))
    if not spectrograms:
        sys.exit(f"error: {corpus / 'heldout'}: no .wav.spec.npy files (run diffwave preprocess on it first)")
    return spectrograms


def _vocoded(features: np.ndarray, checkpoint: Path, seed: int) -> tuple[np.ndarray, int]:
    """The fast schedule's output for ``features``, its padded ends cut off."""
    from diffwave.inference import predict

    audio, sample_rate = predict(features, checkpoint, fast_sampling=True, seed=seed)
    return audio[0].cpu().numpy()[EDGE:-EDGE], sample_rate


def score(checkpoint: Path, corpus: Path, hz: float, seeds: int) -> list[float]:
    import torch

    torch.set_num_threads(1)
    if (corpus / PITCHES).is_file():
        return score_pitches(checkpoint, corpus, seeds)
    features = np.load(_heldout_spectrograms(corpus)[0])
    shares = []
    for seed in range(seeds):
        audio, sample_rate = _vocoded(features, checkpoint, seed)
        shares.append(line_share(audio, hz, sample_rate))
    print(f"{checkpoint}: {np.mean(shares):.3f} of the power within {BAND_HZ:g} Hz of {hz:g} Hz "
          f"(seeds 0-{seeds - 1}: {min(shares):.3f}-{max(shares):.3f})")
    return shares


def score_pitches(checkpoint: Path, corpus: Path, seeds: int) -> list[float]:
    """Per held-out file (low to high pitch), the mean share within PITCH_BAND of its own pitch."""
    pitches = json.loads((corpus / PITCHES).read_text())
    files = []
    for spec_path in _heldout_spectrograms(corpus):
        name = f"heldout/{spec_path.name[: -len('.spec.npy')]}"
        if name not in pitches:
            sys.exit(f"error: {corpus / PITCHES}: no pitch for {name}")
        files.append((pitches[name], spec_path))
    shares, lines = [], []
    for pitch, spec_path in sorted(files):
        features = np.load(spec_path)
        outputs = [_vocoded(features, checkpoint, seed) for seed in range(seeds)]
        share = float(np.mean([line_share(audio, pitch, rate, PITCH_BAND * pitch) for audio, rate in outputs]))
        shares.append(share)
        lines.append(f"{pitch:.0f}->{peak_hz(*outputs[0]):.0f} ({share:.2f})")
    print(f"{checkpoint}: {np.mean(shares):.3f} of the power within {PITCH_BAND:.0%} of each file's pitch "
          f"(lowest file {min(shares):.3f}; seeds 0-{seeds - 1})")
    print("  pitch->strongest Hz (share), seed 0: " + " ".join(lines))
    return shares


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("make", help="write DIR/train and DIR/heldout")
    made.add_argument("out", type=Path)
    made.add_argument("--train", type=int, default=200, help="training files (default 200)")
    made.add_argument("--heldout", type=int, default=4, help="held-out files (default 4)")
    made.add_argument("--seconds", type=float, default=2.0, help="length of each file (default 2)")
    made.add_argument("--seed", type=int, default=0, help="random seed of the phases (default 0)")
    made.add_argument("--hz-range", type=float, nargs=2, metavar=("LO", "HI"),
                      help="one random constant pitch per file in this range (log-uniform) instead of --hz")
    scored = commands.add_parser(
        "score", help="share of a checkpoint's output power in the sine's band (each held-out file's own, for a --hz-range corpus)"
    )
    scored.add_argument("checkpoint", type=Path)
    scored.add_argument("corpus", type=Path, help="the folder `make` wrote (its heldout/ must be preprocessed)")
    scored.add_argument("--seeds", type=int, default=3, help="noise seeds to average (default 3)")
    for sub in (made, scored):
        sub.add_argument("--hz", type=float, default=220.0, help="the sine's frequency (default 220)")
    args = parser.parse_args(argv)
    if args.command == "make":
        if args.hz_range is not None and not 0 < args.hz_range[0] < args.hz_range[1]:
            parser.error(f"--hz-range {args.hz_range[0]:g} {args.hz_range[1]:g}: expected 0 < LO < HI")
        make(args.out, args.hz, args.train, args.heldout, args.seconds, args.seed, args.hz_range)
    else:
        from diffwave.checkpoint import CheckpointError

        try:
            score(args.checkpoint, args.corpus, args.hz, args.seeds)
        except CheckpointError as exc:
            sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
