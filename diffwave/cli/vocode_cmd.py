"""`diffwave vocode`: spectrograms (.npy) or wavs (copy-synthesis) to wavs, through any backend.

Thin on purpose: it reads and checks every input first (so a bad file stops the run before
anything is written), then hands batches to :class:`runtime.Vocoder` and writes each result
atomically. Exit codes: 1 bad input or model, 2 bad usage, 3 this machine cannot run the
model (TensorRT absent, no GPU, a GPU the plan does not support).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from .app import EXIT_BAD_INPUT, EXIT_CANNOT_RUN, EXIT_USAGE, app, fail, stop_signals_end_with
from .steps_option import STEPS_HELP, parse_steps


@dataclass
class Job:
    """One input file, loaded and checked, and where its audio goes."""

    source: Path
    spectrogram: np.ndarray  #: float32 [n_mels, frames]
    output: Path


@app.command("vocode")
def vocode_command(
    inputs: Optional[list[Path]] = typer.Argument(
        None, help="Spectrograms (.npy, \\[n_mels, frames] or \\[1, n_mels, frames]) or .wav files (copy-synthesis)."
    ),
    out_dir: Path = typer.Option(..., "--output", "-o", help="Folder for the wavs (created if missing).", file_okay=False),
    engine: Optional[Path] = typer.Option(None, "--engine", help="TensorRT plan (model.plan / model.rtx.plan) with model.json beside it."),
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="ONNX step graph (model.onnx) with model.json beside it: ONNX Runtime."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Training checkpoint (.pt or model directory): PyTorch."),
    steps: str = typer.Option("fast", "--steps", help=STEPS_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Reproducible noise: input i (in the order given) uses seed+i."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1, help="Inputs per network call (results do not depend on it)."),
    float_output: bool = typer.Option(False, "--float", help="Write 32-bit float wavs instead of 16-bit PCM."),
    seconds: Optional[float] = typer.Option(
        None, "--seconds", min=0.0, help="Unconditional models: synthesise clips of this length from noise (no inputs)."
    ),
    count: int = typer.Option(1, "--count", min=1, help="With --seconds: how many clips (sample-000.wav, …)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (--engine always runs on the GPU)."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="ONNX Runtime on CPU: intra-op threads (default: one per core)."
    ),
    spinning: bool = typer.Option(
        False, "--spinning/--no-spinning", help="ONNX Runtime on CPU: let idle threads spin-wait between operators, "
        "about 6 % faster on an otherwise idle machine, slower when the cores are shared (off by default)."
    ),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames", min=1, help="Frames per network call (default 512 on CPU, 2048 on GPU); longer inputs are chunked exactly, bounding memory."
    ),
) -> None:
    """Vocode spectrograms or wavs with a TensorRT plan, an ONNX graph or a checkpoint.

    A .wav input becomes a spectrogram through model.json's feature preset (copy-synthesis).
    Each output is OUT/<name>.wav with frames × hop samples, written atomically.
    Exit codes: 1 bad input or model, 2 bad usage, 3 this machine cannot run the model.
    """
    from runtime import DeviceUnsupported, Vocoder, VocoderError
    from runtime.bundle import BundleError
    from runtime.errors import NonFiniteOutput
    from runtime.trt_target import TensorRTMissing

    from diffwave.audio import AudioError

    chosen = [p for p in (engine, onnx, checkpoint) if p is not None]
    if len(chosen) != 1:
        raise fail("give exactly one of --engine, --onnx or --checkpoint", code=EXIT_USAGE)
    if seconds is None and not inputs:
        raise fail("no inputs: give .npy/.wav files, or --seconds for an unconditional model", code=EXIT_USAGE)
    if seconds is not None and inputs:
        raise fail("--seconds synthesises from noise alone: give no input files with it", code=EXIT_USAGE)
    schedule = parse_steps(steps)

    with stop_signals_end_with("every wav written so far is complete"):
        try:
            vocoder = Vocoder.load(chosen[0], device=device, threads=threads, spinning=spinning, max_frames=max_frames)
            vocoder.schedule(schedule)  # an unknown schedule fails before any input is read
            if seconds is not None:
                out_dir.mkdir(parents=True, exist_ok=True)  # a path through a file fails here, before any work
                produced = _generate(vocoder, out_dir, seconds, count, batch_size, schedule, seed, float_output)
            else:
                jobs = _load_inputs(inputs or [], out_dir, vocoder)
                out_dir.mkdir(parents=True, exist_ok=True)  # a path through a file fails here, before any work
                produced = _vocode(vocoder, jobs, batch_size, schedule, seed, float_output)
        except (TensorRTMissing, DeviceUnsupported) as exc:
            raise fail(str(exc), code=EXIT_CANNOT_RUN) from None
        except NonFiniteOutput as exc:  # the model is at fault, not the input: name it
            raise fail(f"{chosen[0]}: {exc}", code=EXIT_BAD_INPUT) from None
        except (VocoderError, BundleError, AudioError) as exc:
            raise fail(str(exc), code=EXIT_BAD_INPUT) from None
    files, audio_seconds, wall = produced
    rtf = wall / audio_seconds if audio_seconds > 0 else float("nan")
    typer.echo(
        f"{files} file(s), {audio_seconds:.2f} s of audio in {wall:.2f} s "
        f"(real-time factor {rtf:.3f}) with {vocoder.describe()} -> {out_dir}"
    )


def _output_name(source: Path) -> str:
    name = source.name
    for suffix in (".spec.npy", ".npy"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name if name.endswith(".wav") else name + ".wav"


def _load_inputs(inputs: list[Path], out_dir: Path, vocoder) -> list[Job]:
    """Read and check every input before anything is vocoded or written."""
    from runtime import VocoderError
    from runtime.inputs import check_spectrogram, load_npy

    from diffwave.audio import feature_min_samples, read_wav
    from diffwave.features import log_mel_spectrogram

    if vocoder.unconditional:
        raise VocoderError("this model is unconditional: use --seconds instead of input files")
    jobs: list[Job] = []
    targets: dict[Path, Path] = {}
    for source in inputs:
        if not source.is_file():
            raise VocoderError(f"{source}: no such file")
        if source.suffix == ".npy":
            spec = load_npy(source)
            if spec.ndim == 3 and spec.shape[0] != 1:
                raise VocoderError(f"{source}: holds a batch of {spec.shape[0]} spectrograms; expected [n_mels, frames] or [1, n_mels, frames]")
        elif source.suffix == ".wav":
            audio = read_wav(source, vocoder.sample_rate, feature_min_samples(vocoder.metadata.features.n_fft))
            spec = log_mel_spectrogram(audio, vocoder.metadata.features).numpy()
        else:
            raise VocoderError(f"{source}: unsupported input (expected a .npy spectrogram or a .wav file)")
        try:
            checked = check_spectrogram(spec, vocoder.n_mels)
        except VocoderError as exc:
            raise VocoderError(f"{source}: {exc}") from None
        try:
            vocoder.plan([checked.lengths[0]])  # e.g. shorter than a plan's profile allows
        except VocoderError as exc:
            raise VocoderError(f"{source}: {exc}") from None
        output = out_dir / _output_name(source)
        if output.resolve() == source.resolve():
            raise VocoderError(f"{source}: output would overwrite this input; choose another --output folder")
        recording = source.with_name(source.name[: -len(".spec.npy")]) if source.name.endswith(".wav.spec.npy") else None
        if recording is not None and recording.exists() and output.resolve() == recording.resolve():
            raise VocoderError(f"{source}: output would overwrite the recording it was computed from ({output}); choose another --output folder")
        if output.is_dir():
            raise VocoderError(f"{source}: its output {output} is an existing folder")
        if output in targets:
            raise VocoderError(f"{source} and {targets[output]} would both be written to {output}")
        targets[output] = source
        jobs.append(Job(source, np.asarray(checked.spectrogram[0]), output))
    return jobs


def _vocode(vocoder, jobs: list[Job], batch_size: int, steps, seed: Optional[int], float_output: bool):
    from tqdm import tqdm

    from diffwave.audio import write_wav

    subtype = "FLOAT" if float_output else "PCM_16"
    total_seconds = sum(j.spectrogram.shape[-1] * vocoder.hop_samples for j in jobs) / vocoder.sample_rate
    start = time.perf_counter()
    with tqdm(total=round(total_seconds, 2), unit="s audio", desc="vocode", leave=False) as bar:
        for first in range(0, len(jobs), batch_size):
            batch = jobs[first : first + batch_size]
            lengths = [j.spectrogram.shape[-1] for j in batch]
            stacked = np.zeros((len(batch), vocoder.n_mels, max(lengths)), dtype=np.float32)
            for i, job in enumerate(batch):
                stacked[i, :, : lengths[i]] = job.spectrogram
            seeds = None if seed is None else [seed + first + i for i in range(len(batch))]
            audios = vocoder(stacked, steps=steps, seed=seeds, lengths=lengths)
            for job, audio in zip(batch, audios):
                write_wav(job.output, audio, vocoder.sample_rate, subtype=subtype)
                bar.update(round(len(audio) / vocoder.sample_rate, 2))
    return len(jobs), total_seconds, time.perf_counter() - start


def _generate(vocoder, out_dir: Path, seconds: float, count: int, batch_size: int, steps, seed, float_output: bool):
    from tqdm import tqdm

    from diffwave.audio import write_wav

    from runtime import VocoderError

    if not vocoder.unconditional:
        raise VocoderError("--seconds is for unconditional models; this model needs a spectrogram (give .npy/.wav inputs)")
    subtype = "FLOAT" if float_output else "PCM_16"
    start = time.perf_counter()
    total = 0.0
    with tqdm(total=count, unit="clip", desc="generate", leave=False) as bar:
        for first in range(0, count, batch_size):
            batch = min(batch_size, count - first)
            seeds = None if seed is None else [seed + first + i for i in range(batch)]
            clips = vocoder.generate(seconds, batch=batch, steps=steps, seed=seeds)
            for i, clip in enumerate(clips):
                write_wav(out_dir / f"sample-{first + i:03d}.wav", clip, vocoder.sample_rate, subtype=subtype)
                total += len(clip) / vocoder.sample_rate
                bar.update(1)
    return count, total, time.perf_counter() - start
