"""What the numbers were measured on: CPU, cores, memory, GPU, library versions, load.

A timing without its machine is not a result. Everything here is read without importing the
libraries it names (``importlib.metadata`` versions), except torch for the GPU, which the
benchmark has imported anyway. The load average is recorded before and after the run
because the CI machine is shared: a row measured at load 4 on 2 cores says so.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Optional

#: distributions whose versions go into every report (missing ones are left out)
LIBRARIES = ("diffwave", "torch", "numpy", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt", "tensorrt-rtx", "matplotlib")


@dataclass
class MachineInfo:
    cpu_model: str
    cpu_cores: int  #: logical CPUs the OS reports
    cpus_usable: int  #: CPUs this process may run on (affinity / container limits)
    cpu_mhz: Optional[float]
    memory_gb: Optional[float]
    platform: str
    python: str
    libraries: dict[str, str]
    torch_threads: int  #: torch.get_num_threads(): what the reference and PyTorch rows use
    gpu: Optional[str] = None
    gpu_capability: Optional[str] = None
    gpu_memory_gb: Optional[float] = None
    cuda: Optional[str] = None  #: the CUDA version torch was built with
    load_average_start: Optional[tuple[float, float, float]] = None
    load_average_end: Optional[tuple[float, float, float]] = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the table header, e.g. "AMD EPYC, 2 CPUs, 23.5 GB; no GPU; torch 2.13.0, onnxruntime 1.32.0"."""
        gpu = f"{self.gpu} (sm {self.gpu_capability})" if self.gpu else "no GPU"
        libs = ", ".join(f"{k} {v}" for k, v in self.libraries.items() if k in ("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt", "tensorrt-rtx"))
        mem = f", {self.memory_gb:.1f} GB" if self.memory_gb else ""
        load = ""
        if self.load_average_start is not None:
            load = f"; load {self.load_average_start[0]:.1f}"
            if self.load_average_end is not None:
                load += f" -> {self.load_average_end[0]:.1f}"
        return f"{self.cpu_model}, {self.cpus_usable} CPUs{mem}; {gpu}; {libs}{load}"


def _cpuinfo() -> tuple[str, Optional[float]]:
    """The first processor's model name and current clock, from /proc/cpuinfo (Linux)."""
    model, mhz = "", None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and not model:
                    model = value
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(value)
    except (OSError, ValueError):
        pass
    return model or platform.processor() or platform.machine(), mhz


def _memory_gb() -> Optional[float]:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> Optional[tuple[float, float, float]]:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_machine() -> MachineInfo:
    import torch

    model, mhz = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    info = MachineInfo(
        cpu_model=model,
        cpu_cores=os.cpu_count() or 1,
        cpus_usable=usable,
        cpu_mhz=mhz,
        memory_gb=_memory_gb(),
        platform=platform.platform(),
        python=platform.python_version(),
        libraries=library_versions(),
        torch_threads=torch.get_num_threads(),
        cuda=torch.version.cuda,
        load_average_start=load_average(),
    )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.gpu = props.name
        info.gpu_capability = f"{props.major}.{props.minor}"
        info.gpu_memory_gb = props.total_memory / 1024**3
    return info
