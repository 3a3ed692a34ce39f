"""Engine planning, layer grouping for FP32 constraints, the sidecar and its refusals,
checked loading, and the build-engine CLI — everything that runs without a GPU.

Stand-ins here test logic (which layers belong to a node, what is refused before
TensorRT is touched); none of them counts as building or running an engine — those
tests are in test_gpu_trt.py.
"""

from __future__ import annotations

import json
import types

import pytest

from rnndeploy.engine import constraints
from rnndeploy.engine.builder import BuildOptions, ShapeOptions, build_engine, plan_build
from rnndeploy.engine.inspect_engine import load_engine
from rnndeploy.engine.sidecar import (
    Sidecar,
    check_compatible,
    check_engine_bytes,
    read_sidecar,
    sidecar_path,
)
from rnndeploy.errors import DeviceError, EngineFileError, MissingDependencyError, ShapeError, UsageError
from tests.fakes.tensorrt import FLOAT, INT32, Network, Tensor, fake_engine_file
from tests.fakes.tensorrt import Layer as L
from tests.helpers import run_cli
from tests.onnx_models import make_rnn_model, save


# -- layer grouping ----------------------------------------------------------------------------------
def T(name, dtype="FLOAT"):
    return Tensor(name, {"FLOAT": FLOAT, "INT32": INT32}[dtype])


def parsed_lstm_network():
    """What the parser makes of make_rnn_model("LSTM"): x -> transpose -> [LSTM loop] -> Y0 -> ..."""
    x, xt = T("x"), T("x_t")
    w, r = T("W0"), T("R0")
    shape, trip = T("(Unnamed Layer* 2) [Shape]_output", "INT32"), T("trip", "INT32")
    it, h_prev, c_prev = T("it"), T("h_prev"), T("c_prev")
    xw, hr, z, gates, c_new, h_new = T("xw"), T("hr"), T("z"), T("gates"), T("c_new"), T("h_new")
    y_loop, y0 = T("y_loop"), T("Y0")
    yh = T("Yh0")
    yt = T("Yt0")
    layers = [
        L("in_transpose", "SHUFFLE", [x], [xt]),                         # 0 another ONNX node
        L("W0", "CONSTANT", [], [w]), L("R0", "CONSTANT", [], [r]),      # 1, 2 initializers
        L("shape", "SHAPE", [xt], [shape]),                              # 3
        L("trip", "TRIP_LIMIT", [shape], []),                            # 4 (no outputs)
        L("iter", "ITERATOR", [xt], [it]),                               # 5
        L("h_rec", "RECURRENCE", [T("h0_init"), h_new], [h_prev]),       # 6 back-edge from h_new
        L("c_rec", "RECURRENCE", [T("c0_init"), c_new], [c_prev]),       # 7
        L("xw", "MATRIX_MULTIPLY", [it, w], [xw]),                        # 8
        L("hr", "MATRIX_MULTIPLY", [h_prev, r], [hr]),                    # 9
        L("z", "ELEMENTWISE", [xw, hr], [z]),                             # 10
        L("act", "ACTIVATION", [z], [gates]),                             # 11
        L("c", "ELEMENTWISE", [gates, c_prev], [c_new]),                  # 12
        L("h", "ELEMENTWISE", [gates, c_new], [h_new]),                   # 13
        L("out", "LOOP_OUTPUT", [h_new, trip], [y_loop]),                 # 14
        L("lstm0", "SHUFFLE", [y_loop], [y0]),                            # 15 named like the node
        L("hlast", "SHUFFLE", [h_prev], [yh]),                            # 16
        L("y_transpose0", "SHUFFLE", [y0], [yt]),                         # 17 next ONNX node
        L("c0_init", "CONSTANT", [], [T("c0_init")]),                     # 18
        L("h0_init", "CONSTANT", [], [T("h0_init")]),                     # 19
    ]
    return Network(0, layers)


def test_layers_of_nodes_follows_data_flow_inside_the_node():
    net = parsed_lstm_network()
    model = make_rnn_model("LSTM")
    groups = constraints.layers_of_nodes(net, model, ["lstm0", "head_matmul", "nonexistent"])
    assert groups["lstm0"] == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19]
    assert 0 not in groups["lstm0"] and 17 not in groups["lstm0"]  # neighbours stay out
    assert 1 not in groups["lstm0"] and 2 not in groups["lstm0"]  # initializers are boundaries
    assert groups["head_matmul"] == []  # not in this stand-in network
    assert "nonexistent" not in groups
    assert constraints.summarize(groups) == {"lstm0": 14, "head_matmul": 0}


