"""Triton model configurations: built from a model file's I/O, written and parsed with Triton's
own schema, and checked against the rules the server enforces when it loads a model.

The schema is ``model_config_pb2`` from the ``tritonclient`` package (the ``triton`` extra):
a config is built as a plain dict, turned into an ``inference.ModelConfig`` message with
``json_format.ParseDict`` (unknown fields and enum values fail there), and written with
``text_format``. ``check_config`` then applies the load-time rules of Triton's core and of
its onnxruntime / tensorrt backends that can be checked without a server (worded after their
own error messages; see the onnxruntime backend's ``ValidateInputs`` / ``ValidateOutputs`` /
``ValidateBooleanSequenceControl`` and the tensorrt backend's profile handling):

- with ``max_batch_size > 0`` every tensor's first axis is the batch axis (variable, named
  ``batch``); ``dims`` leave it out; otherwise ``dims`` cover every axis;
- the model's input count equals config inputs + sequence controls + implicit states, and
  every name exists in the model with the same data type;
- input dims are compatible with the model's (a fixed model axis must match); output dims
  equal the model's;
- a sequence control input has dims [1] after the batch axis and the data type its
  ``*_false_true`` field (or CORRID ``data_type``) names;
- an implicit state's input/output exist in the model with the state's type and dims, are not
  listed as config inputs, and start from a fully fixed ``initial_state``; implicit state needs
  the onnxruntime, tensorrt or pytorch backend (not python);
- preferred batch sizes lie in 1..max_batch_size; dynamic and sequence batching exclude each other;
- TensorRT: every optimization profile accepts batch 1 through ``max_batch_size``, and
  ``instance_group.profile`` names existing profiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rnndeploy.errors import MissingDependencyError, UsageError
from rnndeploy.triton.modelio import ONNX_PLATFORM, PYTHON_BACKEND, TRT_PLATFORM, IoTensor, ModelIO

TRITON_TYPES: Dict[str, str] = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
}
NUMPY_OF_TRITON = {v: k for k, v in TRITON_TYPES.items()}
CONTROL_KINDS = {"start": "CONTROL_SEQUENCE_START", "end": "CONTROL_SEQUENCE_END",
                 "ready": "CONTROL_SEQUENCE_READY", "corrid": "CONTROL_SEQUENCE_CORRID"}
# data type of a boolean control tensor -> the field that gives its false/true values
BOOL_CONTROL_FIELDS = {"float32": "fp32_false_true", "int32": "int32_false_true", "bool": "bool_false_true"}
IMPLICIT_STATE_PLATFORMS = (ONNX_PLATFORM, TRT_PLATFORM, "pytorch_libtorch")
BACKEND_PLATFORMS = {"onnxruntime": ONNX_PLATFORM, "tensorrt": TRT_PLATFORM, "pytorch": "pytorch_libtorch"}
ACCELERATORS = ("tensorrt", "openvino")
KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}
DEFAULT_MAX_BATCH = 32  # ONNX Runtime has no profile to read it from; rnndeploy's default batch range is 1:8:32


@dataclass(frozen=True)
class ConfigOptions:
    """How to serve. Defaults suit one GPU; every field maps to one config.pbtxt setting.

    Attributes:
        max_batch_size: None = from the engine's profiles (TensorRT) or the model's [engine]
            batch range (ONNX; 32 without one); 0 = no batching.
        dynamic_batching: let Triton combine requests (``dynamic_batching``, or the sequence
            batcher's ``oldest`` strategy for a streaming model). Off: each execution serves
            one request (a streaming model then gets max_batch_size 1).
        preferred_batch_sizes: None = the profiles' opt batch sizes (values > 1 only).
        max_queue_delay_us: how long the batcher waits to fill a batch, microseconds (default 100).
        instances: model instances (``instance_group.count``, default 1).
        kind: "auto" (GPU when there is one), "gpu" or "cpu"; TensorRT engines need "gpu".
        accelerator: ONNX Runtime only: "tensorrt" (TensorRT EP) or "openvino" (CPU).
        fp16: with accelerator "tensorrt": FP16 kernels allowed (``precision_mode FP16``).
        sequence_idle_s: a streaming sequence idle this long is freed (seconds, default 10).
        max_candidate_sequences: sequences one instance batches from (default max(64, max batch)).
    """

    max_batch_size: Optional[int] = None
    dynamic_batching: bool = True
    preferred_batch_sizes: Optional[Tuple[int, ...]] = None
    max_queue_delay_us: int = 100
    instances: int = 1
    kind: str = "auto"
    accelerator: Optional[str] = None
    fp16: bool = False
    sequence_idle_s: float = 10.0
    max_candidate_sequences: Optional[int] = None

    def __post_init__(self) -> None:
        if self.max_batch_size is not None and self.max_batch_size < 0:
            raise UsageError(f"max batch size must be 0 or more, got {self.max_batch_size}")
        if self.instances < 1:
            raise UsageError(f"instances must be at least 1, got {self.instances}")
        if self.kind not in KINDS:
            raise UsageError(f"instance kind {self.kind!r} is unknown", f"use one of {', '.join(KINDS)}")
        if self.accelerator is not None and self.accelerator not in ACCELERATORS:
            raise UsageError(f"accelerator {self.accelerator!r} is unknown", f"use one of {', '.join(ACCELERATORS)}")
        if self.fp16 and self.accelerator != "tensorrt":
            raise UsageError("--fp16 needs --accelerator tensorrt",
                             "ONNX Runtime's CUDA path runs the graph's own precision; a TensorRT engine's precision "
                             "was fixed when it was built")
        if self.sequence_idle_s <= 0:
            raise UsageError(f"sequence idle timeout must be positive, got {self.sequence_idle_s}")
        if self.preferred_batch_sizes is not None and any(b < 1 for b in self.preferred_batch_sizes):
            raise UsageError("preferred batch sizes must be positive")


@dataclass(frozen=True)
class Streaming:
    """A model whose recurrent state Triton keeps per sequence (implicit state).

    Attributes:
        states: (state input name, state output name) pairs, h before c.
        controls: control kind ("start", "end", "ready", "corrid") -> model input name.
    """

    states: Tuple[Tuple[str, str], ...]
    controls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltConfig:
    """A config as a dict in the protobuf JSON mapping, plus notes for the user."""

    config: Dict[str, Any]
    notes: Tuple[str, ...] = ()


# -- schema ---------------------------------------------------------------------------------------------
def schema() -> Any:
    """Triton's ``model_config_pb2`` (from tritonclient), or MissingDependencyError naming the extra."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise MissingDependencyError("tritonclient", "triton", "Triton's model configuration schema") from exc
    return model_config_pb2


def to_message(config: Mapping[str, Any]) -> Any:
    """The dict as an ``inference.ModelConfig``; unknown fields / enum values raise UsageError."""
    from google.protobuf import json_format

    pb = schema()
    try:
        return json_format.ParseDict(dict(config), pb.ModelConfig())
    except json_format.ParseError as exc:
        raise UsageError(f"model configuration does not fit Triton's schema: {exc}") from exc


def to_pbtxt(message: Any, header: Sequence[str] = ()) -> str:
    """Text-format config (what Triton reads from config.pbtxt), with ``# `` comment lines first."""
    from google.protobuf import text_format

    lines = [f"# {h}" for h in header]
    return "\n".join(lines + [text_format.MessageToString(message).rstrip()]) + "\n"


def parse_pbtxt(text: str, where: str = "config.pbtxt") -> Any:
    """Parse a config.pbtxt with Triton's schema.

    Raises:
        UsageError: the text does not parse (the protobuf message names line and field).
    """
    from google.protobuf import text_format

    pb = schema()
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise UsageError(f"{where} does not parse as a Triton model configuration: {exc}") from exc


# -- building ---------------------------------------------------------------------------------------------
def config_dims(t: IoTensor, max_batch_size: int) -> Dict[str, Any]:
    """``dims`` (and ``reshape``) of one tensor: a batch-only tensor [batch] is written
    dims [1] with reshape [] when batching, as Triton's docs prescribe."""
    dims = list(t.shape[1:] if max_batch_size > 0 else t.shape)
    if not dims:
        return {"dims": [1], "reshape": {"shape": []}}
    return {"dims": dims}


def _profile_batches(io: ModelIO) -> List[Tuple[int, int, int]]:
    """(min, opt, max) of the batch axis in each TensorRT profile (from any batch-first input)."""
    out = []
    for p in io.profiles:
        for t in io.inputs:
            r = p.shapes.get(t.name)
            if r is not None and t.batch_first:
                out.append((r.min[0], r.opt[0], r.max[0]))
                break
    return out


def build_config(name: str, io: ModelIO, options: ConfigOptions, streaming: Optional[Streaming] = None,
                 batch_hint: Optional[Tuple[int, int, int]] = None) -> BuiltConfig:
    """The config for serving ``io`` as model ``name``.

    Args:
        io: the model file's I/O (modelio.onnx_io / engine_io).
        streaming: implicit states and controls (None: a stateless model).
        batch_hint: (min, opt, max) batch from the model's [engine] metadata (ONNX only).

    Raises:
        UsageError: options the model cannot honour (batching with a tensor whose batch axis
            is not first, a max batch above the engine's profiles, ...).
    """
    notes: List[str] = []
    platform = io.platform
    state_in = {i for i, _ in (streaming.states if streaming else ())}
    state_out = {o for _, o in (streaming.states if streaming else ())}
    control_names = set(streaming.controls.values()) if streaming else set()
    for n in sorted(state_in | control_names):
        if io.input(n) is None:
            raise UsageError(f"model has no input {n!r} (named as a sequence state or control)",
                             f"its inputs are {', '.join(t.name for t in io.inputs)}")
    for n in sorted(state_out):
        if io.output(n) is None:
            raise UsageError(f"model has no output {n!r} (named as a sequence state)",
                             f"its outputs are {', '.join(t.name for t in io.outputs)}")
    if streaming and platform not in IMPLICIT_STATE_PLATFORMS:
        raise UsageError(f"implicit sequence state needs Triton's onnxruntime, tensorrt or pytorch backend, not {platform}")
    inputs = [t for t in io.inputs if t.name not in state_in | control_names]
    outputs = [t for t in io.outputs if t.name not in state_out]

    not_first = [t.name for t in io.inputs + io.outputs if not t.batch_first]
    profile_batch = _profile_batches(io)
    mbs = options.max_batch_size
    if mbs is None:
        if not_first:
            mbs = 0
            notes.append(f"max_batch_size 0 (no batching): the batch axis is not the first axis of "
                         f"{', '.join(not_first)}; Triton batches along axis 0 of every tensor")
        elif profile_batch:
            mbs = min(hi for _, _, hi in profile_batch)
        else:
            mbs = batch_hint[2] if batch_hint else DEFAULT_MAX_BATCH
    elif mbs > 0 and not_first:
        raise UsageError(f"cannot batch: the batch axis is not the first axis of {', '.join(not_first)}",
                         "give --max-batch-size 0, or make the state batch-first (rnndeploy normalize --batch-first-state)")
    if mbs > 0:
        for k, (lo, _, hi) in enumerate(profile_batch):
            if lo > 1:
                raise UsageError(f"optimization profile {k} of the engine needs batch >= {lo}; Triton sends batches from 1",
                                 "rebuild the engine with a batch range starting at 1 (--batch 1:OPT:MAX)")
            if hi < mbs:
                raise UsageError(f"max batch size {mbs} exceeds optimization profile {k}'s max batch {hi}",
                                 f"give --max-batch-size {hi} or less, or rebuild the engine for larger batches")
    if streaming and not options.dynamic_batching and mbs > 1:
        mbs = 1
        notes.append("max_batch_size 1: batching is off, so the sequence batcher runs one sequence per execution")

    cfg: Dict[str, Any] = {"name": name, "platform": platform, "max_batch_size": mbs}
    cfg["input"] = [{"name": t.name, "data_type": TRITON_TYPES[t.dtype], **config_dims(t, mbs)} for t in inputs]
    cfg["output"] = [{"name": t.name, "data_type": TRITON_TYPES[t.dtype], **config_dims(t, mbs)} for t in outputs]

    preferred = _preferred(options, profile_batch, batch_hint, mbs)
    if streaming:
        cfg["sequence_batching"] = _sequence_batching(io, streaming, options, mbs, preferred)
    elif mbs > 0 and options.dynamic_batching:
        batching: Dict[str, Any] = {"max_queue_delay_microseconds": options.max_queue_delay_us}
        if preferred:
            batching["preferred_batch_size"] = preferred
        cfg["dynamic_batching"] = batching

    kind = options.kind
    if platform == TRT_PLATFORM:
        if kind == "cpu":
            raise UsageError("a TensorRT engine runs on a GPU only", "drop --kind cpu")
        kind = "gpu"
    cfg["instance_group"] = [{"count": options.instances, "kind": KINDS[kind]}]

    if options.accelerator is not None:
        if platform != ONNX_PLATFORM:
            raise UsageError("--accelerator applies to ONNX Runtime models only", "drop it for a TensorRT engine")
        if options.accelerator == "tensorrt":
            params = {"precision_mode": "FP16" if options.fp16 else "FP32", "max_workspace_size_bytes": str(1 << 30)}
            cfg["optimization"] = {"execution_accelerators": {
                "gpu_execution_accelerator": [{"name": "tensorrt", "parameters": params}]}}
        else:
            cfg["optimization"] = {"execution_accelerators": {"cpu_execution_accelerator": [{"name": "openvino"}]}}
    return BuiltConfig(cfg, tuple(notes))


def _preferred(options: ConfigOptions, profile_batch: Sequence[Tuple[int, int, int]],
               batch_hint: Optional[Tuple[int, int, int]], mbs: int) -> List[int]:
    if mbs <= 1:
        return []
    if options.preferred_batch_sizes is not None:
        bad = [b for b in options.preferred_batch_sizes if b > mbs]
        if bad:
            raise UsageError(f"preferred batch sizes {bad} exceed max_batch_size {mbs}")
        return sorted(set(options.preferred_batch_sizes))
    opts = [opt for _, opt, _ in profile_batch] or ([batch_hint[1]] if batch_hint else [])
    return sorted({b for b in opts if 1 < b <= mbs})


def _sequence_batching(io: ModelIO, streaming: Streaming, options: ConfigOptions, mbs: int,
                       preferred: List[int]) -> Dict[str, Any]:
    seq: Dict[str, Any] = {"max_sequence_idle_microseconds": int(round(options.sequence_idle_s * 1e6))}
    # "oldest" batches requests of different sequences; the state of each stays with its sequence.
    oldest: Dict[str, Any] = {"max_candidate_sequences": options.max_candidate_sequences or max(64, mbs),
                              "max_queue_delay_microseconds": options.max_queue_delay_us}
    if preferred:
        oldest["preferred_batch_size"] = preferred
    seq["oldest"] = oldest
    controls = []
    for kind in ("start", "end", "ready", "corrid"):
        name = streaming.controls.get(kind)
        if name is None:
            continue
        t = io.input(name)
        assert t is not None  # build_config checked the names
        if kind == "corrid":
            control = {"kind": CONTROL_KINDS[kind], "data_type": TRITON_TYPES[t.dtype]}
        else:
            fld = BOOL_CONTROL_FIELDS.get(t.dtype)
            if fld is None:
                raise UsageError(f"control input {name!r} has type {t.dtype}",
                                 f"a {kind} control must be one of {', '.join(BOOL_CONTROL_FIELDS)}")
            control = {"kind": CONTROL_KINDS[kind], fld: [False, True] if t.dtype == "bool" else [0, 1]}
        controls.append({"name": name, "control": [control]})
    if controls:
        seq["control_input"] = controls
    states = []
    for i, o in streaming.states:
        t = io.input(i)
        assert t is not None
        dims = list(t.shape[1:] if mbs > 0 else t.shape)
        if any(d < 0 for d in dims):
            raise UsageError(f"state {i!r} has a dynamic axis besides batch ({list(t.shape)})",
                             "Triton starts a sequence from a fixed-shape initial state; export the state with fixed sizes")
        states.append({"input_name": i, "output_name": o, "data_type": TRITON_TYPES[t.dtype], "dims": dims,
                       "initial_state": [{"data_type": TRITON_TYPES[t.dtype], "dims": dims, "zero_data": True,
                                          "name": f"{i}_zeros"}]})
    seq["state"] = states
    return seq


# -- checking ---------------------------------------------------------------------------------------------
def check_config(cfg: Any, io: ModelIO) -> List[str]:
    """Problems Triton would report loading ``cfg`` (an inference.ModelConfig) over ``io``; [] when none."""
    problems: List[str] = []
    mbs = int(cfg.max_batch_size)
    platform = cfg.platform or BACKEND_PLATFORMS.get(cfg.backend, cfg.backend)
    if mbs < 0:
        problems.append(f"max_batch_size {mbs} is negative")
    seq = cfg.sequence_batching if cfg.HasField("sequence_batching") else None
    if seq is not None and cfg.HasField("dynamic_batching"):
        problems.append("dynamic_batching and sequence_batching are both set; a model has one scheduler")

    controls: Dict[str, Tuple[str, Optional[str]]] = {}  # name -> (kind, numpy dtype)
    states = list(seq.state) if seq is not None else []
    if seq is not None:
        for ci in seq.control_input:
            for c in ci.control:
                kind = schema().ModelSequenceBatching.Control.Kind.Name(c.kind)
                if kind == "CONTROL_SEQUENCE_CORRID":
                    dtype = NUMPY_OF_TRITON.get(_dt_name(c.data_type))
                else:
                    dtype = ("float32" if len(c.fp32_false_true) else "int32" if len(c.int32_false_true)
                             else "bool" if len(c.bool_false_true) else None)
                    if dtype is None:
                        problems.append(f"sequence control {ci.name!r} ({kind}) gives no false/true values")
                controls[ci.name] = (kind, dtype)
    if states and platform not in IMPLICIT_STATE_PLATFORMS:
        problems.append(f"implicit state (sequence_batching.state) is not supported by the {platform or 'python'} backend; "
                        "only onnxruntime, tensorrt and pytorch keep state")

    config_in = [i.name for i in cfg.input]
    dup = sorted({n for n in config_in if config_in.count(n) > 1})
    if dup:
        problems.append(f"inputs listed twice: {', '.join(dup)}")
    expected = len(cfg.input) + len(controls) + len(states)
    if platform in (ONNX_PLATFORM, TRT_PLATFORM) and expected != len(io.inputs):
        named = set(config_in) | set(controls) | {s.input_name for s in states}
        model_names = {t.name for t in io.inputs}
        detail = []
        if model_names - named:
            detail.append(f"model inputs not in the config: {', '.join(sorted(model_names - named))}")
        if named - model_names:
            detail.append(f"config names the model lacks: {', '.join(sorted(named - model_names))}")
        problems.append(f"configuration expects {expected} inputs, model provides {len(io.inputs)}"
                        + (f" ({'; '.join(detail)})" if detail else ""))

    for what, entries, find in (("input", cfg.input, io.input), ("output", cfg.output, io.output)):
        for c in entries:
            t = find(c.name)
            if t is None:
                have = _names(io.inputs if what == "input" else io.outputs)
                problems.append(f"{what} {c.name!r} is not an {what} of the model (it has {have})")
                continue
            problems += _check_tensor(what, c, t, mbs, exact=what == "output")
            if what == "input" and c.name in {s.input_name for s in states}:
                problems.append(f"input {c.name!r} is also an implicit state input; clients must not send it")
    for name, (kind, dtype) in controls.items():
        t = io.input(name)
        if t is None:
            problems.append(f"configuration specified sequence control {name!r}, but model does not provide that input")
            continue
        problems += _batch_problem(t, mbs, "sequence control")
        debatched = list(t.shape[1:] if mbs > 0 else t.shape)
        if debatched not in ([1], [-1]):
            problems.append(f"sequence control {name!r} in model has dims {debatched} but dims [1] is expected")
        if dtype is not None and t.dtype != dtype:
            problems.append(f"sequence control {name!r} ({kind}): the model expects {t.dtype}, the config gives {dtype}")
    for s in states:
        problems += _check_state(s, io, mbs)

    preferred = list(cfg.dynamic_batching.preferred_batch_size) if cfg.HasField("dynamic_batching") else []
    if seq is not None and seq.HasField("oldest"):
        preferred += list(seq.oldest.preferred_batch_size)
    bad = [b for b in preferred if not 1 <= b <= max(mbs, 0)]
    if bad:
        problems.append(f"preferred batch sizes {bad} lie outside 1..max_batch_size ({mbs})")

    if platform == TRT_PLATFORM:
        problems += _check_profiles(cfg, io, mbs)
    return problems


def _dt_name(value: int) -> str:
    pb = schema()
    return pb.DataType.Name(value)


def _names(tensors: Sequence[IoTensor]) -> str:
    return ", ".join(t.name for t in tensors) or "none"


def _batch_problem(t: IoTensor, mbs: int, what: str) -> List[str]:
    if mbs <= 0:
        return []
    if not t.shape or t.shape[0] != -1:
        return [f"model configuration supports batching but the first dimension of {what} {t.name!r} is not a "
                f"variable-size batch dimension: {list(t.shape)}"]
    if t.batch_axis is not None and t.batch_axis != 0:
        return [f"{what} {t.name!r}: Triton batches along axis 0 but the batch axis is axis {t.batch_axis} "
                f"({list(t.shape)}); requests would be stacked along another axis"]
    return []


def _check_tensor(what: str, c: Any, t: IoTensor, mbs: int, exact: bool) -> List[str]:
    problems = _batch_problem(t, mbs, what)
    dtype = NUMPY_OF_TRITON.get(_dt_name(c.data_type))
    if dtype != t.dtype:
        problems.append(f"configuration expects datatype {_dt_name(c.data_type)} for {what} {c.name!r}, "
                        f"model provides {TRITON_TYPES.get(t.dtype, t.dtype)}")
    dims = [int(d) for d in (c.reshape.shape if c.HasField("reshape") else c.dims)]
    model = list(t.shape[1:] if mbs > 0 else t.shape)
    if c.HasField("reshape"):
        if -1 not in list(c.dims) + dims and math.prod(int(d) for d in c.dims) != math.prod(dims):
            problems.append(f"{what} {c.name!r}: dims {list(c.dims)} and reshape {dims} hold different element counts")
    ok = len(dims) == len(model) and all(
        (m == d) if exact else (m == -1 or m == d) for m, d in zip(model, dims))
    if not ok:
        problems.append(f"{what} {c.name!r}: the model expects {len(model)} dimensions {model}"
                        f"{' after the batch axis' if mbs > 0 else ''} but the configuration gives {dims}")
    return problems


def _check_state(s: Any, io: ModelIO, mbs: int) -> List[str]:
    problems: List[str] = []
    dtype = NUMPY_OF_TRITON.get(_dt_name(s.data_type))
    dims = [int(d) for d in s.dims]
    for what, t in (("input", io.input(s.input_name)), ("output", io.output(s.output_name))):
        name = s.input_name if what == "input" else s.output_name
        if t is None:
            problems.append(f"state {what} {name!r} is not an {what} of the model")
            continue
        problems += _batch_problem(t, mbs, f"state {what}")
        if t.dtype != dtype:
            problems.append(f"state {what} {name!r}: the model has {t.dtype}, the state says {dtype}")
        model = list(t.shape[1:] if mbs > 0 else t.shape)
        if len(model) != len(dims) or any(m != -1 and m != d for m, d in zip(model, dims)):
            problems.append(f"state {what} {name!r}: the model has dims {model}, the state says {dims}")
    if len(s.initial_state) == 0:
        problems.append(f"state {s.input_name!r} has no initial_state: the first request of a sequence would "
                        "read uninitialised memory unless the model resets on START")
    for init in s.initial_state:
        idims = [int(d) for d in init.dims]
        if any(d < 0 for d in idims):
            problems.append(f"initial state of {s.input_name!r} has a variable dimension {idims}")
        if len(idims) != len(dims) or any(d != -1 and d != i for d, i in zip(dims, idims)):
            problems.append(f"initial state of {s.input_name!r} has dims {idims}, the state {dims}")
        if init.data_type != s.data_type:
            problems.append(f"initial state of {s.input_name!r} has another data type than the state")
        if not init.zero_data and not init.data_file:
            problems.append(f"initial state of {s.input_name!r} gives neither zero_data nor data_file")
    return problems


def _check_profiles(cfg: Any, io: ModelIO, mbs: int) -> List[str]:
    problems: List[str] = []
    if not io.profiles:
        return ["the engine records no optimization profile"]
    for k, p in enumerate(io.profiles):
        for t in io.inputs:
            r = p.shapes.get(t.name)
            if r is None:
                if -1 in t.shape:
                    problems.append(f"profile {k} gives no range for dynamic input {t.name!r}")
                continue
            if mbs > 0 and t.batch_first:
                if r.min[0] > 1:
                    problems.append(f"profile {k}: input {t.name!r} needs batch >= {r.min[0]}; Triton sends batches "
                                    "from 1 (rebuild with a profile whose batch range starts at 1)")
                if r.max[0] < mbs:
                    problems.append(f"configuration specified max-batch {mbs} but TensorRT profile {k} only supports "
                                    f"max-batch {r.max[0]} for {t.name!r}")
    for g in cfg.instance_group:
        for name in g.profile:
            if not name.isdigit() or int(name) >= len(io.profiles):
                problems.append(f"instance_group names profile {name!r}; the engine has profiles 0..{len(io.profiles) - 1}")
    return problems


def describe_streaming_controls() -> str:
    """One line for docs and notes: what the control inputs mean to a streaming model."""
    return ("START resets the state to zeros, READY=0 leaves the state unchanged (an empty batch slot), END and "
            "CORRID are passed for completeness (Triton frees a sequence's state at END itself)")


__all__ = [
    "BuiltConfig", "ConfigOptions", "Streaming", "TRITON_TYPES", "build_config", "check_config", "parse_pbtxt",
    "schema", "to_message", "to_pbtxt", "PYTHON_BACKEND",
]
