"""Open a serialized engine safely, and describe it (I/O tensors, profiles, layer precisions).

``load_engine`` is the one way rnndeploy deserializes an engine. It refuses, with one
clear line and *before* any ``trt.Runtime`` exists, a file that is missing, empty,
truncated or altered (size / sha256 against the sidecar), built by another TensorRT
version, or built for another GPU; it checks for a CUDA device first (TensorRT 8.6's
``trt.Runtime()`` segfaults without one). Only a file that passes all that reaches
``deserialize_cuda_engine``, whose failure is reported as a corrupt engine too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from rnndeploy.engine.profiles import Profile
from rnndeploy.engine.sidecar import Sidecar, check_compatible, check_engine_bytes, read_sidecar
from rnndeploy.engine.trt_compat import TrtFeatures, detect, require_name_based_io
from rnndeploy.errors import DeviceError, EngineFileError, MissingDependencyError, RnnDeployError


@dataclass
class LoadedEngine:
    """A deserialized engine and what was checked on the way."""

    trt: Any
    runtime: Any
    engine: Any
    sidecar: Optional[Sidecar]
    features: TrtFeatures
    gpu: Mapping[str, Any]
    path: str
    logger: Any = None  # the runtime's logger must outlive it

    def release(self) -> None:
        """Drop the engine before the runtime before the logger (TensorRT's required order)."""
        self.engine = None
        self.runtime = None
        self.logger = None


def load_engine(path: str, device: int = 0, allow_other_gpu: bool = False, verify_hash: bool = True,
                trt: Any = None, cuda_runtime: Any = None) -> LoadedEngine:
    """Check and deserialize the engine at ``path`` (see module docstring).

    ``trt`` and ``cuda_runtime`` are injectable (tests pass stand-ins to prove that
    refusals happen before ``trt.Runtime`` is touched).

    Raises:
        EngineFileError (exit 2): missing / empty / truncated / altered / foreign engine.
        MissingDependencyError, DeviceError (exit 3): no TensorRT, no CUDA runtime or GPU.
    """
    sidecar = read_sidecar(path)
    check_engine_bytes(path, sidecar, verify_hash=verify_hash)
    if trt is None:
        from rnndeploy.optional import require

        trt = require("tensorrt", "running TensorRT engines")
    features = detect(trt)
    require_name_based_io(features)
    check_compatible(sidecar, path, trt_version=features.version)
    if cuda_runtime is None:
        from rnndeploy import cuda

        cuda_runtime = cuda.runtime()
    cuda_runtime.require_device(device)
    props = cuda_runtime.device_properties(device)
    gpu = {"name": props.name, "compute_capability": props.compute_capability}
    check_compatible(sidecar, path, gpu=gpu, allow_other_gpu=allow_other_gpu)
    logger = trt.Logger(trt.Logger.ERROR)
    runtime = trt.Runtime(logger)
    with open(path, "rb") as f:
        blob = f.read()
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        why = "" if sidecar is not None else " and has no sidecar to say what built it"
        raise EngineFileError(f"TensorRT {features.version} cannot deserialize {path}: the file is corrupt or from another TensorRT/GPU{why}",
                              "rebuild it here with rnndeploy build-engine")
    return LoadedEngine(trt, runtime, engine, sidecar, features, gpu, path, logger)


# -- describing a deserialized engine -----------------------------------------------------------------
def _dtype_name(trt: Any, dtype: Any) -> str:
    try:
        import numpy as np

        return str(np.dtype(trt.nptype(dtype)))
    except (TypeError, ValueError, AttributeError):
        return str(getattr(dtype, "name", dtype)).lower()


def io_tensors(trt: Any, engine: Any) -> List[Dict[str, Any]]:
    """[{name, mode ("input"/"output"), dtype (numpy name), shape (-1 = dynamic)}] via the name-based API."""
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        out.append({
            "name": name,
            "mode": "input" if mode == trt.TensorIOMode.INPUT else "output",
            "dtype": _dtype_name(trt, engine.get_tensor_dtype(name)),
            "shape": [int(d) for d in engine.get_tensor_shape(name)],
        })
    return out


def engine_profiles(trt: Any, engine: Any) -> List[Profile]:
    """The engine's own optimization profiles (min/opt/max of every input tensor with a dynamic axis)."""
    from rnndeploy.engine.profiles import ShapeRange

    inputs = [t for t in io_tensors(trt, engine) if t["mode"] == "input"]
    profiles = []
    for k in range(engine.num_optimization_profiles):
        shapes = {}
        for t in inputs:
            if all(d >= 0 for d in t["shape"]):
                continue
            lo, opt, hi = engine.get_tensor_profile_shape(t["name"], k)
            shapes[t["name"]] = ShapeRange(tuple(int(d) for d in lo), tuple(int(d) for d in opt), tuple(int(d) for d in hi))
        profiles.append(Profile(shapes))
    return profiles


def layer_precision_histogram(trt: Any, engine: Any, features: TrtFeatures) -> Dict[str, int]:
    """Count of engine layers by the data type of their first output ("fp16", "fp32",
    "int32", "other"), from the engine inspector's JSON. Needs an engine built with
    ProfilingVerbosity.DETAILED; {} where the information is not available."""
    layers = _inspector_layers(trt, engine, features)
    hist: Dict[str, int] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        outs = layer.get("Outputs") or []
        text = str(outs[0].get("Format/Datatype", "")) if outs and isinstance(outs[0], dict) else ""
        key = "other"
        for needle, name in (("FP16", "fp16"), ("Half", "fp16"), ("FP32", "fp32"), ("Float", "fp32"), ("Int32", "int32"),
                             ("INT32", "int32"), ("Bool", "bool")):
            if needle in text:
                key = name
                break
        hist[key] = hist.get(key, 0) + 1
    return hist


def _inspector_layers(trt: Any, engine: Any, features: TrtFeatures) -> List[Any]:
    if not features.engine_inspector or not hasattr(trt, "LayerInformationFormat"):
        return []
    try:
        inspector = engine.create_engine_inspector()
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:  # best effort: an inspector failure must not fail a build or inspect
        return []
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    return list(layers)


def engine_layers(trt: Any, engine: Any, features: TrtFeatures) -> List[Any]:
    """The inspector's per-layer records (dicts with DETAILED verbosity, names otherwise)."""
    return _inspector_layers(trt, engine, features)


# -- inspect command ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineInfo:
    """What ``rnndeploy inspect model.plan`` shows.

    ``live`` holds what the engine itself says (I/O, profiles, layers) when TensorRT and a
    GPU are present; ``live_skipped`` says why not otherwise.
    """

    path: str
    bytes: int
    sidecar: Optional[Dict[str, Any]]
    live: Optional[Dict[str, Any]] = None
    live_skipped: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    def render(self) -> str:
        """Multi-line text for the terminal (``rnndeploy inspect``)."""
        return _render(self)

    def to_dict(self) -> Dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "sidecar": self.sidecar, "live": self.live,
                "live_skipped": self.live_skipped, "notes": list(self.notes)}


