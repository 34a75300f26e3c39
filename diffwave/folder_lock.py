"""One process at a time per folder: an advisory lock on a hidden ``.lock`` file inside it.

Why: our commands remove the temporaries a killed run left in their output folders, and tell
them by name. A second run started on the same folder would take the first one's live
temporaries for leftovers and delete them under it. The lock is ``flock``'s: the kernel drops it
when the holder exits, however it exits, so a killed run never leaves the folder locked (only
its empty ``.lock`` file, which the next run takes over).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lock"


class FolderBusy(RuntimeError):
    """Another process holds the folder (message is one line naming it)."""


@contextmanager
def folder_lock(folder: Path, what: str, wait: bool = True) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (the folder is created if needed); the lock file is
    removed again on the way out, so a finished run leaves no trace.

    Removing it is safe because a holder removes it while still holding it, and a taker checks,
    once it holds the lock, that the file it locked is still the one at the path (else it tries
    again). ``wait=False`` raises :class:`FolderBusy` at once, naming ``what`` holds it, instead of
    waiting. Without ``fcntl`` (not a POSIX system) the block runs unlocked, as before the lock existed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = folder / LOCK_NAME
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            raise FolderBusy(f"{folder}: another {what} is writing this folder; wait for it to finish") from None
        try:
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break  # still the file at the path: the lock is ours
        except FileNotFoundError:
            pass  # its holder finished and removed it while this process waited
        handle.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it (see above)
        handle.close()
