"""The reverse-diffusion loop over a window plan: state, noise, per-step network calls, update.

One call: draw noise (slot 0 becomes x_N), write the spectrogram into the sessions' buffers
once, then for n = N−1 … 0 run every network call of the plan and apply lmnt's update
``x = clamp(c1[n]·(x − c2[n]·ε) + σ[n]·z, −1, 1)`` in place. Everything the steps touch is
preallocated (per shape bucket, :mod:`runtime.buffers`), so the step loop allocates no arrays,
and on CUDA the whole loop can be one graph replay (:mod:`runtime.graphs`).

When the plan is *direct* (one network call whose rows are the items, whole), x and ε live in
the call's own input/output buffers and no copies happen at all; otherwise x and ε are per-call
buffers and each window is copied in and its kept span copied out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .backends.base import Backend, Session
from .chunking import Plan
from .graphs import GraphCache
from .noise import NOISE_BUDGET_BYTES
from .schedule import ReverseSchedule


@dataclass
class StepEvent:
    """What a ``step_observer`` sees after each update (tests check buffer addresses with it)."""

    iteration: int  #: 0 … N−1
    index: int  #: schedule index n = N−1−iteration
    x: Any
    eps: Any
    sessions: tuple[Session, ...]


class ReverseLoop:
    """Runs calls of one backend; owns the per-call state buffers and the CUDA graph cache."""

    def __init__(self, backend: Backend, unit: int, cuda_graphs: bool = True, noise_budget_bytes: int = NOISE_BUDGET_BYTES):
        self.backend = backend
        self.ops = backend.ops
        self.pool = backend.pool
        self.unit = unit  #: samples per planning unit (hop for conditional models, 1 otherwise)
        self.noise_budget_bytes = noise_budget_bytes
        self.graphs = GraphCache(backend.stream) if cuda_graphs and backend.supports_cuda_graphs else None
        self.step_observer: Optional[Callable[[StepEvent], None]] = None
        self.last_mode = "eager"

    def run(
        self,
        plan: Plan,
        schedule: ReverseSchedule,
        spectrogram: Any,
        seeds: Sequence[int],
        noise: Optional[np.ndarray] = None,
    ) -> list[Any]:
        """Vocode; returns one array of ``lengths[i] × unit`` samples per item (views into state: copy them).

        On CUDA everything, buffer preparation included, is issued on the backend's stream,
        after it has waited for the caller's stream (which may have produced ``spectrogram``).
        """
        stream = self.backend.stream
        if stream is None:
            return self._run(plan, schedule, spectrogram, seeds, noise)
        import torch

        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            return self._run(plan, schedule, spectrogram, seeds, noise)

    def _run(self, plan: Plan, schedule: ReverseSchedule, spectrogram: Any, seeds: Sequence[int], noise: Optional[np.ndarray]) -> list[Any]:
        ops, unit, backend = self.ops, self.unit, self.backend
        batch, lengths = len(plan.lengths), [n * unit for n in plan.lengths]
        width, count = max(lengths), schedule.num_steps
        sessions = [backend.session(slot, p.rows, p.units * unit) for slot, p in enumerate(plan.passes)]
        rounds = [p.rounds() for p in plan.passes]

        if plan.direct:
            x, eps, mel = sessions[0].audio, sessions[0].eps, sessions[0].spectrogram
            if mel is not None:
                ops.copy(mel, spectrogram)
        else:
            x = self.pool.get("x", (batch, width))
            eps = self.pool.get("eps", (batch, width))
            ops.fill(eps, 0.0)
            mel = None
            if spectrogram is not None:
                mel = self.pool.get("mel", (batch, backend.metadata.n_mels, width // unit))
                ops.copy(mel, spectrogram)

        # Noise: slot k ≥ 1 is pre-scaled by σ[n]/c1[n] (n = N−k) so the update is four in-place ops.
        def factor(slot: int) -> float:
            n = count - slot
            return float(schedule.sigma[n] / schedule.c1[n])

        all_at_once = noise is not None or count * batch * width * 4 <= self.noise_budget_bytes
        if all_at_once:
            noise_buf = self.pool.get(("noise", count), (count, batch, width))
            if noise is not None:
                ops.copy(noise_buf, noise)
            else:
                for slot in range(count):
                    self._draw(noise_buf[slot], seeds, lengths, slot)
            for slot in range(1, count):
                ops.scale(noise_buf[slot], factor(slot))
            ops.copy(x, noise_buf[0])
        else:
            noise_buf = self.pool.get("noise-step", (batch, width))
            self._draw(noise_buf, seeds, lengths, 0)
            ops.copy(x, noise_buf)

        for slot, (p, session) in enumerate(zip(plan.passes, sessions)):
            session.set_steps(schedule.steps)
            if mel is not None and len(rounds[slot]) == 1 and not plan.direct:
                self._write_mel(session, rounds[slot][0], mel, p.units)
            if len(rounds[slot]) == 1:
                session.condition()

        def step(iteration: int) -> None:
            n = count - 1 - iteration
            for slot, (p, session) in enumerate(zip(plan.passes, sessions)):
                samples = p.units * unit
                for windows in rounds[slot]:
                    if len(rounds[slot]) > 1 and mel is not None:
                        self._write_mel(session, windows, mel, p.units)
                        session.condition()
                    if not plan.direct:
                        for r, w in enumerate(windows):
                            ops.copy(session.audio[r], x[w.item, w.start * unit : w.start * unit + samples])
                    session.run(n)
                    if not plan.direct:
                        for r, w in enumerate(windows):
                            lo, hi = (w.keep_start - w.start) * unit, (w.keep_stop - w.start) * unit
                            ops.copy(eps[w.item, w.keep_start * unit : w.keep_stop * unit], session.eps[r, lo:hi])
            scaled = None
            if n > 0:
                if all_at_once:
                    scaled = noise_buf[iteration + 1]
                else:
                    self._draw(noise_buf, seeds, lengths, iteration + 1)
                    ops.scale(noise_buf, factor(iteration + 1))
                    scaled = noise_buf
            ops.update(x, eps, float(schedule.c1[n]), float(schedule.c2[n]), scaled)
            if self.step_observer is not None:
                self.step_observer(StepEvent(iteration, n, x, eps, tuple(sessions)))

        def all_steps() -> None:
            for iteration in range(count):
                step(iteration)

        # One graph per plan and schedule; only single-shape plans (an engine context is rebound
        # between shapes on the host, which a replay would skip) and only without an observer.
        graphable = (
            self.graphs is not None
            and all_at_once
            and len(sessions) == 1
            and self.step_observer is None
            and backend.capturable()
        )
        if graphable:
            key = (plan.lengths, plan.passes, tuple(schedule.betas.tolist()))
            self.last_mode = self.graphs.run(key, all_steps)
        else:
            all_steps()
            self.last_mode = "eager"
        ops.synchronize()
        backend.after_call()
        return [x[i, :n] for i, n in enumerate(lengths)]

    def _draw(self, out: Any, seeds: Sequence[int], lengths: Sequence[int], slot: int) -> None:
        for i, (seed, n) in enumerate(zip(seeds, lengths)):
            self.ops.normal(out[i, :n], seed, slot)
            if n < out.shape[-1]:
                self.ops.fill(out[i, n:], 0.0)

    def _write_mel(self, session: Session, windows: Sequence[Any], mel: Any, units: int) -> None:
        for r, w in enumerate(windows):
            self.ops.copy(session.spectrogram[r], mel[w.item, :, w.start : w.start + units])
        for r in range(len(windows), session.rows):
            self.ops.fill(session.spectrogram[r], 0.0)
