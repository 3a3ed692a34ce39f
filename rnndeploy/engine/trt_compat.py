"""What the installed TensorRT can do, found by feature detection, and the precision path
that follows from it.

TensorRT renumbered its enums between 8.6, 10 and 11 and removed whole features
(``BuilderFlag.FP16`` and weak typing in 11, ``EXPLICIT_BATCH`` in 11, the binding API in
10), so nothing here compares version strings or hard-codes enum values: every
decision looks the feature up with ``getattr`` on the module and its enums. The version
string is only recorded. Tests run this logic against stand-in modules shaped like
8.6 / 10 / 11 and against the real 8.6 module's enums.

Precision paths (``PrecisionPlan.path``):
    ``fp32``                   no reduced precision (TF32 off unless asked for);
    ``strongly-typed``         the network is created STRONGLY_TYPED from an FP16 ONNX
                               (written by rnndeploy.precision); tensor types decide
                               precision. TensorRT 10 (opt-in) and 11 (always);
    ``fp16-flag``              BuilderFlag.FP16 on the FP32 ONNX: TensorRT chooses per
                               layer. TensorRT 8.6, and 10 as a fallback;
    ``fp16-flag+constraints``  the same plus FP32 precision constraints on the layers of
                               the nodes the policy keeps FP32 (recurrent ops under
                               fp16-keep-recurrence, out-of-range constants).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rnndeploy.errors import UsageError

PRECISION_PATHS = ("fp32", "strongly-typed", "fp16-flag", "fp16-flag+constraints")
# Newest ai.onnx opset the ONNX parser bundled with a TensorRT release reads, where known:
# 8.6 from its support matrix (and measured: rnndeploy exports opset 17 for it); 11.x from
# NVIDIA's ONNX opset guide. Versions not listed are not checked (no guess is recorded).
PARSER_MAX_OPSET = {"8.6": 17, "11": 25}
PATH_PREFERENCES = ("auto", "strongly-typed", "flag")
STUB_TACTIC_SOURCES = ("CUBLAS", "CUBLAS_LT", "CUDNN")


# TensorRT releases rnndeploy's engine code targets (by feature detection): 8.6, 10.x, 11.x.
SUPPORTED_VERSIONS = ("8.6", "10", "11")


def is_supported_version(version: str) -> bool:
    """True for a TensorRT version rnndeploy targets (SUPPORTED_VERSIONS): 8.6.x, 10.x, 11.x."""
    parts = str(version).split(".")
    return parts[0] in ("10", "11") or parts[:2] == ["8", "6"]


def parser_max_opset(version: str) -> Optional[int]:
    """The newest opset TensorRT ``version``'s parser reads (PARSER_MAX_OPSET), or None when unknown."""
    parts = str(version).split(".")
    for key in (".".join(parts[:2]), parts[0]):
        if key in PARSER_MAX_OPSET:
            return PARSER_MAX_OPSET[key]
    return None


def check_parser_opset(opset: int, version: Optional[str], what: str) -> Optional[str]:
    """Refuse a model whose opset TensorRT ``version`` cannot parse; returns a note when unchecked.

    Raises:
        UsageError: the opset is newer than the parser's.
    """
    if not version:
        return "opset not checked against a TensorRT parser (none installed; give --trt-version)"
    if not re.fullmatch(r"\d+(\.\d+){0,3}", str(version)):
        raise UsageError(f"--trt-version {version!r} is not a version", "write e.g. --trt-version 8.6 or 10.13")
    if not is_supported_version(str(version)):
        raise UsageError(f"TensorRT {version} is not a version rnndeploy builds engines for",
                         f"use TensorRT {', '.join(SUPPORTED_VERSIONS)} (--trt-version 8.6, 10.x or 11.x)")
    newest = parser_max_opset(version)
    if newest is None:
        return f"opset not checked: the parser range of TensorRT {version} is not recorded here"
    if opset > newest:
        raise UsageError(f"{what} uses opset {opset}; TensorRT {version}'s ONNX parser reads opsets up to {newest}",
                         f"export it with --opset {newest} (rnndeploy export ... --opset {newest})")
    return None


def installed_version() -> Optional[str]:
    """The installed tensorrt package's version, read from its metadata (never imported)."""
    from rnndeploy.environment import package_version

    return package_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_cu12", "tensorrt_cu13")


