"""The model contract: what a deployed graph takes and returns, and how close is close.

A ``ModelSpec`` is written by the torch side (each zoo model declares one, export
writes it into the ONNX file's ``metadata_props``) and read by the deploy side
(parity input generation, tolerances, TensorRT profiles) — which therefore never
imports the model's Python class, nor torch. Everything here is plain data that
round-trips through JSON.

Conventions:
- Tensors are batch-first. Dynamic axes are named by strings in ``dims``:
  ``"batch"``, ``"seq"`` (the time axis), ``"src_seq"`` (encoder time axis seen by a
  decoder step); fixed axes are ints.
- ``time_axis`` is the index of the time axis in ``dims`` (None when there is none);
  parity uses it to report error versus timestep.
- A model may have several graphs (a seq2seq model has ``encoder`` and
  ``decoder_step``); most have one, called ``model``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from rnndeploy import jsonio
from rnndeploy.errors import SpecError
from rnndeploy.validation import Fields, check_number

SCHEMA_VERSION = 1

# ONNX metadata_props keys (all values are JSON strings).
META_SPEC = "rnndeploy.spec"  # the whole ModelSpec
META_GRAPH = "rnndeploy.graph"  # which of spec.graphs this file holds
META_EXPORT = "rnndeploy.export"  # exporter, opset, checkpoint sha256, version, ...
# keys of the META_EXPORT JSON that readers rely on (named once: writers and readers use these)
EXPORT_CHECKPOINT = "checkpoint"  # the checkpoint directory exported from
EXPORT_CHECKPOINT_SHA256 = "checkpoint_sha256"  # sha256 of its manifest.json (its identity)
EXPORT_NORMALIZATION = "normalization"  # {"input", "target"} z-score statistics (was "normalisation")

DTYPES = ("float32", "float16", "int64", "int32", "bool")
# spec dtype name → numpy dtype (bool inputs are rare — masks — but legal)
NUMPY_DTYPES: Dict[str, np.dtype] = {d: np.dtype(d) for d in DTYPES}
# ONNX TensorProto element types of DTYPES (the numbers, so that the spec needs no onnx import)
ONNX_ELEM_TYPES: Dict[str, int] = {"float32": 1, "float16": 10, "int64": 7, "int32": 6, "bool": 9}
DTYPE_OF_ONNX: Dict[int, str] = {elem: name for name, elem in ONNX_ELEM_TYPES.items()}
FAMILIES = ("regressor", "classifier", "charlm", "seq2seq", "custom")
# Roles tell parity how to generate an input and how to compare an output.
INPUT_ROLES = (
    "features",  # float sequence [batch, seq, n]; values in [low, high]
    "tokens",  # int ids [batch, seq]; values in [low, high)
    "token",  # one int id per batch row [batch] (decoder step)
    "lengths",  # valid length of each sequence [batch]; 1..seq
    "mask",  # padding mask [batch, seq]; derived from lengths when both exist
    "state",  # initial recurrent state (h or c) [layers*dirs, batch, hidden]
    "memory",  # encoder outputs fed to a decoder step [batch, src_seq, n]
    "other",
)
OUTPUT_ROLES = (
    "prediction",  # regression values
    "logits",  # unnormalised class / token scores: argmax agreement applies
    "probs",  # probabilities: argmax agreement applies
    "state",  # final recurrent state
    "memory",  # encoder outputs
    "attention",  # attention weights
    "other",
)
DYNAMIC_DIMS = ("batch", "seq", "src_seq")
# bf16: OpenVINO's CPU plugin on CPUs with AVX-512 BF16 / AMX (the openvino:bf16 backend).
PRECISIONS = ("fp32", "fp16", "bf16")

Dim = Union[int, str]


@dataclass(frozen=True)
class Tolerance:
    """Pass criterion for one output at one precision.

    An element passes when ``|actual - ref| <= atol + rtol * |ref|`` (numpy.allclose
    semantics); when ``rel_l2`` is set the whole output must also have
    ``||actual - ref||_2 / ||ref||_2 <= rel_l2``.
    """

    atol: float
    rtol: float
    rel_l2: Optional[float] = None

    def __post_init__(self) -> None:
        # Fail closed: a NaN bound compares False with everything, so it would pass any error.
        for key in ("atol", "rtol", "rel_l2"):
            value = getattr(self, key)
            if value is not None or key != "rel_l2":
                object.__setattr__(self, key, check_number(value, f"tolerance {key}", minimum=0.0, allow_inf=True,
                                                           error=SpecError))

    @property
    def checks_nothing(self) -> bool:
        """True when no finite bound is left (``inf`` = "not checked"): every error passes."""
        elementwise_open = math.isinf(self.atol) or math.isinf(self.rtol)
        return elementwise_open and (self.rel_l2 is None or math.isinf(self.rel_l2))

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "tolerance") -> Tolerance:
        _check_keys(d, {"atol", "rtol", "rel_l2"}, where)
        f = Fields(d, where, SpecError)
        return cls(
            atol=f.number("atol", minimum=0.0, allow_inf=True),
            rtol=f.number("rtol", minimum=0.0, allow_inf=True),
            rel_l2=f.number("rel_l2", required=False, minimum=0.0, allow_inf=True),
        )


# Defaults measured on the zoo (see benchmarks/results): FP32 runtimes differ from
# torch by ~1e-6 on recurrent outputs; FP16 relative L2 floor of cuDNN's own FP16
# LSTM is ~4e-4 (pytorch#175845), so 1e-3 is the product target.
# FP32 rel_l2: ORT CPU vs torch on zoo LSTMs reaches 1.2e-5 at seq 256 (state outputs with
# small norms; max abs err ~2e-6), so 1e-5 failed correct exports — 1e-4 (export measurement).
DEFAULT_TOLERANCES: Dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, rel_l2=1e-4),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2, rel_l2=1e-3),
    "bf16": Tolerance(atol=1e-1, rtol=1e-1, rel_l2=3e-2),
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output.

    Attributes:
        name: tensor name in the ONNX graph.
        dtype: one of DTYPES.
        dims: per axis, an int (fixed) or a dynamic axis name (see DYNAMIC_DIMS).
        role: one of INPUT_ROLES / OUTPUT_ROLES.
        time_axis: index into ``dims`` of the time axis, or None.
        low, high: value range for generated inputs. Floats: uniform in [low, high].
            Integers: [low, high) — ``high`` is the vocabulary size for tokens.
        optional: present only in the streaming (``--with-state``) form of the graph.
        description: free text for reports.
    """

    name: str
    dtype: str
    dims: Tuple[Dim, ...]
    role: str
    time_axis: Optional[int] = None
    low: Optional[float] = None
    high: Optional[float] = None
    optional: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))
        if not self.name:
            raise SpecError("tensor spec without a name", "give every input and output a name")
        if self.dtype not in DTYPES:
            raise SpecError(f"tensor {self.name!r}: dtype {self.dtype!r} is not supported", f"use one of {', '.join(DTYPES)}")
        if self.role not in INPUT_ROLES + OUTPUT_ROLES:
            raise SpecError(
                f"tensor {self.name!r}: role {self.role!r} is unknown",
                f"use one of {', '.join(sorted(set(INPUT_ROLES + OUTPUT_ROLES)))}",
            )
        for d in self.dims:
            if isinstance(d, bool) or not isinstance(d, (int, str)) or (isinstance(d, int) and d < 0):
                raise SpecError(f"tensor {self.name!r}: dimension {d!r} is neither a size nor an axis name")
        if self.time_axis is not None and (isinstance(self.time_axis, bool) or not isinstance(self.time_axis, int)
                                           or not 0 <= self.time_axis < len(self.dims)):
            raise SpecError(f"tensor {self.name!r}: time_axis {self.time_axis!r} outside its {len(self.dims)} dims")
        for key in ("low", "high"):
            if getattr(self, key) is not None:
                check_number(getattr(self, key), f"tensor {self.name!r}: {key}", error=SpecError)

    @property
    def dynamic_axes(self) -> Dict[int, str]:
        """Axis index → name for every dynamic axis (the torch.onnx dynamic_axes form)."""
        return {i: d for i, d in enumerate(self.dims) if isinstance(d, str)}

    def shape_for(self, sizes: Mapping[str, int]) -> Tuple[int, ...]:
        """Concrete shape given sizes for the named axes, e.g. {"batch": 4, "seq": 50}."""
        try:
            return tuple(d if isinstance(d, int) else int(sizes[d]) for d in self.dims)
        except KeyError as exc:
            raise SpecError(f"tensor {self.name!r}: no size given for axis {exc.args[0]!r}") from exc

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["dims"] = list(self.dims)
        # Identity tests: ``0 in (None, "", False)`` is True, which would drop low=0 / time_axis=0.
        return {k: v for k, v in d.items() if not (v is None or v is False or (isinstance(v, str) and v == ""))}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "tensor spec") -> TensorSpec:
        f = Fields(d, where, SpecError)
        _check_keys(d, set(cls.__dataclass_fields__), where)
        return cls(name=f.str("name"), dtype=f.str("dtype"), dims=tuple(f.list("dims")), role=f.str("role"),
                   time_axis=f.int("time_axis", required=False, minimum=0),
                   low=f.number("low", required=False), high=f.number("high", required=False),
                   optional=f.bool("optional", required=False, default=False),
                   description=f.str("description", required=False, default=""))


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph of a model: its inputs, outputs and parity tolerances.

    ``tolerances`` maps precision → Tolerance for every output;
    ``output_tolerances`` maps output name → precision → Tolerance overrides.
    """

    name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]
    tolerances: Mapping[str, Tolerance] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    output_tolerances: Mapping[str, Mapping[str, Tolerance]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        names = [t.name for t in self.inputs + self.outputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SpecError(f"graph {self.name!r}: tensor names used twice: {', '.join(dup)}")
        for t in self.inputs:
            if t.role not in INPUT_ROLES:
                raise SpecError(f"graph {self.name!r}: input {t.name!r} has output role {t.role!r}")
        for t in self.outputs:
            if t.role not in OUTPUT_ROLES:
                raise SpecError(f"graph {self.name!r}: output {t.name!r} has input role {t.role!r}")
        unknown = set(self.output_tolerances) - {t.name for t in self.outputs}
        if unknown:
            raise SpecError(f"graph {self.name!r}: tolerance given for unknown outputs {sorted(unknown)}")

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, f"graph {self.name!r} input")

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, f"graph {self.name!r} output")

    def tolerance(self, output: str, precision: str) -> Tolerance:
        """Tolerance for ``output`` at ``precision`` ("fp32" or "fp16")."""
        if precision not in PRECISIONS:
            raise SpecError(f"precision {precision!r} is unknown", f"use one of {', '.join(PRECISIONS)}")
        per = self.output_tolerances.get(output, {})
        if precision in per:
            return per[precision]
        return self.tolerances.get(precision, DEFAULT_TOLERANCES[precision])

    def streaming(self, with_state: bool) -> GraphSpec:
        """This graph with optional (state) tensors kept or dropped."""
        keep = (lambda t: True) if with_state else (lambda t: not t.optional)
        return replace(
            self,
            inputs=tuple(t for t in self.inputs if keep(t)),
            outputs=tuple(t for t in self.outputs if keep(t)),
            output_tolerances={k: v for k, v in self.output_tolerances.items() if with_state or not self.output(k).optional},
        )

    @property
    def input_dims(self) -> Tuple[str, ...]:
        """The dynamic axes a caller sizes (those of the inputs), first-seen order. An axis
        name that only outputs use is *derived*: the model decides its size (e.g. rows =
        seq × batch of a flattened ``view(-1, ntoken)``)."""
        return named_dims(self.inputs)

    @property
    def derived_dims(self) -> Tuple[str, ...]:
        """Output axis names that no input has (see ``input_dims``)."""
        given = set(self.input_dims)
        return tuple(d for d in named_dims(self.outputs) if d not in given)

    @property
    def dynamic_dims(self) -> Tuple[str, ...]:
        """Every dynamic axis name used by this graph, in first-seen order."""
        return named_dims(self.inputs + self.outputs)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "tolerances": {p: t.to_dict() for p, t in self.tolerances.items()},
            "output_tolerances": {o: {p: t.to_dict() for p, t in per.items()} for o, per in self.output_tolerances.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "graph spec") -> GraphSpec:
        f = Fields(d, where, SpecError)
        _check_keys(d, {"name", "inputs", "outputs", "tolerances", "output_tolerances"}, where)
        tolerances = f.mapping("tolerances", required=False, default={})
        per_output = f.mapping("output_tolerances", required=False, default={})
        for o, per in per_output.items():
            if not isinstance(per, Mapping):
                raise f.fail(f"output_tolerances.{o}", "an object of precision -> tolerance", per)
        return cls(
            name=f.str("name"),
            inputs=tuple(TensorSpec.from_dict(t.data, t.where) for t in f.records("inputs")),
            outputs=tuple(TensorSpec.from_dict(t.data, t.where) for t in f.records("outputs", nonempty=True)),
            tolerances={p: Tolerance.from_dict(t, f.path(f"tolerances.{p}")) for p, t in tolerances.items()}
            or dict(DEFAULT_TOLERANCES),
            output_tolerances={o: {p: Tolerance.from_dict(t, f.path(f"output_tolerances.{o}.{p}")) for p, t in per.items()}
                               for o, per in per_output.items()},
        )


@dataclass(frozen=True)
class ModelSpec:
    """A model's deployable contract.

    Attributes:
        name: e.g. "sine-lstm".
        family: one of FAMILIES.
        graphs: graph name → GraphSpec ("model" for single-graph models;
            "encoder" and "decoder_step" for seq2seq).
        attrs: JSON-able facts downstream code may need: cell type, hidden size,
            layers, bidirectional/merge mode, vocabularies, normalisation
            statistics (``{"mean": [...], "std": [...]}``), special token ids, ...
    """

    name: str
    family: str
    graphs: Mapping[str, GraphSpec]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise SpecError(f"model {self.name!r}: family {self.family!r} is unknown", f"use one of {', '.join(FAMILIES)}")
        if not self.graphs:
            raise SpecError(f"model {self.name!r} declares no graph")
        for key, g in self.graphs.items():
            if key != g.name:
                raise SpecError(f"model {self.name!r}: graph stored under {key!r} is named {g.name!r}")

    def graph(self, name: Optional[str] = None) -> GraphSpec:
        """The graph called ``name``; with None, the only graph (error if several)."""
        if name is None:
            if len(self.graphs) != 1:
                raise SpecError(f"model {self.name!r} has graphs {sorted(self.graphs)}", "name the one you mean")
            return next(iter(self.graphs.values()))
        if name not in self.graphs:
            raise SpecError(f"model {self.name!r} has no graph {name!r}", f"graphs: {', '.join(sorted(self.graphs))}")
        return self.graphs[name]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "family": self.family,
            "graphs": {k: g.to_dict() for k, g in self.graphs.items()},
            "attrs": dict(self.attrs),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "model spec") -> ModelSpec:
        """The spec in ``d``; every field checked (SpecError naming ``where`` and the field)."""
        f = Fields(d, where, SpecError)
        _check_keys(d, {"schema_version", "name", "family", "graphs", "attrs"}, where)
        version = f.int("schema_version", required=False, default=SCHEMA_VERSION, minimum=1)
        if version > SCHEMA_VERSION:
            raise SpecError(
                f"{where}: schema version {version} is newer than this rnndeploy understands ({SCHEMA_VERSION})",
                "upgrade rnndeploy on this machine",
            )
        graphs = f.mapping("graphs")
        return cls(
            name=f.str("name"),
            family=f.str("family"),
            graphs={k: GraphSpec.from_dict(g, f.path(f"graphs.{k}")) for k, g in graphs.items()},
            attrs=f.mapping("attrs", required=False, default={}),
            schema_version=version,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "model spec") -> ModelSpec:
        try:
            data = jsonio.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{where} is not valid JSON: {exc}") from None
        return cls.from_dict(data, where)


# -- what decoding loops use -----------------------------------------------------------------
def _first_role(tensors: Sequence[TensorSpec], *roles: str) -> Optional[TensorSpec]:
    return next((t for t in tensors if t.role in roles), None)


def _named(tensors: Sequence[TensorSpec], names: Optional[Sequence[str]], role: str) -> Tuple[TensorSpec, ...]:
    """The tensors called ``names`` (in that order) when given, else every tensor with ``role``."""
    if names:
        return tuple(_by_name(tensors, n, "state tensor") for n in names)
    return tuple(t for t in tensors if t.role == role)


@dataclass(frozen=True)
class Seq2SeqIO:
    """Which tensors of an encoder / decoder-step pair decoding reads and feeds — resolved
    once, by the one rule every decoder (parity's decoding agreement, OnnxSeq2Seq) uses.

    State pairs follow ``attrs["decoder_state"]`` ({"encoder_outputs", "inputs",
    "outputs"}: tensor names in order) when the spec records it, else the "state" roles
    in declaration order.

    Attributes:
        src_tokens / src_lengths: encoder inputs (roles tokens / lengths; lengths optional).
        memory_out: encoder output read as the decoder's memory (role memory).
        enc_states: encoder outputs that start the decoder states.
        token_in, memory_in: decoder-step inputs (roles token / memory).
        dec_states_in / dec_states_out: decoder-step state inputs and outputs, paired.
        src_lengths_in / src_mask_in: optional decoder-step source lengths / mask inputs.
        scores: decoder-step logits or probs output [batch, vocab].
        attention: optional decoder-step attention output.
    """

    src_tokens: Optional[TensorSpec]
    src_lengths: Optional[TensorSpec]
    memory_out: TensorSpec
    enc_states: Tuple[TensorSpec, ...]
    token_in: TensorSpec
    memory_in: TensorSpec
    dec_states_in: Tuple[TensorSpec, ...]
    dec_states_out: Tuple[TensorSpec, ...]
    src_lengths_in: Optional[TensorSpec]
    src_mask_in: Optional[TensorSpec]
    scores: TensorSpec
    attention: Optional[TensorSpec]

    @classmethod
    def resolve(cls, encoder: GraphSpec, decoder: GraphSpec, attrs: Optional[Mapping[str, Any]] = None) -> Seq2SeqIO:
        """Raises SpecError naming what an encoder / decoder-step pair lacks."""
        names = dict((attrs or {}).get("decoder_state") or {})
        memory_out = _first_role(encoder.outputs, "memory")
        token_in = _first_role(decoder.inputs, "token")
        memory_in = _first_role(decoder.inputs, "memory")
        scores = _first_role(decoder.outputs, "logits", "probs")
        if memory_out is None or token_in is None or memory_in is None or scores is None:
            raise SpecError(f"graphs {encoder.name!r}/{decoder.name!r} do not form an encoder / decoder-step pair",
                            "the decoder step needs token, state, memory inputs and logits, state outputs")
        enc_states = _named(encoder.outputs, names.get("encoder_outputs"), "state")
        dec_in = _named(decoder.inputs, names.get("inputs"), "state")
        dec_out = _named(decoder.outputs, names.get("outputs"), "state")
        if len(dec_in) != len(dec_out):
            raise SpecError(f"graph {decoder.name!r} takes {len(dec_in)} states and returns {len(dec_out)}",
                            "every decoder state input needs its output")
        if len(enc_states) != len(dec_in):
            raise SpecError(f"encoder gives {len(enc_states)} states, decoder step takes {len(dec_in)}")
        return cls(
            src_tokens=_first_role(encoder.inputs, "tokens"), src_lengths=_first_role(encoder.inputs, "lengths"),
            memory_out=memory_out, enc_states=enc_states, token_in=token_in, memory_in=memory_in,
            dec_states_in=dec_in, dec_states_out=dec_out, src_lengths_in=_first_role(decoder.inputs, "lengths"),
            src_mask_in=_first_role(decoder.inputs, "mask"), scores=scores,
            attention=_first_role(decoder.outputs, "attention"),
        )


@dataclass(frozen=True)
class LanguageModelIO:
    """Which tensors of a token-in, scores-per-step-out graph (a char-LM) sampling uses.

    Attributes:
        tokens: the token ids input [batch, seq].
        scores: the logits / probs output with a time axis.
        states_in / states_out: state pairs (empty for a stateless graph, which is re-run
            on the growing prefix instead).
        lengths / mask: optional inputs, filled as "every position valid".
    """

    tokens: TensorSpec
    scores: TensorSpec
    states_in: Tuple[TensorSpec, ...]
    states_out: Tuple[TensorSpec, ...]
    lengths: Optional[TensorSpec]
    mask: Optional[TensorSpec]

    @property
    def stateful(self) -> bool:
        return bool(self.states_in)

    @classmethod
    def resolve(cls, graph: GraphSpec) -> LanguageModelIO:
        """Raises SpecError when the graph has no tokens input, no per-step logits/probs
        output, or inputs sampling cannot fill."""
        tokens = _first_role(graph.inputs, "tokens")
        scores = _first_role(graph.outputs, "logits", "probs")
        if tokens is None or scores is None or scores.time_axis is None:
            raise SpecError(f"graph {graph.name!r} is not a token-in, logits-per-step-out graph",
                            "sampling agreement applies to char-LM models")
        others = [t for t in graph.inputs if t.role not in ("tokens", "state", "lengths", "mask")]
        if others:
            raise SpecError(f"graph {graph.name!r} has inputs sampling cannot fill: {', '.join(t.name for t in others)}")
        state_in = tuple(t for t in graph.inputs if t.role == "state")
        state_out = tuple(t for t in graph.outputs if t.role == "state")
        stateful = bool(state_in) and len(state_in) == len(state_out)
        return cls(tokens, scores, state_in if stateful else (), state_out if stateful else (),
                   _first_role(graph.inputs, "lengths"), _first_role(graph.inputs, "mask"))


# -- ONNX metadata ------------------------------------------------------------------------
def write_onnx_metadata(model: Any, spec: ModelSpec, graph: str, export_info: Mapping[str, Any]) -> None:
    """Store spec, graph name and export facts in an ``onnx.ModelProto``'s metadata_props.

    Existing rnndeploy keys are replaced; other keys are kept.
    """
    spec.graph(graph)  # raises if absent
    values = {META_SPEC: spec.to_json(), META_GRAPH: graph, META_EXPORT: json.dumps(dict(export_info), sort_keys=True)}
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for p in kept:
        model.metadata_props.add(key=p.key, value=p.value)
    for k, v in values.items():
        model.metadata_props.add(key=k, value=v)


def has_rnndeploy_metadata(model: Any) -> bool:
    """True when an ``onnx.ModelProto`` carries an rnndeploy spec (exported by rnndeploy)."""
    return any(p.key == META_SPEC for p in model.metadata_props)


def read_onnx_metadata(model: Any, where: str = "the ONNX file") -> Tuple[ModelSpec, str, Dict[str, Any]]:
    """(spec, graph name, export info) from an ``onnx.ModelProto`` written by rnndeploy.

    Args:
        where: how to name the file in messages (its path).

    Raises:
        SpecError: the file carries no rnndeploy metadata (e.g. a foreign model; use
            ``spec_from_onnx_io`` for those), or metadata that does not parse / check.
    """
    props = {p.key: p.value for p in model.metadata_props}
    if META_SPEC not in props:
        raise SpecError(
            f"{where} carries no rnndeploy spec (it was not written by rnndeploy export)",
            "give --inputs/--expected files, or re-export with rnndeploy export",
        )
    spec = ModelSpec.from_json(props[META_SPEC], f"{where}: metadata {META_SPEC}")
    graph = props.get(META_GRAPH) or next(iter(spec.graphs))
    spec.graph(graph)
    try:
        info = jsonio.loads(props.get(META_EXPORT, "{}"))
    except json.JSONDecodeError as exc:
        raise SpecError(f"{where}: metadata {META_EXPORT} is not valid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise SpecError(f"{where}: metadata {META_EXPORT} must be a JSON object, got {type(info).__name__}")
    return spec, graph, info


def spec_from_onnx_io(model: Any, name: str = "onnx-model") -> ModelSpec:
    """A best-effort spec for an ONNX model that rnndeploy did not export.

    Dims come from the graph's declared shapes (``dim_param`` names become dynamic
    axes, unknown dims become ``"dim{i}"``); roles are guessed from dtypes. Good
    enough to check input names/dtypes and to run --inputs/--expected comparisons.
    """
    init_names = {i.name for i in model.graph.initializer}

    def tensor(vi: Any, is_input: bool) -> TensorSpec:
        tt = vi.type.tensor_type
        dtype = DTYPE_OF_ONNX.get(tt.elem_type)
        if dtype is None:
            raise SpecError(f"tensor {vi.name!r} has ONNX element type {tt.elem_type}, which rnndeploy does not handle")
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or f"{vi.name}_dim{i}")
        if is_input:
            role = "features" if dtype.startswith("float") else "other"
        else:
            role = "other"
        return TensorSpec(name=vi.name, dtype=dtype, dims=tuple(dims), role=role)

    inputs = tuple(tensor(vi, True) for vi in model.graph.input if vi.name not in init_names)
    outputs = tuple(tensor(vi, False) for vi in model.graph.output)
    return ModelSpec(name=name, family="custom", graphs={"model": GraphSpec("model", inputs, outputs)})


def shape_problem(t: TensorSpec, shape: Sequence[int], sizes: Mapping[str, int],
                  derived: Optional[Dict[str, int]] = None) -> Optional[str]:
    """Why ``shape`` does not fit ``t``'s dims at axis ``sizes`` (None when it fits).

    Fixed axes must match; axes named in ``sizes`` must have that size; any other named
    axis is derived, and takes one size per call: ``derived`` (updated in place) holds
    the sizes seen so far, so two outputs sharing a derived axis must agree.
    """
    if len(shape) != len(t.dims):
        return f"{t.name!r} has rank {len(shape)}, the spec says {len(t.dims)} {list(t.dims)}"
    seen = derived if derived is not None else {}
    for axis, (n, d) in enumerate(zip(shape, t.dims)):
        if isinstance(d, int):
            want: Optional[int] = d
        elif d in sizes:
            want = int(sizes[d])
        else:
            want = seen.setdefault(d, int(n))
        if int(n) != want:
            what = f"{d}" if isinstance(d, int) else f"{d!r} = {want}"
            return f"{t.name!r} axis {axis} is {n}, the spec says {what} (shape {list(shape)} vs {list(t.dims)})"
    return None


# -- helpers --------------------------------------------------------------------------------
def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of a spec dtype name (one of DTYPES).

    Raises:
        SpecError: an unknown dtype name.
    """
    try:
        return NUMPY_DTYPES[dtype]
    except KeyError:
        raise SpecError(f"dtype {dtype!r} is not supported", f"use one of {', '.join(DTYPES)}") from None


def named_dims(tensors: Sequence[Any]) -> Tuple[str, ...]:
    """Every axis name (str dim) of ``tensors`` (anything with ``.dims``), in first-seen order."""
    seen: Dict[str, None] = {}
    for t in tensors:
        for d in t.dims:
            if isinstance(d, str):
                seen.setdefault(d, None)
    return tuple(seen)


def _by_name(items: Sequence[TensorSpec], name: str, what: str) -> TensorSpec:
    for t in items:
        if t.name == name:
            return t
    raise SpecError(f"{what} {name!r} does not exist", f"known: {', '.join(t.name for t in items)}")


def _check_keys(d: Mapping[str, Any], allowed: set, what: str) -> None:
    if not isinstance(d, Mapping):
        raise SpecError(f"{what} must be a mapping, got {type(d).__name__}")
    unknown = set(d) - allowed
    if unknown:
        raise SpecError(f"{what}: unknown keys {sorted(unknown)}", f"allowed: {', '.join(sorted(allowed))}")
