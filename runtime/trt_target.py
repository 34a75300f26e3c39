"""The two TensorRT flavours we build and run plans with, and the few ways they differ.

Data-centre TensorRT (``tensorrt``) and TensorRT for RTX (``tensorrt_rtx``) share the
name-based Python API we use (DESIGN.md, "TensorRT facts"). Everything that differs
between them lives here, so the builder (``export``) and the runtime backend are one
implementation each, taking the module object of a :class:`TrtTarget`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional


class TensorRTMissing(ImportError):
    """The TensorRT module a target needs is not importable (message is one line with the fix)."""


@dataclass(frozen=True)
class TrtTarget:
    name: str  #: "tensorrt" or "rtx" (the ``--target`` value)
    module_name: str  #: what to import
    pip_hint: str  #: how to install it
    plan_name: str  #: file name of its plan inside a bundle
    #: compute capabilities its plans run on; None = whatever the build GPU was (data-centre TensorRT)
    compute_capabilities: Optional[tuple[str, ...]] = None

    def import_module(self) -> ModuleType:
        """Import the module lazily; raise :class:`TensorRTMissing` naming the install command."""
        try:
            return importlib.import_module(self.module_name)
        except ImportError as exc:
            raise TensorRTMissing(
                f"the '{self.module_name}' Python package is not installed ({exc.__class__.__name__}): {self.pip_hint}"
            ) from None

    def available(self) -> bool:
        try:
            self.import_module()
            return True
        except TensorRTMissing:
            return False

    def network_flags(self, trt: ModuleType) -> int:
        """Flags for ``builder.create_network``: strongly typed, wherever the flag exists.

        TensorRT 10.x needs STRONGLY_TYPED for an FP16 ONNX to build as FP16 (BuilderFlag.FP16
        is deprecated from 10.12 and gone in 11). TensorRT 11 and TensorRT-RTX are always
        strongly typed: 11 has no such flag; RTX accepts it but needs nothing (0 works).
        """
        if self.name == "rtx":
            return 0
        flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
        return 0 if flag is None else 1 << int(flag)

    def builder_flags(self, trt: ModuleType) -> tuple[Any, ...]:
        """Builder flags the runtime relies on: TensorRT-RTX's REQUIRE_USER_ALLOCATION.

        The runtime captures the reverse loop in a CUDA graph. TensorRT-RTX documents this flag as
        required for stream capture (release notes 1.2): without it an engine may allocate memory
        while it runs, for shapes beyond its static limits, and such a call cannot be captured (the
        loop then falls back to eager runs). With it that never happens, and a profile whose memory
        cannot be provided up front fails at build time rather than on the GPU. Data-centre
        TensorRT has no such flag and allocates statically already.
        """
        if self.name != "rtx":
            return ()
        flag = getattr(getattr(trt, "BuilderFlag", None), "REQUIRE_USER_ALLOCATION", None)
        return () if flag is None else (flag,)

    @staticmethod
    def version(trt: ModuleType) -> str:
        return str(getattr(trt, "__version__", "unknown"))

    @property
    def display_name(self) -> str:
        """How messages name the library: "TensorRT" or "TensorRT-RTX"."""
        return "TensorRT-RTX" if self.name == "rtx" else "TensorRT"

    def set_compute_capabilities(self, trt: ModuleType, config, capabilities: "tuple[str, ...] | list[str]") -> None:
        """Make the plan run on exactly these capabilities (e.g. ("7.5",) for Turing).

        Only TensorRT-RTX builds for a chosen list (``IBuilderConfig.num_compute_capabilities``
        and ``set_compute_capability(ComputeCapability.SM89, i)``); data-centre TensorRT builds
        for the GPU it runs on. Raises ValueError naming the supported values.
        """
        if self.name != "rtx":
            raise ValueError("data-centre TensorRT builds for the GPU it runs on; compute capabilities "
                             "can only be chosen for the TensorRT-RTX target")
        members = getattr(trt.ComputeCapability, "__members__", {})
        supported = sorted((f"{m[2:-1]}.{m[-1]}" for m in members if m.startswith("SM")),
                           key=lambda cc: tuple(int(p) for p in cc.split(".")))
        values = []
        for cc in capabilities:
            member = "SM" + cc.replace(".", "")
            if member not in members:
                raise ValueError(f"compute capability {cc!r} is not one {self.display_name} "
                                 f"{self.version(trt)} builds for (supported: {', '.join(supported)})")
            values.append(members[member])
        config.num_compute_capabilities = len(values)
        for i, (cc, value) in enumerate(zip(capabilities, values)):
            if config.set_compute_capability(value, i) is False:  # documented to return False when refused
                raise ValueError(f"{self.display_name} {self.version(trt)} refused compute capability {cc!r}")

    def plan_compute_capabilities(self, chosen: "tuple[str, ...]" = (), build_gpu_capability: Optional[str] = None
                                  ) -> tuple[str, ...]:
        """What ``PlanInfo.compute_capabilities`` records: where the plan is documented to run.

        RTX: the list it was built for (its default portable set unless chosen). Data-centre
        TensorRT: the build GPU's capability (plans are not portable across capabilities by
        default), or nothing when unknown.
        """
        if chosen:
            return tuple(chosen)
        if self.compute_capabilities is not None:
            return self.compute_capabilities
        return (build_gpu_capability,) if build_gpu_capability else ()


TENSORRT = TrtTarget(
    name="tensorrt",
    module_name="tensorrt",
    pip_hint="pip install 'diffwave[gpu]' (NVIDIA's TensorRT >= 10, needs a CUDA GPU)",
    plan_name="model.plan",
)
RTX = TrtTarget(
    name="rtx",
    module_name="tensorrt_rtx",
    pip_hint="pip install 'diffwave[rtx]' (NVIDIA's TensorRT for RTX)",
    plan_name="model.rtx.plan",
    # The portable set a TensorRT-RTX 1.7 plan runs on when no capability is chosen: Ampere (8.0 A100,
    # 8.6), Ada (8.9), Blackwell (12.0, 12.1) -- its ComputeCapability enum's SM80/86/89/120/121.
    # Turing (SM75) only when asked for explicitly; Hopper (9.0) never.
    compute_capabilities=("8.0", "8.6", "8.9", "12.0", "12.1"),
)
TARGETS: dict[str, TrtTarget] = {t.name: t for t in (TENSORRT, RTX)}


def target_for_plan(path: str | Path) -> TrtTarget:
    """``*.rtx.plan`` is a TensorRT-RTX plan; any other ``*.plan`` is data-centre TensorRT."""
    return RTX if Path(path).name.endswith(".rtx.plan") else TENSORRT
