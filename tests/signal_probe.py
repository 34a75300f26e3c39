"""Run ``python -m diffwave ...`` with stop signals sent to itself at chosen points (for test_interrupts.py).

Signals normally land wherever the process happens to be; these hooks make the two unsafe places
happen every time. ``PROBE`` picks one:

* ``handover:N:SIG`` — during the main process's Nth file-descriptor handshake with a DataLoader
  worker (each batch tensor is one), before it completes;
* ``update:N:SIG[,SIG...]`` — at the Nth weight-average update, after the optimizer changed the
  weights and before the step counter moved;
* ``completed:N:SIG`` — to the whole process group, as a terminal's Ctrl-C does, when
  ``diffwave preprocess`` or ``diffwave corpus`` has N files back from its workers (run this in
  its own session).
* ``called:MODULE.FUNCTION:N:SIG`` — right after the Nth call of that function returns in the
  main process, e.g. ``called:soundfile.write:2:SIGTERM``: a wav's temporary is written and not
  yet renamed.

The hooks only choose the moment: the DataLoader, the workers and training are the real ones.
"""

from __future__ import annotations

import importlib
import multiprocessing.connection as connection
import os
import signal
import sys

MAIN = os.getpid()


def _send(names: str) -> None:
    for name in names.split(","):
        os.kill(MAIN, getattr(signal, name))


def _send_to_group(names: str) -> None:
    if os.getpgid(0) != MAIN:
        raise SystemExit("signal_probe: a group signal needs its own session (start_new_session=True)")
    for name in names.split(","):
        os.killpg(MAIN, getattr(signal, name))


def _after_nth_item(iterable_fn, n: int, names: str):
    def hooked(*args, **kwargs):
        for count, item in enumerate(iterable_fn(*args, **kwargs), start=1):
            yield item
            if count == n:
                _send_to_group(names)

    return hooked


def _on_nth_call(function, n: int, names: str, after: bool = False):
    """``function`` that sends the signals at its Nth call in the main process: before the call, or after it returns."""
    calls = [0]

    def hooked(*args, **kwargs):
        main = os.getpid() == MAIN  # forked workers inherit the hook; only the main process counts
        if main:
            calls[0] += 1
        now = main and calls[0] == n
        if now and not after:
            _send(names)
        result = function(*args, **kwargs)
        if now and after:
            _send(names)
        return result

    return hooked


def install(probe: str) -> None:
    if probe.startswith("called:"):
        _, target, n, names = probe.split(":")
        module_name, function_name = target.rsplit(".", 1)
        module = importlib.import_module(module_name)
        setattr(module, function_name, _on_nth_call(getattr(module, function_name), int(n), names, after=True))
        return
    where, n, names = probe.split(":")
    if where == "handover":
        connection.answer_challenge = _on_nth_call(connection.answer_challenge, int(n), names)
    elif where == "update":
        from diffwave.train import Learner

        Learner._update_ema = _on_nth_call(Learner._update_ema, int(n), names)
    elif where == "completed":
        import diffwave.corpus as corpus
        import diffwave.preprocess as preprocess

        for module in (corpus, preprocess):
            module.as_completed = _after_nth_item(module.as_completed, int(n), names)
    else:
        raise SystemExit(f"unknown probe {probe!r}")


if __name__ == "__main__":
    install(os.environ["PROBE"])
    from diffwave.compat import main

    main(sys.argv[1:])
