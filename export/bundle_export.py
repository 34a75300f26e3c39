"""Export a checkpoint to a bundle directory, and build a plan into a bundle.

A bundle is ``model.onnx`` (+ ``model.fp16.onnx``) + ``model.json`` (+ ``model.plan`` /
``model.rtx.plan``). Two steps, because the second one often happens on another machine:

1. :func:`export_bundle`: graphs, parity gate and metadata are written into a hidden staging
   directory on the destination's filesystem and published only when the gate passes, so a
   failed export leaves nothing behind and publishing is renames only (see :func:`_make_staging`).
2. :func:`build_bundle_plan`: reads ``model.json``, checks the ONNX file against its recorded
   sha256, builds the plan for a :class:`runtime.trt_target.TrtTarget` and records a
   :class:`runtime.bundle.PlanInfo`. The plan is written atomically after the build (and
   ``--check``) succeeded: a failed build leaves no plan and an unchanged ``model.json``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from diffwave.interrupts import deferred
from diffwave.model import DiffWave
from runtime.bundle import (METADATA_NAME, BundleError, BundleMetadata, PlanInfo, Profile, current_umask,
                            stale_temporaries, write_bytes_atomic)
from runtime.trt_target import TARGETS, TrtTarget

from .engine import BuiltPlan, build_gpu, build_plan
from .fp16 import write_fp16_variant
from .parity import GateReport, run_parity_gate
from .profile import polygraphy_convert_command, profile_shapes
from .step_graph import DEFAULT_OPSET, check_step_graph, export_step_onnx, load_step_graph

ONNX_NAMES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}
PRECISIONS = tuple(ONNX_NAMES)
#: every file name export writes; a re-export replaces them all (stale plans would not match the new ONNX)
BUNDLE_FILES = (*ONNX_NAMES.values(), METADATA_NAME, *(t.plan_name for t in TARGETS.values()))
#: the staging directory inside an existing destination: ``.export.<mkdtemp's 8 characters>.staging``
STAGING_NAME, STAGING_SUFFIX = "export", ".staging"
#: inside a staging directory: the files of the bundle being replaced, kept until the new one is in place
PREVIOUS_NAME = ".previous"

Log = Callable[[str], None]


class ExportError(ValueError):
    """Bad input to export (destination, source, options); the message is one line."""


@dataclass(frozen=True)
class ExportSettings:
    precision: str = "fp16"  #: "fp16" also writes and gates model.fp16.onnx
    profile: Profile = field(default_factory=Profile)  #: the parity gate runs at its min/middle/max lengths
    opset: int = DEFAULT_OPSET
    seed: int = 0  #: of the gate's random inputs
    force: bool = False  #: write into an existing directory that is not a bundle
    progress: bool = True


@dataclass(frozen=True)
class ExportResult:
    bundle: Path
    metadata: BundleMetadata
    report: GateReport
    export_seconds: float  #: torch.onnx.export + folding + checks (+ FP16 conversion)
    gate_seconds: float


@dataclass(frozen=True)
class PlanSettings:
    target: TrtTarget
    precision: str = "fp16"
    profile: Profile = field(default_factory=Profile)
    compute_capabilities: tuple[str, ...] = ()  #: TensorRT-RTX only; empty = its default portable set
    workspace_bytes: Optional[int] = None
    progress: bool = True


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_destination(out_dir: Path, force: bool) -> None:
    """Refuse a file, or a non-empty directory that is not a bundle, unless ``force``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory")
    if (out_dir.is_dir() and not (out_dir / METADATA_NAME).is_file() and not force
            and any(not p.name.startswith(".") for p in out_dir.iterdir())):  # dot-names are never data
        raise ExportError(f"{out_dir}: exists and is not a bundle (no {METADATA_NAME}); "
                          "choose another -o or pass --force to write the bundle into it")


