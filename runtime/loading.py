"""Which backend a path means: ``.plan`` TensorRT, ``.onnx`` ONNX Runtime, ``.pt``/model dir PyTorch.

Checkpoints are loaded through the ``runtime.checkpoint_loaders`` entry point (the ``diffwave``
package registers ``diffwave.checkpoint:load_for_runtime``), so ``runtime`` serves training
checkpoints without importing the training code.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from .backends.base import Backend
from .bundle import METADATA_NAME, BundleMetadata
from .errors import VocoderError, first_line

LOADER_GROUP = "runtime.checkpoint_loaders"


def open_backend(path: str | Path, device: str = "auto", threads: int | None = None, spinning: bool = False) -> Backend:
    """The backend for ``path``; ``threads`` and ``spinning`` concern ONNX Runtime graphs only."""
    path = Path(path)
    if not path.exists():
        raise VocoderError(f"{path}: no such file or directory")
    if path.is_file() and path.suffix == ".plan":
        from .backends.trt import TensorRTBackend

        return TensorRTBackend(path, device=device)
    if path.is_file() and path.suffix == ".onnx":
        return open_onnx(path, device, threads, spinning)
    if path.is_dir() and (path / METADATA_NAME).is_file() and not any(path.glob("weights*.pt")):
        metadata = BundleMetadata.read(path)
        name = metadata.onnx.get("fp32") or next(iter(metadata.onnx.values()), None)
        if name is None:
            raise VocoderError(f"{path}: bundle lists no ONNX graph; pass the .onnx or .plan file itself")
        return open_onnx(path / name, device, threads, spinning)
    if path.is_dir() or path.suffix == ".pt":
        return open_checkpoint(path, device)
    raise VocoderError(f"{path}: cannot tell the backend (expected a .plan, .onnx, .pt file or a model directory)")


def open_onnx(path: Path, device: str, threads: int | None, spinning: bool = False) -> Backend:
    from .backends.ort import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, BundleMetadata.read(path.parent), device=device, threads=threads, spinning=spinning)


def open_checkpoint(path: Path, device: str) -> Backend:
    from .backends.pytorch import TorchBackend, _resolve_device

    loaders = sorted(entry_points(group=LOADER_GROUP), key=lambda ep: ep.name)
    if not loaders:
        raise VocoderError(
            f"{path}: no checkpoint loader is installed (entry point group {LOADER_GROUP!r}); pip install diffwave"
        )
    try:
        import torch
    except ImportError:
        raise VocoderError(f"{path}: serving a checkpoint needs PyTorch, which is not installed") from None
    resolved = _resolve_device(device, torch)
    loader = loaders[0].load()
    try:
        module, metadata = loader(path, device=resolved)
    except (ValueError, OSError) as exc:  # the loader's own one-line errors (e.g. CheckpointError)
        message = first_line(exc)
        raise VocoderError(message) from None
    return TorchBackend(module, metadata, device=resolved)
