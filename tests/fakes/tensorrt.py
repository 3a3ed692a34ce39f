"""Stand-in ``tensorrt`` modules for tests of branching and plumbing, never of engine builds.

Two kinds:
- ``fake_trt(version)``: the enums and class attributes of TensorRT 8.6 / 10 / 11 (enum
  values deliberately shuffled: nothing may hard-code them), for feature detection and
  precision-path planning (tests/test_trt_compat.py).
- ``make_fake_trt(version)``: the above plus a *recording* builder, parser and runtime.
  The stand-in "engine" evaluates the parsed ONNX with rnndeploy.graph.reference, so its
  numbers only show that the runner binds, casts and copies the right buffers; nothing
  here says anything about TensorRT's parser, kernels or numerics. Install it with the
  ``fake_env`` fixture (tests/conftest.py), which also swaps in tests.fakes.cuda.FakeCuda.
"""

from __future__ import annotations

import json
import types

import numpy as np

from rnndeploy.engine.builder import BuildOptions, ShapeOptions, build_engine
from rnndeploy.engine.sidecar import write_sidecar
from rnndeploy.fileio import sha256_bytes
from tests.fakes.cuda import FakeCuda
from tests.onnx_models import make_rnn_model, save


class Member(int):
    """An int with a ``name``, like a pybind11 enum member."""

    def __new__(cls, name: str, value: int):
        obj = int.__new__(cls, value)
        obj.name = name
        return obj


def enum(**values: int) -> types.SimpleNamespace:
    ns = types.SimpleNamespace(**{k: Member(k, v) for k, v in values.items()})
    ns.__members__ = {k: getattr(ns, k) for k in values}
    return ns


def stand_in_class(*attrs: str) -> type:
    return type("StandIn", (), {a: object() for a in attrs})


IO_API = ("num_io_tensors", "get_tensor_name", "create_engine_inspector")
CTX_API = ("execute_async_v3", "set_input_shape", "set_tensor_address")
CONFIG_API = ("create_timing_cache", "set_timing_cache", "set_memory_pool_limit", "builder_optimization_level")


def fake_trt(version: str) -> types.SimpleNamespace:
    major = int(version.split(".")[0])
    if major == 8:
        return types.SimpleNamespace(
            __version__=version,
            BuilderFlag=enum(FP16=0, INT8=1, TF32=7, OBEY_PRECISION_CONSTRAINTS=11, PREFER_PRECISION_CONSTRAINTS=12, STRICT_TYPES=5),
            NetworkDefinitionCreationFlag=enum(EXPLICIT_BATCH=3, EXPLICIT_PRECISION=1),
            INetworkDefinition=stand_in_class("has_implicit_batch_dimension", "add_input"),
            ICudaEngine=stand_in_class("has_implicit_batch_dimension", "max_batch_size", *IO_API),
            IExecutionContext=stand_in_class(*CTX_API, "execute_async_v2"),
            IBuilderConfig=stand_in_class(*CONFIG_API),
            MemoryPoolType=enum(WORKSPACE=0),
            TacticSource=enum(CUBLAS=0, CUBLAS_LT=1, CUDNN=2, EDGE_MASK_CONVOLUTIONS=3, JIT_CONVOLUTIONS=4),
            PreviewFeature=enum(FASTER_DYNAMIC_SHAPES_0805=0, DISABLE_EXTERNAL_TACTIC_SOURCES_FOR_CORE_0805=1),
            ILayer=stand_in_class("precision", "set_output_type"),
        )
    if major == 10:
        return types.SimpleNamespace(
            __version__=version,
            BuilderFlag=enum(FP16=4, TF32=9, OBEY_PRECISION_CONSTRAINTS=2, PREFER_PRECISION_CONSTRAINTS=3),
            NetworkDefinitionCreationFlag=enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=5),
            # 10.x keeps has_implicit_batch_dimension (deprecated, always False); max_batch_size is gone
            INetworkDefinition=stand_in_class("has_implicit_batch_dimension", "add_input"),
            ICudaEngine=stand_in_class("has_implicit_batch_dimension", *IO_API),
            IExecutionContext=stand_in_class(*CTX_API),
            IBuilderConfig=stand_in_class(*CONFIG_API, "progress_monitor"),
            MemoryPoolType=enum(WORKSPACE=0),
            TacticSource=enum(CUBLAS=4, CUBLAS_LT=3, CUDNN=2, EDGE_MASK_CONVOLUTIONS=1, JIT_CONVOLUTIONS=0),
            PreviewFeature=enum(PROFILE_SHARING_0806=0),
            ILayer=stand_in_class("precision", "set_output_type"),
            IProgressMonitor=stand_in_class("phase_start"),
        )
    return types.SimpleNamespace(  # 11: no FP16 flag, no weak typing, no EXPLICIT_BATCH
        __version__=version,
        BuilderFlag=enum(TF32=1, DEBUG=0),
        NetworkDefinitionCreationFlag=enum(STRONGLY_TYPED=2),
        INetworkDefinition=stand_in_class("has_implicit_batch_dimension", "add_input"),
        ICudaEngine=stand_in_class(*IO_API),
        IExecutionContext=stand_in_class(*CTX_API),
        IBuilderConfig=stand_in_class(*CONFIG_API, "progress_monitor"),
        MemoryPoolType=enum(WORKSPACE=0),
        TacticSource=enum(EDGE_MASK_CONVOLUTIONS=1, JIT_CONVOLUTIONS=0),
        ILayer=stand_in_class("metadata"),
        IProgressMonitor=stand_in_class("phase_start"),
    )


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
    def __init__(self, flags, layers=()):
        self.flags, self.layers, self.inputs, self.model = flags, list(layers), [], None

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
    trt.TensorIOMode = enum(NONE=0, INPUT=1, OUTPUT=2)
    trt.ProfilingVerbosity = enum(LAYER_NAMES_ONLY=0, DETAILED=2)
    trt.calls = {}
    strongly_bit = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)

    class ILogger:
        Severity = enum(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

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


def build_with_stand_in(tmp_path, version, cell="LSTM", bidirectional=True, **options):
    """build_engine on a tiny LSTM/GRU model through the stand-in installed by the ``fake_env``
    fixture (two profiles); returns (BuildResult, engine path). Nothing real is built."""
    path = save(make_rnn_model(cell, bidirectional=bidirectional, with_lengths=True), tmp_path / "m.onnx")
    out = str(tmp_path / f"m{version.split('.')[0]}.plan")
    opts = BuildOptions(**{"progress": False, "shapes": ShapeOptions(profiles=("batch=1:1:1,seq=1:16:64", "batch=2:4:8,seq=1:8:32")),
                           **options})
    return build_engine(path, out, opts), out


def fake_engine_file(tmp_path, data=b"ftrt" + bytes(range(200)), **sidecar):
    """tmp_path/m.plan holding ``data`` (not an engine) with a valid sidecar for it: for tests of
    sidecar and file checks, which never deserialize the bytes."""
    path = tmp_path / "m.plan"
    path.write_bytes(data)
    info = {"engine": {"bytes": len(data), "sha256": sha256_bytes(data)}, "tensorrt": {"version": "8.6.0"},
            "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}, "profiles": [], **sidecar}
    write_sidecar(path, info)
    return str(path)
