"""Where a result was measured: CPU, memory, GPUs, driver, package versions.

Nothing here imports torch, onnxruntime or TensorRT: versions come from package
metadata, GPUs and the driver version from libcuda through rnndeploy.doctor / ctypes,
so describing the machine is cheap and works on a torch-free deployment box.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import sys
from typing import Any, Dict, List, Optional

PACKAGES = ("rnndeploy", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "click")


def package_versions() -> Dict[str, Optional[str]]:
    """{package: version or None} for the packages results depend on (plus python)."""
    from importlib import metadata

    out: Dict[str, Optional[str]] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out.get("rnndeploy") is None:
        from rnndeploy import __version__

        out["rnndeploy"] = __version__
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> Optional[float]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def cuda_driver_version() -> Optional[str]:
    """Driver's CUDA version (e.g. "13.0") via cuDriverGetVersion; None without a driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int()
        if cuda.cuDriverGetVersion(ctypes.byref(v)) != 0:
            return None
        return f"{v.value // 1000}.{(v.value % 1000) // 10}"
    except OSError:
        return None


def describe_machine() -> Dict[str, Any]:
    """A JSON-able description: host, os, cpu, cores, memory, gpus, cuda driver, versions."""
    from rnndeploy.doctor import probe_gpus

    gpus, _ = probe_gpus()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_gib": memory_gib(),
        "gpus": gpus,
        "cuda_driver": cuda_driver_version() if gpus else None,
        # other work on the machine when the result was taken: timings under load are noisy
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "versions": package_versions(),
    }


def machine_label(machine: Dict[str, Any]) -> str:
    """Short label, e.g. "NVIDIA H100 80GB HBM3" or "AMD EPYC (2 cores)"."""
    gpus = machine.get("gpus") or []
    if gpus:
        return str(gpus[0].get("name", "GPU"))
    return f"{machine.get('cpu', 'CPU')} ({machine.get('cpu_affinity') or machine.get('cpu_count')} cores)"


def distinct_machines(results: Any) -> List[Dict[str, Any]]:
    """The machines behind ``results`` (objects with a ``.machine`` dict), each once, in order."""
    seen = set()
    out = []
    for r in results:
        m = dict(r.machine)
        key = (m.get("hostname"), m.get("cpu"), str(m.get("gpus")))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out
