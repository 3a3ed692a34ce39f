"""What this machine can do with rnndeploy: versions, providers, GPUs, and what is missing.

Nothing here imports torch or TensorRT: versions come from package metadata and
GPUs from the CUDA driver library (``libcuda.so.1``) through ctypes, so the check
itself is fast and works on any box.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class Component:
    """One dependency: its version (None when absent) and what its absence disables."""

    name: str
    version: Optional[str]
    disables: str
    extra: str
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def present(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class Report:
    python: str
    platform: str
    components: List[Component]
    gpus: List[Dict[str, Any]]
    gpu_error: Optional[str]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "python": self.python,
            "platform": self.platform,
            "components": [
                {"name": c.name, "version": c.version, "disables": c.disables, "extra": c.extra, **c.details}
                for c in self.components
            ],
            "gpus": self.gpus,
            "gpu_error": self.gpu_error,
        }


def _dist_version(*names: str) -> Optional[str]:
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def _ort_providers() -> List[str]:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except Exception as exc:  # a broken install is a finding, not a crash
        return [f"<error: {exc}>"]


def _cpu_bf16() -> Dict[str, Any]:
    """Whether this CPU computes bf16 natively (what openvino:bf16 needs), without importing openvino."""
    from rnndeploy.backends.openvino_runner import cpu_has_native_bf16

    native, why = cpu_has_native_bf16()
    return {"native": native, "why": why}


def probe_gpus() -> tuple[List[Dict[str, Any]], Optional[str]]:
    """CUDA devices via the driver API: ([{index, name, compute_capability, memory_gib}], error)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
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
        # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR = 75/76 (stable since CUDA 5)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
        mem = ctypes.c_size_t()
        cuda.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        gpus.append(
            {
                "index": i,
                "name": name.value.decode(errors="replace"),
                "compute_capability": f"{major.value}.{minor.value}",
                "memory_gib": round(mem.value / 2**30, 1),
            }
        )
    return gpus, None


def collect() -> Report:
    """Inspect the running interpreter and machine."""
    ort_version = _dist_version("onnxruntime", "onnxruntime-gpu")
    components = [
        Component("numpy", _dist_version("numpy"), "everything", "(core)"),
        Component("onnx", _dist_version("onnx"), "everything", "(core)"),
        Component("click", _dist_version("click"), "the command line", "(core)"),
        Component("torch", _dist_version("torch"), "train, export and the torch runner", "train"),
        Component("safetensors", _dist_version("safetensors"), "reading and writing checkpoints", "train"),
        Component(
            "onnxruntime",
            ort_version,
            "the ort-* runners and export validation",
            "cpu (or gpu for onnxruntime-gpu)",
            {"providers": _ort_providers()} if ort_version else {},
        ),
        Component("tensorrt", _dist_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), "build-engine and the trt runner", "gpu"),
        Component("onnxslim", _dist_version("onnxslim"), "export --simplify", "simplify"),
        Component("openvino", _dist_version("openvino"), "the openvino runner", "openvino",
                  {"bf16": _cpu_bf16()} if _dist_version("openvino") else {}),
    ]
    gpus, err = probe_gpus()
    return Report(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
        components=components,
        gpus=gpus,
        gpu_error=err,
    )


def render(report: Report) -> str:
    """Human-readable multi-line summary."""
    lines = [f"python       {report.python} ({report.platform})"]
    for c in report.components:
        if c.present:
            extra = ""
            if "providers" in c.details:
                extra = "  providers: " + ", ".join(c.details["providers"])
            if "bf16" in c.details:
                extra = "  openvino:bf16 " + ("available" if c.details["bf16"]["native"] else "refused") + \
                    f" ({c.details['bf16']['why']})"
            lines.append(f"{c.name:<12} {c.version}{extra}")
        else:
            lines.append(f"{c.name:<12} missing — disables {c.disables} (pip install 'rnndeploy[{c.extra}]')")
    if report.gpus:
        for g in report.gpus:
            lines.append(f"gpu {g['index']:<8} {g['name']} (sm {g['compute_capability']}, {g['memory_gib']} GiB)")
    else:
        lines.append(f"gpu          none — {report.gpu_error}; disables ort-cuda, ort-trt, trt and CUDA torch runs")
    return "\n".join(lines)
