"""What this machine is and has: the one place that probes it.

``rnndeploy doctor``, the machine stamp of every result (rnndeploy.report.machine),
checkpoint manifests, the runners that need a GPU and the benchmark drivers all read
these functions, so a fact about the machine is measured one way everywhere:

    package_version / package_versions   installed versions, from package metadata
    cuda_driver / probe_gpus / cuda_driver_version
                                         the CUDA driver (libcuda.so.1, opened once through
                                         ctypes): GPUs with name, compute capability, memory
    cpu_info / cpu_model / cpu_flags     /proc/cpuinfo (first processor)
    usable_cores / meminfo / memory_gib  the affinity mask, /proc/meminfo
    describe_machine                     all of it as one JSON-able dict

Nothing here imports torch, onnxruntime, OpenVINO or TensorRT, so probing is fast and
works on a torch-free deployment box.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
from typing import Any, Dict, List, Optional, Sequence, Tuple

# Packages whose versions a result depends on (recorded in every result's machine stamp).
PACKAGES = ("rnndeploy", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "click")

# CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR (stable since CUDA 5)
_CC_MAJOR, _CC_MINOR = 75, 76

_LIBCUDA: List[Any] = []  # [CDLL or None] once probed: dlopen once per process


def package_version(*names: str) -> Optional[str]:
    """The installed version of the first of ``names`` that is installed (distribution
    names, e.g. "onnxruntime", "onnxruntime-gpu"), else None."""
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_versions(names: Sequence[str] = PACKAGES) -> Dict[str, Optional[str]]:
    """{"python": ..., package: version or None} for ``names`` (rnndeploy's own version even
    when it runs from a source tree that is not installed)."""
    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in names:
        out[name] = package_version(name)
    if "rnndeploy" in names and out.get("rnndeploy") is None:
        from rnndeploy import __version__

        out["rnndeploy"] = __version__
    return out


# -- the CUDA driver ------------------------------------------------------------------------------------
def cuda_driver() -> Optional[Any]:
    """libcuda.so.1 through ctypes (None when there is no driver); opened once per process."""
    if not _LIBCUDA:
        try:
            _LIBCUDA.append(ctypes.CDLL("libcuda.so.1"))
        except OSError:
            _LIBCUDA.append(None)
    return _LIBCUDA[0]


def probe_gpus() -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """CUDA devices via the driver API: ([{index, name, compute_capability, memory_gib}], error)."""
    cuda = cuda_driver()
    if cuda is None:
        return [], "no CUDA driver (libcuda.so.1 not found)"
    rc = cuda.cuInit(0)
    if rc != 0:
        return [], f"cuInit failed with CUDA error {rc}"
    count = ctypes.c_int()
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return [], "cuDeviceGetCount failed"
    gpus = []
    for i in range(count.value):
        dev = ctypes.c_int()
        cuda.cuDeviceGet(ctypes.byref(dev), i)
        name = ctypes.create_string_buffer(256)
        cuda.cuDeviceGetName(name, 256, dev)
        major, minor = ctypes.c_int(), ctypes.c_int()
        cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
        mem = ctypes.c_size_t()
        cuda.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        gpus.append({"index": i, "name": name.value.decode(errors="replace"),
                     "compute_capability": f"{major.value}.{minor.value}", "memory_gib": round(mem.value / 2**30, 1)})
    return gpus, None


def cuda_driver_version() -> Optional[str]:
    """The driver's CUDA version (e.g. "13.0") via cuDriverGetVersion; None without a driver."""
    cuda = cuda_driver()
    if cuda is None:
        return None
    v = ctypes.c_int()
    if cuda.cuDriverGetVersion(ctypes.byref(v)) != 0:
        return None
    return f"{v.value // 1000}.{(v.value % 1000) // 10}"


# -- CPU and memory ---------------------------------------------------------------------------------------
def cpu_info(path: str = "/proc/cpuinfo") -> Dict[str, str]:
    """The first processor's /proc/cpuinfo fields (lower-case keys; {} where unreadable)."""
    out: Dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    if out:
                        break  # the first processor only
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return out


def cpu_flags() -> frozenset:
    """The CPU's feature flags (avx2, avx512f, amx_bf16, ...); empty where unreadable."""
    return frozenset(cpu_info().get("flags", "").split())


def cpu_model() -> str:
    """The CPU's model name (falls back to what platform says)."""
    return cpu_info().get("model name") or platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; the core count where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def meminfo(path: str = "/proc/meminfo") -> Dict[str, int]:
    """/proc/meminfo in bytes ({"MemTotal": ..., "MemAvailable": ..., ...}); {} where unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:2]}
    except (OSError, ValueError, IndexError):
        return {}


def memory_gib() -> Optional[float]:
    """Total memory (GiB, one decimal) from /proc/meminfo; None where unreadable."""
    total = meminfo().get("MemTotal")
    return round(total / 2**30, 1) if total else None


def describe_machine() -> Dict[str, Any]:
    """A JSON-able description: host, os, cpu, cores, memory, gpus, cuda driver, versions."""
    gpus, _ = probe_gpus()
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": usable_cores(),
        "memory_gib": memory_gib(),
        "gpus": gpus,
        "cuda_driver": cuda_driver_version() if gpus else None,
        # other work on the machine when the result was taken: timings under load are noisy
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "versions": package_versions(),
    }

