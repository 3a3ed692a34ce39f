"""Lazy imports of optional backends with an actionable error when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from rnndeploy.errors import MissingDependencyError

# module -> (pip extra that provides it, what it is needed for)
EXTRAS = {
    "torch": ("train", "training, export and the torch runner"),
    "onnxruntime": ("cpu", "the ort-cpu / ort-cuda / ort-trt runners and export validation"),
    "tensorrt": ("gpu", "building and running TensorRT engines"),
    "safetensors": ("train", "reading and writing checkpoints"),
    "onnxslim": ("simplify", "graph simplification"),
    "openvino": ("openvino", "the openvino runner"),
    "h5py": ("keras", "reading Keras model files"),
    "keras": ("keras-runtime", "running Keras models (export validation, the keras runner)"),
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra, default_purpose = EXTRAS.get(module, (module, ""))
        err = MissingDependencyError(module, extra, purpose or default_purpose)
        raise err from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it if avoidable)."""
    import importlib.util

    return importlib.util.find_spec(module) is not None
