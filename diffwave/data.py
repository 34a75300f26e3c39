"""Training data: find the usable records, cut random crops, batch them.

A *record* is one wav (plus, for a conditional model, its ``.wav.spec.npy`` from
``diffwave preprocess``). Each training example is a random crop of ``crop_mel_frames``
frames and the ``crop_mel_frames × hop`` samples aligned with them (unconditional models
crop ``audio_len`` raw samples instead).

Randomness is a pure function of (seed, epoch, position): the sampler hands the dataset
``(record, crop seed)`` keys, so the examples of step N are the same whether a run got
there in one go or was interrupted and resumed — and whatever the DataLoader's worker count.
The order itself comes from ``torch.utils.data.DistributedSampler``, so under DDP every
rank sees a disjoint share of each epoch.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from runtime.errors import first_line

from .audio import AudioError
from .config import DiffWaveConfig

SPEC_SUFFIX = ".spec.npy"


class DataError(ValueError):
    """The training data cannot be used (message names the folder or file and what is wrong)."""


def spec_path_for(wav: Path) -> Path:
    """``x.wav`` -> ``x.wav.spec.npy`` (lmnt's naming), beside the wav."""
    return wav.with_name(wav.name + SPEC_SUFFIX)


def is_hidden(path: Path, root: Path) -> bool:
    """A dot-name anywhere below ``root``: our atomic writes' temporaries (``.x.wav.abc123.wav``, left
    behind by a killed run), macOS's ``._x.wav`` resource forks, ``.ipynb_checkpoints`` copies."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_wavs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Every ``*.wav`` under the given folders (recursively, hidden names skipped) or given directly,
    sorted, no duplicates."""
    found: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.update(p for p in _walk_files(path) if p.suffix.lower() == ".wav" and not is_hidden(p, path))
        elif path.is_file() and path.suffix.lower() == ".wav":
            found.add(path)
        elif path.exists():
            raise DataError(f"{path}: not a folder or a .wav file")
        else:
            raise DataError(f"{path}: no such file or folder")
    return sorted(found)


def _walk_files(root: Path) -> Iterator[Path]:
    """Every file below ``root``, following symlinked folders (datasets are often assembled from
    them; ``Path.rglob`` skips them before Python 3.13) but entering each real folder once, so a
    link back up the tree cannot loop."""
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        for name in files:
            path = Path(folder, name)
            if path.is_file():
                yield path


@dataclass(frozen=True)
class Record:
    """One usable wav: where it is and how long it is (frames of its spectrogram, samples of audio)."""

    wav: Path
    samples: int
    frames: int  #: spectrogram frames (0 for an unconditional model, which has none)

    @property
    def spectrogram(self) -> Path:
        return spec_path_for(self.wav)


@dataclass(frozen=True)
class Inventory:
    """What :func:`scan` found: the records to train on and why the others were left out."""

    records: tuple[Record, ...]
    too_short: tuple[Path, ...] = ()
    not_preprocessed: tuple[Path, ...] = ()

    def summary(self) -> str:
        parts = [f"{len(self.records)} record{'' if len(self.records) == 1 else 's'}"]
        if self.too_short:
            parts.append(f"{len(self.too_short)} too short for one crop (skipped)")
        if self.not_preprocessed:
            parts.append(f"{len(self.not_preprocessed)} without {SPEC_SUFFIX} (skipped; run 'diffwave preprocess')")
        return ", ".join(parts)


def _check_feature_records(folders: Sequence[Path], features) -> None:
    """Refuse a folder whose spectrograms were made with other feature settings than the config's."""
    from .feature_record import RECORD_NAME, differences, read_record

    for folder in folders:
        recorded = read_record(folder)
        changed = differences(recorded, features) if recorded is not None else []
        if changed:
            raise DataError(
                f"{folder}: its spectrograms were made with other feature settings ({', '.join(changed[:3])}, "
                f"says {RECORD_NAME}): run 'diffwave preprocess' on it with this config"
            )


def scan(data_dirs: Sequence[str | os.PathLike], config: DiffWaveConfig) -> Inventory:
    """Find the records to train on; skip those too short for one crop; refuse inconsistent files.

    Conditional models need each wav's spectrogram: wavs without one are skipped (preprocess
    reports why it refused them), but a spectrogram whose band count or length does not fit
    its wav is an error, because it was made with other settings and would train silently wrong.
    """
    features = config.features
    wavs = find_wavs(data_dirs)
    if not wavs:
        raise DataError(f"no .wav files in {', '.join(str(d) for d in data_dirs)}")
    records: list[Record] = []
    too_short: list[Path] = []
    missing: list[Path] = []
    if not config.model.unconditional:
        _check_feature_records(sorted({wav.parent for wav in wavs}), features)
    for wav in wavs:
        spec_file = spec_path_for(wav)
        if not config.model.unconditional and not spec_file.is_file():
            missing.append(wav)
            continue
        try:
            info = sf.info(str(wav))
        except Exception as exc:  # soundfile raises several types for foreign files
            if config.model.unconditional:
                raise DataError(f"{wav}: unreadable audio ({first_line(exc)})") from None
            missing.append(wav)  # preprocess refused it too (its spectrogram is stale)
            continue
        if info.samplerate != features.sample_rate:
            raise DataError(f"{wav}: sample rate {info.samplerate} Hz, the config expects {features.sample_rate} Hz")
        if config.model.unconditional:
            if info.frames < config.train.audio_len:
                too_short.append(wav)
            else:
                records.append(Record(wav, info.frames, 0))
            continue
        n_mels, frames = _spectrogram_shape(spec_file)
        if n_mels != features.n_mels:
            raise DataError(f"{spec_file}: {n_mels} mel bands, the config expects {features.n_mels} (preprocess again)")
        if frames != features.frames_for(info.frames):
            raise DataError(
                f"{spec_file}: {frames} frames for {info.frames} samples, expected {features.frames_for(info.frames)} "
                f"(stale or made with another hop: preprocess again with --force)"
            )
        if frames < config.train.crop_mel_frames:
            too_short.append(wav)
        else:
            records.append(Record(wav, info.frames, frames))
    if not records:
        need = (
            f"{config.train.audio_len} samples" if config.model.unconditional else f"{config.train.crop_mel_frames} frames"
        )
        if missing and not too_short:
            raise DataError(
                f"none of the {len(wavs)} wav files in {', '.join(str(d) for d in data_dirs)} has a {SPEC_SUFFIX}: "
                f"run 'diffwave preprocess' on it first"
            )
        raise DataError(
            f"no usable records in {', '.join(str(d) for d in data_dirs)}: {len(too_short)} shorter than one crop "
            f"({need}), {len(missing)} not preprocessed"
        )
    return Inventory(tuple(records), tuple(too_short), tuple(missing))


def _spectrogram_shape(path: Path) -> tuple[int, int]:
    try:
        spec = np.load(path, mmap_mode="r")
    except Exception as exc:
        raise DataError(f"{path}: unreadable spectrogram ({first_line(exc)}); preprocess again with --force") from None
    if spec.ndim != 2:
        raise DataError(f"{path}: spectrogram of shape {spec.shape}, expected [n_mels, frames]")
    return int(spec.shape[0]), int(spec.shape[1])


# -- examples ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CropKey:
    """Which record to crop and the seed that places the crop (see the module docstring)."""

    index: int
    seed: tuple[int, ...]


@dataclass
class Example:
    audio: np.ndarray  #: float32 [crop samples]
    spectrogram: Optional[np.ndarray]  #: float32 [n_mels, crop frames], None when unconditional


@dataclass
class Batch:
    audio: torch.Tensor  #: [B, samples]
    spectrogram: Optional[torch.Tensor]  #: [B, n_mels, frames] or None

    def to(self, device: torch.device | str) -> "Batch":
        spec = None if self.spectrogram is None else self.spectrogram.to(device, non_blocking=True)
        return Batch(self.audio.to(device, non_blocking=True), spec)

    def pin_memory(self) -> "Batch":  # DataLoader(pin_memory=True) calls this on custom batch types
        spec = None if self.spectrogram is None else self.spectrogram.pin_memory()
        return Batch(self.audio.pin_memory(), spec)


class CropDataset(Dataset):
    """Random training crops of the records; indexed by :class:`CropKey` (or a plain index: fresh randomness)."""

    def __init__(self, records: Sequence[Record], config: DiffWaveConfig):
        if not records:
            raise DataError("no records to train on")
        self.records = list(records)
        self.config = config

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: CropKey | int) -> Example:
        if isinstance(key, CropKey):
            record, rng = self.records[key.index], np.random.default_rng(list(key.seed))
        else:
            record, rng = self.records[key], np.random.default_rng()
        if self.config.model.unconditional:
            return self._audio_crop(record, rng)
        return self._aligned_crop(record, rng)

    def _aligned_crop(self, record: Record, rng: np.random.Generator) -> Example:
        """``crop_mel_frames`` frames and the samples under them: frame f covers samples [f·hop, (f+1)·hop)."""
        crop, hop = self.config.train.crop_mel_frames, self.config.features.hop_samples
        start = int(rng.integers(0, record.frames - crop + 1))
        spec = np.ascontiguousarray(np.load(record.spectrogram, mmap_mode="r")[:, start : start + crop], dtype=np.float32)
        if not np.isfinite(spec).all():  # checked per crop: reading every file at every start would cost minutes
            raise DataError(f"{record.spectrogram}: NaN or inf in frames {start}..{start + crop - 1} (preprocess it again)")
        audio = self._read(record, start * hop, (start + crop) * hop)
        return Example(audio, spec)

    def _audio_crop(self, record: Record, rng: np.random.Generator) -> Example:
        length = self.config.train.audio_len
        start = int(rng.integers(0, record.samples - length + 1))
        return Example(self._read(record, start, start + length), None)

    def _read(self, record: Record, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as mono float32, zero-padded past the end (the last frame overhangs)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # stereo downmix: reported once by preprocess, not per crop
                audio, sr = sf.read(str(record.wav), start=start, stop=min(stop, record.samples), dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(f"{record.wav}: unreadable audio ({first_line(exc)})") from None
        audio = audio.mean(axis=1)
        if not np.isfinite(audio).all():
            raise AudioError(f"{record.wav}: NaN or inf in samples {start}..{stop - 1}")
        audio = np.clip(audio, -1.0, 1.0)
        out = np.zeros(stop - start, dtype=np.float32)
        out[: len(audio)] = audio
        return out


def collate(examples: Sequence[Example]) -> Batch:
    """Stack equal-length crops into a :class:`Batch`."""
    audio = torch.from_numpy(np.stack([e.audio for e in examples]))
    if examples[0].spectrogram is None:
        return Batch(audio, None)
    return Batch(audio, torch.from_numpy(np.stack([e.spectrogram for e in examples])))


# -- order ------------------------------------------------------------------------------

class CropBatchSampler(Sampler[list[CropKey]]):
    """Endless per-rank batches of :class:`CropKey`, resumable at any step.

    Each epoch is a ``DistributedSampler`` permutation (seeded by ``seed`` and the epoch)
    over at least ``global batch`` slots — a corpus smaller than one batch is repeated, as a
    whole number of copies, rather than yielding nothing. Step ``s`` of the run is batch
    ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch``, so ``start_step`` resumes
    exactly where a run stopped.
    """

    def __init__(self, num_records: int, global_batch: int, rank: int, world_size: int, seed: int, start_step: int = 0):
        if global_batch % world_size:
            raise DataError(f"batch size {global_batch} does not split evenly over {world_size} processes")
        self.num_records = num_records
        self.local_batch = global_batch // world_size
        self.rank, self.seed, self.start_step = rank, seed, start_step
        # Whole copies of the corpus: a corpus of 10 files in batches of 16 gets 20 slots, two per file,
        # so every file is drawn equally often (padding it to 16 slots would favour the first 6 twice over).
        slots = range(math.ceil(global_batch / num_records) * num_records)
        self.order = DistributedSampler(slots, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.steps_per_epoch = len(self.order) // self.local_batch

    def __iter__(self) -> Iterator[list[CropKey]]:
        step = self.start_step
        while True:
            epoch, offset = divmod(step, self.steps_per_epoch)
            self.order.set_epoch(epoch)
            slots = list(self.order)
            for position in range(offset * self.local_batch, self.steps_per_epoch * self.local_batch, self.local_batch):
                yield [
                    CropKey(slot % self.num_records, (self.seed, epoch, self.rank, position + i))
                    for i, slot in enumerate(slots[position : position + self.local_batch])
                ]
                step += 1
