"""What this machine can do with rnndeploy: versions, providers, GPUs, and what is missing.

The facts come from rnndeploy.environment (package metadata, the CUDA driver through
ctypes), so nothing here imports torch or TensorRT: the check is fast and works on any box.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from rnndeploy.environment import package_version, probe_gpus


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

    def render(self) -> str:
        """Human-readable multi-line summary."""
        return _render(self)

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


def collect() -> Report:
    """Inspect the running interpreter and machine."""
    ort_version = package_version("onnxruntime", "onnxruntime-gpu")
    components = [
        Component("numpy", package_version("numpy"), "everything", "(core)"),
        Component("onnx", package_version("onnx"), "everything", "(core)"),
        Component("click", package_version("click"), "the command line", "(core)"),
        Component("torch", package_version("torch"), "train, export and the torch runner", "train"),
        Component("safetensors", package_version("safetensors"), "reading and writing checkpoints", "train"),
        Component(
            "onnxruntime",
            ort_version,
            "the ort-* runners and export validation",
            "cpu (or gpu for onnxruntime-gpu)",
            {"providers": _ort_providers()} if ort_version else {},
        ),
        Component("tensorrt", package_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), "build-engine and the trt runner", "gpu"),
        Component("onnxslim", package_version("onnxslim"), "export --simplify", "simplify"),
        Component("openvino", package_version("openvino"), "the openvino runner", "openvino",
                  {"bf16": _cpu_bf16()} if package_version("openvino") else {}),
    ]
    gpus, err = probe_gpus()
    return Report(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        components=components,
        gpus=gpus,
        gpu_error=err,
    )


def _render(report: Report) -> str:
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