def _has(obj: Any, *names: str) -> bool:
    for n in names:
        obj = getattr(obj, n, None)
        if obj is None:
            return False
    return True


def _members(enum: Any) -> Tuple[str, ...]:
    """Upper-case member names of a pybind11 enum (or a stand-in namespace)."""
    if enum is None:
        return ()
    members = getattr(enum, "__members__", None)
    names = list(members) if isinstance(members, dict) else [k for k in dir(enum) if not k.startswith("_")]
    return tuple(sorted(n for n in names if n.isupper()))


@dataclass(frozen=True)
class TrtFeatures:
    """Capabilities of one ``tensorrt`` module (see ``detect``)."""

    version: str
    fp16_flag: bool
    tf32_flag: bool
    strongly_typed_flag: bool
    weak_typing: bool  # False when every network is strongly typed (no FP16 flag at all)
    explicit_batch_flag: bool
    explicit_batch_needed: bool
    precision_constraints: Tuple[str, ...]  # builder flags, strongest first
    layer_precision: bool
    progress_monitor: bool
    timing_cache: bool
    memory_pool_limit: bool
    opt_level: bool
    tactic_sources: Tuple[str, ...]
    external_tactics_preview: Optional[str]
    name_based_io: bool
    engine_inspector: bool

    @property
    def strongly_typed(self) -> bool:
        """A strongly typed network can be built (opt-in flag, or the only mode)."""
        return self.strongly_typed_flag or not self.weak_typing

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["precision_constraints"] = list(self.precision_constraints)
        d["tactic_sources"] = list(self.tactic_sources)
        return d


