"""Carry a CPU training run into the repository: one full checkpoint and its events, cut at its step.

    python scripts/carry_run.py RUN_DIR --step N [--dest models/cpu-run]

Why: a session's /work may be gone in the next session, so the run CPU sessions train on lives in
``models/cpu-run/`` (models/README.md, "Carrying a CPU run"). A sitting is stopped some steps past
its last save, and the TensorBoard events it wrote after that save describe training the carried
checkpoint never did: a resumed run would log those steps again and the loss plot would show two
branches. So the events are cut at the carried step here, and the checkpoint (raw weights, average
and Adam moments, as training wrote it) replaces the one carried before.

Everything is read and checked first (the checkpoint loads and holds step N, every events file
parses), so a refused call changes nothing. Each file is then written under a temporary name and
renamed, and the old checkpoint is removed last: a write that fails part-way leaves no half file
and the old checkpoint still in place.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Optional

from diffwave.checkpoint import CheckpointError, load_checkpoint
from runtime.bundle import write_bytes_atomic

ROOT = Path(__file__).resolve().parents[1]
EVENTS_GLOB = "events.out.tfevents.*"
#: Bytes around each record's data in an events file: its length (8), the length's CRC (4), the data's CRC (4).
_RECORD_FRAMING = 16


class CarryError(RuntimeError):
    """One line: why nothing was carried."""


def events_up_to(path: Path, last_step: int) -> tuple[bytes, int, int]:
    """The events file's records with step <= last_step (and its version header), re-framed.

    Returns (file bytes, records kept, records dropped). Wall times and summaries are kept as
    written: only whole records are dropped, never rewritten.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    out = io.BytesIO()
    writer = RecordWriter(out)
    kept = dropped = read = 0
    try:
        for raw in RawEventFileLoader(str(path)).Load():
            read += _RECORD_FRAMING + len(raw)
            event = Event.FromString(raw)
            if event.HasField("file_version") or event.step <= last_step:
                writer.write(raw)
                kept += 1
            else:
                dropped += 1
    except Exception as exc:  # a truncated record, a file that is not an events file
        raise CarryError(f"{path}: unreadable TensorBoard events file ({type(exc).__name__}: {exc})") from None
    size = path.stat().st_size
    if read != size:  # the loader stops quietly at a torn record, taking it for a write still in progress
        raise CarryError(f"{path}: a torn or unreadable record after byte {read} of {size} (is the run still training?)")
    writer.flush()
    return out.getvalue(), kept, dropped


def plan(run: Path, step: int) -> tuple[Path, dict[str, bytes], list[str]]:
    """The checkpoint to copy, the events files to write (name -> bytes), and one report line per file."""
    ckpt_path = run / f"weights-{step}.pt"
    if not ckpt_path.is_file():
        saved = sorted(p.name for p in run.glob("weights-*.pt"))
        raise CarryError(f"{ckpt_path}: no such checkpoint (the run holds {', '.join(saved) or 'none'})")
    ckpt = load_checkpoint(ckpt_path)
    if ckpt.step != step:
        raise CarryError(f"{ckpt_path}: holds step {ckpt.step}, not {step}")
    if ckpt.optimizer is None:
        raise CarryError(f"{ckpt_path}: no optimizer state, so a resumed run would not go on exactly (carry a training checkpoint, not a shipped one)")
    events: dict[str, bytes] = {}
    report = []
    for path in sorted(run.glob(EVENTS_GLOB)):
        data, kept, dropped = events_up_to(path, step)
        if kept <= 1:  # only the version header: a sitting that started after the carried step
            report.append(f"{path.name}: nothing at or before step {step}, left out")
            continue
        events[path.name] = data
        report.append(f"{path.name}: {kept} records" + (f", {dropped} after step {step} cut" if dropped else ""))
    if not events:
        raise CarryError(f"{run}: no TensorBoard events at or before step {step} (the loss plot needs them)")
    return ckpt_path, events, report


def carry(run: Path, step: int, dest: Path) -> list[str]:
    """Replace the carried run in ``dest`` by ``run``'s step ``step``; returns the report lines."""
    ckpt_path, events, report = plan(run, step)
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in events.items():
        write_bytes_atomic(dest / name, data)
    target = dest / ckpt_path.name
    write_bytes_atomic(target, ckpt_path.read_bytes())
    for old in dest.glob("weights-*.pt"):
        if old != target:
            old.unlink()
            report.append(f"removed {old.name}")
    report.append(f"{ckpt_path} -> {target}")
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the training run directory (weights-N.pt and events.out.tfevents.* files)")
    parser.add_argument("--step", type=int, required=True, help="the saved step to carry; events after it are cut")
    parser.add_argument("--dest", type=Path, default=ROOT / "models" / "cpu-run", help="the carried run's folder")
    args = parser.parse_args(argv)
    try:
        lines = carry(args.run, args.step, args.dest)
    except (CarryError, CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
