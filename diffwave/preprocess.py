"""``diffwave preprocess``: compute every wav's log-mel spectrogram once, before training.

Each ``x.wav`` gets ``x.wav.spec.npy`` (float32 [n_mels, frames], lmnt's layout) beside
it. Files are independent, so they are spread over worker processes. A bad file never
stops the others: it is reported with its reason at the end and the run exits non-zero.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from runtime.bundle import FeatureSpec, atomic_output, stale_temporaries

from . import interrupts
from .audio import AudioError, feature_min_samples, read_wav
from .data import find_wavs, spec_path_for
from .feature_record import read_record, remove_record, write_record


@dataclass(frozen=True)
class FileOutcome:
    wav: Path
    error: Optional[str] = None  #: one line: why this file was refused
    notes: tuple[str, ...] = ()  #: warnings worth showing (e.g. a stereo downmix)


@dataclass
class PreprocessReport:
    written: list[Path] = field(default_factory=list)
    up_to_date: list[Path] = field(default_factory=list)
    failed: list[FileOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary_lines(self) -> list[str]:
        lines = [f"{len(self.written)} written, {len(self.up_to_date)} up to date, {len(self.failed)} failed"]
        lines += [f"  {outcome.error}" for outcome in self.failed]
        return lines


def is_up_to_date(wav: Path) -> bool:
    """True when the wav's spectrogram is a file newer than the wav (a folder of that name is not one)."""
    spec = spec_path_for(wav)
    try:
        return spec.is_file() and spec.stat().st_mtime_ns > wav.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def transform(filename: str | os.PathLike) -> None:
    """lmnt's ``diffwave.preprocess.transform``: write ``<filename>.spec.npy`` with lmnt's feature
    settings, for scripts written against lmnt's package. Raises :class:`AudioError` (one line
    naming the file) where lmnt's would fail deep inside torchaudio."""
    outcome = process_file(Path(filename), FeatureSpec())
    if outcome.error is not None:
        raise AudioError(outcome.error)


def process_file(wav: Path, features: FeatureSpec) -> FileOutcome:
    """Compute and atomically write one spectrogram. Never raises: failures come back as the outcome."""
    from .features import log_mel_spectrogram  # torch import deferred to the worker

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # The centred STFT needs half a window plus one sample, as lmnt's (513 for n_fft 1024), not a whole window.
            audio = read_wav(wav, features.sample_rate, feature_min_samples(features.n_fft))
        notes = tuple(str(w.message) for w in caught)
        spec = log_mel_spectrogram(audio, features).numpy().astype(np.float32)
        save_npy_atomic(spec_path_for(wav), spec)
        return FileOutcome(wav, None, notes)
    except AudioError as exc:
        return FileOutcome(wav, str(exc))
    except Exception as exc:  # an unexpected failure on one file must not lose the others' work
        return FileOutcome(wav, f"{wav}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary name in the same folder, then rename: readers never see half a file."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
            fh.flush()
            os.fsync(fh.fileno())


def _init_worker() -> None:
    import signal

    import torch

    # Ctrl-C in a terminal reaches every process of the group; the parent decides what stops. (The
    # pool's processes were started ignoring SIGINT already; this covers one started later.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one process per core already; more threads would oversubscribe


def _remove_stale_temporaries(wavs: Sequence[Path]) -> None:
    """Half-written spectrograms of a killed run, beside their wavs."""
    specs = {spec_path_for(wav) for wav in wavs}
    for folder in {wav.parent for wav in wavs}:
        for name, stale in stale_temporaries(folder):
            if folder / name in specs:
                stale.unlink(missing_ok=True)


def _wavs_directly_in(folder: Path) -> list[Path]:
    """The wavs ``find_wavs`` would find in ``folder`` itself, without walking its subfolders."""
    return [p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file() and not p.name.startswith(".")]


def preprocess(
    paths: Sequence[str | os.PathLike],
    features: FeatureSpec,
    workers: Optional[int] = None,
    force: bool = False,
    progress: bool = True,
    on_note: Callable[[str], None] = lambda message: tqdm.write(message),
) -> PreprocessReport:
    """Write ``.spec.npy`` for every wav under ``paths`` that lacks an up-to-date one.

    ``workers``: processes to use (default: one per CPU core, at most one per file); 1 runs
    in this process. Raises :class:`~diffwave.data.DataError` only when ``paths`` themselves
    are wrong (missing, or holding no wav at all).
    """
    from .data import DataError

    wavs = find_wavs(paths)
    if not wavs:
        raise DataError(f"no .wav files in {', '.join(str(p) for p in paths)}")
    _remove_stale_temporaries(wavs)
    report = PreprocessReport()
    folders = sorted({wav.parent for wav in wavs})
    # A folder whose spectrograms another set of settings made (or that has no record of its
    # settings) is done again whole; its record goes first, so a run stopped halfway claims nothing.
    stale = {folder for folder in folders if force or read_record(folder) != asdict(features)}
    for folder in stale:
        remove_record(folder)
    todo = []
    for wav in wavs:
        (report.up_to_date if wav.parent not in stale and is_up_to_date(wav) else todo).append(wav)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))

    def record(outcome: FileOutcome) -> None:
        if outcome.error:
            report.failed.append(outcome)
        else:
            report.written.append(outcome.wav)
        for note in outcome.notes:
            report.notes.append(note)
            on_note(f"warning: {note}")

    with tqdm(total=len(todo), desc="preprocess", unit="file", disable=not progress or not todo) as bar:
        if workers == 1:
            for wav in todo:
                record(process_file(wav, features))
                bar.update()
        else:
            # spawn, not fork: the parent may already run torch threads, which fork would copy mid-flight.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
                with interrupts.sigint_ignored():  # the first `workers` submits start the processes
                    futures = [pool.submit(process_file, wav, features) for wav in todo[:workers]]
                futures += [pool.submit(process_file, wav, features) for wav in todo[workers:]]
                try:
                    for future in as_completed(futures):
                        record(future.result())
                        bar.update()
                except KeyboardInterrupt:
                    # Leaving the block would wait for every queued file: drop them, let the few
                    # files in flight finish (their writes are atomic), then stop.
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    report.failed.sort(key=lambda outcome: outcome.wav)
    failed_in = {outcome.wav.parent for outcome in report.failed}
    given = set(wavs)
    for folder in folders:
        whole = all(wav in given for wav in _wavs_directly_in(folder))
        if whole and folder not in failed_in:  # every spectrogram there is now made with these settings
            write_record(folder, features)
    return report


if __name__ == "__main__":  # lmnt's `python -m diffwave.preprocess DIR` (see diffwave.compat)
    from diffwave.compat import preprocess_main

    preprocess_main()
