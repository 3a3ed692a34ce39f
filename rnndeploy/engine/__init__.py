"""TensorRT engines for recurrent models: profiles, precision paths across TensorRT 8.6 / 10 / 11,
building, the JSON sidecar, and safe loading.

Modules (TensorRT is imported lazily, inside functions, everywhere):
    profiles       optimization profiles: parsing, derivation from metadata, validation, selection
    trt_compat     feature detection on the tensorrt module; precision-path planning; stub tactics
    constraints    ONNX node → TensorRT layers (data flow); FP32 pinning for the FP16-flag path
    builder        plan_build / build_engine: the build itself, engine + sidecar written atomically
    sidecar        the JSON written next to every engine; compatibility and integrity checks
    inspect_engine load_engine (checked deserialization), describe_engine_file for `inspect`
    monitor        progress line and peak-memory sampling during a build
    rewrite        optional ONNX rewrite hoisting the input projection out of the recurrence
"""

from __future__ import annotations

from rnndeploy.engine.builder import BuildOptions, BuildPlan, BuildResult, ShapeOptions, build_engine, plan_build
from rnndeploy.engine.profiles import (
    DEFAULT_RANGES,
    Profile,
    ShapeRange,
    derive_profiles,
    select_profile,
    validate_profiles,
)
from rnndeploy.engine.sidecar import Sidecar, read_sidecar, sidecar_path

__all__ = [
    "DEFAULT_RANGES",
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "Profile",
    "ShapeOptions",
    "ShapeRange",
    "Sidecar",
    "build_engine",
    "derive_profiles",
    "plan_build",
    "read_sidecar",
    "select_profile",
    "sidecar_path",
    "validate_profiles",
]
