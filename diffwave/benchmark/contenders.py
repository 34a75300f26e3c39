"""The rows a benchmark can have: the reference loop and every backend of ``runtime.Vocoder``.

A :class:`Contender` is a name with a recipe; :func:`open_runner` turns it into a
:class:`Runner` that vocodes one prepared input per call. Runners are opened once per
benchmark and reused across shapes, as a service would reuse a loaded vocoder: the first
call of each shape is a warm-up (buffers, sessions, CUDA graph capture), never timed.

Every runner of a run shares the same weights (:class:`BenchModels`) and gets the same
spectrogram, so the rows differ only in how the network is evaluated.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from runtime.bundle import BundleMetadata

from .timing import Clock, clock_for


@dataclass(frozen=True)
class Contender:
    name: str
    kind: str  #: "reference", "pytorch", "onnxruntime" or "tensorrt"
    device: str  #: "cpu" or "cuda"
    cuda_graphs: bool = False  #: capture the whole loop in a CUDA graph (replayed from the third call)
    help: str = ""
    threads: Optional[int] = None  #: ONNX Runtime intra-op threads for this row (overrides --threads)
    spinning: Optional[bool] = None  #: ONNX Runtime spin-waiting threads (None: the runtime's default)
    default: bool = True  #: part of a run when --backends is not given (lever rows are opt-in)

    @property
    def is_reference(self) -> bool:
        return self.kind == "reference"


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender("reference-cpu", "reference", "cpu", help="lmnt's loop: eager PyTorch, whole network and fresh tensors every step"),
        Contender("pytorch-cpu", "pytorch", "cpu", help="runtime.Vocoder, PyTorch backend (upsampler and step embeddings once per call)"),
        Contender("onnxruntime-cpu", "onnxruntime", "cpu", help="runtime.Vocoder, ONNX Runtime CPU provider"),
        Contender("onnxruntime-cpu-spinning", "onnxruntime", "cpu", spinning=True, default=False,
                  help="the same with spin-waiting worker threads (ONNX Runtime's default; the runtime's before issue 5)"),
        Contender("onnxruntime-cpu-1thread", "onnxruntime", "cpu", threads=1, default=False,
                  help="the same with one intra-op thread"),
        Contender("reference-cuda", "reference", "cuda", help="lmnt's loop on the GPU"),
        Contender("pytorch-cuda", "pytorch", "cuda", help="runtime.Vocoder, PyTorch backend on the GPU, no CUDA graphs"),
        Contender("pytorch-cuda-graphs", "pytorch", "cuda", True, help="the same, whole loop captured in a CUDA graph"),
        Contender("onnxruntime-cuda", "onnxruntime", "cuda", help="runtime.Vocoder, ONNX Runtime CUDA provider (needs onnxruntime-gpu)"),
        Contender("tensorrt", "tensorrt", "cuda", help="runtime.Vocoder, TensorRT plan (--engine), no CUDA graphs"),
        Contender("tensorrt-graphs", "tensorrt", "cuda", True, help="the same, whole loop captured in a CUDA graph"),
    )
}


def reference_for(device: str) -> Contender:
    return CONTENDERS[f"reference-{device}"]


@dataclass
class BenchModels:
    """The one set of weights every row runs: a module and the files it was written to.

    ``checkpoint`` always exists (the CLI saves a random model to a temporary one), so a
    memory-measuring subprocess can load the same weights; ``onnx`` and ``engine`` are the
    files the ONNX Runtime and TensorRT rows open.
    """

    metadata: BundleMetadata
    checkpoint: Path
    onnx: Optional[Path] = None
    engine: Optional[Path] = None
    weights: str = "random"  #: where the weights come from, for the report
    #: whether ``onnx`` and ``engine`` hold the module's weights (not when a bundle came without its
    #: checkpoint: the torch rows then run random weights, and audio cannot be compared across them)
    files_share_weights: bool = True
    module: Any = None  #: the torch module (loaded from ``checkpoint`` on first use when None)
    _on_device: dict[str, Any] = field(default_factory=dict, repr=False)

    def module_on(self, device: str) -> Any:
        """The module on ``device``; one copy per device, shared by the reference and PyTorch rows."""
        if device not in self._on_device:
            if self.module is None:
                from diffwave.checkpoint import load_model

                self.module = load_model(self.checkpoint)
            module = self.module if device == "cpu" else copy.deepcopy(self.module).to(device)
            self._on_device[device] = module.eval()
        return self._on_device[device]


def unavailable(contender: Contender, models: BenchModels) -> Optional[str]:
    """Why ``contender`` cannot run here with these models (None when it can)."""
    if contender.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible to PyTorch" if torch.version.cuda else f"torch {torch.__version__} is a CPU-only build"
    if contender.kind == "onnxruntime":
        if models.onnx is None:
            return "no ONNX graph"
        if contender.device == "cuda":
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return "onnxruntime-gpu is not installed (no CUDAExecutionProvider)"
    if contender.kind == "tensorrt" and models.engine is None:
        return "no TensorRT plan (give --engine)"
    return None


class Runner:
    """One contender, loaded: :meth:`prepare` stages an input, :meth:`__call__` vocodes it once."""

    def __init__(self, contender: Contender, describe: str, sample_rate: int, num_steps: int):
        self.contender = contender
        self.clock: Clock = clock_for(contender.device)
        self.describe = describe
        self.sample_rate = sample_rate
        self.num_steps = num_steps  #: network evaluations per call
        self.mode = "eager"  #: how the last call ran ("replayed" when a CUDA graph was used)

    def prepare(self, spectrogram: np.ndarray) -> None:
        raise NotImplementedError

    def __call__(self) -> None:
        raise NotImplementedError

    def output(self, noise: np.ndarray) -> np.ndarray:
        """The staged input vocoded with ``noise`` [steps, batch, samples] (the runtime's convention),
        as float32 on the host: what the agreement check compares with the reference."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ReferenceRunner(Runner):
    def __init__(self, contender: Contender, models: BenchModels, steps: Any, seed: int):
        import torch

        from runtime.schedule import ReverseSchedule, resolve_inference_betas

        meta = models.metadata
        schedule = ReverseSchedule.create(meta.noise_schedule, resolve_inference_betas(steps, meta.inference_schedules))
        describe = f"lmnt-style loop, eager torch {torch.__version__} on {contender.device}"
        super().__init__(contender, describe, meta.sample_rate, schedule.num_steps)
        self.schedule = schedule
        self.model = models.module_on(contender.device)
        self.generator = torch.Generator(device=contender.device).manual_seed(seed)
        self.spectrogram = None
        self._torch = torch

    def prepare(self, spectrogram: np.ndarray) -> None:
        self.spectrogram = self._torch.from_numpy(spectrogram).to(self.contender.device)

    def __call__(self) -> None:
        from .reference import reference_sample

        reference_sample(self.model, self.spectrogram, self.schedule, generator=self.generator)

    def output(self, noise: np.ndarray) -> np.ndarray:
        from .reference import reference_sample

        return reference_sample(self.model, self.spectrogram, self.schedule, noise=noise).float().cpu().numpy()


class VocoderRunner(Runner):
    def __init__(self, contender: Contender, vocoder: Any, steps: Any, seed: int):
        super().__init__(contender, vocoder.describe(), vocoder.sample_rate, vocoder.schedule(steps).num_steps)
        self.vocoder = vocoder
        self.steps = steps
        self.seed = seed
        self.spectrogram: Any = None

    def prepare(self, spectrogram: np.ndarray) -> None:
        if self.contender.device == "cuda":  # device in, device out: what a GPU service does
            import torch

            self.spectrogram = torch.from_numpy(spectrogram).to("cuda")
        else:
            self.spectrogram = spectrogram

    def __call__(self) -> None:
        self.vocoder(self.spectrogram, steps=self.steps, seed=self.seed)
        self.mode = self.vocoder.loop.last_mode

    def output(self, noise: np.ndarray) -> np.ndarray:
        audio = self.vocoder(self.spectrogram, steps=self.steps, noise=noise)
        return audio.detach().float().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio, np.float32)

    def close(self) -> None:
        self.vocoder.close()


