"""Feature detection and precision-path planning against stand-in `tensorrt` modules shaped
like 8.6 / 10 / 11 (enum values deliberately shuffled: nothing may hard-code them), and
against the real TensorRT 8.6 module's enums when it is importable (the GPU kit's Python).

A stand-in only exercises the branching logic; no test here builds or runs an engine.
"""

from __future__ import annotations

import importlib.util

import pytest

from rnndeploy.engine import trt_compat
from rnndeploy.engine.trt_compat import (
    decide_stub_tactics,
    detect,
    loaded_stub_libraries,
    network_flags,
    plan_precision,
    require_name_based_io,
    tactic_source_mask,
    tactic_source_names,
)
from rnndeploy.errors import UsageError
from tests.fakes.tensorrt import enum as _enum
from tests.fakes.tensorrt import fake_trt
from tests.fakes.tensorrt import stand_in_class as _cls


def test_detect_86_10_11():
    f8, f10, f11 = detect(fake_trt("8.6.1")), detect(fake_trt("10.13.0")), detect(fake_trt("11.0.0"))
    assert (f8.fp16_flag, f8.strongly_typed, f8.explicit_batch_needed, f8.progress_monitor) == (True, False, True, False)
    assert f8.precision_constraints == ("OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "STRICT_TYPES")
    assert f8.external_tactics_preview == "DISABLE_EXTERNAL_TACTIC_SOURCES_FOR_CORE_0805"
    assert (f10.fp16_flag, f10.strongly_typed, f10.explicit_batch_flag, f10.explicit_batch_needed) == (True, True, True, False)
    assert f10.progress_monitor and f10.external_tactics_preview is None
    assert (f11.fp16_flag, f11.weak_typing, f11.strongly_typed, f11.explicit_batch_flag) == (False, False, True, False)
    assert f11.layer_precision is False and f11.tactic_sources == ("EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")
    for f in (f8, f10, f11):
        assert f.name_based_io and f.timing_cache and f.memory_pool_limit and f.opt_level
        assert f.to_dict()["version"] == f.version


def _paths(plans):
    return [(p.path, p.constraint_flag) for p in plans]


def test_plan_precision_per_version():
    f8, f10, f11 = detect(fake_trt("8.6.1")), detect(fake_trt("10.13.0")), detect(fake_trt("11.0.0"))
    for f in (f8, f10, f11):
        assert _paths(plan_precision(f, fp16=False, needs_fp32_layers=False)) == [("fp32", None)]
    # 8.6: the flag, with constraints when the policy keeps layers FP32
    assert _paths(plan_precision(f8, True, False)) == [("fp16-flag", None)]
    plans = plan_precision(f8, True, True)
    assert _paths(plans) == [("fp16-flag+constraints", "OBEY_PRECISION_CONSTRAINTS"),
                             ("fp16-flag+constraints", "OBEY_PRECISION_CONSTRAINTS"),
                             ("fp16-flag+constraints", "PREFER_PRECISION_CONSTRAINTS")]
    assert [p.pin_loop_boundaries for p in plans] == [True, False, False]
    with pytest.raises(UsageError, match="cannot build strongly typed"):
        plan_precision(f8, True, False, prefer="strongly-typed")
    # 10: strongly typed from the FP16 ONNX first, the flag as fallback; "flag" swaps them
    plans = plan_precision(f10, True, True)
    assert _paths(plans)[0] == ("strongly-typed", None) and plans[0].fp16_onnx and plans[0].strongly_typed
    assert _paths(plans)[1:] == [("fp16-flag+constraints", "OBEY_PRECISION_CONSTRAINTS"),
                                 ("fp16-flag+constraints", "OBEY_PRECISION_CONSTRAINTS"),
                                 ("fp16-flag+constraints", "PREFER_PRECISION_CONSTRAINTS")]
    assert _paths(plan_precision(f10, True, False, prefer="flag")) == [("fp16-flag", None), ("strongly-typed", None)]
    # 11: strongly typed only; the flag cannot be asked for
    assert _paths(plan_precision(f11, True, True)) == [("strongly-typed", None)]
    assert plan_precision(f11, True, False)[0].strongly_typed is True
    with pytest.raises(UsageError, match="no usable FP16 builder flag"):
        plan_precision(f11, True, False, prefer="flag")
    # an already converted FP16 ONNX is parsed as is
    p = plan_precision(f10, False, False, onnx_is_fp16=True)[0]
    assert p.path == "strongly-typed" and not p.fp16_onnx
    assert _paths(plan_precision(f8, False, False, onnx_is_fp16=True)) == [("fp16-flag", None)]
    with pytest.raises(UsageError, match="precision path 'x' is unknown"):
        plan_precision(f8, True, False, prefer="x")


def test_no_fp16_path_at_all():
    trt = fake_trt("11.0.0")
    trt.NetworkDefinitionCreationFlag = _enum()  # neither flag nor strong typing (a hypothetical build)
    f = detect(trt)
    f = trt_compat.TrtFeatures(**{**f.__dict__, "weak_typing": True})
    with pytest.raises(UsageError, match="offers no way to build FP16"):
        plan_precision(f, True, False)


def test_network_flags_use_the_module_enum_values():
    t8, t10, t11 = fake_trt("8.6.1"), fake_trt("10.13.0"), fake_trt("11.0.0")
    fp32 = trt_compat.PrecisionPlan("fp32")
    typed = trt_compat.PrecisionPlan("strongly-typed", strongly_typed=True)
    assert network_flags(t8, detect(t8), fp32) == 1 << 3  # EXPLICIT_BATCH is 3 in this stand-in
    assert network_flags(t10, detect(t10), fp32) == 0  # ignored on 10: not set
    assert network_flags(t10, detect(t10), typed) == 1 << 5
    assert network_flags(t11, detect(t11), typed) == 1 << 2
    assert network_flags(t11, detect(t11), fp32) == 0


def test_tactic_masks_follow_the_enum():
    t8, t10, t11 = fake_trt("8.6.1"), fake_trt("10.13.0"), fake_trt("11.0.0")
    assert tactic_source_mask(t8, trt_compat.STUB_TACTIC_SOURCES) == 0b111
    assert tactic_source_mask(t10, trt_compat.STUB_TACTIC_SOURCES) == (1 << 4) | (1 << 3) | (1 << 2)
    assert tactic_source_mask(t11, trt_compat.STUB_TACTIC_SOURCES) == 0  # gone in 11: nothing to disable
    assert tactic_source_names(t10, 0b11) == ["EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"]


def test_require_name_based_io():
    trt = fake_trt("8.4.0")
    trt.IExecutionContext = _cls("execute_async_v2")
    with pytest.raises(UsageError, match="lacks the name-based tensor API"):
        require_name_based_io(detect(trt))


def test_stub_library_detection(tmp_path):
    stub = tmp_path / "stubs" / "libcublas.so.12"
    stub.parent.mkdir()
    stub.write_bytes(b"\x7fELF" + b"\0" * 1000)
    big = tmp_path / "real" / "libcudnn.so.8"
    big.parent.mkdir()
    with open(big, "wb") as f:
        f.truncate(2 << 20)  # 2 MiB of zeros: big, no marker -> real
    marked = tmp_path / "marked" / "libcublasLt.so.12"
    marked.parent.mkdir()
    with open(marked, "wb") as f:
        f.write(b"x" * 100 + b"trtkit stub: libcublasLt.so.12 not available")
        f.truncate(3 << 20)
    other = tmp_path / "libfoo.so"
    other.write_bytes(b"x")
    maps = "\n".join(f"7f00-7f01 r-xp 00000000 08:01 1 {p}" for p in (stub, big, marked, other)) + "\n7f02-7f03 rw-p 0 0 0 [heap]"
    assert loaded_stub_libraries(maps) == sorted([str(stub), str(marked)])
    assert decide_stub_tactics("auto", [str(stub)]).disable is True
    assert decide_stub_tactics("auto", []).disable is False
    assert decide_stub_tactics("disable", []).disable is True
    assert decide_stub_tactics("keep", [str(stub)]).disable is False
    assert decide_stub_tactics("auto", [str(stub)]).to_dict()["stub_libraries"] == [str(stub)]
    with pytest.raises(UsageError, match="unknown"):
        decide_stub_tactics("maybe", [])


# -- the real TensorRT 8.6 module (GPU kit's Python 3.9; importable without a GPU) ------------------------
needs_trt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed here")


@needs_trt
def test_real_tensorrt_enums_detect_as_expected():
    """No Builder or Runtime is created: only enums and class attributes are read."""
    import tensorrt as trt

    f = detect(trt)
    major = int(trt.__version__.split(".")[0])
    assert f.name_based_io and f.timing_cache and f.memory_pool_limit and f.opt_level
    if major == 8:
        assert (f.fp16_flag, f.strongly_typed, f.explicit_batch_needed, f.progress_monitor) == (True, False, True, False)
        assert f.precision_constraints[0] == "OBEY_PRECISION_CONSTRAINTS" and f.layer_precision
        plans = plan_precision(f, True, True)
        assert [p.path for p in plans] == ["fp16-flag+constraints"] * 3
        assert network_flags(trt, f, plans[0]) == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        mask = tactic_source_mask(trt, trt_compat.STUB_TACTIC_SOURCES)
        assert tactic_source_names(trt, mask) == ["CUBLAS", "CUBLAS_LT", "CUDNN"]
        assert f.external_tactics_preview in {m for m in dir(trt.PreviewFeature) if m.isupper()}
    else:  # 10 / 11 on a GPU box
        assert f.strongly_typed and plan_precision(f, True, False)[0].path == "strongly-typed"


@needs_trt
def test_real_tensorrt_layer_and_type_names_used_by_constraints():
    import tensorrt as trt

    from rnndeploy.engine.constraints import LOOP_BOUNDARY_TYPES, SKIP_LAYER_TYPES, _type_name

    members = {m for m in dir(trt.LayerType) if m.isupper()}
    assert {"CONSTANT", "SHAPE", "TRIP_LIMIT"} <= members and LOOP_BOUNDARY_TYPES <= members
    assert SKIP_LAYER_TYPES - members <= {"CONDITION", "CONDITIONAL_INPUT", "CONDITIONAL_OUTPUT", "ASSERTION"} - members
    assert _type_name(trt.float32) == "FLOAT" and _type_name(trt.float16) == "HALF"
    assert _type_name(trt.LayerType.MATRIX_MULTIPLY) == "MATRIX_MULTIPLY"


@needs_trt
def test_real_tensorrt_logger_subclass():
    """The builder's ILogger subclass must construct and log with the real binding (no GPU needed)."""
    import numpy as np
    import tensorrt as trt

    from rnndeploy.engine.builder import _make_logger

    logger = _make_logger(trt, verbose=False)
    logger.log(trt.ILogger.Severity.WARNING, "w")
    logger.log(trt.ILogger.Severity.ERROR, "e")
    assert logger.warnings == ["w"] and logger.errors == ["e"] and logger.last_error() == "e"
    assert np.dtype(trt.nptype(trt.int32)) == np.int32 and np.dtype(trt.nptype(trt.float16)) == np.float16


@needs_trt
def test_kit_stub_libraries_are_recognised():
    """In the trt86 kit, importing tensorrt maps the stub cuBLAS/cuDNN: auto mode disables them."""
    import os

    import tensorrt  # noqa: F401

    stubs = loaded_stub_libraries()
    if not os.environ.get("TRTKIT_ROOT"):
        pytest.skip("not the trt86 kit's interpreter")
    assert any("libcublas" in s for s in stubs) and any("libcudnn" in s for s in stubs)
    assert decide_stub_tactics("auto", stubs).disable


# Every name the builder, loader and runner touch on the real module's classes (read from
# the classes, no object is created): a typo here would otherwise first show on the GPU.
USED_API = {
    None: ["Builder", "OnnxParser", "Runtime", "Logger", "ILogger", "nptype", "float32", "float16"],
    "ILogger.Severity": ["INTERNAL_ERROR", "ERROR", "WARNING"],
    "BuilderFlag": ["FP16", "TF32"],
    "MemoryPoolType": ["WORKSPACE"],
    "ProfilingVerbosity": ["DETAILED"],
    "TensorIOMode": ["INPUT", "OUTPUT"],
    "LayerInformationFormat": ["JSON"],
    "Builder": ["create_network", "create_builder_config", "create_optimization_profile", "build_serialized_network"],
    "INetworkDefinition": ["num_layers", "get_layer", "num_inputs", "get_input"],
    "ILayer": ["num_inputs", "get_input", "num_outputs", "get_output", "type", "name", "set_output_type"],
    "ITensor": ["name", "dtype"],
    "OnnxParser": ["parse", "num_errors", "get_error"],
    "IBuilderConfig": ["set_memory_pool_limit", "builder_optimization_level", "profiling_verbosity", "clear_flag", "set_flag",
                       "get_tactic_sources", "set_tactic_sources", "add_optimization_profile", "create_timing_cache",
                       "set_timing_cache", "get_timing_cache"],
    "IOptimizationProfile": ["set_shape"],
    "ITimingCache": ["serialize"],
    "Runtime": ["deserialize_cuda_engine"],
    "ICudaEngine": ["num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_shape",
                    "num_optimization_profiles", "get_tensor_profile_shape", "create_execution_context"],
    "IExecutionContext": ["set_optimization_profile_async", "set_input_shape", "set_tensor_address", "get_tensor_shape",
                          "execute_async_v3"],
    "EngineInspector": ["get_engine_information"],
}


@needs_trt
def test_real_tensorrt_has_every_attribute_rnndeploy_uses():
    import tensorrt as trt

    missing = []
    for owner, names in USED_API.items():
        obj = trt
        for part in (owner.split(".") if owner else []):
            obj = getattr(obj, part, None)
        for n in names:
            if obj is None or not hasattr(obj, n):
                missing.append(f"{owner or 'tensorrt'}.{n}")
    f = detect(trt)
    if f.precision_constraints:
        assert hasattr(trt.BuilderFlag, f.precision_constraints[0]) and hasattr(trt.ILayer, "precision")
    if f.external_tactics_preview:
        assert hasattr(trt.IBuilderConfig, "set_preview_feature")
    assert missing == []