def describe_engine_file(path: str, live: bool = True, device: int = 0) -> EngineInfo:
    """Sidecar facts (always) plus the deserialized engine's own description (when
    ``live`` and TensorRT + a GPU are available and the engine is compatible).

    Raises:
        EngineFileError: the file is missing, truncated or altered.
    """
    sidecar = read_sidecar(path)
    size = check_engine_bytes(path, sidecar)
    notes = []
    if sidecar is None:
        notes.append("no sidecar: build it with rnndeploy build-engine to record TensorRT version, GPU and profiles")
    live_info = None
    skipped = None
    if live:
        try:
            loaded = load_engine(path, device=device)
            eng = loaded.engine
            live_info = {
                "tensorrt": loaded.features.version,
                "gpu": dict(loaded.gpu),
                "io": io_tensors(loaded.trt, eng),
                "profiles": [p.to_dict() for p in engine_profiles(loaded.trt, eng)],
                "layers": len(engine_layers(loaded.trt, eng, loaded.features)) or getattr(eng, "num_layers", None),
                "layer_precisions": layer_precision_histogram(loaded.trt, eng, loaded.features),
                "device_memory_bytes": _device_memory(eng),
            }
            del eng
            loaded.release()
        except (MissingDependencyError, DeviceError) as exc:
            if sidecar is None:
                # Nothing here can vouch that the file is an engine at all (any file would do).
                raise EngineFileError(
                    f"{path} has no sidecar ({os.path.basename(path)}.json) and cannot be opened here: {exc}",
                    "inspect it where TensorRT and a GPU are present, or give an .onnx file",
                ) from exc
            skipped = str(exc)
        except EngineFileError as exc:
            if sidecar is None:
                raise
            skipped = str(exc)  # e.g. built by another TensorRT: the sidecar is still worth showing
        except RnnDeployError as exc:
            skipped = str(exc)
    else:
        skipped = "not asked (--no-live)"
    return EngineInfo(os.path.abspath(path), size, sidecar.to_dict() if sidecar else None, live_info, skipped, notes)


