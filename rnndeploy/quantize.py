"""INT8 dynamic quantization of a recurrent ONNX model with ONNX Runtime, policy-driven.

``onnxruntime.quantization.quantize_dynamic`` stores weights as int8 and quantizes
activations on the fly at run time. What it can quantize is fixed by ONNX Runtime's
registry of integer ops: MatMul → MatMulInteger, LSTM → DynamicQuantizeLSTM (a
contrib op with int8 W and R), Gather (embedding tables), Conv. It has **no quantized
GRU or RNN kernel** (onnxruntime#9796: no plan to add one), so a GRU/RNN node always
stays FP32, and says so. ``Gemm`` is not in that registry either; torch exports
``nn.Linear`` on 2-D inputs as Gemm, so a Gemm with plain attributes is first
rewritten to MatMul (+ Add for the bias), which it can quantize.

Policies (``INT8_POLICIES``; like precision.py's FP16 ones):
    ``int8``                  every node ONNX Runtime can quantize;
    ``int8-keep-recurrence``  the same, except LSTM nodes stay FP32 (their state carries
                              rounding across every timestep);
    ``int8-keep-head``        the same, except the output head stays FP32: the first
                              MatMul/Gemm met walking back from each prediction /
                              logits / probs output (its error lands on the result directly).

The written file keeps rnndeploy's spec metadata (runners read it) and adds
``rnndeploy.variant``: the recipe (tool, versions, policy, settings, source hash) and
the node-by-node decision, so the artefact says how it was made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from rnndeploy.artefacts.onnx_file import load_onnx
from rnndeploy.errors import UsageError
from rnndeploy.fileio import PathLike, sha256_file, write_bytes_atomic
from rnndeploy.onnx_info import node_attr
from rnndeploy.optional import require
from rnndeploy.precision import RECURRENT_OPS, node_names, unique_name

INT8_POLICIES = ("int8", "int8-keep-recurrence", "int8-keep-head")
META_VARIANT = "rnndeploy.variant"  # metadata_props key: how this artefact was derived from its FP32 source
# What quantize_dynamic turns into integer ops (onnxruntime.quantization.registry.IntegerOpsRegistry,
# restricted to the ops these models hold); Gemm gets there through the MatMul rewrite.
DYNAMIC_INT8_OPS = frozenset({"MatMul", "LSTM", "Gather", "Conv"})
HEAD_OPS = frozenset({"MatMul", "Gemm"})
NO_INT8_KERNEL = {
    "GRU": "ONNX Runtime has no quantized GRU kernel (onnxruntime#9796)",
    "RNN": "ONNX Runtime has no quantized RNN kernel (onnxruntime#9796)",
}
_HEAD_ROLES = ("prediction", "logits", "probs")


@dataclass(frozen=True)
class NodeDecision:
    """One node that holds weights, and whether it became INT8 (``reason`` says why not)."""

    name: str
    op: str
    int8: bool
    reason: str = ""


@dataclass(frozen=True)
class QuantReport:
    """What an INT8 conversion did (also stored in the artefact's metadata as ``recipe``).

    Attributes:
        policy: one of INT8_POLICIES.
        recipe: tool, versions, settings and the source file's sha256.
        nodes: one decision per node with float weights or a recurrence.
        gemm_rewritten: Gemm nodes turned into MatMul (+ Add) so they can be quantized.
    """

    policy: str
    recipe: Mapping[str, Any]
    nodes: Tuple[NodeDecision, ...]
    gemm_rewritten: int = 0
    warnings: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def quantized(self) -> List[str]:
        return [n.name for n in self.nodes if n.int8]

    @property
    def kept(self) -> List[NodeDecision]:
        return [n for n in self.nodes if not n.int8]

    def to_dict(self) -> Dict[str, Any]:
        return {"policy": self.policy, "recipe": dict(self.recipe), "nodes": [asdict(n) for n in self.nodes],
                "gemm_rewritten": self.gemm_rewritten, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantReport:
        return cls(d["policy"], dict(d.get("recipe", {})), tuple(NodeDecision(**n) for n in d.get("nodes", [])),
                   int(d.get("gemm_rewritten", 0)), tuple(d.get("warnings", [])))

    def render(self) -> str:
        """One line for the CLI."""
        kept = "; ".join(f"{n.name} ({n.op}): {n.reason}" for n in self.kept) or "none"
        return f"policy {self.policy}: {len(self.quantized)} nodes INT8, kept FP32: {kept}"


def check_int8_policy(policy: str) -> str:
    if policy not in INT8_POLICIES:
        raise UsageError(f"INT8 policy {policy!r} is unknown", f"use one of {', '.join(INT8_POLICIES)}")
    return policy


def head_nodes(model: Any, roles: Optional[Mapping[str, str]] = None) -> Set[str]:
    """Names of the output head: the first MatMul/Gemm on every path back from each graph
    output whose role (``roles``: output name → spec role) is prediction / logits / probs
    (every output when ``roles`` is None). The walk does not cross recurrent nodes."""
    names = node_names(model)
    producer = {o: (name, n) for name, n in zip(names, model.graph.node) for o in n.output if o}
    wanted = [o.name for o in model.graph.output if roles is None or roles.get(o.name) in _HEAD_ROLES]
    heads: Set[str] = set()
    seen: Set[str] = set()
    stack = list(wanted)
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor not in producer:
            continue
        seen.add(tensor)
        name, node = producer[tensor]
        if node.op_type in HEAD_OPS:
            heads.add(name)
        elif node.op_type not in RECURRENT_OPS:
            stack.extend(i for i in node.input if i)
    return heads


def plan_int8(model: Any, policy: str, roles: Optional[Mapping[str, str]] = None) -> Tuple[NodeDecision, ...]:
    """The decision for every node that holds weights or a recurrence (pure; unit-tested).

    ``model`` is the graph as quantize_dynamic will see it (Gemm already rewritten).
    """
    check_int8_policy(policy)
    init = {i.name for i in model.graph.initializer}
    heads = head_nodes(model, roles) if policy == "int8-keep-head" else set()
    out = []
    for name, n in zip(node_names(model), model.graph.node):
        weighted = any(i in init for i in n.input) or n.op_type in RECURRENT_OPS
        if not weighted or n.op_type not in (DYNAMIC_INT8_OPS | RECURRENT_OPS | {"Gemm"}):
            continue
        if n.op_type in NO_INT8_KERNEL:
            out.append(NodeDecision(name, n.op_type, False, NO_INT8_KERNEL[n.op_type]))
        elif n.op_type == "LSTM" and policy == "int8-keep-recurrence":
            out.append(NodeDecision(name, n.op_type, False, "policy: recurrence kept FP32"))
        elif name in heads:
            out.append(NodeDecision(name, n.op_type, False, "policy: output head kept FP32"))
        elif n.op_type == "Gemm":
            out.append(NodeDecision(name, n.op_type, False, "Gemm with transA/alpha/beta other than the plain form"))
        elif n.op_type == "Gather" and not (n.input and n.input[0] in init):
            continue  # a Gather of activations (indexing), not an embedding table
        elif n.op_type in ("MatMul", "Conv") and not (len(n.input) > 1 and n.input[1] in init):
            continue  # activation × activation (attention scores): nothing to store as int8
        else:
            out.append(NodeDecision(name, n.op_type, True))
    return tuple(out)


def rewrite_gemm(model: Any) -> int:
    """Gemm(A, B, C) with alpha = beta = 1, transA = 0 and an initializer B → MatMul(A, B') + C,
    in place (B' = Bᵀ when transB). Returns the number rewritten. Same function, an op the
    dynamic quantizer knows."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    names = node_names(model)
    taken = {o for n in g.node for o in n.output} | set(inits) | {i.name for i in g.input}
    new_nodes = []
    count = 0
    for name, n in zip(names, list(g.node)):
        plain = (n.op_type == "Gemm" and (node_attr(n, "alpha") or 1.0) == 1.0 and (node_attr(n, "beta") or 1.0) == 1.0
                 and not node_attr(n, "transA") and len(n.input) >= 2 and n.input[1] in inits)
        if not plain:
            new_nodes.append(n)
            continue
        b = numpy_helper.to_array(inits[n.input[1]])
        if node_attr(n, "transB"):
            b = np.ascontiguousarray(b.T)
        b_name = unique_name(f"{n.input[1]}_matmul", taken)
        g.initializer.append(numpy_helper.from_array(b, b_name))
        has_bias = len(n.input) > 2 and bool(n.input[2])
        mm_out = unique_name(f"{n.output[0]}_matmul", taken) if has_bias else n.output[0]
        new_nodes.append(helper.make_node("MatMul", [n.input[0], b_name], [mm_out], name=name))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]], name=unique_name(f"{name}_bias", taken)))
        count += 1
    del g.node[:]
    g.node.extend(new_nodes)
    _drop_unused_initializers(model)
    return count


