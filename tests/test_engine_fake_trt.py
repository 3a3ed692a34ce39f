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
import sys
import types

import numpy as np
import pytest

from rnndeploy import cuda as cuda_mod
from rnndeploy.backends.base import ModelSource, RunnerOptions
from rnndeploy.backends.source import resolve_source
from rnndeploy.backends.tensorrt import TensorRTRunner, choose_profile, to_engine_dtype
from rnndeploy.engine.builder import BuildOptions, ShapeOptions, build_engine
from rnndeploy.errors import EngineBuildError, EngineFileError, ShapeError, UsageError
from tests.test_engine_models import feeds, make_rnn_model, save
from tests.test_trt_compat import _enum, fake_trt

ONNX_TO_NP = {1: np.float32, 10: np.float16, 6: np.int32, 7: np.int64, 9: np.bool_}


# -- a recording tensorrt ----------------------------------------------------------------------------------
class DType:
    def __init__(self, name, np_type):
        self.name, self.np_type = name, np_type

    def __repr__(self):
        return f"DataType.{self.name}"


FLOAT, HALF, INT32, BOOL = DType("FLOAT", np.float32), DType("HALF", np.float16), DType("INT32", np.int32), DType("BOOL", np.bool_)


class Tensor:
    def __init__(self, name, dtype=FLOAT, shape=()):
        self.name, self.dtype, self.shape = name, dtype, shape