def open_runner(contender: Contender, models: BenchModels, steps: Any, seed: int = 0, threads: Optional[int] = None) -> Runner:
    """Load ``contender`` (raises the runtime's own one-line errors when it cannot run here)."""
    if contender.is_reference:
        return ReferenceRunner(contender, models, steps, seed)
    from runtime import Vocoder

    if contender.kind == "pytorch":
        module = models.module_on(contender.device)
        vocoder = Vocoder.from_module(module, models.metadata, device=contender.device, cuda_graphs=contender.cuda_graphs)
    elif contender.kind == "onnxruntime":
        from runtime.backends.ort import OnnxRuntimeBackend

        metadata = BundleMetadata.read(models.onnx.parent)
        options = {} if contender.spinning is None else {"spinning": contender.spinning}
        backend = OnnxRuntimeBackend(models.onnx, metadata, device=contender.device, threads=contender.threads or threads, **options)
        vocoder = Vocoder(backend)
    elif contender.kind == "tensorrt":
        vocoder = Vocoder.load(models.engine, device="cuda", cuda_graphs=contender.cuda_graphs)
    else:
        raise ValueError(f"unknown contender kind {contender.kind!r}")
    return VocoderRunner(contender, vocoder, steps, seed)


def resolve(names: Optional[Sequence[str]], models: BenchModels) -> tuple[list[Contender], list[tuple[str, str]]]:
    """The contenders to run (references first, one per device in use) and (name, reason) of those skipped.

    ``names`` None means every contender that can run with these models on this machine.
    Unknown names raise ``ValueError`` listing the known ones.
    """
    wanted = [c.name for c in CONTENDERS.values() if c.default] if names is None else list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in CONTENDERS]
    if unknown:
        raise ValueError(f"unknown backend {unknown[0]!r}; known: {', '.join(CONTENDERS)}")
    chosen, skipped = [], []
    for name in wanted:
        contender = CONTENDERS[name]
        why = unavailable(contender, models)
        if why is None:
            chosen.append(contender)
        else:
            skipped.append((name, why))
    devices = list(dict.fromkeys(c.device for c in chosen))
    references = [reference_for(d) for d in devices]
    others = [c for c in chosen if not c.is_reference]
    return references + others, skipped
