"""Build a TensorRT engine from an ONNX file: profiles, precision path, workspace,
optimisation level, timing cache, progress, atomic engine + JSON sidecar.

The order of work is chosen so that nothing slow or crashy happens before the cheap
checks: ONNX read and profiles validated → tensorrt imported → a CUDA device confirmed
through libcudart (TensorRT 8.6's ``trt.Runtime()`` segfaults without one) → only then
``trt.Builder``. Each precision plan from ``trt_compat.plan_precision`` is tried in
order (e.g. strongly typed, then the FP16 flag on TensorRT 10); the sidecar records
the path taken and why earlier ones failed.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rnndeploy import __version__
from rnndeploy.artefacts.onnx_file import check_graph, default_opset, load_onnx
from rnndeploy.engine import constraints, trt_compat
from rnndeploy.engine.monitor import ElapsedSpinner, MemorySampler, PhaseTracker, make_progress_monitor
from rnndeploy.engine.profiles import Profile, derive_profiles, engine_defaults, inputs_for_onnx
from rnndeploy.engine.sidecar import write_sidecar
from rnndeploy.errors import EngineBuildError, UsageError
from rnndeploy.fileio import check_parent_dir, sha256_bytes, sha256_file, write_bytes_atomic
from rnndeploy.precision import (
    POLICIES,
    check_node_names,
    check_policy,
    convert_to_fp16,
    fp32_nodes,
    is_fp16_model,
    precision_report_of,
)
from rnndeploy.spec import ModelSpec, has_rnndeploy_metadata, read_onnx_metadata, spec_from_onnx_io

# Policy reasons that must be enforced on the FP16-flag path (the others — ops with no
# FP16 path — TensorRT already handles by itself there).
_ENFORCED_REASONS = ("policy", "range", "user")
# Newest IR version TensorRT 8.6's parser reads; models at opset <= 17 need nothing newer.
_PARSER_IR_VERSION = 8


@dataclass(frozen=True)
class ShapeOptions:
    """Profile options as the user gave them (see engine.profiles.derive_profiles)."""

    min_shapes: Tuple[str, ...] = ()
    opt_shapes: Tuple[str, ...] = ()
    max_shapes: Tuple[str, ...] = ()
    profiles: Tuple[str, ...] = ()
    batch: Optional[str] = None
    seq: Optional[str] = None
    dims: Tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildOptions:
    """How to build.

    Attributes:
        fp16: build FP16 (None: the recipe's [engine] precision from the metadata, else FP32).
        policy: FP16 precision policy, one of precision.POLICIES (None: metadata, else "fp16").
        fp16_path: "auto" | "strongly-typed" | "flag" (see trt_compat.plan_precision).
        shapes: profile options; empty → metadata [engine] ranges → DEFAULT_RANGES.
        workspace_mib: builder workspace limit in MiB (None: TensorRT's default).
        opt_level: builder optimisation level 0-5 (None: TensorRT's default, 3).
        timing_cache: file to load (if present) and save the timing cache to.
        stub_tactics: "auto" (disable cuBLAS/cuBLASLt/cuDNN tactics when those libraries
            are the kit's stubs), "disable", "keep".
        tf32: allow TF32 in FP32 layers (default off: FP32 parity with torch needs it off).
        detailed_profiling: ProfilingVerbosity.DETAILED, so the engine inspector can show
            per-layer precision and tactics (default on; slightly larger engine).
        progress: show build progress on stderr (None: when stderr is a terminal).
        verbose: TensorRT VERBOSE log to stderr.
        device: CUDA device index.
        keep_nodes: extra ONNX node names to keep FP32.
        hoist: rewrite eligible LSTM/GRU/RNN nodes so the input projection of all
            timesteps is one MatMul ahead of the recurrence (engine.rewrite); default off.
        trt_version: the TensorRT the plan is for (opset check in --dry-run); None: the
            installed one (found from package metadata, not imported).
    """

    fp16: Optional[bool] = None
    policy: Optional[str] = None
    fp16_path: str = "auto"
    shapes: ShapeOptions = field(default_factory=ShapeOptions)
    workspace_mib: Optional[int] = None
    opt_level: Optional[int] = None
    timing_cache: Optional[str] = None
    stub_tactics: str = "auto"
    tf32: bool = False
    detailed_profiling: bool = True
    progress: Optional[bool] = None
    verbose: bool = False
    device: int = 0
    keep_nodes: Tuple[str, ...] = ()
    hoist: bool = False
    trt_version: Optional[str] = None

    def __post_init__(self) -> None:
        if self.policy is not None:
            check_policy(self.policy)
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise UsageError(f"--workspace must be at least 1 MiB, got {self.workspace_mib}")
        if self.opt_level is not None and not 0 <= self.opt_level <= 5:
            raise UsageError(f"--opt-level must be 0..5, got {self.opt_level}")
        if self.fp16_path not in trt_compat.PATH_PREFERENCES:
            raise UsageError(f"--fp16-path {self.fp16_path!r} is unknown", f"use one of {', '.join(trt_compat.PATH_PREFERENCES)}")
        trt_compat.decide_stub_tactics(self.stub_tactics, ())  # validates the mode


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before TensorRT is touched (testable without it)."""

    onnx_path: str
    onnx_sha256: str
    spec: ModelSpec
    graph: str
    with_state: bool
    profiles: Tuple[Profile, ...]
    profiles_origin: str
    fp16: bool
    policy: Optional[str]
    onnx_is_fp16: bool
    kept_fp32: Mapping[str, str]  # node name -> reason, enforced on the flag path
    options: BuildOptions
    rewrite: Optional[Mapping[str, Any]] = None  # HoistReport.to_dict() when options.hoist
    notes: Tuple[str, ...] = ()  # what the plan could not check (e.g. the opset without a TensorRT version)

    def to_dict(self) -> Dict[str, Any]:
        return {"onnx": self.onnx_path, "profiles": [p.to_dict() for p in self.profiles], "profiles_origin": self.profiles_origin,
                "fp16": self.fp16, "policy": self.policy, "kept_fp32": dict(self.kept_fp32), "rewrite": self.rewrite,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class BuildResult:
    """A finished build. ``sidecar`` is the JSON written next to the engine."""

    engine_path: str
    sidecar_path: str
    engine_bytes: int
    build_seconds: float
    precision_path: str
    sidecar: Mapping[str, Any]

    def render(self) -> str:
        gpu = self.sidecar.get("gpu", {})
        return (f"wrote {self.engine_path} ({self.engine_bytes / 2**20:.1f} MiB) + {os.path.basename(self.sidecar_path)}: "
                f"TensorRT {self.sidecar.get('tensorrt', {}).get('version')}, {gpu.get('name')} (sm {gpu.get('compute_capability')}), "
                f"{self.precision_path}, {len(self.sidecar.get('profiles', []))} profile(s), built in {self.build_seconds:.1f} s")


# -- planning (no TensorRT) -------------------------------------------------------------------------
def plan_build(onnx_path: str, options: BuildOptions) -> BuildPlan:
    """Read the ONNX file and decide profiles and precision policy.

    Raises:
        UsageError / ShapeError / SpecError: bad file, options or profiles.
    """
    model = load_onnx(onnx_path)
    check_graph(model, onnx_path)
    opset_note = trt_compat.check_parser_opset(default_opset(model), options.trt_version or trt_compat.installed_version(),
                                               str(onnx_path))
    if options.keep_nodes:
        check_node_names(model, options.keep_nodes)
    if has_rnndeploy_metadata(model):
        spec, graph, export_info = read_onnx_metadata(model, str(onnx_path))
        spec_inputs = spec.graph(graph).inputs
    else:  # a foreign model: its declared inputs and outputs
        spec, graph, export_info = spec_from_onnx_io(model, os.path.splitext(os.path.basename(onnx_path))[0]), "model", {}
        spec_inputs = spec.graph("model").inputs
    inputs = inputs_for_onnx(model, spec_inputs)
    onnx_inputs = {t.name for t in inputs}
    with_state = any(t.optional and t.name in onnx_inputs for t in spec_inputs)
    defaults = engine_defaults(spec.attrs, export_info)
    s = options.shapes
    profiles, origin = derive_profiles(
        inputs, min_shapes=s.min_shapes, opt_shapes=s.opt_shapes, max_shapes=s.max_shapes, profiles=s.profiles,
        batch=s.batch, seq=s.seq, dims=s.dims, defaults=defaults,
    )
    meta_precision = str(defaults.get("precision") or "fp32")
    for key in ("workspace_mib", "opt_level"):  # the recipe's [engine] settings fill what the options leave open
        if getattr(options, key) is None and isinstance(defaults.get(key), int) and not isinstance(defaults.get(key), bool):
            options = replace(options, **{key: int(defaults[key])})
    onnx_is_fp16 = is_fp16_model(model)
    fp16 = options.fp16 if options.fp16 is not None else (meta_precision != "fp32" or onnx_is_fp16)
    if onnx_is_fp16 and options.fp16 is False:
        raise UsageError(f"{onnx_path} already holds FP16 tensors, so it cannot build an FP32 engine",
                         "give the FP32 export, or drop --fp32")
    policy = options.policy or (meta_precision if meta_precision in POLICIES else "fp16")
    rewrite = None
    if options.hoist:
        from rnndeploy.engine.rewrite import hoist_input_projection

        model, hoisted = hoist_input_projection(model)
        rewrite = hoisted.to_dict()
    kept: Dict[str, str] = {}
    if onnx_is_fp16:
        stored = precision_report_of(model) or {}
        policy = stored.get("policy", "as converted")
    elif fp16:
        kept = {k.name: k.reason for k in fp32_nodes(model, policy, options.keep_nodes).values() if k.reason in _ENFORCED_REASONS}
        if rewrite and policy == "fp16-keep-recurrence":  # the Scans that replaced recurrent nodes stay FP32 too
            kept.update({scan: "policy" for scans in rewrite["rewritten"].values() for scan in scans})
    return BuildPlan(
        onnx_path=str(onnx_path), onnx_sha256=sha256_file(onnx_path), spec=spec, graph=graph, with_state=with_state,
        profiles=tuple(profiles), profiles_origin=origin, fp16=fp16, policy=policy if fp16 else None,
        onnx_is_fp16=onnx_is_fp16, kept_fp32=kept, options=options, rewrite=rewrite,
        notes=(opset_note,) if opset_note else (),
    )


def write_fp16_onnx(plan: BuildPlan, path: str) -> Any:
    """Write the FP16 ONNX the strongly typed path would parse for ``plan`` (after the
    optional hoisting rewrite, with the plan's policy and kept nodes); onnx only. Returns
    the PrecisionReport."""
    if not plan.fp16 or plan.onnx_is_fp16:
        raise UsageError("writing an FP16 ONNX needs an FP32 ONNX and --fp16 (or an FP16 recipe precision)")
    model = load_onnx(plan.onnx_path, external_data=True)
    if plan.options.hoist:
        from rnndeploy.engine.rewrite import hoist_input_projection

        model, _ = hoist_input_projection(model)
    converted, report = convert_to_fp16(model, plan.policy or "fp16", keep_nodes=plan.options.keep_nodes)
    write_bytes_atomic(path, converted.SerializeToString())
    return report


def check_fp16_onnx(plan: BuildPlan, fp16_path: str, seed: int = 0) -> List[Dict[str, Any]]:
    """Run the FP32 ONNX and the FP16 file on seeded inputs at the first profile's opt shape
    (seq capped at 64) with onnxruntime CPU or onnx's reference evaluator, and return per
    output {name, max_abs, rel_l2, rel_l2_target} (target: the spec's FP16 tolerance)."""
    from rnndeploy.inputs import generate_inputs
    from rnndeploy.precision import compare_models

    graph = plan.spec.graph(plan.graph).streaming(plan.with_state)
    sizes: Dict[str, int] = {}
    for t in graph.inputs:
        r = plan.profiles[0].shapes.get(t.name)
        for axis, d in enumerate(t.dims):
            if isinstance(d, str) and r is not None:
                sizes.setdefault(d, min(int(r.opt[axis]), 64))
    feed = generate_inputs(graph, sizes, seed)
    errors = compare_models(load_onnx(plan.onnx_path, external_data=True), load_onnx(fp16_path, external_data=True), feed)
    out = []
    for e in errors:
        target = graph.tolerance(e.name, "fp16").rel_l2 if e.name in {t.name for t in graph.outputs} else None
        out.append({"name": e.name, "max_abs": e.max_abs, "rel_l2": e.rel_l2, "rel_l2_target": target})
    return out


# -- building (TensorRT + GPU) --------------------------------------------------------------------------
def build_engine(onnx_path: str, output: str, options: Optional[BuildOptions] = None) -> BuildResult:
    """Build ``onnx_path`` into ``output`` (+ ``output.json``), both written atomically.

    Raises:
        UsageError etc.: bad input (exit 2); MissingDependencyError / DeviceError: no
        TensorRT or no GPU (exit 3); EngineBuildError: TensorRT could not parse or build (exit 1).
    """
    options = options or BuildOptions()
    check_parent_dir(output, "engine")
    plan = plan_build(onnx_path, options)
    return build_from_plan(plan, output)


def build_from_plan(plan: BuildPlan, output: str) -> BuildResult:
    from rnndeploy import cuda
    from rnndeploy.optional import require

    options = plan.options
    trt = require("tensorrt", "building TensorRT engines")
    features = trt_compat.detect(trt)
    trt_compat.require_name_based_io(features)
    rt = cuda.runtime()
    rt.require_device(options.device)  # before trt.Builder: TensorRT 8.6 crashes without a GPU
    props = rt.device_properties(options.device)
    tactics = trt_compat.decide_stub_tactics(options.stub_tactics, trt_compat.loaded_stub_libraries())
    attempts = trt_compat.plan_precision(features, plan.fp16, bool(plan.kept_fp32), options.fp16_path, plan.onnx_is_fp16)

    model = load_onnx(plan.onnx_path, external_data=True)
    if options.hoist:
        from rnndeploy.engine.rewrite import hoist_input_projection

        model, _ = hoist_input_projection(model)
    failures: List[Dict[str, str]] = []
    for attempt in attempts:
        try:
            built = _build_once(trt, features, plan, attempt, model, tactics, rt)
        except (EngineBuildError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
            # TensorRT's bindings raise RuntimeError/TypeError/ValueError for calls one
            # version accepts and another rejects: record it and try the next plan.
            text = str(exc) if isinstance(exc, EngineBuildError) else f"{type(exc).__name__}: {exc}"
            failures.append({"path": attempt.path, "constraint_flag": attempt.constraint_flag or "",
                             "pin_loop_boundaries": attempt.pin_loop_boundaries, "error": text})
            if options.verbose and not isinstance(exc, EngineBuildError):
                import traceback

                traceback.print_exc()
            if len(attempts) > 1:
                sys.stderr.write(f"rnndeploy: {attempt.path} build attempt failed: {text}\n")
            continue
        break
    else:
        detail = "; ".join(f"{f['path']}: {f['error']}" for f in failures)
        raise EngineBuildError(f"TensorRT {features.version} could not build {plan.onnx_path} ({detail})",
                               "see the TensorRT messages above (--verbose for more), or try --policy fp16-keep-recurrence / without --fp16")

    blob, info = built
    io_info, layer_precisions = _describe_engine(trt, blob, features)
    write_bytes_atomic(output, blob)
    mem = info.pop("memory")
    sidecar = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rnndeploy_version": __version__,
        "engine": {"file": os.path.basename(output), "bytes": len(blob), "sha256": sha256_bytes(blob)},
        "tensorrt": {"version": features.version, "features": features.to_dict()},
        "gpu": {"name": props.name, "compute_capability": props.compute_capability,
                "memory_gib": round(props.total_memory / 2**30, 1), "index": options.device},
        "cuda": {"runtime": _safe(rt.runtime_version), "driver": _safe(rt.driver_version), "cudart": rt.path},
        "onnx": {"file": os.path.abspath(plan.onnx_path), "sha256": plan.onnx_sha256, **info.pop("onnx")},
        "spec": plan.spec.to_dict(),
        "graph": plan.graph,
        "with_state": plan.with_state,
        "profiles": [p.to_dict() for p in plan.profiles],
        "profiles_origin": plan.profiles_origin,
        "rewrite": {"hoist_input_projection": plan.rewrite} if plan.rewrite else None,
        "io": io_info,
        "precision": {
            "requested": "fp16" if plan.fp16 else "fp32",
            "policy": plan.policy,
            "path": attempt.path,
            "why": attempt.why,
            "constraint_flag": attempt.constraint_flag,
            "tf32": bool(options.tf32 and features.tf32_flag),
            "kept_fp32": dict(plan.kept_fp32),
            "failed_attempts": failures,
            "layer_precisions": layer_precisions,
            **info.pop("precision"),
        },
        "build": {**info, "memory": mem},
    }
    side = write_sidecar(output, sidecar)
    return BuildResult(output, side, len(blob), float(info["seconds"]), attempt.path, sidecar)


def _build_once(trt: Any, features: trt_compat.TrtFeatures, plan: BuildPlan, attempt: trt_compat.PrecisionPlan,
                model: Any, tactics: trt_compat.TacticDecision, rt: Any) -> Tuple[bytes, Dict[str, Any]]:
    """One parse + build. Returns (serialized engine, facts for the sidecar)."""
    options = plan.options
    logger = _make_logger(trt, options.verbose)
    precision_facts: Dict[str, Any] = {}
    parsed = model
    if attempt.fp16_onnx:
        parsed, report = convert_to_fp16(model, plan.policy or "fp16", keep_nodes=options.keep_nodes)
        precision_facts["conversion"] = report.to_dict()
    parsed, ir_note = _parser_model(parsed)
    onnx_bytes = parsed.SerializeToString()

    builder = trt.Builder(logger)
    network = builder.create_network(trt_compat.network_flags(trt, features, attempt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"the ONNX parser rejected the graph: {errors[0] if errors else 'no detail'}"
                               + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""))
    _check_profile_inputs(network, plan.profiles)

    config = builder.create_builder_config()
    if options.workspace_mib:
        if features.memory_pool_limit:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mib) << 20)
        else:
            config.max_workspace_size = int(options.workspace_mib) << 20
    if options.opt_level is not None and features.opt_level:
        config.builder_optimization_level = int(options.opt_level)
    if options.detailed_profiling and hasattr(trt, "ProfilingVerbosity") and hasattr(config, "profiling_verbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if features.tf32_flag and not options.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if attempt.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if attempt.constraint_flag:
        groups = constraints.layers_of_nodes(network, model, plan.kept_fp32)
        pinned = constraints.pin_fp32(trt, network, [li for ls in groups.values() for li in ls], attempt.pin_loop_boundaries)
        if not pinned:
            raise EngineBuildError(f"found no TensorRT layers for the FP32 nodes {sorted(plan.kept_fp32)}")
        config.set_flag(getattr(trt.BuilderFlag, attempt.constraint_flag))
        precision_facts["pinned_fp32_layers"] = len(pinned)
        precision_facts["layers_per_kept_node"] = constraints.summarize(groups)

    if tactics.disable:
        mask = config.get_tactic_sources() & ~trt_compat.tactic_source_mask(trt, trt_compat.STUB_TACTIC_SOURCES)
        config.set_tactic_sources(mask)
        if features.external_tactics_preview:
            config.set_preview_feature(getattr(trt.PreviewFeature, features.external_tactics_preview), True)
    tactic_names = trt_compat.tactic_source_names(trt, config.get_tactic_sources())

    for p in plan.profiles:
        op = builder.create_optimization_profile()
        for name, r in p.shapes.items():
            op.set_shape(name, r.min, r.opt, r.max)
        config.add_optimization_profile(op)

    cache_facts = _load_timing_cache(config, options.timing_cache, features)
    show = sys.stderr.isatty() if options.progress is None else options.progress
    tracker = None
    if show and features.progress_monitor:
        tracker = PhaseTracker()
        config.progress_monitor = make_progress_monitor(trt, tracker)
    sampler = MemorySampler(lambda: _device_used(rt, options.device))
    t0 = time.perf_counter()
    with sampler:
        if show and tracker is None:
            with ElapsedSpinner("building TensorRT engine"):
                serialized = builder.build_serialized_network(network, config)
        else:
            serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if tracker is not None:
        sys.stderr.write("\r\x1b[2K")
    if serialized is None:
        raise EngineBuildError(f"build_serialized_network failed: {logger.last_error() or 'no error message'}")
    blob = bytes(serialized)
    cache_facts.update(_save_timing_cache(config, options.timing_cache, features))
    return blob, {
        "seconds": round(seconds, 3),
        "workspace_mib": options.workspace_mib,
        "opt_level": options.opt_level,
        "timing_cache": cache_facts,
        "tactic_sources": tactic_names,
        "external_tactics": tactics.to_dict(),
        "progress": "IProgressMonitor" if tracker is not None else ("elapsed-time line" if show else "off"),
        "warnings": logger.warnings[:20],
        "memory": sampler.peaks().to_dict(),
        "onnx": {"ir_version_note": ir_note, "parsed_sha256": sha256_bytes(onnx_bytes)},
        "precision": precision_facts,
    }


# -- helpers ------------------------------------------------------------------------------------------
def _make_logger(trt: Any, verbose: bool) -> Any:
    """A trt.ILogger that keeps errors (for one-line messages) and warnings (for the sidecar),
    printing errors always and everything when ``verbose``."""
    severity = trt.ILogger.Severity
    bad = {severity.INTERNAL_ERROR, severity.ERROR}

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: List[str] = []
            self.warnings: List[str] = []

        def log(self, sev: Any, msg: str) -> None:
            if sev in bad:
                self.errors.append(msg)
                sys.stderr.write(f"[TensorRT] ERROR: {msg}\n")
            elif sev == severity.WARNING:
                self.warnings.append(msg)
                if verbose:
                    sys.stderr.write(f"[TensorRT] WARNING: {msg}\n")
            elif verbose:
                sys.stderr.write(f"[TensorRT] {msg}\n")

        def last_error(self) -> Optional[str]:
            return self.errors[-1] if self.errors else None

    return _Logger()


def _parser_model(model: Any) -> Tuple[Any, Optional[str]]:
    """The model as handed to the parser: IR version lowered to 8 when only opsets <= 17
    are used (TensorRT 8.6's parser predates IR 9+; nothing in such a graph needs them)."""
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if model.ir_version <= _PARSER_IR_VERSION or not default or max(default) > 17:
        return model, None
    m = type(model)()
    m.CopyFrom(model)
    note = f"IR version {m.ir_version} lowered to {_PARSER_IR_VERSION} for the parser (opset {max(default)})"
    m.ir_version = _PARSER_IR_VERSION
    return m, note


def _check_profile_inputs(network: Any, profiles: Sequence[Profile]) -> None:
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    for i, p in enumerate(profiles):
        unknown = sorted(set(p.shapes) - names)
        if unknown:
            raise EngineBuildError(f"profile {i} names {unknown}, which are not inputs of the parsed network ({sorted(names)})")


def _load_timing_cache(config: Any, path: Optional[str], features: trt_compat.TrtFeatures) -> Dict[str, Any]:
    if not path:
        return {"file": None}
    if not features.timing_cache:
        return {"file": path, "note": "this TensorRT has no timing cache API"}
    data = b""
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return {"file": path, "loaded_bytes": len(data)}


def _save_timing_cache(config: Any, path: Optional[str], features: trt_compat.TrtFeatures) -> Dict[str, Any]:
    if not path or not features.timing_cache:
        return {}
    cache = config.get_timing_cache()
    if cache is None:
        return {"saved_bytes": 0}
    data = bytes(cache.serialize())
    write_bytes_atomic(path, data)
    return {"saved_bytes": len(data)}


def _device_used(rt: Any, device: int) -> int:
    # the sampler runs in its own thread, and the CUDA runtime's current device is per host
    # thread (device 0 in a new one): select the build's device before asking
    rt.set_device(device)
    free, total = rt.mem_get_info()
    return total - free


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # a version probe must not fail a finished build
        return None


def _describe_engine(trt: Any, blob: bytes, features: trt_compat.TrtFeatures) -> Tuple[List[Dict[str, Any]], Dict[str, int]]:
    """I/O tensors of the built engine (deserialized here: a GPU is known to exist) and a
    histogram of layer output precisions from the engine inspector, where available."""
    from rnndeploy.engine.inspect_engine import io_tensors, layer_precision_histogram

    logger = _make_logger(trt, False)  # must outlive the runtime
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(blob)
    if engine is None:
        raise EngineBuildError("the engine TensorRT just built does not deserialize")
    try:
        return io_tensors(trt, engine), layer_precision_histogram(trt, engine, features)
    finally:
        del engine  # engine before runtime before logger
        del runtime