def export_bundle(model: DiffWave, out_dir: str | os.PathLike, settings: ExportSettings = ExportSettings(),
                  log: Log = lambda _msg: None) -> ExportResult:
    """Export ``model`` to ``out_dir`` (graphs, parity gate, ``model.json``); no plan.

    Raises :class:`ExportError` for a bad destination and
    :class:`export.parity.ParityGateFailed` when the graphs do not reproduce PyTorch; in both
    cases nothing is written to ``out_dir``.
    """
    if settings.precision not in PRECISIONS:
        raise ExportError(f"precision {settings.precision!r} is not one of {', '.join(PRECISIONS)}")
    out_dir = Path(out_dir)
    check_destination(out_dir, settings.force)
    staging = _make_staging(out_dir)
    try:
        started = time.perf_counter()
        fp32 = export_step_onnx(model, staging / ONNX_NAMES["fp32"], opset=settings.opset)
        fp16 = None
        if settings.precision == "fp16":
            fp16 = write_fp16_variant(fp32, staging / ONNX_NAMES["fp16"])
        n_mels, unconditional = model.config.features.n_mels, model.unconditional
        for path in filter(None, (fp32, fp16)):
            check_step_graph(load_step_graph(path), n_mels, unconditional, source=path.name)
        export_seconds = time.perf_counter() - started
        log(f"exported {', '.join(p.name for p in filter(None, (fp32, fp16)))} in {export_seconds:.1f} s")

        started = time.perf_counter()
        report = run_parity_gate(model, fp32, fp16, settings.profile, seed=settings.seed, progress=settings.progress)
        gate_seconds = time.perf_counter() - started
        for line in report.lines():
            log(line)

        files = [p.name for p in filter(None, (fp32, fp16))]
        metadata = replace(
            model.config.bundle_metadata(),
            onnx={precision: name for precision, name in ONNX_NAMES.items() if name in files},
            onnx_sha256={name: sha256_file(staging / name) for name in files},
        )
        metadata.write(staging)
        _publish(staging, out_dir)
        return ExportResult(out_dir, metadata, report, export_seconds, gate_seconds)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _make_staging(out_dir: Path) -> Path:
    """A hidden staging directory on the filesystem ``out_dir`` lives on, so that publishing is renames only.

    A new bundle is staged beside itself (``.<name>.<random>.staging`` in the parent that will
    hold it) and published by renaming that directory. An existing directory is staged inside
    itself (``.export.<random>.staging``): it may be a mount point (a Docker volume, another
    disk, a tmpfs) whose parent is on another filesystem, where a rename from the parent fails
    with EXDEV. Staging directories a killed export left there (SIGKILL, a power cut) go first.
    """
    if out_dir.is_dir():
        _remove_stale_staging(out_dir, STAGING_NAME)
        parent, prefix = out_dir, f".{STAGING_NAME}."
    else:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(out_dir.parent, out_dir.name)
        parent, prefix = out_dir.parent, f".{out_dir.name}."
    staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=STAGING_SUFFIX, dir=parent))
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's 0700 would hide a bundle published by renaming it
    except BaseException:
        staging.rmdir()
        raise
    return staging


def _remove_stale_staging(folder: Path, name: str) -> None:
    """Staging directories made for ``name`` (mkdtemp's ``.<name>.<8 characters>.staging``) in ``folder``."""
    for made_for, path in stale_temporaries(folder, suffix=STAGING_SUFFIX):
        if made_for == name and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the staged bundle into place: one rename for a new directory, else file by file.

    Every rename stays on one filesystem (:func:`_make_staging`), and nothing of an existing
    bundle is touched before every new file is written and flushed to disk. Its files (and stale
    plans, built from another ONNX) are then set aside inside the staging directory, the new ones
    renamed in (``model.json`` last), and the old ones deleted with the staging directory; if a
    rename fails, the old files are put back. A stop signal is held until publishing is done.
    """
    staged = sorted((p.name for p in staging.iterdir() if not p.name.startswith(".")),
                    key=lambda n: n == METADATA_NAME)  # model.json last
    for name in staged:
        _fsync(staging / name)
    _fsync(staging)
    if staging.parent != out_dir:  # a new bundle, staged beside it
        os.replace(staging, out_dir)
        _fsync(out_dir.parent)
        return
    previous = staging / PREVIOUS_NAME
    previous.mkdir()
    set_aside: list[str] = []
    placed: list[str] = []
    with deferred():
        try:
            for name in BUNDLE_FILES:
                if os.path.lexists(out_dir / name):
                    os.replace(out_dir / name, previous / name)
                    set_aside.append(name)
            for name in staged:
                os.replace(staging / name, out_dir / name)
                placed.append(name)
        except BaseException:
            _put_back(out_dir, previous, set_aside, placed)
            raise
    _fsync(out_dir)


def _put_back(out_dir: Path, previous: Path, set_aside: list[str], placed: list[str]) -> None:
    """Undo a publish that failed halfway (best effort: each step is tried)."""
    for name in placed:
        if name not in set_aside:
            try:
                (out_dir / name).unlink()
            except OSError:
                pass
    for name in set_aside:
        try:
            os.replace(previous / name, out_dir / name)
        except OSError:
            pass


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk; a filesystem that cannot sync a directory is let be."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES):
            raise
    finally:
        os.close(fd)


def onnx_for_plan(bundle_dir: Path, metadata: BundleMetadata, precision: str) -> Path:
    """The bundle's ONNX file for ``precision``, verified against its recorded sha256."""
    name = metadata.onnx.get(precision)
    if name is None:
        have = ", ".join(sorted(metadata.onnx)) or "none"
        hint = " (re-export without --fp32)" if precision == "fp16" else ""
        raise BundleError(f"{bundle_dir / METADATA_NAME}: the bundle has no {precision} graph (it has: {have}){hint}")
    path = bundle_dir / name
    if not path.is_file():
        raise BundleError(f"{path}: missing (recorded in {METADATA_NAME})")
    expected = metadata.onnx_sha256.get(name)
    actual = sha256_file(path)
    if expected != actual:
        raise BundleError(f"{path}: sha256 {actual[:12]}… does not match {METADATA_NAME} ({str(expected)[:12]}…); "
                          "the graph changed after export")
    return path