def test_pin_fp32_sets_arithmetic_layers_only():
    net = parsed_lstm_network()
    trt = types.SimpleNamespace(float32=types.SimpleNamespace(name="FLOAT"), float16=types.SimpleNamespace(name="HALF"))
    pinned = constraints.pin_fp32(trt, net, range(net.num_layers))
    assert pinned == ["in_transpose", "xw", "hr", "z", "act", "c", "h", "lstm0", "hlast", "y_transpose0"]
    assert net.layers[8].precision is trt.float32 and net.layers[8].output_types == {0: trt.float32}
    assert net.layers[3].precision is None  # SHAPE (int output)
    assert net.layers[6].precision is None  # RECURRENCE: loop boundary, left to TensorRT by default
    with_state = constraints.pin_fp32(trt, parsed_lstm_network(), range(20), loop_boundaries=True)
    assert with_state == ["in_transpose", "iter", "h_rec", "c_rec", "xw", "hr", "z", "act", "c", "h", "out", "lstm0",
                          "hlast", "y_transpose0"]


# -- planning ---------------------------------------------------------------------------------------------
def test_plan_build_reads_recipe_engine_metadata(tmp_path):
    engine = {"batch": "1:4:16", "seq": "1:32:256", "precision": "fp16-keep-recurrence", "workspace_mib": 512}
    path = save(make_rnn_model("LSTM", layers=2, engine=engine), tmp_path / "m.onnx")
    plan = plan_build(path, BuildOptions())
    assert plan.fp16 and plan.policy == "fp16-keep-recurrence" and plan.profiles_origin == "model metadata"
    assert plan.kept_fp32 == {"lstm0": "policy", "lstm1": "policy"}
    assert plan.profiles[0].shapes["x"].max == (16, 256, 4)
    assert plan.spec.name == "tiny-lstm" and plan.graph == "model" and not plan.with_state
    assert plan.options.workspace_mib == 512 and plan.options.opt_level is None
    assert plan_build(path, BuildOptions(workspace_mib=64)).options.workspace_mib == 64
    plan = plan_build(path, BuildOptions(fp16=False, shapes=ShapeOptions(seq="1:8:64")))
    assert not plan.fp16 and plan.policy is None and plan.kept_fp32 == {}
    assert plan.profiles[0].shapes["x"].max == (16, 64, 4) and plan.profiles_origin == "--batch/--seq/--dim"
    plan = plan_build(path, BuildOptions(fp16=True, policy="fp16"))
    assert plan.kept_fp32 == {}
    assert json.loads(json.dumps(plan.to_dict()))["profiles"][0]["x"]["opt"] == [4, 32, 4]


def test_plan_build_foreign_and_fp16_inputs(tmp_path):
    from tests.helpers import convert_onnx_file

    foreign = save(make_rnn_model("GRU", metadata=False, with_lengths=True), tmp_path / "g.onnx")
    plan = plan_build(foreign, BuildOptions(shapes=ShapeOptions(batch="2:4:8")))
    assert set(plan.profiles[0].shapes) == {"x", "lengths"} and plan.profiles[0].shapes["lengths"].max == (8,)
    assert not plan.fp16
    convert_onnx_file(foreign, tmp_path / "g16.onnx", "fp16-keep-recurrence")
    plan16 = plan_build(str(tmp_path / "g16.onnx"), BuildOptions())
    assert plan16.fp16 and plan16.onnx_is_fp16 and plan16.policy == "fp16-keep-recurrence" and plan16.kept_fp32 == {}
    with pytest.raises(UsageError, match="already holds FP16"):
        plan_build(str(tmp_path / "g16.onnx"), BuildOptions(fp16=False))
    with pytest.raises(ShapeError, match="input .x. axis 2 is fixed at 4"):
        plan_build(foreign, BuildOptions(shapes=ShapeOptions(min_shapes=("x:1x1x4,lengths:1",), max_shapes=("x:2x9x2,lengths:2",))))


