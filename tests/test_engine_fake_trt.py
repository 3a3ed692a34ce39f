"""The builder's and the trt runner's plumbing, driven end to end through a *recording*
stand-in of the tensorrt module and of libcudart.

What this proves: which flags, network-creation bits, tactic masks, profiles, precision
constraints and timing-cache calls the builder issues for TensorRT 8.6 / 10 / 11 shapes
of the API; that fallbacks are recorded in the sidecar; that the runner selects
profiles, casts dtypes, binds addresses, copies memory and replays CUDA graphs in the
right order. The stand-in "engine" evaluates the parsed ONNX with onnx.reference, so
numbers only check the plumbing.

What this does NOT prove: anything about TensorRT's parser, kernels or numerics. No test
here counts as an engine build or run; those are the gpu-marked tests in test_gpu_trt.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnndeploy.backends.base import ModelSource, RunnerOptions
from rnndeploy.backends.source import resolve_source
from rnndeploy.backends.tensorrt import TensorRTRunner, choose_profile, to_engine_dtype
from rnndeploy.errors import EngineBuildError, EngineFileError, ShapeError, UsageError
from tests.fakes.tensorrt import Context, Layer, build_with_stand_in
from tests.onnx_models import feeds, make_rnn_model


# -- builder ---------------------------------------------------------------------------------------------------------------
def test_builder_on_86_flag_and_constraints(tmp_path, fake_env):
    trt, _ = fake_env("8.6.0")
    res, out = build_with_stand_in(tmp_path, "8.6.0", fp16=True, policy="fp16-keep-recurrence", workspace_mib=256, opt_level=4,
                      stub_tactics="disable", timing_cache=str(tmp_path / "tc.bin"))
    cfg = trt.calls["config"]
    assert trt.calls["network_flags"] == 1 << 3  # EXPLICIT_BATCH, needed on 8.6
    assert cfg.flags == {"FP16", "OBEY_PRECISION_CONSTRAINTS"} and cfg.cleared == {"TF32"}
    assert cfg.pools == {"WORKSPACE": 256 << 20} and cfg.builder_optimization_level == 4
    assert cfg.tactics == 0b11000 and cfg.previews == {"DISABLE_EXTERNAL_TACTIC_SOURCES_FOR_CORE_0805": True}
    # first attempt: the loop's arithmetic and its state (iterator, recurrence) pinned to FP32
    assert trt.calls["pinned"] == ["lstm0/iter", "lstm0/rec", "lstm0/mm", "lstm0/act", "lstm0"]
    assert cfg.profiles[1]["x"] == [[2, 1, 4], [4, 8, 4], [8, 32, 4]] and cfg.profiles[0]["lengths"] == [[1], [1], [1]]
    assert (tmp_path / "tc.bin").read_bytes() == b"+tuned"
    side = json.loads((tmp_path / "m8.plan.json").read_text())
    assert side["precision"]["path"] == "fp16-flag+constraints" and side["precision"]["pinned_fp32_layers"] == 5
    assert side["precision"]["why"].endswith("recurrent state pinned to FP32 (OBEY_PRECISION_CONSTRAINTS)")
    assert side["precision"]["kept_fp32"] == {"lstm0": "policy"}
    assert side["build"]["tactic_sources"] == ["EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"]
    assert side["tensorrt"]["version"] == "8.6.0" and side["gpu"]["compute_capability"] == "9.0"
    assert [t["name"] for t in side["io"]] == ["x", "lengths", "y"] and side["io"][1]["dtype"] == "int32"
    assert side["engine"]["bytes"] == res.engine_bytes and "wrote" in res.render()
    parsed = trt.calls["parsed"][-1]
    assert parsed.ir_version == 8 and all(i.data_type != 10 for i in parsed.graph.initializer)  # FP32 graph + flag
    # a second build loads the saved timing cache
    build_with_stand_in(tmp_path, "8.6.0", timing_cache=str(tmp_path / "tc.bin"))
    assert (tmp_path / "tc.bin").read_bytes() == b"+tuned+tuned"


def test_builder_samples_memory_of_its_own_device(tmp_path, fake_env):
    """Each memory sample selects the build's device first: the sampler runs in its own thread
    and cudaSetDevice is per host thread (a new thread starts on device 0)."""
    trt, rt = fake_env("8.6.0")
    rt.count = 2
    res, _ = build_with_stand_in(tmp_path, "8.6.0", device=1)
    assert ("set_device", 1) in rt.log and ("set_device", 0) not in rt.log and res.sidecar["gpu"]["index"] == 1
    assert res.sidecar["build"]["memory"]["peak_device_used"] is not None


def test_builder_on_10_strongly_typed_and_fallback(tmp_path, fake_env):
    from rnndeploy.precision import is_fp16_model

    trt, _ = fake_env("10.13.0")
    build_with_stand_in(tmp_path, "10.13.0", fp16=True, policy="fp16-keep-recurrence")
    cfg = trt.calls["config"]
    assert trt.calls["network_flags"] == 1 << 5  # STRONGLY_TYPED only; EXPLICIT_BATCH is not needed on 10
    assert "FP16" not in cfg.flags and trt.calls["pinned"] == []
    assert is_fp16_model(trt.calls["parsed"][-1])
    side = json.loads((tmp_path / "m10.plan.json").read_text())
    assert side["precision"]["path"] == "strongly-typed" and side["precision"]["conversion"]["policy"] == "fp16-keep-recurrence"

    trt, _ = fake_env("10.13.0", fail_strongly_typed=True)
    build_with_stand_in(tmp_path, "10.13.0", fp16=True, policy="fp16")
    side = json.loads((tmp_path / "m10.plan.json").read_text())
    assert side["precision"]["path"] == "fp16-flag"
    assert side["precision"]["failed_attempts"][0]["path"] == "strongly-typed"
    assert "strongly typed LSTM unsupported" in side["precision"]["failed_attempts"][0]["error"]
    assert trt.calls["config"].flags == {"FP16"} and trt.calls["network_flags"] == 0


def test_builder_on_11_and_fp32(tmp_path, fake_env):
    trt, _ = fake_env("11.0.0")
    build_with_stand_in(tmp_path, "11.0.0", fp16=True)
    assert trt.calls["network_flags"] == 1 << 2 and trt.calls["config"].flags == set()
    before = (tmp_path / "m11.plan").read_bytes()
    trt, _ = fake_env("11.0.0", fail_strongly_typed=True)
    with pytest.raises(EngineBuildError) as e:
        build_with_stand_in(tmp_path, "11.0.0", fp16=True)
    assert "could not build" in str(e.value) and "strongly typed LSTM unsupported" in str(e.value)
    assert e.value.exit_code == 1
    assert (tmp_path / "m11.plan").read_bytes() == before  # a failed build leaves the previous engine alone
    trt, _ = fake_env("11.0.0")
    build_with_stand_in(tmp_path, "11.0.0", fp16=False, tf32=True)
    assert trt.calls["config"].flags == set() and trt.calls["config"].cleared == set()


# -- runner ----------------------------------------------------------------------------------------------------------------
def test_runner_profiles_dtypes_copies_and_graphs(tmp_path, fake_env):
    from rnndeploy.precision import run_model

    trt, rt = fake_env("8.6.0")
    _, out = build_with_stand_in(tmp_path, "8.6.0", bidirectional=False, fp16=False)  # onnx 1.19's evaluator: no bidirectional
    model = make_rnn_model("LSTM", bidirectional=False, with_lengths=True)
    source = resolve_source(engine=out)
    assert source.spec.name == "tiny-lstm" and source.engine == out
    with TensorRTRunner(source, RunnerOptions(device="cuda:0")) as runner:
        f = feeds(batch=1, seq=40, lengths=True)  # only profile 0 holds seq 40 at batch 1
        y = runner.infer(f)["y"]
        # the stand-in computes with the same reference evaluator: agreement shows the runner bound,
        # cast and copied the right buffers (it says nothing about TensorRT's numerics)
        np.testing.assert_allclose(y, run_model(model, f, engine="reference")["y"], rtol=1e-6)
        assert runner._profile == 0
        f2 = feeds(batch=4, seq=8, lengths=True)
        runner.infer(f2)
        assert runner._profile == 1
        with pytest.raises(ShapeError) as e:
            runner.infer(feeds(batch=16, seq=8, lengths=True))
        assert "lie outside every optimization profile" in str(e.value) and "profile 1: x [2..8, 1..32, 4]" in str(e.value)
        desc = runner.describe()
        assert desc.timer == "cuda-event" and desc.device == "cuda:0 (Fake GPU)" and desc.precision == "fp32"
        assert desc.details["tensorrt"] == "8.6.0"
        # timing path: inputs copied once in prepare, not in the timed calls
        p1 = runner.prepare(f)
        p2 = runner.prepare(f2)  # a second preparation must not disturb the first
        rt.log.clear()
        seconds = runner.timer().measure(lambda: runner.run_prepared(p1), 3)
        # the stand-in's events say 2.0 ms: the timer reports seconds from CUDA events, not wall time
        assert seconds == 0.002 and "h2d" not in rt.log and "d2h" not in rt.log
        runner.run_prepared(p2)
        rt.stream_synchronize(0)
    with TensorRTRunner(source, RunnerOptions(cuda_graph=True, include_copies=True)) as runner:
        rt.log.clear()
        p = runner.prepare(f)
        assert p.graph is not None and "capture" in rt.log
        assert "h2d" in rt.log[: rt.log.index("capture")]  # the warm-up run before capture reads real inputs
        runner.run_prepared(p)
        rt.stream_synchronize(0)
        np.testing.assert_allclose(p.outputs["y"], y, rtol=1e-6)
        assert runner.describe().cuda_graph and runner.describe().host_device_copies
        # another preparation re-binds the context: the first graph is captured again before replay
        runner.prepare(f2)
        rt.log.clear()
        runner.run_prepared(p)
        rt.stream_synchronize(0)
        assert rt.log.count("capture") == 1 and p.graph is not None
        np.testing.assert_allclose(p.outputs["y"], y, rtol=1e-6)
        rt.log.clear()
        runner.run_prepared(p)
        assert "capture" not in rt.log


def test_runner_refusals(tmp_path, fake_env):
    trt, rt = fake_env("8.6.0")
    _, out = build_with_stand_in(tmp_path, "8.6.0", fp16=True)
    source = resolve_source(engine=out)
    with pytest.raises(UsageError, match="was built fp16 but the run asks for fp32"):
        TensorRTRunner(source, RunnerOptions(precision="fp32")).activate()
    with pytest.raises(UsageError, match="not a CUDA device"):
        TensorRTRunner(source, RunnerOptions(precision="fp16", device="cpu")).activate()
    fake_env("10.1.0")
    with pytest.raises(EngineFileError, match="built by TensorRT 8.6.0; this is TensorRT 10.1.0"):
        TensorRTRunner(source, RunnerOptions(precision="fp16")).activate()
    fake_env("8.6.0")
    with open(out, "r+b") as f:
        f.truncate(10)
    with pytest.raises(EngineFileError, match="truncated"):
        TensorRTRunner(source, RunnerOptions(precision="fp16")).activate()
    (tmp_path / "other.plan").write_bytes(b"engine bytes without a sidecar")
    with pytest.raises(EngineFileError, match="no sidecar"):
        resolve_source(engine=str(tmp_path / "other.plan"))
    with pytest.raises(UsageError, match="needs a engine"):
        TensorRTRunner(ModelSource(spec=source.spec), RunnerOptions()).activate()


def test_runner_profile_refusal_is_one_line(tmp_path, fake_env, monkeypatch):
    """TensorRT's binding of set_optimization_profile_async raises RuntimeError on failure
    (PY_ASSERT_RUNTIME_ERROR in pyCore.cpp, 8.6 to 11) rather than returning False."""
    from rnndeploy.errors import RnnDeployError

    def refuse(self, k, stream):
        raise RuntimeError("Error in set optimization profile async.")

    fake_env("8.6.0")
    _, out = build_with_stand_in(tmp_path, "8.6.0", bidirectional=False, fp16=False)
    monkeypatch.setattr(Context, "set_optimization_profile_async", refuse)
    with TensorRTRunner(resolve_source(engine=out), RunnerOptions()) as runner:
        with pytest.raises(RnnDeployError, match="refused optimization profile 0"):
            runner.infer(feeds(batch=1, seq=4, lengths=True))


def test_pure_helpers():
    from rnndeploy.engine.profiles import Profile, ShapeRange

    ps = [Profile({"x": ShapeRange((1, 1), (1, 8), (1, 64))}), Profile({"x": ShapeRange((1, 1), (16, 8), (32, 64))})]
    assert choose_profile(ps, {"x": (1, 5), "lengths": (1,)}) == 0
    assert choose_profile(ps, {"x": (1, 5)}, forced=1) == 1
    with pytest.raises(ShapeError, match="outside the requested profile 0"):
        choose_profile(ps, {"x": (8, 5)}, forced=0)
    with pytest.raises(UsageError, match="profile 5 does not exist"):
        choose_profile(ps, {"x": (1, 5)}, forced=5)
    a = to_engine_dtype("lengths", np.array([1, 7], np.int64), np.dtype(np.int32))
    assert a.dtype == np.int32 and a.tolist() == [1, 7]
    with pytest.raises(ShapeError, match="outside int32"):
        to_engine_dtype("ids", np.array([2**40], np.int64), np.dtype(np.int32))
    assert to_engine_dtype("x", np.ones((2, 3), np.float32).T, np.dtype(np.float16)).flags.c_contiguous
    with pytest.raises(ShapeError, match="is float32 but the engine takes int32"):
        to_engine_dtype("x", np.ones(2, np.float32), np.dtype(np.int32))


def test_builder_falls_back_when_pinning_the_recurrence_raises(tmp_path, fake_env, monkeypatch):
    """If pinning the recurrent state is refused (here: set_output_type raises on a RECURRENCE
    layer), the next plan — arithmetic layers only — builds, and the sidecar says so."""
    trt, _ = fake_env("8.6.0")
    original = Layer.set_output_type

    def picky(self, i, dtype):
        if self.type.name == "RECURRENCE":
            raise RuntimeError("stand-in: no precision on recurrence layers")
        original(self, i, dtype)

    monkeypatch.setattr(Layer, "set_output_type", picky)
    build_with_stand_in(tmp_path, "8.6.0", fp16=True, policy="fp16-keep-recurrence")
    side = json.loads((tmp_path / "m8.plan.json").read_text())
    failed = side["precision"]["failed_attempts"]
    assert len(failed) == 1 and failed[0]["pin_loop_boundaries"] is True
    assert failed[0]["error"] == "RuntimeError: stand-in: no precision on recurrence layers"
    assert side["precision"]["path"] == "fp16-flag+constraints" and trt.calls["pinned"] == ["lstm0/mm", "lstm0/act", "lstm0"]
