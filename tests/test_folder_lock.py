"""diffwave/folder_lock.py: one process at a time per folder, and no lock file left afterwards."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from diffwave.folder_lock import FolderBusy, folder_lock


def _count(folder: str, times: int) -> None:
    for _ in range(times):
        with folder_lock(Path(folder), "counter"):
            value = int((Path(folder) / "counter").read_text())
            time.sleep(0.001)  # a read-modify-write that interleaves without the lock
            (Path(folder) / "counter").write_text(str(value + 1))


def test_processes_take_turns_and_the_lock_file_goes_with_the_last(tmp_path):
    # The lock file is removed by each holder on its way out; a waiter that locked the removed
    # file must notice and take the new one, or two processes would hold "the" lock at once.
    (tmp_path / "counter").write_text("0")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_count, args=(str(tmp_path), 50)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert all(w.exitcode == 0 for w in workers)
    assert (tmp_path / "counter").read_text() == "200"  # no update lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]


def test_without_waiting_a_held_folder_is_one_clear_error(tmp_path):
    with folder_lock(tmp_path, "diffwave corpus"):
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            message = pool.apply(_try_without_waiting, (str(tmp_path),))
    assert message == f"{tmp_path}: another diffwave corpus is writing this folder; wait for it to finish"
    with folder_lock(tmp_path, "diffwave corpus", wait=False):  # free again
        pass


def _try_without_waiting(folder: str) -> str:
    try:
        with folder_lock(Path(folder), "diffwave corpus", wait=False):
            return "got it"
    except FolderBusy as exc:
        return str(exc)
