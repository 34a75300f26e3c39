"""``runtime.Vocoder``: spectrogram (or nothing) in, audio out, through any backend.

    from runtime import Vocoder
    voc = Vocoder.load("build/model.plan")      # or model.onnx, a checkpoint .pt or model directory
    audio = voc(mel)                             # [80, F] or [B, 80, F] -> float32 [B, F·hop]
    items = voc(mels, lengths=[412, 380])        # ragged batch -> one trimmed array per item
    noise = voc.generate(seconds=5, seed=0)      # unconditional models

Every result is exactly what the network computes on each item's true length (lmnt's
sampler), whatever the batch, the shape bucket, or the chunking of long inputs: see
:mod:`runtime.chunking` for why ragged items are never padded into each other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .backends.base import Backend
from .bundle import BundleMetadata
from .chunking import Plan, plan_windows
from .errors import NonFiniteOutput, VocoderError
from .inputs import check_spectrogram
from .loop import ReverseLoop
from .noise import NOISE_BUDGET_BYTES, check_injected_noise, item_seeds
from .receptive_field import Halo, StepReach
from .schedule import ReverseSchedule, resolve_inference_betas

#: Network input per call (rows × frames) before long inputs are chunked, by device. On CPU it
#: bounds activation memory: ONNX Runtime peaks at ≈1.1 GB per 256 frames of the base model
#: (measured), so 512 frames (5.9 s) ≈ 2.2 GB. GPUs take longer windows (fewer launches).
DEFAULT_MAX_FRAMES = {"cpu": 512, "cuda": 2048}


class Vocoder:
    """The reverse-diffusion sampler around one backend (TensorRT, ONNX Runtime or PyTorch).

    A vocoder reuses its buffers across calls, so it serves one call at a time: calls from
    several threads wait for each other (a lock), which is correct but serial. For parallel
    throughput give each thread its own vocoder (they may share nothing but the files).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_frames: Optional[int] = None,
        cuda_graphs: bool = True,
        noise_budget_bytes: int = NOISE_BUDGET_BYTES,
    ):
        """``max_frames``: network input per call (rows × frames); longer items are chunked exactly
        (default by device, :data:`DEFAULT_MAX_FRAMES`).
        ``cuda_graphs``: capture the loop on CUDA backends (replayed from a shape's second call).
        ``noise_budget_bytes``: above this, noise is drawn per step instead of once (same values).
        """
        if max_frames is None:
            max_frames = DEFAULT_MAX_FRAMES.get(backend.device, DEFAULT_MAX_FRAMES["cpu"])
        if max_frames < 1:
            raise VocoderError(f"max_frames must be positive, got {max_frames}")
        self.backend = backend
        self.metadata: BundleMetadata = backend.metadata
        meta = self.metadata
        self.unit = 1 if meta.unconditional else meta.hop_samples
        limits = backend.limits
        budget = max_frames * meta.hop_samples  # samples per network call
        if limits.max_samples is not None:
            budget = min(budget, limits.max_samples * (limits.max_batch or 1))
        self._budget_units = max(1, budget // self.unit)
        window = max_frames * meta.hop_samples
        if limits.max_samples is not None:
            window = min(window, limits.max_samples)
        if window < limits.min_samples:
            # Long items would be cut into windows the engine's profile refuses, and the error would
            # then blame the input, not this setting.
            shortest = -(-limits.min_samples // meta.hop_samples)
            raise VocoderError(
                f"max_frames={max_frames} is shorter than this engine's profile minimum of {shortest} frames: "
                f"use max_frames >= {shortest}"
            )
        self._window_units = window // self.unit
        self._min_units = -(-limits.min_samples // self.unit)
        self._halo: Optional[Halo] = None
        self._schedules: dict[tuple[float, ...], ReverseSchedule] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.loop = ReverseLoop(backend, self.unit, cuda_graphs=cuda_graphs, noise_budget_bytes=noise_budget_bytes)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: str | Path, *, device: str = "auto", threads: Optional[int] = None, spinning: bool = False, **options: Any
    ) -> "Vocoder":
        """Open ``path`` with the backend its type implies (see :func:`runtime.loading.open_backend`).

        ``threads`` and ``spinning`` tune ONNX Runtime on CPU: spin-waiting is off by default
        because a vocoder usually shares its cores with a TTS front end; on a dedicated machine
        ``spinning=True`` is about 6 % faster (benchmarks/README.md).
        """
        from .loading import open_backend

        return cls(open_backend(path, device=device, threads=threads, spinning=spinning), **options)

    @classmethod
    def from_module(
        cls, module: Any, metadata: BundleMetadata, *, device: str = "auto", torch_buffers: Optional[bool] = None, **options: Any
    ) -> "Vocoder":
        """Serve an in-memory PyTorch module (e.g. right after training) with its bundle metadata."""
        from .backends.pytorch import TorchBackend

        return cls(TorchBackend(module, metadata, device=device, torch_buffers=torch_buffers), **options)

    # -- properties -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.metadata.sample_rate

    @property
    def hop_samples(self) -> int:
        return self.metadata.hop_samples

    @property
    def n_mels(self) -> int:
        return self.metadata.n_mels

    @property
    def unconditional(self) -> bool:
        return self.metadata.unconditional

    def describe(self) -> str:
        return self.backend.describe()

    # -- planning -----------------------------------------------------------------------------
    def schedule(self, steps: str | Sequence[float] = "fast") -> ReverseSchedule:
        """The reverse schedule for a named schedule of ``model.json`` or an explicit list of betas."""
        try:
            betas = resolve_inference_betas(steps, self.metadata.inference_schedules)
            schedule = self._schedules.get(betas)
            if schedule is None:
                schedule = self._schedules[betas] = ReverseSchedule.create(self.metadata.noise_schedule, betas)
        except ValueError as exc:
            raise VocoderError(f"steps: {exc}") from None
        return schedule

    @property
    def halo(self) -> Halo:
        """Context each side of a chunk, in planning units (frames, or samples when unconditional)."""
        if self._halo is None:
            reach = StepReach.from_params(self.metadata.params, not self.unconditional, self.hop_samples)
            self._halo = reach.halo()
        return self._halo

    def plan(self, lengths: Sequence[int]) -> Plan:
        """The network calls of one step for items of ``lengths`` units."""
        short = [n for n in lengths if n < self._min_units]
        if short:
            what = "samples" if self.unconditional else "frames"
            raise VocoderError(
                f"input of {short[0]} {what} is shorter than this engine's profile minimum of {self._min_units} {what}"
            )
        limits = self.backend.limits
        needs_halo = max(lengths) > self._window_units
        halo = self.halo if needs_halo else Halo(0, 0)
        if needs_halo and self._window_units <= halo.total:
            raise VocoderError(
                f"a window of {self._window_units} units cannot hold a halo of {halo.before}+{halo.after}: raise max_frames"
            )
        return plan_windows(
            lengths,
            window=self._window_units,
            halo=halo,
            max_units_per_call=self._budget_units,
            max_rows=limits.max_batch,
            min_rows=limits.min_batch,
        )

    # -- synthesis ------------------------------------------------------------------------------
    def __call__(
        self,
        spectrogram: Any,
        steps: str | Sequence[float] = "fast",
        seed: Optional[int | Sequence[int]] = None,
        lengths: Optional[Sequence[int]] = None,
        noise: Any = None,
    ) -> Any:
        """Vocode [n_mels, frames] or [batch, n_mels, frames] (NumPy or torch).

        Returns float32 audio [batch, frames × hop] of the input's kind (a torch tensor on the
        input's device for torch input). With ``lengths`` (frames per item) it returns a list
        with one trimmed 1-D array per item. ``seed=s`` makes the call reproducible (item i uses
        seed s + i; a list gives each item's seed). ``noise`` [steps, batch, samples] replaces
        the random draws: slot 0 is the initial x, slot k the noise added after the k-th step.
        """
        if self.unconditional:
            raise VocoderError("this model is unconditional: it takes no spectrogram (use generate(seconds))")
        cond = check_spectrogram(spectrogram, self.n_mels, lengths)
        seeds = item_seeds(seed, len(cond.lengths))
        spectrogram = cond.spectrogram
        if cond.torch_device is not None and self.backend.ops.kind == "numpy":
            spectrogram = spectrogram.cpu().numpy()  # host buffers: one copy, before the loop
        with self._serving():
            schedule = self.schedule(steps)
            plan = self.plan(cond.lengths)
            width = max(cond.lengths) * self.unit
            injected = None if noise is None else check_injected_noise(noise, schedule.num_steps, len(cond.lengths), width)
            outputs = self.loop.run(plan, schedule, spectrogram, seeds, injected)
            return self._finish(outputs, cond.torch_device, ragged=lengths is not None)

    def generate(
        self,
        seconds: float,
        batch: int = 1,
        steps: str | Sequence[float] = "fast",
        seed: Optional[int | Sequence[int]] = None,
        noise: Any = None,
    ) -> np.ndarray:
        """Synthesise ``batch`` clips of ``seconds`` from noise alone (unconditional models)."""
        if not self.unconditional:
            raise VocoderError("this model is conditional: it needs a spectrogram (generate() is for unconditional models)")
        samples = int(round(float(seconds) * self.sample_rate))
        if samples < 1 or batch < 1:
            raise VocoderError(f"nothing to generate: {seconds} s gives {samples} samples, batch {batch}")
        seeds = item_seeds(seed, batch)
        with self._serving():
            schedule = self.schedule(steps)
            plan = self.plan([samples] * batch)
            injected = None if noise is None else check_injected_noise(noise, schedule.num_steps, batch, samples)
            outputs = self.loop.run(plan, schedule, None, seeds, injected)
            return self._finish(outputs, None, ragged=False)

    @contextmanager
    def _serving(self) -> Iterator[None]:
        """One call at a time on the shared buffers; the results are copied out before the next starts."""
        with self._lock:
            if self._closed:
                raise VocoderError("this vocoder is closed")
            yield

    def _finish(self, outputs: list[Any], torch_device: Optional[str], ragged: bool) -> Any:
        for i, out in enumerate(outputs):
            # Finite input cannot make NaN in a sound network: broken weights can, and a NaN wav
            # plays as full-scale noise. The check reads the audio once, beside a whole network pass per step.
            if not bool(self.backend.ops.all_finite(out)):
                raise NonFiniteOutput(f"the network produced NaN or inf (item {i}): its weights are broken; check the model with `diffwave export`'s gate")
        if torch_device is not None:
            import torch

            items = [torch.as_tensor(o).to(torch_device, copy=True) for o in outputs]
            return items if ragged else torch.stack(items)
        items = [self.backend.ops.to_host(o) for o in outputs]
        return items if ragged else np.stack(items)

    def close(self) -> None:
        """Free the backend's sessions, buffers and captured graphs; later calls raise VocoderError."""
        with self._lock:
            self._closed = True
            if self.loop.graphs is not None:
                self.loop.graphs.clear()
            self.backend.close()

    def __enter__(self) -> "Vocoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