def _device_memory(engine: Any) -> Optional[int]:
    for attr in ("device_memory_size_v2", "device_memory_size"):
        v = getattr(engine, attr, None)
        if isinstance(v, int):
            return v
    return None


def _render(info: EngineInfo) -> str:
    """Human-readable, one screen."""
    lines = [f"engine       {info.path} ({info.bytes / 2**20:.2f} MiB)"]
    s = info.sidecar or {}
    if s:
        gpu = s.get("gpu", {})
        prec = s.get("precision", {})
        build = s.get("build", {})
        lines.append(f"built        {s.get('created')} by rnndeploy {s.get('rnndeploy_version')}, "
                     f"TensorRT {s.get('tensorrt', {}).get('version')}, {gpu.get('name')} (sm {gpu.get('compute_capability')})")
        onnx = s.get("onnx", {})
        lines.append(f"from         {onnx.get('file')} (sha256 {str(onnx.get('sha256'))[:12]}...)")
        policy = f", policy {prec.get('policy')}" if prec.get("policy") else ""
        lines.append(f"precision    {prec.get('requested')}{policy} via {prec.get('path')}: {prec.get('why')}")
        if prec.get("kept_fp32"):
            lines.append(f"kept FP32    {', '.join(sorted(prec['kept_fp32']))}")
        if prec.get("layer_precisions"):
            lines.append("layers       " + ", ".join(f"{k} {v}" for k, v in sorted(prec["layer_precisions"].items())))
        mem = build.get("memory", {})
        lines.append(f"build        {build.get('seconds')} s, peak host RSS {mem.get('peak_host_rss_mib')} MiB, "
                     f"device +{mem.get('peak_device_growth_mib')} MiB, tactics {', '.join(build.get('tactic_sources') or []) or 'default'}")
        for t in s.get("io", []):
            lines.append(f"{t['mode']:<12} {t['name']} {t['dtype']}{t['shape']}")
        for i, p in enumerate(s.get("profiles", [])):
            prof = Profile.from_dict(p)
            lines.append(f"profile {i:<4} {prof.render()}")
    if info.live:
        lv = info.live
        lines.append(f"live         TensorRT {lv['tensorrt']} on {lv['gpu'].get('name')}: {lv.get('layers')} layers, "
                     f"device memory {(lv.get('device_memory_bytes') or 0) / 2**20:.1f} MiB")
        if not s:
            for t in lv["io"]:
                lines.append(f"{t['mode']:<12} {t['name']} {t['dtype']}{t['shape']}")
            for i, p in enumerate(lv["profiles"]):
                lines.append(f"profile {i:<4} {Profile.from_dict(p).render()}")
    elif info.live_skipped:
        lines.append(f"live         skipped: {info.live_skipped}")
    lines.extend(f"note         {n}" for n in info.notes)
    return "\n".join(lines)
