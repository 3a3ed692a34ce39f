"""FP32 → FP16 ONNX conversion with an RNN-aware precision policy.

Why a converter of our own (onnx only) rather than onnxconverter-common's
``float16.convert_float_to_float16``:

- the GPU kit (Python 3.9 + TensorRT 8.6 + onnx) and a typical TensorRT 10/11 box
  have onnx but not onnxconverter-common; the FP16 graph is what TensorRT ≥ 10's
  strongly typed path builds from, so the conversion must run where the engine is
  built, with onnx alone;
- onnxconverter-common maps every initializer value above ``max_finite_val`` (1e4 by
  default) to that value and every tiny one to 1e-7, with only a Python warning; the
  contract here is the opposite: values outside the FP16 range are *reported* and the
  nodes that consume them stay FP32 — nothing is clipped;
- the part it would give us (swap tensor types, insert Casts at FP16/FP32 borders) is
  small once the decision "which node runs in which precision" is explicit, and that
  decision is the RNN-specific part we need to own anyway.
Tests cross-check the results numerically against the FP32 graph (onnxruntime CPU and
onnx's reference evaluator) and, where it is installed, against onnxconverter-common.

Policies (``POLICIES``):
    ``fp16``                  every node whose op is in ``FP16_OPS`` (ops that have FP16
                              kernels in TensorRT and ONNX Runtime CUDA, including
                              LSTM/GRU/RNN) runs in FP16;
    ``fp16-keep-recurrence``  the same, except LSTM/GRU/RNN nodes stay FP32 (their state
                              is carried across every timestep, so FP16 rounding compounds
                              with sequence length); Casts surround them.
Nodes whose op is not in ``FP16_OPS`` (Range, Resize, control flow, random ops, Casts to
non-float types, ...) always stay FP32. Graph inputs and outputs stay FP32 by default
(``keep_io_types=True``): Casts at the boundary, so callers feed and read float32.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

import numpy as np

from rnndeploy.errors import UsageError, first_line
from rnndeploy.onnx_info import node_attr

POLICIES = ("fp16", "fp16-keep-recurrence")
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
META_PRECISION = "rnndeploy.precision"  # metadata_props key holding the PrecisionReport JSON

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
FP16_TINY = 2.0**-24  # smallest FP16 subnormal; nonzero values below it become 0

# ONNX TensorProto element types (stable numbers from onnx.proto; no onnx import needed here).
_FLOAT, _FLOAT16, _DOUBLE = 1, 10, 11

# Ops whose floating-point inputs are all *data* (not scales, bounds or shapes) and which
# have FP16 implementations in TensorRT and ORT CUDA. Anything else stays FP32.
FP16_OPS = frozenset(
    {
        # elementwise and activations
        "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Reciprocal", "Exp", "Log", "Pow",
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Tanh", "Softmax", "LogSoftmax", "Softplus", "Softsign", "Gelu", "Erf", "Clip", "Max", "Min",
        "Sum", "Mean", "Sign", "Floor", "Ceil", "Round", "Sin", "Cos",
        # linear algebra and normalisation
        "MatMul", "Gemm", "Conv", "ConvTranspose", "BatchNormalization", "LayerNormalization",
        "InstanceNormalization", "Einsum",
        # recurrent cores (removed by fp16-keep-recurrence)
        "LSTM", "GRU", "RNN",
        # data movement (precision-neutral)
        "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Split", "Slice",
        "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Pad", "Identity", "Dropout",
        "Where", "ReverseSequence", "DepthToSpace", "SpaceToDepth",
        # reductions and comparisons (bool / index outputs)
        "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ArgMax", "ArgMin",
        "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "TopK", "IsNaN", "IsInf",
        "Shape", "Size", "NonZero",
        # sources / type changers with float attributes we rewrite
        "ConstantOfShape", "Cast", "CastLike",
    }
)  # fmt: skip


# Ops that only move, select or compare data: they compute in the precision of their
# float data inputs (FP16 if any is FP16), instead of forcing a round trip through FP16.
NEUTRAL_OPS = frozenset(
    {
        "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Split", "Slice",
        "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Pad", "Identity", "Dropout",
        "Where", "ReverseSequence", "DepthToSpace", "SpaceToDepth", "Shape", "Size", "NonZero",
        "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "IsNaN", "IsInf",
    }
)  # fmt: skip


@dataclass(frozen=True)
class OutOfRange:
    """An initializer (or Constant) with values beyond FP16's finite range (±65504).

    Attributes:
        name: the tensor name.
        max_abs: its largest absolute value.
        consumers: names of the nodes that read it (they were kept in FP32).
    """

    name: str
    max_abs: float
    consumers: Tuple[str, ...]


@dataclass(frozen=True)
class KeptNode:
    """A node left in FP32 and why: "policy" (recurrent op under fp16-keep-recurrence),
    "op" (no FP16 path for this op), "range" (reads an out-of-range initializer),
    "user" (named in keep_nodes), "subgraph" (control flow)."""

    name: str
    op: str
    reason: str


@dataclass(frozen=True)
class PrecisionReport:
    """What a conversion did.

    Attributes:
        policy: one of POLICIES.
        keep_io_types: graph inputs/outputs left FP32.
        fp16_nodes: number of nodes now computing in FP16.
        kept: nodes left in FP32 that have floating-point inputs or outputs, with reasons.
        casts_inserted: Cast nodes added at FP16/FP32 borders.
        neutral_fp32: data-movement nodes (Transpose, Reshape, ...) left FP32 because
            they only move FP32 data (e.g. between an FP32 input and a kept LSTM).
        converted_initializers: float32 initializers / Constants stored as FP16.
        out_of_range: float32 tensors beyond ±65504 (their consumers stayed FP32).
        flushed_to_zero: initializer name → count of nonzero values below FP16's smallest
            subnormal (2**-24) in a converted initializer; they become 0 (reported, not avoided).
    """

    policy: str
    keep_io_types: bool
    fp16_nodes: int
    kept: Tuple[KeptNode, ...]
    casts_inserted: int
    converted_initializers: int
    neutral_fp32: int = 0
    out_of_range: Tuple[OutOfRange, ...] = ()
    flushed_to_zero: Mapping[str, int] = field(default_factory=dict)

    @property
    def kept_recurrent(self) -> Tuple[str, ...]:
        return tuple(k.name for k in self.kept if k.op in RECURRENT_OPS)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["kept"] = [asdict(k) for k in self.kept]
        d["out_of_range"] = [dict(asdict(o), consumers=list(o.consumers)) for o in self.out_of_range]
        d["flushed_to_zero"] = dict(self.flushed_to_zero)
        return d

    def render(self) -> str:
        """One line for the CLI."""
        parts = [f"policy {self.policy}: {self.fp16_nodes} nodes FP16, {len(self.kept)} kept FP32"]
        if self.kept_recurrent:
            parts.append(f"recurrent kept FP32: {', '.join(self.kept_recurrent)}")
        parts.append(f"{self.casts_inserted} casts")
        if self.out_of_range:
            parts.append(
                "beyond FP16 range (kept FP32): "
                + ", ".join(f"{o.name} (max |v| {o.max_abs:.4g})" for o in self.out_of_range)
            )
        return "; ".join(parts)


# -- the decision: which node runs in which precision --------------------------------------
def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise UsageError(f"precision policy {policy!r} is unknown", f"use one of {', '.join(POLICIES)}")
    return policy


def node_names(model: Any) -> List[str]:
    """Node names of the main graph, with ``{op}_{index}`` for unnamed nodes."""
    return [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)]


def out_of_range_tensors(model: Any) -> Tuple[OutOfRange, ...]:
    """Float32/float64 initializers and Constant values of the main graph whose largest
    absolute value exceeds FP16_MAX (or that hold inf/nan), with their consumers."""
    names = node_names(model)
    consumers: Dict[str, List[str]] = {}
    for name, n in zip(names, model.graph.node):
        for i in n.input:
            consumers.setdefault(i, []).append(name)
    found = []
    for tname, arr in _float_constants(model).items():
        if arr.size == 0:
            continue
        max_abs = float(np.max(np.abs(arr.astype(np.float64))))
        if not (max_abs <= FP16_MAX):  # also catches nan
            found.append(OutOfRange(tname, max_abs, tuple(consumers.get(tname, ()))))
    return tuple(found)


def check_node_names(model: Any, names: Iterable[str], option: str = "--keep-node") -> None:
    """Refuse node names the model's main graph does not have (a typo would keep nothing).

    Raises:
        UsageError: naming the unknown names and a few that exist.
    """
    known = node_names(model)
    unknown = sorted(set(names) - set(known))
    if unknown:
        close = [k for k in known if any(u.lower() in k.lower() or k.lower() in u.lower() for u in unknown)][:5]
        sample = close or known[:5]
        raise UsageError(f"{option} {', '.join(unknown)}: the model has no node of that name",
                         f"its nodes include {', '.join(sample) or 'none'} (rnndeploy inspect lists them all)")


def fp32_nodes(model: Any, policy: str, keep_nodes: Iterable[str] = (), keep_ops: Iterable[str] = ()) -> Dict[str, KeptNode]:
    """Name → KeptNode for every node of the main graph that ``policy`` leaves in FP32.

    This is the one decision shared by both FP16 paths: the FP16 ONNX written by
    ``convert_to_fp16`` (TensorRT ≥ 10, strongly typed) and the precision constraints
    the TensorRT 8.6 builder puts on the layers of these nodes (FP16 builder flag).
    """
    check_policy(policy)
    keep_nodes, keep_ops = set(keep_nodes), set(keep_ops)
    ops = FP16_OPS - RECURRENT_OPS if policy == "fp16-keep-recurrence" else FP16_OPS
    bad_inputs = {o.name for o in out_of_range_tensors(model)}
    kept: Dict[str, KeptNode] = {}
    for name, n in zip(node_names(model), model.graph.node):
        reason = None
        if name in keep_nodes:
            reason = "user"
        elif n.op_type in keep_ops:
            reason = "user"
        elif any(a.type in (5, 10) for a in n.attribute):  # GRAPH / GRAPHS: If, Loop, Scan
            reason = "subgraph"
        elif n.op_type in RECURRENT_OPS and policy == "fp16-keep-recurrence":
            reason = "policy"
        elif n.domain not in ("", "ai.onnx") or n.op_type not in ops:
            reason = "op"
        elif n.op_type == "Cast" and node_attr(n, "to") not in (_FLOAT, _FLOAT16):
            reason = "op"  # float→int casts of values > 2048 are exact only from FP32
        elif any(i in bad_inputs for i in n.input):
            reason = "range"
        elif n.op_type in ("LayerNormalization", "BatchNormalization") and len([o for o in n.output if o]) > 1:
            reason = "op"  # mean / inv-std outputs are float32 by definition (stash_type)
        if reason:
            kept[name] = KeptNode(name, n.op_type, reason)
    return kept


# -- the conversion ------------------------------------------------------------------------------
def convert_to_fp16(
    model: Any,
    policy: str = "fp16",
    keep_io_types: bool = True,
    keep_nodes: Iterable[str] = (),
    keep_ops: Iterable[str] = (),
    check: bool = True,
) -> Tuple[Any, PrecisionReport]:
    """Convert an FP32 ``onnx.ModelProto`` to FP16 under ``policy``; the input is not modified.

    Args:
        policy: "fp16" or "fp16-keep-recurrence" (see the module docstring).
        keep_io_types: graph inputs and outputs stay float32 (Casts at the boundary).
        keep_nodes / keep_ops: more node names / op types to keep in FP32.
        check: run ``onnx.checker.check_model`` on the result.

    Returns:
        (the FP16 model, a PrecisionReport). Out-of-range float constants are never
        clipped: their consumers stay FP32 and the report lists them.

    Raises:
        UsageError: unknown policy, a graph that is already FP16, or a graph onnx's
            checker rejects after conversion (a bug: please report the model).
    """
    import onnx
    from onnx import helper, numpy_helper

    check_policy(policy)
    if is_fp16_model(model):
        raise UsageError("the ONNX graph already holds FP16 tensors", "convert the FP32 export, not a converted file")
    m = copy.deepcopy(model)
    g = m.graph
    names = node_names(m)
    for name, n in zip(names, g.node):
        if not n.name:
            n.name = name
    kept = fp32_nodes(m, policy, keep_nodes, keep_ops)
    types = _elem_types(m)

    # A node converts only when the types of all its inputs and outputs are known.
    for n in g.node:
        if n.name not in kept and any(t and t not in types for t in list(n.input) + list(n.output)):
            kept[n.name] = KeptNode(n.name, n.op_type, "op")
    # Resolve node precisions in graph (topological) order. Precision-neutral ops follow
    # their float data inputs, so an FP32 region (an FP32 input, a kept LSTM) is not
    # rounded to FP16 just to be moved or reshaped: x -> Transpose -> LSTM stays FP32
    # under fp16-keep-recurrence.
    consts = _float_constants(m)
    prec: Dict[str, str] = {}
    for vi in g.input:
        if types.get(vi.name) == _FLOAT and vi.name not in consts:
            prec[vi.name] = "32" if keep_io_types else "16"
    fp16: List[bool] = []
    neutral_fp32 = 0
    for n in g.node:
        if n.name in kept:
            half = False
        elif n.op_type in NEUTRAL_OPS:
            seen = [prec[i] for i in n.input if i in prec and i not in consts]
            half = not seen or "16" in seen
            if not half and _touches_float(n, types):
                neutral_fp32 += 1
        else:
            half = True
        fp16.append(half)
        if n.op_type == "Constant" and n.output and n.output[0] in consts:
            continue  # decided below, from its consumers
        for o in n.output:
            if types.get(o) == _FLOAT:
                prec[o] = "16" if half else "32"

    # Float constants are stored as FP16 when every consumer computes in FP16.
    const_consumers: Dict[str, List[bool]] = {}
    for n, half in zip(g.node, fp16):
        for i in n.input:
            if i in consts:
                const_consumers.setdefault(i, []).append(half)
    out_of_range = {o.name for o in out_of_range_tensors(m)}
    converted_consts: Set[str] = set()
    flushed: Dict[str, int] = {}
    for name, arr in consts.items():
        if name not in out_of_range and arr.dtype == np.float32 and const_consumers.get(name) and all(const_consumers[name]):
            prec[name] = "16"
            converted_consts.add(name)
            tiny = int(np.count_nonzero((arr != 0) & (np.abs(arr) < FP16_TINY)))
            if tiny:
                flushed[name] = tiny
        else:
            prec[name] = "32"

    # Graph outputs computed in FP16 but declared FP32: the producer writes "<name>_fp16",
    # a final Cast restores the name and type the caller expects.
    renames: Dict[str, str] = {}
    taken = _all_names(m)
    if keep_io_types:
        for vo in g.output:
            if prec.get(vo.name) == "16":
                new = unique_name(vo.name + "_fp16", taken)
                renames[vo.name] = new
                prec[new] = "16"

    # Rebuild the node list: Casts go right before their first consumer, so the order
    # stays topological.
    casts: Dict[Tuple[str, str], str] = {}
    new_nodes = []
    n_casts = 0

    def as_precision(tensor: str, want: str) -> str:
        nonlocal n_casts
        tensor = renames.get(tensor, tensor)
        have = prec.get(tensor)
        if have is None or have == want:
            return tensor
        key = (tensor, want)
        if key not in casts:
            out = unique_name(f"{tensor}_to_fp{want}", taken)
            new_nodes.append(
                helper.make_node("Cast", [tensor], [out], name=unique_name(f"{out}_cast", taken),
                                 to=_FLOAT16 if want == "16" else _FLOAT)
            )
            prec[out] = want
            casts[key] = out
            n_casts += 1
        return casts[key]

    subgraph_refs = _subgraph_outer_refs(m)
    for n, half in zip(list(g.node), fp16):
        want = "16" if half else "32"
        for k, i in enumerate(n.input):
            if i:
                n.input[k] = as_precision(i, want)
        for k, o in enumerate(n.output):
            if o in renames:
                n.output[k] = renames[o]
        if half:
            _rewrite_float_attributes(n)
        elif n.name in subgraph_refs:
            # a kept control-flow node reads outer tensors by name inside its bodies
            for ref in subgraph_refs[n.name]:
                casted = as_precision(ref, "32")
                if casted != ref:
                    _rename_in_subgraphs(n, ref, casted)
        new_nodes.append(n)
    for vo in g.output:
        if vo.name in renames:
            new_nodes.append(helper.make_node("Cast", [renames[vo.name]], [vo.name],
                                              name=unique_name(f"{vo.name}_to_fp32_cast", taken), to=_FLOAT))
            n_casts += 1
    del g.node[:]
    g.node.extend(new_nodes)

    # Store converted constants, retype graph I/O, drop stale intermediate types.
    for init in g.initializer:
        if init.name in converted_consts:
            init.CopyFrom(numpy_helper.from_array(consts[init.name].astype(np.float16), init.name))
    for n in g.node:
        if n.op_type == "Constant" and n.output[0] in converted_consts:
            value = numpy_helper.from_array(consts[n.output[0]].astype(np.float16))
            del n.attribute[:]
            n.attribute.extend([helper.make_attribute("value", value)])
    for vi in list(g.input) + list(g.output):
        if vi.type.tensor_type.elem_type == _FLOAT and prec.get(vi.name) == "16" and vi.name not in renames:
            vi.type.tensor_type.elem_type = _FLOAT16
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m)
    if check:
        try:
            onnx.checker.check_model(m)
        except onnx.checker.ValidationError as exc:  # a converter bug, not a user error
            raise UsageError(f"the FP16 graph fails onnx.checker: {first_line(exc)}",
                             "use --policy fp16-keep-recurrence or build without --fp16, and report this model") from exc

    kept_float = tuple(
        kept[name] for name, n in zip(names, model.graph.node)
        if name in kept and n.op_type != "Constant" and _touches_float(n, types)
    )
    report = PrecisionReport(
        policy=policy,
        keep_io_types=keep_io_types,
        fp16_nodes=sum(1 for n, h in zip(model.graph.node, fp16) if h and _touches_float(n, types)),
        kept=kept_float,
        neutral_fp32=neutral_fp32,
        casts_inserted=n_casts,
        converted_initializers=len(converted_consts),
        out_of_range=tuple(o for o in out_of_range_tensors(model)),
        flushed_to_zero=flushed,
    )
    _set_metadata(m, META_PRECISION, json.dumps(report.to_dict(), sort_keys=True))
    return m, report


def is_fp16_model(model: Any) -> bool:
    """True when the main graph already holds FP16 tensors (inputs, outputs, initializers or
    Casts to FP16) — i.e. it was converted, and TensorRT should build it strongly typed."""
    g = model.graph
    if any(vi.type.tensor_type.elem_type == _FLOAT16 for vi in list(g.input) + list(g.output) + list(g.value_info)):
        return True
    if any(i.data_type == _FLOAT16 for i in g.initializer):
        return True
    return any(n.op_type == "Cast" and node_attr(n, "to") == _FLOAT16 for n in g.node)


def precision_report_of(model: Any) -> Optional[Dict[str, Any]]:
    """The PrecisionReport dict stored in a converted model's metadata, if any."""
    for p in model.metadata_props:
        if p.key == META_PRECISION:
            try:
                return json.loads(p.value)
            except json.JSONDecodeError:
                return None
    return None