def test_build_options_validation():
    with pytest.raises(UsageError, match="--workspace"):
        BuildOptions(workspace_mib=0)
    with pytest.raises(UsageError, match="--opt-level"):
        BuildOptions(opt_level=9)
    with pytest.raises(UsageError, match="--fp16-path"):
        BuildOptions(fp16_path="magic")
    with pytest.raises(UsageError, match="policy"):
        BuildOptions(policy="int4")


def test_build_refuses_before_touching_tensorrt_builder(tmp_path, monkeypatch):
    """No TensorRT: exit 3. TensorRT but no GPU: exit 3, and trt.Builder is never created."""
    import sys

    from rnndeploy import cuda
    from tests.fakes.tensorrt import fake_trt

    path = save(make_rnn_model("LSTM"), tmp_path / "m.onnx")
    fake = fake_trt("8.6.1")

    def boom(*a, **k):
        raise AssertionError("trt.Builder must not be created without a GPU")

    fake.Builder = fake.Runtime = boom
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    no_gpu = types.SimpleNamespace(require_device=lambda i: (_ for _ in ()).throw(DeviceError("no CUDA GPU 0 (0 CUDA device(s) visible)")))
    monkeypatch.setattr(cuda, "runtime", lambda: no_gpu)
    with pytest.raises(DeviceError, match="no CUDA GPU") as e:
        build_engine(path, str(tmp_path / "m.plan"), BuildOptions(fp16=True))
    assert e.value.exit_code == 3
    assert not (tmp_path / "m.plan").exists()
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(MissingDependencyError, match="tensorrt is not installed") as e:
        build_engine(path, str(tmp_path / "m.plan"), BuildOptions())
    assert e.value.exit_code == 3
    # bad input is reported before any dependency is looked for
    with pytest.raises(ShapeError):
        build_engine(path, str(tmp_path / "m.plan"), BuildOptions(shapes=ShapeOptions(min_shapes=("x:1x1x5",), max_shapes=("x:1x1x5",))))
    with pytest.raises(UsageError, match="does not exist"):
        build_engine(path, str(tmp_path / "no" / "m.plan"))


# -- sidecar -------------------------------------------------------------------------------------------------
def test_sidecar_round_trip_and_integrity(tmp_path):
    path = fake_engine_file(tmp_path)
    side = read_sidecar(path)
    assert isinstance(side, Sidecar) and side.tensorrt_version == "8.6.0" and side.gpu["compute_capability"] == "9.0"
    assert check_engine_bytes(path, side) == 204
    with open(path, "r+b") as f:  # same size, one byte changed
        f.seek(10)
        f.write(b"\xff")
    with pytest.raises(EngineFileError, match="does not match the sha256"):
        check_engine_bytes(path, side)
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(EngineFileError, match="is 100 bytes but was built as 204 bytes"):
        check_engine_bytes(path, side)
    open(path, "wb").close()
    with pytest.raises(EngineFileError, match="is empty"):
        check_engine_bytes(path, side)
    with pytest.raises(EngineFileError, match="does not exist"):
        check_engine_bytes(str(tmp_path / "nope.plan"), None)
    with open(sidecar_path(path), "w") as f:
        f.write("{not json")
    with pytest.raises(EngineFileError, match="unreadable"):
        read_sidecar(path)
    with open(sidecar_path(path), "w") as f:
        json.dump({"schema": "something/else"}, f)
    with pytest.raises(EngineFileError, match="not an rnndeploy engine sidecar"):
        read_sidecar(path)
    assert read_sidecar(str(tmp_path / "other.plan")) is None
    with pytest.raises(EngineFileError, match="has no sidecar"):
        read_sidecar(str(tmp_path / "other.plan"), required=True)