def quantize_int8(src: PathLike, dst: PathLike, policy: str = "int8", per_channel: bool = False,
                  reduce_range: bool = False) -> QuantReport:
    """Write an INT8 (dynamic quantization) variant of the FP32 ONNX file ``src`` to ``dst``.

    Args:
        policy: one of INT8_POLICIES (default "int8").
        per_channel: one scale per output channel of each weight (default per tensor).
        reduce_range: 7-bit weights, for CPUs without VNNI where 8-bit products can saturate.

    Raises:
        UsageError: unknown policy, unreadable file, or a model with nothing to quantize.
        MissingDependencyError: onnxruntime is not installed (extra ``cpu``).
    """
    check_int8_policy(policy)
    ort = require("onnxruntime", "INT8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = load_onnx(src, external_data=True)
    _name_nodes(model)
    roles = _output_roles(model)
    gemms = rewrite_gemm(model)
    decisions = plan_int8(model, policy, roles)
    include = [d.name for d in decisions if d.int8]
    if not include:
        why = "; ".join(f"{d.name} ({d.op}): {d.reason}" for d in decisions) or "no MatMul/LSTM/Gather with weights"
        raise UsageError(f"{src}: policy {policy} leaves nothing to quantize ({why})",
                         "use another policy, or deploy the FP32 file")
    recipe = {
        "kind": "int8-dynamic",
        "precision": "int8",
        "tool": "onnxruntime.quantization.quantize_dynamic",
        "onnxruntime": str(ort.__version__),
        "policy": policy,
        "weight_type": "QInt8",
        "activations": "uint8, quantized at run time per tensor",
        "per_channel": bool(per_channel),
        "reduce_range": bool(reduce_range),
        "source": os.path.basename(str(src)),
        "source_sha256": sha256_file(src),
    }
    with tempfile.TemporaryDirectory(prefix="rnndeploy-int8-") as tmp:
        pre, out = os.path.join(tmp, "pre.onnx"), os.path.join(tmp, "int8.onnx")
        with open(pre, "wb") as f:
            f.write(model.SerializeToString())
        with _quiet_root_logger():  # it logs a pre-processing hint (meant for CNNs) at WARNING on every call
            quantize_dynamic(pre, out, op_types_to_quantize=sorted({d.op for d in decisions if d.int8}),
                             nodes_to_quantize=include, per_channel=per_channel, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8)
        quant = load_onnx(out, external_data=True)
    warnings = _check_converted(quant, decisions)
    report = QuantReport(policy, recipe, decisions, gemms, tuple(warnings))
    _keep_metadata(quant, model)
    set_variant_metadata(quant, report.to_dict())
    write_bytes_atomic(dst, quant.SerializeToString())
    return report


def set_variant_metadata(model: Any, recipe: Mapping[str, Any]) -> None:
    """Store ``recipe`` (JSON) under META_VARIANT, replacing any earlier one."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != META_VARIANT]
    del model.metadata_props[:]
    for k, v in kept + [(META_VARIANT, json.dumps(dict(recipe), sort_keys=True))]:
        model.metadata_props.add(key=k, value=v)


def variant_of(path_or_model: Any) -> Optional[Dict[str, Any]]:
    """The META_VARIANT recipe of an ONNX file or ModelProto, or None for a plain export."""
    model = path_or_model
    if isinstance(path_or_model, (str, os.PathLike)):
        model = load_onnx(path_or_model)
    for p in model.metadata_props:
        if p.key == META_VARIANT:
            try:
                value = json.loads(p.value)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


# -- helpers -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _name_nodes(model: Any) -> None:
    """Give unnamed nodes the names node_names reports, so decisions can name them to the quantizer."""
    for name, n in zip(node_names(model), model.graph.node):
        if not n.name:
            n.name = name


def _output_roles(model: Any) -> Optional[Dict[str, str]]:
    from rnndeploy.errors import SpecError
    from rnndeploy.spec import read_onnx_metadata

    try:
        spec, graph, _ = read_onnx_metadata(model)
    except SpecError:
        return None
    return {t.name: t.role for t in spec.graph(graph).outputs}


def _check_converted(quant: Any, decisions: Sequence[NodeDecision]) -> List[str]:
    """Warnings for planned INT8 nodes the quantizer left in FP32 (its own rules can refuse one)."""
    names = {n.name for n in quant.graph.node}
    ops = {n.name: n.op_type for n in quant.graph.node}
    out = []
    for d in decisions:
        if d.int8 and d.name in names and ops.get(d.name) == d.op and d.op != "Gather":
            out.append(f"{d.name} ({d.op}) was planned INT8 but onnxruntime left it FP32")
    return out


def _keep_metadata(quant: Any, source: Any) -> None:
    have = {p.key for p in quant.metadata_props}
    for p in source.metadata_props:
        if p.key not in have:
            quant.metadata_props.add(key=p.key, value=p.value)


def _drop_unused_initializers(model: Any) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