# -- numeric verification -------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputError:
    """How far one output of a converted model is from the FP32 model's."""

    name: str
    max_abs: float
    rel_l2: float


def compare_models(reference: Any, candidate: Any, feeds: Mapping[str, np.ndarray], engine: str = "auto") -> List[OutputError]:
    """Run both models on ``feeds`` and measure every output's error against ``reference``
    (max abs and relative L2 as rnndeploy.metrics defines them).

    Args:
        engine: "onnxruntime" (the ort-cpu runner), "reference" (the onnx-ref runner:
            onnx.reference.ReferenceEvaluator), or "auto": onnxruntime when installed, else
            the reference evaluator. Note that ORT CPU has no FP16 LSTM kernel and computes
            it through Casts in FP32.
    """
    from rnndeploy.metrics import error_stats
    from rnndeploy.spec import Tolerance

    ref_out = run_model(reference, feeds, engine)
    cand_out = run_model(candidate, feeds, engine)
    errors = []
    for name, r in ref_out.items():
        stats = error_stats(cand_out[name], r, Tolerance(0.0, 0.0))
        errors.append(OutputError(name, stats.max_abs, stats.rel_l2))
    return errors


ENGINES = {"onnxruntime": "ort-cpu", "reference": "onnx-ref"}


def run_model(model: Any, feeds: Mapping[str, np.ndarray], engine: str = "auto") -> Dict[str, np.ndarray]:
    """Outputs of ``model`` (an onnx.ModelProto) on ``feeds`` (name → array), through the
    ort-cpu or onnx-ref runner (see ``compare_models`` for ``engine``)."""
    if engine not in ("auto",) + tuple(ENGINES):
        raise UsageError(f"engine {engine!r} is unknown", "use auto, onnxruntime or reference")
    from rnndeploy.backends import RunnerOptions, run_onnx_model
    from rnndeploy.optional import available

    if engine == "auto":
        engine = "onnxruntime" if available("onnxruntime") else "reference"
    # ORT 1.32's level-3 (ENABLE_ALL) CPU fusions segfault on FP16 Transpose -> MatMul -> Add
    # (measured; 1.19 is fine); EXTENDED keeps every fusion that matters for a check.
    options = RunnerOptions(extra={"graph_optimization_level": "extended"})
    return run_onnx_model(model, feeds, ENGINES[engine], options)


