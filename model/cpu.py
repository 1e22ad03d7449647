"""What the machine's processor can do, for choosing an ONNX recipe and for benchmark reports.

The int8 kernels of ONNX Runtime run on what the CPU offers: AVX2 multiplies
unsigned by signed bytes into 16-bit sums that saturate (hence 7-bit weights
there), AVX-512 VNNI and AVX-VNNI sum into 32 bits (8-bit weights are safe),
AMX has tile units for int8 and bf16. The same export can be twice as fast on
one machine as on another, so the choice is made where the model runs
(:mod:`tonewatch.model.export`) and recorded with the features it was made on.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The flags tonewatch looks for, with Linux's ``/proc/cpuinfo`` names."""


@dataclass(frozen=True)
class CpuInfo:
    """The processor's model name, architecture, logical CPU count, and which of :data:`FEATURES` it has."""

    model: str
    machine: str
    logical_cpus: int
    features: tuple[str, ...]

    @property
    def vnni(self) -> bool:
        """Whether int8 dot products sum into 32 bits (AVX-512 VNNI or AVX-VNNI), so 8-bit weights do not saturate."""
        return "avx512_vnni" in self.features or "avx_vnni" in self.features or self.amx_int8

    @property
    def amx_int8(self) -> bool:
        return "amx_int8" in self.features

    @property
    def signature(self) -> str:
        """What an export's int8 choices depend on: the architecture and the features, not the model name."""
        return f"{self.machine}:{'+'.join(self.features) or 'none'}"

    def describe(self) -> str:
        """One line for reports: model, logical CPUs, features."""
        features = ", ".join(self.features) or "none of " + ", ".join(FEATURES)
        return f"{self.model}, {self.logical_cpus} logical CPUs ({self.machine}; {features})"

    def as_dict(self) -> dict:
        return {"model": self.model, "machine": self.machine, "logical_cpus": self.logical_cpus,
                "features": list(self.features)}  # fmt: skip


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The model name and the flags of the first processor in a ``/proc/cpuinfo`` text."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (Linux reads ``/proc/cpuinfo``; elsewhere the model name only)."""
    model, flags = "", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        with contextlib.suppress(OSError):
            model, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    return CpuInfo(
        model=model or platform.processor() or "unknown CPU",
        machine=platform.machine() or "unknown",
        logical_cpus=os.cpu_count() or 1,
        features=tuple(feature for feature in FEATURES if feature in flags),
    )


DEVICES = ("auto", "cpu", "cuda")
DEVICE_ENV = "TONEWATCH_DEVICE"
"""Environment variable choosing the device (``auto`` when unset: a CUDA GPU when one is usable, else the CPU)."""


def onnx_cuda_available() -> bool:
    """Whether the installed ONNX Runtime has its CUDA provider (the ``onnxruntime-gpu`` package) and can use it."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def torch_cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU. Importing torch costs a second and 200 MB, so it is only asked where an
    NVIDIA driver is installed."""
    if not (Path("/proc/driver/nvidia/version").exists() or os.environ.get("CUDA_VISIBLE_DEVICES")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pick_device(device: str | None, backend: str = "auto") -> str:
    """``cpu``, ``cuda-onnx`` (ONNX Runtime's CUDA provider) or ``cuda-torch`` (PyTorch on the GPU), for ``device``
    (else ``$TONEWATCH_DEVICE``, else ``auto``) and the backend asked for; ``cuda`` where no GPU is usable is an
    error, ``auto`` then means the CPU."""
    from tonewatch.configfile import ConfigError

    chosen = device or os.environ.get(DEVICE_ENV) or "auto"
    if chosen not in DEVICES:
        raise ConfigError(f"unknown device {chosen!r} (from the argument or ${DEVICE_ENV}); choose from {DEVICES}")
    if chosen == "cpu":
        return "cpu"
    if backend != "torch" and onnx_cuda_available():
        return "cuda-onnx"
    if backend != "onnx" and torch_cuda_available():
        return "cuda-torch"
    if chosen == "cuda":
        raise ConfigError(
            f"device cuda asked for, but neither ONNX Runtime's CUDA provider (onnxruntime-gpu) nor PyTorch sees a GPU"
            f"{' for backend ' + backend if backend != 'auto' else ''}"
        )
    return "cpu"