def test_sidecar_compatibility_refusals(tmp_path):
    side = read_sidecar(fake_engine_file(tmp_path))
    check_compatible(side, "m.plan", "8.6.0", {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    with pytest.raises(EngineFileError) as e:
        check_compatible(side, "m.plan", trt_version="10.13.0")
    assert str(e.value).startswith("engine m.plan was built by TensorRT 8.6.0; this is TensorRT 10.13.0")
    assert "\n" not in str(e.value)
    with pytest.raises(EngineFileError, match=r"compute capability 9.0\); this GPU is NVIDIA A100 \(8.0\)"):
        check_compatible(side, "m.plan", gpu={"name": "NVIDIA A100", "compute_capability": "8.0"})
    other = {"name": "NVIDIA H200", "compute_capability": "9.0"}
    with pytest.raises(EngineFileError, match="built on NVIDIA H100 80GB HBM3; this GPU is NVIDIA H200"):
        check_compatible(side, "m.plan", gpu=other)
    check_compatible(side, "m.plan", gpu=other, allow_other_gpu=True)
    check_compatible(None, "m.plan", "10.0", other)  # no sidecar: nothing to compare


# -- checked loading: refusals never reach trt.Runtime ---------------------------------------------------------
class _NoRuntimeTrt:
    """A stand-in tensorrt whose Runtime must never be constructed."""

    def __new__(cls, version="8.6.0"):
        from tests.fakes.tensorrt import fake_trt

        trt = fake_trt(version)

        def runtime(*a, **k):
            raise AssertionError("trt.Runtime touched")

        trt.Runtime = runtime
        trt.Logger = type("Logger", (), {"ERROR": 1, "__init__": lambda self, severity: None})
        return trt


class _Gpu:
    def __init__(self, count=1, name="NVIDIA H100 80GB HBM3", cc="9.0"):
        self.count, self.name, self.cc = count, name, cc

    def require_device(self, index):
        if self.count <= index:
            raise DeviceError(f"no CUDA GPU {index} (cudaErrorNoDevice)")

    def device_properties(self, index):
        return types.SimpleNamespace(name=self.name, compute_capability=self.cc)


def test_load_engine_refusals_happen_before_runtime(tmp_path):
    path = fake_engine_file(tmp_path)
    with pytest.raises(EngineFileError, match="built by TensorRT 8.6.0; this is TensorRT 10.1.0"):
        load_engine(path, trt=_NoRuntimeTrt("10.1.0"), cuda_runtime=_Gpu())
    with pytest.raises(DeviceError, match="no CUDA GPU 0"):
        load_engine(path, trt=_NoRuntimeTrt(), cuda_runtime=_Gpu(count=0))
    with pytest.raises(EngineFileError, match="compute capability"):
        load_engine(path, trt=_NoRuntimeTrt(), cuda_runtime=_Gpu(name="A100", cc="8.0"))
    with pytest.raises(AssertionError, match="trt.Runtime touched"):  # all checks pass: only now the runtime
        load_engine(path, trt=_NoRuntimeTrt(), cuda_runtime=_Gpu())
    with open(path, "r+b") as f:
        f.truncate(50)
    with pytest.raises(EngineFileError, match="truncated"):
        load_engine(path, trt=_NoRuntimeTrt(), cuda_runtime=_Gpu())


def test_load_engine_reports_undeserializable_file_in_one_line(tmp_path):
    path = tmp_path / "x.plan"
    path.write_bytes(b"not an engine")
    trt = _NoRuntimeTrt()
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda blob: None)
    with pytest.raises(EngineFileError) as e:
        load_engine(str(path), trt=trt, cuda_runtime=_Gpu())
    assert "cannot deserialize" in str(e.value) and "has no sidecar" in str(e.value) and "\n" not in str(e.value)


# -- CLI ----------------------------------------------------------------------------------------------------------------
def test_cli_dry_run_and_fp16_onnx_without_tensorrt(tmp_path):
    import onnx
    from click.testing import CliRunner

    from rnndeploy.cli import cli

    path = save(make_rnn_model("LSTM", bidirectional=True), tmp_path / "m.onnx")
    r = CliRunner().invoke(cli, ["build-engine", path, "--fp16", "--policy", "fp16-keep-recurrence", "--dry-run",
                                 "--profile", "batch=1:1:1,seq=1:64:2048", "--profile", "batch=8:32:256,seq=1:128:512"])
    assert r.exit_code == 0, r.output
    assert "kept FP32  lstm0 (policy)" in r.output and "profile 1: x [8..256, 1..512, 4]" in r.output
    r = CliRunner().invoke(cli, ["build-engine", path, "--fp16", "--dry-run", "--json"])
    assert json.loads(r.output)["policy"] == "fp16"
    out = tmp_path / "m16.onnx"
    proc = run_cli("build-engine", path, "--fp16", "--policy", "fp16-keep-recurrence", "--write-fp16-onnx", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "recurrent kept FP32: lstm0" in proc.stdout
    assert ("y: rel L2 " in proc.stdout and "vs the FP32 graph (target 0.001)" in proc.stdout
            and "ABOVE" not in proc.stdout) or "numeric check skipped" in proc.stderr
    onnx.checker.check_model(onnx.load(str(out)))
    r = CliRunner().invoke(cli, ["build-engine", path, "--fp16", "--hoist-input-projection", "--keep-node", "head_matmul",
                                 "--write-fp16-onnx", str(tmp_path / "h16.onnx")])
    assert r.exit_code == 0, r.output
    hoisted = onnx.load(str(tmp_path / "h16.onnx"))
    assert [n.op_type for n in hoisted.graph.node].count("Scan") == 2
    assert {i.name: i.data_type for i in hoisted.graph.initializer}["W_head"] == 1  # --keep-node honoured
    r = CliRunner().invoke(cli, ["build-engine", path, "--fp32", "--write-fp16-onnx", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "needs an FP32 ONNX and --fp16" in r.output


def test_cli_errors_are_one_line_with_exit_codes(tmp_path):
    from click.testing import CliRunner

    from rnndeploy.cli import cli

    path = save(make_rnn_model("LSTM"), tmp_path / "m.onnx")
    cases = [
        (["build-engine", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "m.plan")], 2, "does not exist"),
        (["build-engine", path, "-o", str(tmp_path / "m.plan"), "--batch", "8:1:2"], 2, "--batch: '8:1:2' needs 1 <= min <= opt <= max"),
        (["build-engine", path], 2, "no output"),
        (["build-engine", path, "-o", str(tmp_path / "m.plan"), "--no-stub-tactics", "--keep-stub-tactics"], 2, "contradict"),
    ]
    for args, code, text in cases:
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == code, (args, r.output)
        assert text in r.output and r.output.count("\n") == 1 and "Traceback" not in r.output


def test_cli_build_without_gpu_or_tensorrt_exits_3(tmp_path):
    path = save(make_rnn_model("GRU"), tmp_path / "m.onnx")
    proc = run_cli("build-engine", path, "--fp16", "-o", str(tmp_path / "m.plan"))
    from tests.helpers import has_gpu

    if has_gpu():
        pytest.skip("a GPU is present: the real build is tested in test_gpu_trt.py")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("rnndeploy: error: ") and proc.stderr.count("\n") == 1
    assert ("tensorrt is not installed" in proc.stderr) or ("no CUDA GPU" in proc.stderr) or ("CUDA runtime" in proc.stderr)
    assert not (tmp_path / "m.plan").exists()


# -- progress and memory ------------------------------------------------------------------------------------------------
def test_progress_tracker_spinner_and_memory_sampler():
    import io
    import time

    from rnndeploy.engine.monitor import ElapsedSpinner, MemorySampler, PhaseTracker

    clock = iter(range(100)).__next__
    out = io.StringIO()
    tracker = PhaseTracker(out, clock=lambda: float(clock()))
    tracker.start("Building engine", None, 3)
    tracker.start("Tactic selection", "Building engine", 40)
    assert tracker.step("Tactic selection", 11) is True
    assert tracker.line().startswith("Building engine 0/3 > Tactic selection 12/40 (")
    tracker.finish("Tactic selection")
    tracker.step("Building engine", 0)
    assert tracker.line().startswith("Building engine 1/3 (")
    assert "\r" in out.getvalue()

    out = io.StringIO()
    with ElapsedSpinner("building TensorRT engine", out, period=0.01):
        time.sleep(0.05)
    assert "building TensorRT engine ... " in out.getvalue()

    used = iter([100, 400, 250] + [120] * 1000).__next__
    with MemorySampler(lambda: used() << 20, interval=0.001) as sampler:
        time.sleep(0.02)
        _ = bytearray(8 << 20)
    peaks = sampler.peaks().to_dict()
    assert peaks["device_used_before"] == 100 << 20 and peaks["peak_device_used"] == 400 << 20
    assert peaks["peak_device_growth_mib"] == 300.0 and peaks["peak_host_rss_mib"] > 1 and peaks["samples"] >= 2
    broken = MemorySampler(lambda: 1 // 0)
    with broken:
        pass
    assert broken.peaks().peak_device_used is None
