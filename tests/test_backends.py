"""Runner base class (lifecycle, input checking), the backend registry and the ORT runners' logic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnndeploy.backends import (
    BACKENDS,
    Backend,
    HostTimer,
    ModelSource,
    Runner,
    RunnerOptions,
    create_runner,
    runner_class,
)
from rnndeploy.backends.source import resolve_source
from rnndeploy.errors import MissingDependencyError, RnnDeployError, ShapeError, SpecError, UsageError
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec

FOREIGN = Path(__file__).resolve().parent / "data" / "foreign"


def spec() -> ModelSpec:
    g = GraphSpec(
        "model",
        (
            TensorSpec("x", "float32", ("batch", "seq", 3), "features", time_axis=1),
            TensorSpec("lengths", "int64", ("batch",), "lengths"),
            TensorSpec("h0", "float32", (2, "batch", 4), "state", optional=True),
        ),
        (TensorSpec("y", "float32", ("batch", 2), "logits"), TensorSpec("hn", "float32", (2, "batch", 4), "state",
                                                                         optional=True)),
    )
    return ModelSpec("toy", "classifier", {"model": g})


class EchoRunner(Runner):
    """Minimal runner: y = mean over time of x[..., :2]; records lifecycle calls."""

    backend = "echo"

    def __init__(self, source, options=None, drop_output=False):
        super().__init__(source, options)
        self.calls = []
        self.drop_output = drop_output

    def _activate_impl(self):
        self.calls.append("activate")

    def _deactivate_impl(self):
        self.calls.append("deactivate")

    def _infer_impl(self, feed):
        out = {"y": feed["x"].mean(axis=1)[:, :2]}
        if self.source.with_state and not self.drop_output:
            out["hn"] = feed["h0"]
        return out


def feed(batch=2, seq=5):
    return {"x": np.zeros((batch, seq, 3), np.float32), "lengths": np.full((batch,), seq, np.int64)}


def test_lifecycle_and_context_manager():
    r = EchoRunner(ModelSource(spec()))
    with pytest.raises(RnnDeployError, match="not active"):
        r.infer(feed())
    with r as active:
        assert active is r and r.is_active
        out = r.infer(feed())
        assert set(out) == {"y"} and out["y"].shape == (2, 2)
        with pytest.raises(RnnDeployError, match="already active"):
            r.activate()
    assert not r.is_active and r.calls == ["activate", "deactivate"]
    r.deactivate()  # idempotent
    assert r.calls == ["activate", "deactivate"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.pop("lengths"), "missing 'lengths'"),
        (lambda f: f.update(extra=np.zeros(1)), "unexpected 'extra'"),
        (lambda f: f.update(x=f["x"].astype(np.float64)), "dtype float64, expected float32"),
        (lambda f: f.update(x=np.zeros((2, 5), np.float32)), "rank 2"),
        (lambda f: f.update(x=np.zeros((2, 5, 4), np.float32)), "axis 2 has size 4, expected 3"),
        (lambda f: f.update(lengths=np.zeros(3, np.int64)), "'batch' is 3 in input 'lengths' but 2 in 'x'"),
    ],
)
def test_input_checking_errors_list_what_is_expected(change, message):
    f = feed()
    change(f)
    with EchoRunner(ModelSource(spec())) as r, pytest.raises(ShapeError) as info:
        r.infer(f)
    text = str(info.value)
    assert message in text
    assert "expected x float32[batch, seq, 3], lengths int64[batch]" in text
    assert info.value.exit_code == 2


def test_streaming_form_checks_states_and_outputs():
    src = ModelSource(spec(), with_state=True)
    f = feed()
    with EchoRunner(src) as r:
        with pytest.raises(ShapeError, match="missing 'h0'"):
            r.infer(f)
        f["h0"] = np.ones((2, 2, 4), np.float32)
        assert set(r.infer(f)) == {"y", "hn"}
    with EchoRunner(src, drop_output=True) as r, pytest.raises(SpecError, match="returned no output 'hn'"):
        r.infer(f)


def test_default_timing_hook_and_description():
    with EchoRunner(ModelSource(spec()), RunnerOptions(threads=3)) as r:
        prepared = r.prepare(feed())
        assert isinstance(r.timer(), HostTimer)
        assert set(r.run_prepared(prepared)) == {"y"}
        assert set(r.bind_prepared(prepared)()) == {"y"}
        d = r.describe()
        assert d.backend == "echo" and d.threads == 3 and d.timer == "host" and d.device == "cpu"
        assert "3 threads" in d.summary()


def test_host_timer_uses_injected_clock():
    ticks = iter([10.0, 10.5])
    calls = []
    assert HostTimer(lambda: next(ticks)).measure(lambda: calls.append(1), 5) == pytest.approx(0.5)
    assert len(calls) == 5


def test_runner_options_validation():
    with pytest.raises(UsageError):
        RunnerOptions(precision="int8")
    with pytest.raises(UsageError):
        RunnerOptions(threads=0)


def test_registry_names_and_errors(monkeypatch):
    assert set(BACKENDS) == {"torch", "ort-cpu", "ort-cuda", "ort-trt", "trt", "onnx-ref", "openvino", "keras"}
    assert BACKENDS["trt"].target == "rnndeploy.backends.tensorrt:TensorRTRunner"
    with pytest.raises(UsageError, match="unknown"):
        runner_class("tflite")
    monkeypatch.setitem(BACKENDS, "fake", Backend("rnndeploy.backends.onnxrt:OrtCpuRunner", "no_such_pkg_xyz", "gpu", "onnx"))
    with pytest.raises(MissingDependencyError) as info:
        runner_class("fake")
    assert "rnndeploy[gpu]" in str(info.value) and info.value.exit_code == 3
    monkeypatch.setitem(BACKENDS, "ghost", Backend("rnndeploy.backends.nothing_here:X", "numpy", "cpu", "onnx"))
    with pytest.raises(UsageError, match="not part of this rnndeploy build"):
        runner_class("ghost")


def test_source_resolution(tmp_path):
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    assert src.onnx and src.spec.family == "custom" and not src.with_state
    assert [t.name for t in src.graph_spec.inputs] == ["x"]
    with pytest.raises(UsageError, match="does not exist"):
        resolve_source(str(tmp_path / "missing.onnx"))
    with pytest.raises(UsageError, match="--onnx"):
        resolve_source(module=str(FOREIGN / "make_foreign.py") + ":main")
    with pytest.raises(UsageError, match="needs a checkpoint"):
        ModelSource(spec()).need("checkpoint", "torch")


# -- onnxruntime -------------------------------------------------------------------------------------
ort = pytest.importorskip("onnxruntime")


def test_classify_by_name_then_by_sidecar_or_first_byte(tmp_path):
    from rnndeploy.artefacts.naming import classify

    assert classify(str(FOREIGN / "gru_seq.onnx")) == "onnx" and classify(str(tmp_path)) == "checkpoint"
    assert classify("m.plan") == "engine" and classify("my.py:build") == "module"
    bare = tmp_path / "model"
    bare.write_bytes((FOREIGN / "gru_seq.onnx").read_bytes())
    assert classify(str(bare)) == "onnx"  # an ONNX protobuf's first byte
    engine = tmp_path / "model.bin"
    engine.write_bytes(b"ftrt")
    (tmp_path / "model.bin.json").write_text("{}")
    assert classify(str(engine)) == "engine"  # it has an engine sidecar
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match="cannot tell"):
        classify(str(tmp_path / "notes.txt"))
    with pytest.raises(UsageError, match="does not exist"):
        classify(str(tmp_path / "missing"))


def test_checkpoint_hash_comes_from_the_export_key_only(tmp_path):
    """model_hashes reads EXPORT_CHECKPOINT_SHA256, not any key that mentions checkpoint and sha256."""
    import onnx

    from rnndeploy.backends.source import model_hashes
    from rnndeploy.spec import EXPORT_CHECKPOINT_SHA256, write_onnx_metadata

    model = onnx.load(str(FOREIGN / "gru_seq.onnx"))
    spec = resolve_source(str(FOREIGN / "gru_seq.onnx")).spec
    write_onnx_metadata(model, spec, "model", {"old_checkpoint_sha256_note": "decoy", EXPORT_CHECKPOINT_SHA256: "abc"})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert model_hashes(resolve_source(str(path)))["checkpoint_sha256"] == "abc"
    write_onnx_metadata(model, spec, "model", {"old_checkpoint_sha256_note": "decoy"})
    onnx.save(model, str(path))
    assert model_hashes(resolve_source(str(path)))["checkpoint_sha256"] is None


def test_ort_cpu_runs_foreign_model_and_reports_what_it_is():
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    x = np.load(FOREIGN / "gru_seq.inputs.npz")["x"]
    expected = np.load(FOREIGN / "gru_seq.expected.npz")
    with create_runner("ort-cpu", src, RunnerOptions(threads=1, extra={"graph_optimization_level": "basic"})) as r:
        out = r.infer({"x": x})
        np.testing.assert_allclose(out["y"], expected["y"], atol=1e-6)
        d = r.describe()
        assert d.precision == "fp32" and d.threads == 1 and d.details["graph_optimization_level"] == "basic"
        call = r.bind_prepared(r.prepare({"x": x}))
        np.testing.assert_allclose(call()[0], expected["y"], atol=1e-6)


def test_onnx_reference_runner_matches_the_expected_outputs_from_a_file_and_from_bytes():
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    x = np.load(FOREIGN / "gru_seq.inputs.npz")["x"]
    expected = np.load(FOREIGN / "gru_seq.expected.npz")
    with create_runner("onnx-ref", src) as r:
        np.testing.assert_allclose(r.infer({"x": x})["y"], expected["y"], atol=1e-5)
        assert r.describe().backend == "onnx-ref" and r.describe().precision == "fp32"
    in_memory = ModelSource(src.spec, onnx_bytes=(FOREIGN / "gru_seq.onnx").read_bytes())
    for backend in ("onnx-ref", "ort-cpu"):
        with create_runner(backend, in_memory) as r:
            np.testing.assert_allclose(r.infer({"x": x})["y"], expected["y"], atol=1e-5)
    with pytest.raises(SpecError, match="in-memory"):
        create_runner("onnx-ref", ModelSource(src.spec, onnx_bytes=b"not onnx")).activate()


def test_ort_cpu_refuses_fp16_on_fp32_file():
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    with pytest.raises(UsageError, match="FP32"):
        create_runner("ort-cpu", src, RunnerOptions(precision="fp16")).activate()


def test_ort_cpu_rejects_unknown_optimisation_level():
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    with pytest.raises(UsageError, match="graph_optimization_level"):
        create_runner("ort-cpu", src, RunnerOptions(extra={"graph_optimization_level": "max"})).activate()


def test_ort_cuda_without_gpu_build_names_the_extra():
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu") as info:
        create_runner("ort-cuda", src, RunnerOptions(device="cuda")).activate()
    assert info.value.exit_code == 3


def test_ort_trt_provider_options_from_spec():
    from rnndeploy.backends.onnxrt import OrtTrtRunner

    src = ModelSource(spec(), onnx="unused.onnx", with_state=True)
    r = OrtTrtRunner(src, RunnerOptions(precision="fp16", device="cuda:1", cuda_graph=True, extra={
        "trt_profile": {"max": {"batch": 32, "seq": 512}}, "trt_cache_dir": "/tmp/c"}))
    o = r.trt_options()
    assert o["device_id"] == 1 and o["trt_fp16_enable"] == "True" and o["trt_cuda_graph_enable"] == "True"
    assert o["trt_profile_min_shapes"] == "x:1x1x3,lengths:1,h0:2x1x4"
    assert o["trt_profile_opt_shapes"] == "x:8x128x3,lengths:8,h0:2x8x4"
    assert o["trt_profile_max_shapes"] == "x:32x512x3,lengths:32,h0:2x32x4"
    assert o["trt_engine_cache_path"] == "/tmp/c" and o["trt_timing_cache_enable"] == "True"


# -- GPU (run on the GPU machine) ---------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_ort_cuda_matches_numpy_gru(cuda_graph):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    from rnndeploy.bench.timing import measure

    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    x = np.load(FOREIGN / "gru_seq.inputs.npz")["x"]
    expected = np.load(FOREIGN / "gru_seq.expected.npz")
    with create_runner("ort-cuda", src, RunnerOptions(device="cuda", cuda_graph=cuda_graph)) as r:
        out = r.infer({"x": x})
        np.testing.assert_allclose(out["y"], expected["y"], atol=1e-5)
        np.testing.assert_allclose(out["h"], expected["h"], atol=1e-5)
        m = measure(r, {"x": x}, warmup=3, iters=5)
        assert len(m.times) == 5 and m.median > 0
        assert m.description["cuda_graph"] is cuda_graph and not m.description["host_device_copies"]


@pytest.mark.gpu
def test_ort_trt_matches_numpy_gru():
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime without the TensorRT EP")
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    x = np.load(FOREIGN / "gru_seq.inputs.npz")["x"]
    expected = np.load(FOREIGN / "gru_seq.expected.npz")
    try:
        r = create_runner("ort-trt", src, RunnerOptions(device="cuda")).activate()
    except RnnDeployError as exc:
        pytest.skip(f"TensorRT EP unusable here: {exc}")
    with r:
        np.testing.assert_allclose(r.infer({"x": x})["y"], expected["y"], atol=1e-4)


def test_runnable_backends_follow_artefacts_and_machine():
    from rnndeploy.backends import runnable_backends
    from rnndeploy.doctor import probe_gpus

    onnx_only = ModelSource(spec(), onnx=str(FOREIGN / "gru_seq.onnx"))
    got = runnable_backends(onnx_only)
    assert "ort-cpu" in got and "torch" not in got and "trt" not in got  # no checkpoint, no engine
    if not probe_gpus()[0]:
        assert not {"ort-cuda", "ort-trt", "trt"} & set(runnable_backends())


def test_trt_profile_option_parsing():
    from rnndeploy.cli.harness_options import parse_trt_profile

    assert parse_trt_profile("batch=1:8:256, seq=1:128:2048") == {
        "min": {"batch": 1, "seq": 1}, "opt": {"batch": 8, "seq": 128}, "max": {"batch": 256, "seq": 2048}}
    for bad in ("batch=1:8", "batch=8:1:16", "=1:2:3", "seq=a:b:c"):
        with pytest.raises(UsageError):
            parse_trt_profile(bad)