# -- helpers ------------------------------------------------------------------------------------
def _float_constants(model: Any) -> Dict[str, np.ndarray]:
    """Float32/64 initializers and Constant-node values of the main graph, as arrays."""
    from onnx import numpy_helper

    out: Dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        if init.data_type in (_FLOAT, _DOUBLE):
            out[init.name] = numpy_helper.to_array(init)
    for n in model.graph.node:
        if n.op_type != "Constant" or not n.output:
            continue
        for a in n.attribute:
            if a.name == "value" and a.t.data_type in (_FLOAT, _DOUBLE):
                out[n.output[0]] = numpy_helper.to_array(a.t)
            elif a.name == "value_float":
                out[n.output[0]] = np.array(a.f, dtype=np.float32)
            elif a.name == "value_floats":
                out[n.output[0]] = np.array(list(a.floats), dtype=np.float32)
    return out


def _elem_types(model: Any) -> Dict[str, int]:
    """Tensor name → ONNX element type, from declared I/O, initializers and shape inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort; unknown types keep their nodes FP32
        inferred = model
    types: Dict[str, int] = {}
    g = inferred.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
                elif a.name in ("value_float", "value_floats"):
                    types[n.output[0]] = _FLOAT
                elif a.name in ("value_int", "value_ints"):
                    types[n.output[0]] = 7
    return types


def _touches_float(node: Any, types: Mapping[str, int]) -> bool:
    return any(types.get(t) == _FLOAT for t in list(node.input) + list(node.output) if t)


def _rewrite_float_attributes(node: Any) -> None:
    """Attributes that name float32 as a type or hold a float32 value, for an FP16 node."""
    from onnx import helper, numpy_helper

    for k, a in enumerate(node.attribute):
        if node.op_type == "Cast" and a.name == "to" and a.i == _FLOAT:
            a.i = _FLOAT16
        elif node.op_type == "ConstantOfShape" and a.name == "value" and a.t.data_type == _FLOAT:
            arr = numpy_helper.to_array(a.t).astype(np.float16)
            node.attribute[k].CopyFrom(helper.make_attribute("value", numpy_helper.from_array(arr, a.t.name)))


def _subgraph_outer_refs(model: Any) -> Dict[str, Set[str]]:
    """Node name → outer-scope tensor names its subgraphs read (If/Loop/Scan bodies)."""
    refs: Dict[str, Set[str]] = {}
    for n in model.graph.node:
        found: Set[str] = set()
        for a in n.attribute:
            for sub in ([a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []):
                found |= _free_names(sub)
        if found:
            refs[n.name] = found
    return refs


def _free_names(graph: Any) -> Set[str]:
    defined = {vi.name for vi in graph.input} | {i.name for i in graph.initializer}
    used: Set[str] = set()
    for n in graph.node:
        used.update(i for i in n.input if i)
        for a in n.attribute:
            for sub in ([a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []):
                used |= _free_names(sub)
        defined.update(n.output)
    used.update(o.name for o in graph.output)
    return used - defined


def _rename_in_subgraphs(node: Any, old: str, new: str) -> None:
    def walk(graph: Any) -> None:
        for n in graph.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new
            for a in n.attribute:
                for sub in ([a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []):
                    walk(sub)
        for o in graph.output:
            if o.name == old:  # an outer tensor passed straight through
                o.name = new

    for a in node.attribute:
        for sub in ([a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []):
            walk(sub)


def _all_names(model: Any) -> Set[str]:
    g = model.graph
    names = {vi.name for vi in list(g.input) + list(g.output) + list(g.value_info)}
    names |= {i.name for i in g.initializer}
    for n in g.node:
        names.update(n.input)
        names.update(n.output)
        names.add(n.name)
    return names


def unique_name(base: str, taken: Set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first not in ``taken`` (which it joins)."""
    name, k = base, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def _set_metadata(model: Any, key: str, value: str) -> None:
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in kept + [(key, value)]:
        model.metadata_props.add(key=k, value=v)
