"""Stop signals for long jobs: SIGTERM and Ctrl-C end training between steps, not inside one.

``diffwave train`` turns SIGTERM (sent by ``timeout`` and job schedulers before they kill) into
:class:`Terminated` and Ctrl-C into ``KeyboardInterrupt``; a single-process run then saves what it
did since its last checkpoint. Raising at whatever line the signal happens to land on is unsafe
in two places, which is why the training loop runs each step inside :func:`deferred`:

* **fetching a batch.** A DataLoader worker hands each tensor to the main process by passing a
  file descriptor over a socket (torch's default sharing strategy on Linux). An exception in
  the middle of that handshake closes the socket under the worker, whose sharing thread then
  prints a traceback after our one-line error (seen in CI).
* **the update.** Interrupted between the optimizer's update and the step counter, a save would
  store new weights under the old step number, with the weight average not yet updated.

Inside :func:`deferred` the first signal is remembered and raised when the block ends. A second
signal acts at once (a hung worker must not make Ctrl-C useless); the state it leaves may be
mid-step, and :func:`interrupted_mid_step` tells the caller not to save it.

For pools of worker processes (``diffwave preprocess``), :func:`sigint_ignored` starts the
workers deaf to a terminal's Ctrl-C, so only the parent reacts to it.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from typing import Iterator, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: a single-process run saves the steps done since its last checkpoint."""


@dataclass
class _State:
    installed: bool = False  #: our handler is in place (the CLI's main thread)
    deferring: bool = False  #: inside deferred(): the next signal waits for the block's end
    pending: Optional[type[KeyboardInterrupt]] = None  #: the signal that arrived while deferring
    broke_a_block: bool = False  #: the last exception was raised inside a deferred block


_state = _State()


def _exception_for(signum: int) -> type[KeyboardInterrupt]:
    return Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _handler(signum: int, frame) -> None:
    exc = _exception_for(signum)
    if _state.deferring and _state.pending is None:
        _state.pending = exc
        return
    _state.broke_a_block = _state.deferring
    raise exc()


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt``, held back inside
    :func:`deferred`. Outside the main thread (embedded use), and for a signal already ignored,
    nothing changes. The previous handlers come back afterwards."""
    # A signal the parent set to be ignored stays ignored (`nohup`, `cmd &` in a script ignore SIGINT).
    wanted = [signum for signum in STOP_SIGNALS if signal.getsignal(signum) is not signal.SIG_IGN]
    try:
        previous = {signum: signal.signal(signum, _handler) for signum in wanted}
    except ValueError:  # signal.signal only works in the main thread
        yield
        return
    _state.installed, _state.pending, _state.broke_a_block = True, None, False
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.installed, _state.deferring, _state.pending = False, False, None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop signal that arrives in this block until the block is done, then raise it.

    If the block fails while a stop is pending (a DataLoader worker that got the same signal
    from a job scheduler and exited), the stop is what is raised: it is the reason. Without
    :func:`stop_signals_raise` active this does nothing.
    """
    if not _state.installed or _state.deferring:
        yield
        return
    _state.deferring = True
    try:
        yield
    except Exception:
        stop = _take_pending()
        if stop is None:
            raise
        raise stop() from None
    except BaseException:  # a second signal, raised at once: the first is superseded
        _state.pending = None
        raise
    finally:
        _state.deferring = False
    stop = _take_pending()
    if stop is not None:
        raise stop()


def interrupted_mid_step() -> bool:
    """True when the interruption being handled broke into a deferred block (a second signal), whose
    work may be half done; False when it was raised between blocks."""
    return _state.broke_a_block


def _take_pending() -> Optional[type[KeyboardInterrupt]]:
    stop, _state.pending = _state.pending, None
    _state.broke_a_block = False
    return stop


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT in this block, so that processes started in it begin life ignoring it.

    Ctrl-C in a terminal reaches every process of the group. A worker process that is still
    importing when it arrives dies with a KeyboardInterrupt traceback, and setting SIG_IGN in a
    pool initializer comes too late to prevent that: only a disposition inherited at start-up
    covers the whole start. The parent keeps Ctrl-C: keep the block to the few calls that start
    the workers (a Ctrl-C inside it is lost).
    """
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