def detect(trt: Any) -> TrtFeatures:
    """Feature detection on an imported ``tensorrt`` module (or a stand-in)."""
    builder_flag = getattr(trt, "BuilderFlag", None)
    net_flag = getattr(trt, "NetworkDefinitionCreationFlag", None)
    config_cls = getattr(trt, "IBuilderConfig", None)
    engine_cls = getattr(trt, "ICudaEngine", None)
    context_cls = getattr(trt, "IExecutionContext", None)
    fp16_flag = _has(builder_flag, "FP16")
    explicit = _has(net_flag, "EXPLICIT_BATCH")
    # Implicit batch still exists (so EXPLICIT_BATCH matters) where the builder or the engine
    # still has ``max_batch_size`` (8.x; removed in 10.0). ``has_implicit_batch_dimension``
    # cannot tell: TensorRT 10 and 11 keep it, deprecated and always False (pyGraph.cpp /
    # pyCore.cpp), while 10 ignores EXPLICIT_BATCH and 11 no longer has it.
    implicit_batch_api = _has(getattr(trt, "Builder", None), "max_batch_size") or _has(engine_cls, "max_batch_size")
    preview = getattr(trt, "PreviewFeature", None)
    ext_preview = next((n for n in _members(preview) if n.startswith("DISABLE_EXTERNAL_TACTIC_SOURCES_FOR_CORE")), None)
    return TrtFeatures(
        version=str(getattr(trt, "__version__", "unknown")),
        fp16_flag=fp16_flag,
        tf32_flag=_has(builder_flag, "TF32"),
        strongly_typed_flag=_has(net_flag, "STRONGLY_TYPED"),
        weak_typing=fp16_flag,
        explicit_batch_flag=explicit,
        explicit_batch_needed=explicit and implicit_batch_api,
        precision_constraints=tuple(
            n for n in ("OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "STRICT_TYPES") if _has(builder_flag, n)
        ),
        layer_precision=_has(getattr(trt, "ILayer", None), "precision") or _has(getattr(trt, "ILayer", None), "set_output_type"),
        progress_monitor=_has(trt, "IProgressMonitor"),
        timing_cache=_has(config_cls, "create_timing_cache") and _has(config_cls, "set_timing_cache"),
        memory_pool_limit=_has(config_cls, "set_memory_pool_limit") and _has(getattr(trt, "MemoryPoolType", None), "WORKSPACE"),
        opt_level=_has(config_cls, "builder_optimization_level"),
        tactic_sources=_members(getattr(trt, "TacticSource", None)),
        external_tactics_preview=ext_preview,
        name_based_io=_has(engine_cls, "num_io_tensors") and _has(context_cls, "execute_async_v3")
        and _has(context_cls, "set_input_shape") and _has(context_cls, "set_tensor_address"),
        engine_inspector=_has(engine_cls, "create_engine_inspector"),
    )


def require_name_based_io(features: TrtFeatures) -> None:
    if not features.name_based_io:
        raise UsageError(
            f"TensorRT {features.version} lacks the name-based tensor API (execute_async_v3, set_tensor_address)",
            "use TensorRT 8.5 or newer",
        )


# -- precision path --------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionPlan:
    """One way to build the engine at the requested precision.

    Attributes:
        path: one of PRECISION_PATHS.
        fp16_flag: set BuilderFlag.FP16.
        strongly_typed: create the network with STRONGLY_TYPED (when the flag exists).
        fp16_onnx: parse the FP16 graph from rnndeploy.precision instead of the FP32 one.
        constraint_flag: builder flag that makes layer precisions binding (or None).
        pin_loop_boundaries: also pin the loop's iterator / recurrence / output layers
            (the recurrent state itself) to FP32.
        why: one line for the build log and sidecar.
    """

    path: str
    fp16_flag: bool = False
    strongly_typed: bool = False
    fp16_onnx: bool = False
    constraint_flag: Optional[str] = None
    pin_loop_boundaries: bool = False
    why: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def plan_precision(
    features: TrtFeatures,
    fp16: bool,
    needs_fp32_layers: bool,
    prefer: str = "auto",
    onnx_is_fp16: bool = False,
) -> List[PrecisionPlan]:
    """Ordered attempts for the build: the first that parses and builds wins.

    Args:
        fp16: FP16 requested (``--fp16``).
        needs_fp32_layers: the policy keeps some nodes FP32 (recurrent ops under
            fp16-keep-recurrence, out-of-range constants): the flag path then needs
            per-layer precision constraints.
        prefer: "auto" (strongly typed where it exists, flag as fallback), "strongly-typed",
            or "flag" (the FP16 builder flag first).
        onnx_is_fp16: the given ONNX already holds FP16 tensors (converted beforehand).

    Raises:
        UsageError: an unknown preference, or no path exists for the request on this
            TensorRT (e.g. FP16 on a build with neither the flag nor strong typing).
    """
    if prefer not in PATH_PREFERENCES:
        raise UsageError(f"precision path {prefer!r} is unknown", f"use one of {', '.join(PATH_PREFERENCES)}")
    v = features.version
    if not fp16 and not onnx_is_fp16:
        return [PrecisionPlan("fp32", why="FP32 requested")]

    typed: List[PrecisionPlan] = []
    if features.strongly_typed:
        why = (f"TensorRT {v} types every network strongly: FP16 comes from the ONNX graph"
               if not features.weak_typing else f"TensorRT {v} has STRONGLY_TYPED networks")
        typed.append(PrecisionPlan("strongly-typed", strongly_typed=features.strongly_typed_flag,
                                   fp16_onnx=not onnx_is_fp16, why=why))
    flag: List[PrecisionPlan] = []
    if features.fp16_flag:
        if onnx_is_fp16:
            flag.append(PrecisionPlan("fp16-flag", fp16_flag=True, why=f"TensorRT {v}: FP16 ONNX with the FP16 builder flag"))
        elif needs_fp32_layers:
            if features.precision_constraints and features.layer_precision:
                # strongest first: the recurrent state pinned too; then the loop's arithmetic
                # only; then constraints TensorRT may relax (PREFER) rather than fail on.
                c0 = features.precision_constraints[0]
                flag.append(PrecisionPlan("fp16-flag+constraints", fp16_flag=True, constraint_flag=c0, pin_loop_boundaries=True,
                                          why=f"TensorRT {v}: FP16 flag; kept nodes' layers and recurrent state pinned to FP32 ({c0})"))
                for c in features.precision_constraints[:2]:
                    flag.append(PrecisionPlan("fp16-flag+constraints", fp16_flag=True, constraint_flag=c,
                                              why=f"TensorRT {v}: FP16 flag, kept nodes' arithmetic layers pinned to FP32 ({c})"))
        else:
            flag.append(PrecisionPlan("fp16-flag", fp16_flag=True, why=f"TensorRT {v}: FP16 builder flag"))

    if prefer == "strongly-typed":
        if not typed:
            raise UsageError(f"TensorRT {v} cannot build strongly typed networks", "use --fp16-path auto or flag")
        plans = typed + flag
    elif prefer == "flag":
        if not flag:
            raise UsageError(f"TensorRT {v} has no usable FP16 builder flag path for this policy",
                             "use --fp16-path auto (strongly typed from an FP16 ONNX)")
        plans = flag + typed
    else:
        plans = typed + flag
    if not plans:
        raise UsageError(f"TensorRT {v} offers no way to build FP16 here (no FP16 flag, no strong typing)",
                         "build without --fp16")
    return plans


def network_flags(trt: Any, features: TrtFeatures, plan: PrecisionPlan) -> int:
    """Bit mask for ``Builder.create_network``: EXPLICIT_BATCH only where it is needed,
    STRONGLY_TYPED only where the plan asks for it and the flag exists."""
    flags = 0
    enum = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if features.explicit_batch_needed:
        flags |= 1 << int(enum.EXPLICIT_BATCH)
    if plan.strongly_typed and features.strongly_typed_flag:
        flags |= 1 << int(enum.STRONGLY_TYPED)
    return flags


# -- tactic sources and the kit's stub libraries ----------------------------------------------------
_STUB_SONAMES = re.compile(r"/(libcublas\.so[.\d]*|libcublasLt\.so[.\d]*|libcudnn\.so[.\d]*)$")
_STUB_MAX_BYTES = 1 << 20  # the real cuBLAS / cuDNN are hundreds of MB; the kit's stubs ~16 KB


def loaded_stub_libraries(maps_text: Optional[str] = None) -> List[str]:
    """Paths of cuBLAS / cuBLASLt / cuDNN libraries mapped into this process that are stubs
    (the trt86 kit ships ~16 KB stand-ins that only satisfy the dynamic linker).

    A library counts as a stub when it is smaller than 1 MiB or says "trtkit stub" inside.
    ``maps_text`` (the text of /proc/self/maps) is injectable for tests.
    """
    from rnndeploy.cuda import mapped_libraries

    stubs = []
    for path in mapped_libraries(maps_text):
        if not _STUB_SONAMES.search(path):
            continue
        try:
            size = os.path.getsize(path)
            if size < _STUB_MAX_BYTES:
                stubs.append(path)
                continue
            with open(path, "rb") as f:
                if b"trtkit stub" in f.read(64 << 10):
                    stubs.append(path)
        except OSError:
            continue
    return stubs


def tactic_source_mask(trt: Any, names: Sequence[str]) -> int:
    """Bit mask of the TacticSource members called ``names`` that exist in this TensorRT."""
    enum = getattr(trt, "TacticSource", None)
    mask = 0
    for n in names:
        member = getattr(enum, n, None)
        if member is not None:
            mask |= 1 << int(member)
    return mask


def tactic_source_names(trt: Any, mask: int) -> List[str]:
    """Names of the TacticSource members set in ``mask``."""
    enum = getattr(trt, "TacticSource", None)
    return [n for n in _members(enum) if mask & (1 << int(getattr(enum, n)))]


@dataclass(frozen=True)
class TacticDecision:
    """Whether to turn the cuBLAS / cuBLASLt / cuDNN tactic sources off, and why."""

    disable: bool
    reason: str
    stubs: Tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> Dict[str, Any]:
        return {"disable_external": self.disable, "reason": self.reason, "stub_libraries": list(self.stubs)}


def decide_stub_tactics(mode: str, stubs: Sequence[str]) -> TacticDecision:
    """``mode``: "auto" (disable when stub libraries are loaded), "disable", or "keep"."""
    if mode not in ("auto", "disable", "keep"):
        raise UsageError(f"stub tactic mode {mode!r} is unknown", "use auto, disable or keep")
    if mode == "disable":
        return TacticDecision(True, "asked for (--no-stub-tactics)", tuple(stubs))
    if mode == "keep":
        return TacticDecision(False, "kept (--stub-tactics keep)", tuple(stubs))
    if stubs:
        return TacticDecision(True, "cuBLAS/cuDNN in this process are stubs (trt86 kit)", tuple(stubs))
    return TacticDecision(False, "real cuBLAS/cuDNN or none loaded", ())