def plan_shapes(metadata: BundleMetadata, profile: Profile):
    return profile_shapes(profile, metadata.hop_samples, metadata.n_mels, metadata.unconditional)


def polygraphy_command_for(bundle_dir: str | os.PathLike, settings: PlanSettings) -> str:
    """The equivalent ``polygraphy convert`` for another machine (printed when TensorRT is missing)."""
    bundle_dir = Path(bundle_dir)
    metadata = BundleMetadata.read(bundle_dir)
    onnx_name = metadata.onnx.get(settings.precision, ONNX_NAMES[settings.precision])
    return polygraphy_convert_command(bundle_dir / onnx_name, bundle_dir / settings.target.plan_name,
                                      plan_shapes(metadata, settings.profile), rtx=settings.target.name == "rtx")


def build_bundle_plan(bundle_dir: str | os.PathLike, settings: PlanSettings,
                      check: Optional[Callable[[Path, bytes, BundleMetadata], None]] = None,
                      log: Log = lambda _msg: None) -> tuple[PlanInfo, BuiltPlan]:
    """Build ``settings.target.plan_name`` inside ``bundle_dir`` and record it in ``model.json``.

    ``check(onnx_path, plan_bytes, metadata)`` runs before anything is written (``--check``).
    Raises :class:`runtime.trt_target.TensorRTMissing`, :class:`runtime.bundle.BundleError` or
    :class:`export.engine.EngineBuildError`; in every case no plan file is left behind.
    """
    bundle_dir = Path(bundle_dir)
    if settings.precision not in PRECISIONS:
        raise ExportError(f"precision {settings.precision!r} is not one of {', '.join(PRECISIONS)}")
    metadata = BundleMetadata.read(bundle_dir)
    onnx_path = onnx_for_plan(bundle_dir, metadata, settings.precision)
    target = settings.target
    if settings.compute_capabilities and target.compute_capabilities is None:
        raise ExportError(f"--compute-capability is for --target rtx; {target.display_name} builds for the GPU it runs on")
    trt = target.import_module()
    built = build_plan(target, onnx_path, plan_shapes(metadata, settings.profile),
                       compute_capabilities=settings.compute_capabilities,
                       workspace_bytes=settings.workspace_bytes, progress=settings.progress, trt=trt)
    log(f"built {target.plan_name} ({len(built.plan) / 2**20:.1f} MiB) from {onnx_path.name} with "
        f"{target.display_name} {built.library_version} in {built.seconds:.1f} s")
    if check is not None:
        check(onnx_path, built.plan, metadata)
    gpu_name, gpu_cc = build_gpu()
    info = PlanInfo(
        file=target.plan_name,
        target=target.name,
        library_version=built.library_version,
        precision=settings.precision,
        profile=settings.profile,
        onnx_file=onnx_path.name,
        onnx_sha256=metadata.onnx_sha256[onnx_path.name],
        gpu_name=gpu_name,
        compute_capability=gpu_cc,
        compute_capabilities=target.plan_compute_capabilities(tuple(settings.compute_capabilities), gpu_cc),
        plan_sha256=hashlib.sha256(built.plan).hexdigest(),
    )
    write_bytes_atomic(bundle_dir / target.plan_name, built.plan)
    metadata.with_plan(info).write(bundle_dir)
    return info, built