class Layer:
    def __init__(self, name, type_, inputs, outputs):
        self.name, self.type = name, types.SimpleNamespace(name=type_)
        self._in, self._out = inputs, outputs
        self.precision, self.output_types = None, {}

    num_inputs = property(lambda self: len(self._in))
    num_outputs = property(lambda self: len(self._out))

    def get_input(self, i):
        return self._in[i]

    def get_output(self, i):
        return self._out[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class Network:
    def __init__(self, flags):
        self.flags, self.layers, self.inputs, self.model = flags, [], [], None

    num_layers = property(lambda self: len(self.layers))
    num_inputs = property(lambda self: len(self.inputs))

    def get_layer(self, i):
        return self.layers[i]

    def get_input(self, i):
        return self.inputs[i]


class Config:
    def __init__(self, trt):
        self.trt, self.flags, self.cleared, self.pools, self.previews = trt, set(), set(), {}, {}
        self.tactics = sum(1 << int(getattr(trt.TacticSource, n)) for n in trt.TacticSource.__members__)
        self.profiles, self.cache, self.builder_optimization_level, self.profiling_verbosity = [], None, 3, None

    def set_flag(self, f):
        self.flags.add(f.name)

    def clear_flag(self, f):
        self.cleared.add(f.name)

    def set_memory_pool_limit(self, pool, n):
        self.pools[pool.name] = n

    def get_tactic_sources(self):
        return self.tactics

    def set_tactic_sources(self, mask):
        self.tactics = mask

    def set_preview_feature(self, f, on):
        self.previews[f.name] = on

    def add_optimization_profile(self, p):
        self.profiles.append(p.shapes)

    def create_timing_cache(self, data):
        return types.SimpleNamespace(data=bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache

    def get_timing_cache(self):
        blob = (self.cache.data if self.cache else b"") + b"+tuned"
        return types.SimpleNamespace(serialize=lambda: blob)


class OptProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = [list(lo), list(opt), list(hi)]


def make_fake_trt(version, fail_strongly_typed=False):
    trt = fake_trt(version)
    trt.float32, trt.float16, trt.int32, trt.bool = FLOAT, HALF, INT32, BOOL
    trt.nptype = lambda d: d.np_type
    trt.TensorIOMode = _enum(NONE=0, INPUT=1, OUTPUT=2)
    trt.ProfilingVerbosity = _enum(LAYER_NAMES_ONLY=0, DETAILED=2)
    trt.calls = {}
    strongly_bit = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)

    class ILogger:
        Severity = _enum(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class Logger(ILogger):
        ERROR = 1

        def __init__(self, severity=None):
            pass

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse(self, data):
            import onnx

            model = onnx.load_from_string(data)
            trt.calls.setdefault("parsed", []).append(model)
            typed = strongly_bit is not None and self.network.flags & (1 << int(strongly_bit))
            if fail_strongly_typed and typed:
                self.errors.append("stand-in parser: strongly typed LSTM unsupported")
                return False
            self.network.model = model
            inits = {i.name for i in model.graph.initializer}
            tensors = {vi.name: Tensor(vi.name) for vi in model.graph.input if vi.name not in inits}
            self.network.inputs = list(tensors.values())
            for i in model.graph.initializer:
                tensors[i.name] = Tensor(i.name)
                self.network.layers.append(Layer(i.name, "CONSTANT", [], [tensors[i.name]]))
            for n in model.graph.node:
                ins = [tensors.setdefault(x, Tensor(x)) for x in n.input if x]
                outs = [tensors.setdefault(o, Tensor(o)) for o in n.output if o]
                if n.op_type in ("LSTM", "GRU", "RNN"):  # a loop: iterator, matmul, back-edge, output
                    it, mm, h, hp = (Tensor(n.name + s) for s in ("/it", "/mm", "/h", "/hp"))
                    self.network.layers += [Layer(n.name + "/iter", "ITERATOR", ins[:1], [it]),
                                            Layer(n.name + "/rec", "RECURRENCE", [h], [hp]),
                                            Layer(n.name + "/mm", "MATRIX_MULTIPLY", [it, hp] + ins[1:3], [mm]),
                                            Layer(n.name + "/act", "ACTIVATION", [mm], [h])]
                    ins = [h]
                self.network.layers.append(Layer(n.name, "ELEMENTWISE" if n.op_type != "Cast" else "CAST", ins, outs))
            return True

    class Builder:
        def __init__(self, logger):
            trt.calls["builder"] = True

        def create_network(self, flags):
            trt.calls["network_flags"] = flags
            return Network(flags)

        def create_builder_config(self):
            trt.calls["config"] = Config(trt)
            return trt.calls["config"]

        def create_optimization_profile(self):
            return OptProfile()

        def build_serialized_network(self, network, config):
            pinned = [layer.name for layer in network.layers if layer.precision is FLOAT]
            trt.calls["pinned"] = pinned
            model = network.model
            return json.dumps({"onnx": model.SerializeToString().hex(), "profiles": config.profiles}).encode()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            try:
                d = json.loads(bytes(blob))
            except ValueError:
                return None
            return Engine(d, trt)

    trt.ILogger, trt.Logger, trt.OnnxParser, trt.Builder, trt.Runtime = ILogger, Logger, OnnxParser, Builder, Runtime
    return trt


class Engine:
    """Evaluates the parsed ONNX with onnx.reference; int64 I/O becomes int32 as in TensorRT 8.6."""

    def __init__(self, d, trt):
        import onnx

        self.trt = trt
        self.model = onnx.load_from_string(bytes.fromhex(d["onnx"]))
        self.profiles = d["profiles"]
        g = self.model.graph
        inits = {i.name for i in g.initializer}
        self.io = [(vi.name, "in", vi) for vi in g.input if vi.name not in inits] + [(vi.name, "out", vi) for vi in g.output]
        self.num_io_tensors = len(self.io)
        self.num_optimization_profiles = len(self.profiles)

    def _vi(self, name):
        return next(v for n, _, v in self.io if n == name)

    def get_tensor_name(self, i):
        return self.io[i][0]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if any(n == name and m == "in" for n, m, _ in self.io) else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        t = self._vi(name).type.tensor_type.elem_type
        return {1: FLOAT, 10: HALF, 7: INT32, 6: INT32, 9: BOOL}[t]

    def get_tensor_shape(self, name):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in self._vi(name).type.tensor_type.shape.dim]

    def get_tensor_profile_shape(self, name, k):
        return self.profiles[k][name]

    def create_execution_context(self):
        return Context(self)


class Context:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses, self.profile, self.runs = engine, {}, {}, 0, 0

    def set_optimization_profile_async(self, k, stream):
        self.profile = k
        return True

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.profiles[self.profile][name]
        if not all(a <= s <= b for s, a, b in zip(shape, lo, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def _outputs(self):
        # the engine "computes" the ONNX graph as the spec defines it (recurrent ops honour sequence_lens)
        from rnndeploy.graph.reference import reference_run

        feed = {}
        for name, mode, vi in self.engine.io:
            if mode == "in":
                dt = self.engine.get_tensor_dtype(name).np_type
                feed[name] = FakeCuda.ONLY.read(self.addresses[name], self.shapes[name], dt)
                want = ONNX_TO_NP[vi.type.tensor_type.elem_type]
                feed[name] = feed[name].astype(want)
        names = [n for n, m, _ in self.engine.io if m == "out"]
        return reference_run(self.engine.model, feed, names)

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        x = self.shapes["x"]
        return (x[0], x[1], self.engine.get_tensor_shape(name)[-1])

    def execute_async_v3(self, stream):
        cuda = FakeCuda.ONLY
        addresses = dict(self.addresses)

        def kernel():
            self.runs += 1
            saved, self.addresses = self.addresses, addresses
            try:
                for name, value in self._outputs().items():
                    cuda.write(addresses[name], value.astype(self.engine.get_tensor_dtype(name).np_type))
            finally:
                self.addresses = saved

        cuda.enqueue(kernel)
        return True


class FakeCuda:
    """Device memory as bytearrays; a stream is a queue run at synchronisation; graph
    capture records the enqueued kernels so launch() replays them."""

    ONLY = None

    def __init__(self, count=1):
        FakeCuda.ONLY = self
        self.count, self.mem, self.next, self.queue, self.capturing, self.log = count, {}, 0x1000, [], None, []
        self.path = "fake-cudart"

    def require_device(self, i):
        from rnndeploy.errors import DeviceError

        if i >= self.count:
            raise DeviceError("no CUDA GPU 0 (fake)")

    def device_properties(self, i):
        return types.SimpleNamespace(name="Fake GPU", compute_capability="9.0", total_memory=80 << 30)

    def runtime_version(self):
        return 12010

    def driver_version(self):
        return 13000

    def set_device(self, i):
        self.log.append(("set_device", i))

    def mem_get_info(self):
        used = sum(len(b) for b in self.mem.values())
        return (80 << 30) - used, 80 << 30

    def malloc(self, n):
        p, self.next = self.next, self.next + n + 256
        self.mem[p] = bytearray(n)
        return p

    def free(self, p):
        del self.mem[p]

    def read(self, p, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(bytes(self.mem[p][:n]), dtype).reshape(shape).copy()

    def write(self, p, arr):
        self.mem[p][: arr.nbytes] = np.ascontiguousarray(arr).tobytes()

    def enqueue(self, fn):
        (self.capturing if self.capturing is not None else self.queue).append(fn)

    def memcpy_htod(self, dst, arr, stream=0):
        data = np.ascontiguousarray(arr).copy()
        self.log.append("h2d")
        self.enqueue(lambda: self.write(dst, data))

    def memcpy_dtoh(self, arr, src, stream=0):
        self.log.append("d2h")
        self.enqueue(lambda: arr.__setitem__(Ellipsis, self.read(src, arr.shape, arr.dtype)))

    def stream_synchronize(self, stream):
        while self.queue:
            self.queue.pop(0)()

    def host_array(self, shape, dtype):
        return np.zeros(shape, dtype)

    stream_create = lambda self: 5  # noqa: E731
    stream_destroy = lambda self, s: None  # noqa: E731
    event_create = lambda self: 1  # noqa: E731
    event_destroy = lambda self, e: None  # noqa: E731

    def event_record(self, e, s):
        self.log.append("event")

    def event_synchronize(self, e):
        self.stream_synchronize(0)

    def event_elapsed_ms(self, a, b):
        return 2.0

    def capture_graph(self, stream, work):
        self.capturing = []
        try:
            work()
            kernels = self.capturing
        finally:
            self.capturing = None
        self.log.append("capture")
        return types.SimpleNamespace(launch=lambda s: [self.enqueue(k) for k in kernels], destroy=lambda: None)


@pytest.fixture
def fake_env(monkeypatch):
    """Install a stand-in tensorrt of a given version and the fake CUDA runtime."""

    def install(version="8.6.0", **kw):
        trt = make_fake_trt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        rt = FakeCuda()
        monkeypatch.setattr(cuda_mod, "runtime", lambda: rt)
        monkeypatch.setattr("rnndeploy.engine.trt_compat.loaded_stub_libraries", lambda maps_text=None: [])
        return trt, rt

    return install


# -- builder ---------------------------------------------------------------------------------------------------------------
def _build(tmp_path, version, cell="LSTM", bidirectional=True, **options):
    path = save(make_rnn_model(cell, bidirectional=bidirectional, with_lengths=True), tmp_path / "m.onnx")
    out = str(tmp_path / f"m{version.split('.')[0]}.plan")
    opts = BuildOptions(**{"progress": False, "shapes": ShapeOptions(profiles=("batch=1:1:1,seq=1:16:64", "batch=2:4:8,seq=1:8:32")),
                           **options})
    return build_engine(path, out, opts), out


def test_builder_on_86_flag_and_constraints(tmp_path, fake_env):
    trt, _ = fake_env("8.6.0")
    res, out = _build(tmp_path, "8.6.0", fp16=True, policy="fp16-keep-recurrence", workspace_mib=256, opt_level=4,
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
    assert side["engine"]["bytes"] == res.engine_bytes and "wrote" in res.summary()
    parsed = trt.calls["parsed"][-1]
    assert parsed.ir_version == 8 and all(i.data_type != 10 for i in parsed.graph.initializer)  # FP32 graph + flag
    # a second build loads the saved timing cache
    _build(tmp_path, "8.6.0", timing_cache=str(tmp_path / "tc.bin"))
    assert (tmp_path / "tc.bin").read_bytes() == b"+tuned+tuned"


def test_builder_samples_memory_of_its_own_device(tmp_path, fake_env):
    """Each memory sample selects the build's device first: the sampler runs in its own thread
    and cudaSetDevice is per host thread (a new thread starts on device 0)."""
    trt, rt = fake_env("8.6.0")
    rt.count = 2
    res, _ = _build(tmp_path, "8.6.0", device=1)
    assert ("set_device", 1) in rt.log and ("set_device", 0) not in rt.log and res.sidecar["gpu"]["index"] == 1
    assert res.sidecar["build"]["memory"]["peak_device_used"] is not None


def test_builder_on_10_strongly_typed_and_fallback(tmp_path, fake_env):
    from rnndeploy.precision import is_fp16_model

    trt, _ = fake_env("10.13.0")
    _build(tmp_path, "10.13.0", fp16=True, policy="fp16-keep-recurrence")
    cfg = trt.calls["config"]
    assert trt.calls["network_flags"] == 1 << 5  # STRONGLY_TYPED only; EXPLICIT_BATCH is not needed on 10
    assert "FP16" not in cfg.flags and trt.calls["pinned"] == []
    assert is_fp16_model(trt.calls["parsed"][-1])
    side = json.loads((tmp_path / "m10.plan.json").read_text())
    assert side["precision"]["path"] == "strongly-typed" and side["precision"]["conversion"]["policy"] == "fp16-keep-recurrence"

    trt, _ = fake_env("10.13.0", fail_strongly_typed=True)
    _build(tmp_path, "10.13.0", fp16=True, policy="fp16")
    side = json.loads((tmp_path / "m10.plan.json").read_text())
    assert side["precision"]["path"] == "fp16-flag"
    assert side["precision"]["failed_attempts"][0]["path"] == "strongly-typed"
    assert "strongly typed LSTM unsupported" in side["precision"]["failed_attempts"][0]["error"]
    assert trt.calls["config"].flags == {"FP16"} and trt.calls["network_flags"] == 0


def test_builder_on_11_and_fp32(tmp_path, fake_env):
    trt, _ = fake_env("11.0.0")
    _build(tmp_path, "11.0.0", fp16=True)
    assert trt.calls["network_flags"] == 1 << 2 and trt.calls["config"].flags == set()
    before = (tmp_path / "m11.plan").read_bytes()
    trt, _ = fake_env("11.0.0", fail_strongly_typed=True)
    with pytest.raises(EngineBuildError) as e:
        _build(tmp_path, "11.0.0", fp16=True)
    assert "could not build" in str(e.value) and "strongly typed LSTM unsupported" in str(e.value)
    assert e.value.exit_code == 1
    assert (tmp_path / "m11.plan").read_bytes() == before  # a failed build leaves the previous engine alone
    trt, _ = fake_env("11.0.0")
    _build(tmp_path, "11.0.0", fp16=False, tf32=True)
    assert trt.calls["config"].flags == set() and trt.calls["config"].cleared == set()


# -- runner ----------------------------------------------------------------------------------------------------------------
def test_runner_profiles_dtypes_copies_and_graphs(tmp_path, fake_env):
    from rnndeploy.precision import run_model

    trt, rt = fake_env("8.6.0")
    _, out = _build(tmp_path, "8.6.0", bidirectional=False, fp16=False)  # onnx 1.19's evaluator: no bidirectional
    model = make_rnn_model("LSTM", bidirectional=False, with_lengths=True)
    source = resolve_source(engine=out)
    assert source.spec.name == "tiny-lstm" and source.engine == out
    with TensorRTRunner(source, RunnerOptions(device="cuda:0")) as runner:
        f = feeds(batch=1, seq=40, lengths=True)  # only profile 0 holds seq 40 at batch 1
        y = runner.infer(f)["y"]
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
    _, out = _build(tmp_path, "8.6.0", fp16=True)
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
    _, out = _build(tmp_path, "8.6.0", bidirectional=False, fp16=False)
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


def test_builder_falls_back_when_tensorrt_rejects_a_constraint(tmp_path, fake_env, monkeypatch):
    """If pinning the recurrent state is refused (here: set_output_type raises on a RECURRENCE
    layer), the next plan — arithmetic layers only — builds, and the sidecar says so."""
    trt, _ = fake_env("8.6.0")
    original = Layer.set_output_type

    def picky(self, i, dtype):
        if self.type.name == "RECURRENCE":
            raise RuntimeError("stand-in: no precision on recurrence layers")
        original(self, i, dtype)

    monkeypatch.setattr(Layer, "set_output_type", picky)
    _build(tmp_path, "8.6.0", fp16=True, policy="fp16-keep-recurrence")
    side = json.loads((tmp_path / "m8.plan.json").read_text())
    failed = side["precision"]["failed_attempts"]
    assert len(failed) == 1 and failed[0]["pin_loop_boundaries"] is True
    assert failed[0]["error"] == "RuntimeError: stand-in: no precision on recurrence layers"
    assert side["precision"]["path"] == "fp16-flag+constraints" and trt.calls["pinned"] == ["lstm0/mm", "lstm0/act", "lstm0"]
