"""Rewrite a recurrent ONNX model into the form every runtime computes correctly.

Each rewrite is a function ``model -> (new model, [Rewrite])`` that leaves its input
untouched and keeps the graph's inputs and outputs (names, dtypes, shapes) unless its
purpose is to change them (``make_state_batch_first``):

    layout_to_time_major     LSTM/GRU/RNN ``layout=1`` (batch-first) → ``layout=0`` with a
                             Transpose before X / initial states and after Y / Y_h / Y_c.
                             ONNX Runtime refuses layout=1; TensorRT's parser and OpenVINO
                             ignore it and compute wrong values.
    make_state_batch_first   state inputs/outputs ``[layers*dirs, batch, hidden]`` become
                             ``[batch, layers*dirs, hidden]`` at the graph boundary (serving
                             systems batch requests along axis 0 of every tensor).
    fold_constants           nodes whose inputs are all known (initializers, Constants,
                             Shape/Size of statically known dims) become initializers; what
                             then feeds nothing is removed. Exporters leave such shape
                             subgraphs around recurrent nodes (NVIDIA/TensorRT#1177).
    openvino_workarounds     a no-op ``clip`` (float32 max) on recurrent nodes that take
                             ``sequence_lens`` without one: OpenVINO 2026.4 ignores the
                             lengths otherwise (measured; see rnndeploy.graph.compat).

``normalize`` chains them and ``rnndeploy.graph.verify`` checks the result computes the
same function as the original before anything is written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from rnndeploy.onnx_info import RECURRENT_OPS, all_nodes, node_attr, subgraphs, tensors_read

# Largest tensor (elements) fold_constants turns into an initializer: shape arithmetic
# and small constants, not copies of weight matrices.
FOLD_MAX_ELEMENTS = 1 << 16
# A clip bound no float32 pre-activation reaches: the same function, and OpenVINO honours sequence_lens.
NO_OP_CLIP = float(np.finfo(np.float32).max)
# Ops that pass a state tensor through unchanged in layout (axis 0 = layers*dirs, axis 1 = batch).
_STATE_PASS_OPS = ("Identity", "Slice", "Gather", "Split", "Cast", "Concat")
_NONDETERMINISTIC = ("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                     "Bernoulli", "Dropout")


@dataclass(frozen=True)
class Rewrite:
    """One rewrite, said in one line.

    Attributes:
        kind: "layout", "state-batch-first", "fold" or "openvino".
        node: the node (or graph tensor) it concerns.
        text: the line shown to the user.
        perm: for a graph input/output whose shape changed, the axis permutation that
            turns the original tensor into the new one (verification uses it).
    """

    kind: str
    node: str
    text: str
    perm: Optional[Tuple[int, ...]] = None

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"kind": self.kind, "node": self.node, "text": self.text}
        if self.perm is not None:
            d["perm"] = list(self.perm)
        return d


@dataclass(frozen=True)
class NormalizeOptions:
    """Which rewrites ``normalize`` applies.

    Attributes:
        layout: layout=1 recurrent nodes → layout=0 (default on).
        fold: constant folding of shape subgraphs (default on).
        batch_first_state: state inputs/outputs batch-first (default off: it changes the I/O).
        openvino: the OpenVINO workarounds (default off: a clip makes ORT's CUDA EP fall back to CPU).
    """

    layout: bool = True
    fold: bool = True
    batch_first_state: bool = False
    openvino: bool = False


@dataclass(frozen=True)
class Normalized:
    """The rewritten model and what was done to it."""

    model: Any
    rewrites: Tuple[Rewrite, ...] = ()
    notes: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.rewrites)

    def io_perms(self) -> Dict[str, Tuple[int, ...]]:
        """Graph tensor name → permutation from the original's layout to the rewritten one."""
        return {r.node: r.perm for r in self.rewrites if r.perm is not None}


def normalize(model: Any, options: Optional[NormalizeOptions] = None) -> Normalized:
    """Apply the rewrites ``options`` selects, in a fixed order (layout, state, fold, openvino).

    Returns a Normalized whose model is a new ModelProto (the input is not modified).
    Does not verify: see ``rnndeploy.graph.verify.verify_same_function``.
    """
    opts = options or NormalizeOptions()
    rewrites: List[Rewrite] = []
    notes: List[str] = []
    m = _copy(model)
    if opts.layout:
        m, done = layout_to_time_major(m)
        rewrites += done
    if opts.batch_first_state:
        m, done = state_batch_first(m)
        rewrites += done
        if not done:
            notes.append("--batch-first-state: no time-major state input or output found (none reaches an "
                         "initial_h/initial_c or comes from a Y_h/Y_c; those of layout=1 nodes are batch-first already)")
    if opts.fold:
        m, done = fold_constants(m)
        rewrites += done
    if opts.openvino:
        m, done = openvino_workarounds(m)
        rewrites += done
    return Normalized(m, tuple(rewrites), tuple(notes))


def needs_layout_rewrite(model: Any) -> List[str]:
    """Names of the recurrent nodes with layout=1 (what every runtime gets wrong or refuses)."""
    return [_name(n, i) for i, n in enumerate(all_nodes(model.graph))
            if n.op_type in RECURRENT_OPS and _default_domain(n) and int(node_attr(n, "layout", 0) or 0) == 1]


# -- layout ------------------------------------------------------------------------------------
def layout_to_time_major(model: Any) -> Tuple[Any, List[Rewrite]]:
    """Every layout=1 LSTM/GRU/RNN node (subgraphs included) → layout=0 between Transposes."""
    m = _copy(model)
    names = _NameFactory(m)
    rewrites: List[Rewrite] = []
    _layout_in_graph(m.graph, names, rewrites)
    return m, rewrites


def _layout_in_graph(graph: Any, names: _NameFactory, rewrites: List[Rewrite]) -> None:
    from onnx import helper

    new_nodes: List[Any] = []
    for idx, node in enumerate(graph.node):
        for sub in subgraphs(node):  # Loop / Scan / If bodies
            _layout_in_graph(sub, names, rewrites)
        if not (node.op_type in RECURRENT_OPS and _default_domain(node) and int(node_attr(node, "layout", 0) or 0) == 1):
            new_nodes.append(node)
            continue
        name = _name(node, idx)
        ins = list(node.input)
        # X [N, T, I] → [T, N, I]; initial_h / initial_c [N, D, H] → [D, N, H]
        for slot in (0, 5, 6):
            if slot < len(ins) and ins[slot] and not (slot == 6 and node.op_type != "LSTM"):
                t = names.make(f"{ins[slot]}/time_major")
                new_nodes.append(helper.make_node("Transpose", [ins[slot]], [t], name=names.make(f"{name}/in{slot}_T"),
                                                  perm=[1, 0, 2]))
                ins[slot] = t
        outs = list(node.output)
        after: List[Any] = []
        for slot, out in enumerate(outs):
            if not out:
                continue
            t = names.make(f"{out}/time_major")
            perm = [2, 0, 1, 3] if slot == 0 else [1, 0, 2]  # Y [T, D, N, H] → [N, T, D, H]; Y_h [D, N, H] → [N, D, H]
            after.append(helper.make_node("Transpose", [t], [out], name=names.make(f"{name}/out{slot}_T"), perm=perm))
            outs[slot] = t
        attrs = [a for a in node.attribute if a.name != "layout"]
        rebuilt = helper.make_node(node.op_type, ins, outs, name=node.name, domain=node.domain)
        rebuilt.attribute.extend(attrs)
        new_nodes.append(rebuilt)
        new_nodes.extend(after)
        rewrites.append(Rewrite("layout", name, f"{node.op_type} node {name!r}: layout=1 → layout=0 with Transposes "
                                                f"around X{', initial states' if any(ins[5:7]) else ''} and its outputs"))
    del graph.node[:]
    graph.node.extend(new_nodes)


# -- batch-first state -----------------------------------------------------------------------------
def make_state_batch_first(model: Any) -> Any:
    """``model`` with its state inputs/outputs batch-first: ``[layers*dirs, batch, hidden]`` →
    ``[batch, layers*dirs, hidden]`` at the graph boundary, a Transpose inside.

    State tensors are the spec's role="state" tensors when the file carries an rnndeploy
    spec (whose dims are updated too), else graph inputs that reach an initial_h /
    initial_c and outputs that come from a Y_h / Y_c (through Identity, Slice, Gather,
    Split, Cast or Concat). The input model is not modified. For the Triton repository
    builder: Triton batches requests along axis 0 of every tensor.
    """
    return state_batch_first(model)[0]


def state_batch_first(model: Any) -> Tuple[Any, List[Rewrite]]:
    """``make_state_batch_first`` plus one Rewrite per tensor changed."""

    m = _copy(model)
    names = _NameFactory(m)
    spec_states = _spec_state_names(m)
    ins, outs = (spec_states if spec_states is not None else _traced_state_tensors(m.graph))
    rewrites: List[Rewrite] = []
    front: List[Any] = []
    inits = {i.name for i in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in ins and vi.name not in inits and _rank(vi) in (3, None):
            front.append(_transpose_at_boundary(m.graph, vi, names, rewrites, is_input=True))
    back: List[Any] = []
    graph_inputs = {vi.name for vi in m.graph.input}
    for vo in m.graph.output:
        if vo.name in outs and vo.name not in graph_inputs and _rank(vo) in (3, None):
            back.append(_transpose_at_boundary(m.graph, vo, names, rewrites, is_input=False))
    nodes = front + list(m.graph.node) + back
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    for vi in list(m.graph.value_info):  # inner names took over the old shapes; keep none stale
        if vi.name in {r.node for r in rewrites}:
            m.graph.value_info.remove(vi)
    if rewrites and spec_states is not None:
        _swap_spec_state_dims(m, {r.node for r in rewrites})
    return m, rewrites


def _transpose_at_boundary(graph: Any, vi: Any, names: _NameFactory, rewrites: List[Rewrite], is_input: bool) -> Any:
    """Graph tensor ``vi`` becomes batch-first at the boundary; the Transpose that keeps the
    inside state-major is returned (to go first for an input, last for an output)."""
    from onnx import helper

    inner = names.make(f"{vi.name}/state_major")
    if is_input:
        _rename_uses(graph, vi.name, inner)
        node = helper.make_node("Transpose", [vi.name], [inner], name=names.make(f"{vi.name}/to_state_major"),
                                perm=[1, 0, 2])
    else:
        _rename_everywhere(graph, vi.name, inner)
        node = helper.make_node("Transpose", [inner], [vi.name], name=names.make(f"{vi.name}/to_batch_first"),
                                perm=[1, 0, 2])
    before = _shape_text(vi)
    _swap_dims(vi)
    kind = "input" if is_input else "output"
    rewrites.append(Rewrite("state-batch-first", vi.name,
                            f"state {kind} {vi.name!r}: {before} → {_shape_text(vi)} (Transpose inside)", (1, 0, 2)))
    return node


def _spec_state_names(model: Any) -> Optional[Tuple[Set[str], Set[str]]]:
    from rnndeploy.errors import SpecError
    from rnndeploy.spec import read_onnx_metadata

    try:
        spec, graph, _ = read_onnx_metadata(model)
    except SpecError:
        return None
    g = spec.graph(graph)
    return ({t.name for t in g.inputs if t.role == "state"}, {t.name for t in g.outputs if t.role == "state"})


def _swap_spec_state_dims(model: Any, changed: Set[str]) -> None:
    from dataclasses import replace

    from rnndeploy.spec import read_onnx_metadata, write_onnx_metadata

    spec, graph, info = read_onnx_metadata(model)
    g = spec.graph(graph)

    def swap(t: Any) -> Any:
        if t.name not in changed or len(t.dims) != 3:
            return t
        return replace(t, dims=(t.dims[1], t.dims[0], t.dims[2]))

    g2 = replace(g, inputs=tuple(swap(t) for t in g.inputs), outputs=tuple(swap(t) for t in g.outputs))
    spec2 = replace(spec, graphs={**spec.graphs, graph: g2})
    write_onnx_metadata(model, spec2, graph, {**info, "state_layout": "batch-first"})


def _traced_state_tensors(graph: Any) -> Tuple[Set[str], Set[str]]:
    """(graph inputs reaching an initial_h/initial_c, graph outputs coming from a Y_h/Y_c)."""
    consumers: Dict[str, List[Tuple[Any, int]]] = {}
    producer: Dict[str, Tuple[Any, int]] = {}
    for n in graph.node:
        for k, i in enumerate(n.input):
            if i:
                consumers.setdefault(i, []).append((n, k))
        for k, o in enumerate(n.output):
            if o:
                producer[o] = (n, k)

    def reaches_state_slot(name: str, depth: int = 0) -> bool:
        for n, k in consumers.get(name, []):
            if n.op_type in RECURRENT_OPS and _default_domain(n) and k in (5, 6):
                return True
            if n.op_type in _STATE_PASS_OPS and k == 0 and depth < 8:
                if any(reaches_state_slot(o, depth + 1) for o in n.output if o):
                    return True
        return False

    def from_state_slot(name: str, depth: int = 0) -> bool:
        if name not in producer:
            return False
        n, k = producer[name]
        if n.op_type in RECURRENT_OPS and _default_domain(n):
            return k in (1, 2)
        if n.op_type in _STATE_PASS_OPS and depth < 8:
            srcs = list(n.input) if n.op_type == "Concat" else list(n.input[:1])
            return bool(srcs) and all(from_state_slot(s, depth + 1) for s in srcs if s)
        return False

    ins = {vi.name for vi in graph.input if reaches_state_slot(vi.name)}
    outs = {vo.name for vo in graph.output if from_state_slot(vo.name)}
    return ins, outs


# -- constant folding ------------------------------------------------------------------------------
def fold_constants(model: Any, max_elements: int = FOLD_MAX_ELEMENTS) -> Tuple[Any, List[Rewrite]]:
    """Evaluate the main graph's nodes whose inputs are all known and whose outputs hold at
    most ``max_elements`` each; they become initializers and what then feeds nothing is
    removed. Shape/Size of tensors whose (sliced) dims are statically known count as known.
    Values are computed by onnx's reference evaluator. Returns one Rewrite for the pass."""
    import onnx
    from onnx import numpy_helper

    m = _copy(model)
    graph_inputs = {vi.name for vi in m.graph.input}
    known: Dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer
                                    if i.name not in graph_inputs}
    shapes = _static_shapes(m)
    opset = max([o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] or [17])
    folded: List[Any] = []
    for node in m.graph.node:
        if not _default_domain(node) or node.op_type in _NONDETERMINISTIC or subgraphs(node):
            continue
        value = _fold_node(node, known, shapes, max_elements, opset)
        if value is None:
            continue
        known.update(value)
        folded.append(node)
    if not folded:
        return m, []
    folded_ids = {id(n) for n in folded}
    kept = [n for n in m.graph.node if id(n) not in folded_ids]
    needed = _needed_names(kept, m.graph.output)
    new_inits = []
    for n in folded:
        for o in n.output:
            if o and o in needed:
                new_inits.append(numpy_helper.from_array(np.asarray(known[o]), o))
    del m.graph.node[:]
    m.graph.node.extend(kept)
    m.graph.initializer.extend(new_inits)
    _drop_dead(m)
    kinds = Counter(n.op_type for n in folded)
    hist = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    onnx.checker.check_model(m)
    return m, [Rewrite("fold", f"{len(folded)} nodes", f"folded {len(folded)} constant node(s) ({hist}) into "
                                                       f"{len(new_inits)} initializer(s)")]


def _fold_node(node: Any, known: Dict[str, np.ndarray], shapes: Dict[str, Tuple[Any, ...]],
               max_elements: int, opset: int) -> Optional[Dict[str, np.ndarray]]:
    if node.op_type in ("Shape", "Size"):
        dims = shapes.get(node.input[0])
        if dims is None:
            return None
        if node.op_type == "Size":
            if not all(isinstance(d, int) for d in dims):
                return None
            return {node.output[0]: np.array(int(np.prod(dims, dtype=np.int64)), dtype=np.int64)}
        start = int(node_attr(node, "start", 0) or 0)
        end = node_attr(node, "end")
        r = len(dims)
        lo = max(0, min(r, start + r if start < 0 else start))
        hi = r if end is None else max(0, min(r, int(end) + r if int(end) < 0 else int(end)))
        sel = dims[lo:hi]
        if not all(isinstance(d, int) for d in sel):
            return None
        return {node.output[0]: np.array(sel, dtype=np.int64)}
    present = [i for i in node.input if i]
    if not all(i in known for i in present):
        return None
    try:
        values = _eval_node(node, known, opset)
    except Exception:  # an op the reference evaluator cannot run is simply left in the graph
        return None
    if any(np.asarray(v).size > max_elements for v in values.values()):
        return None
    return values


def _eval_node(node: Any, known: Dict[str, np.ndarray], opset: int) -> Dict[str, np.ndarray]:
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = [numpy_helper.from_array(np.asarray(known[i]), i) for i in dict.fromkeys(i for i in node.input if i)]
    outs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
    g = helper.make_graph([node], "fold", [], outs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    sess = ReferenceEvaluator(model)
    names = [o for o in node.output if o]
    return dict(zip(names, (np.asarray(v) for v in sess.run(names, {}))))


def _static_shapes(model: Any) -> Dict[str, Tuple[Any, ...]]:
    """Tensor name → dims (int or None) from shape inference (data propagation on)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # a model shape inference cannot handle: fold only what needs no shapes
        inferred = model
    out: Dict[str, Tuple[Any, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        out[vi.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim)
    return out


def _needed_names(nodes: Sequence[Any], outputs: Iterable[Any]) -> Set[str]:
    needed = {o.name for o in outputs}
    for n in nodes:
        needed.update(i for i in n.input if i)
        for sub in subgraphs(n):
            needed |= tensors_read(sub)
    return needed


def _drop_dead(model: Any) -> None:
    """Remove nodes whose outputs nobody reads, then initializers nobody reads."""
    g = model.graph
    while True:
        needed = _needed_names(g.node, g.output)
        live = [n for n in g.node if any(o in needed for o in n.output if o)]
        if len(live) == len(g.node):
            break
        del g.node[:]
        g.node.extend(live)
    needed = _needed_names(g.node, g.output) | {vi.name for vi in g.input}
    keep = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(keep)
    names = {o for n in g.node for o in n.output} | {i.name for i in g.initializer}
    stale = [vi for vi in g.value_info if vi.name not in names]
    for vi in stale:
        g.value_info.remove(vi)


# -- runtime workarounds -------------------------------------------------------------------------
def openvino_workarounds(model: Any) -> Tuple[Any, List[Rewrite]]:
    """A no-op clip (float32 max) on every recurrent node that has sequence_lens and no clip:
    OpenVINO 2026.4 ignores sequence_lens on such nodes (measured here: wrong Y and Y_h),
    and honours them once any finite clip is set."""
    from onnx import helper

    m = _copy(model)
    rewrites: List[Rewrite] = []
    for idx, node in enumerate(all_nodes(m.graph)):
        if node.op_type not in RECURRENT_OPS or not _default_domain(node):
            continue
        has_lens = len(node.input) > 4 and bool(node.input[4])
        if has_lens and node_attr(node, "clip") is None:
            node.attribute.append(helper.make_attribute("clip", NO_OP_CLIP))
            name = _name(node, idx)
            rewrites.append(Rewrite("openvino", name, f"{node.op_type} node {name!r}: clip={NO_OP_CLIP:.4g} (no-op) "
                                                      "added — OpenVINO ignores sequence_lens on nodes without clip"))
    return m, rewrites


# -- helpers -------------------------------------------------------------------------------------------
class _NameFactory:
    """Fresh tensor / node names that collide with nothing in the model."""

    def __init__(self, model: Any):
        self.used: Set[str] = set()
        for g in _all_graphs(model.graph):
            self.used.update(vi.name for vi in list(g.input) + list(g.output) + list(g.value_info))
            self.used.update(i.name for i in g.initializer)
            for n in g.node:
                self.used.update(n.input)
                self.used.update(n.output)
                self.used.add(n.name)

    def make(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


def _copy(model: Any) -> Any:
    m = type(model)()
    m.CopyFrom(model)
    return m


def _all_graphs(graph: Any) -> Iterable[Any]:
    yield graph
    for n in graph.node:
        for sub in subgraphs(n):
            yield from _all_graphs(sub)


def _default_domain(node: Any) -> bool:
    return node.domain in ("", "ai.onnx")


def _name(node: Any, idx: int) -> str:
    return node.name or f"{node.op_type}_{idx}"


def _rank(vi: Any) -> Optional[int]:
    tt = vi.type.tensor_type
    return len(tt.shape.dim) if tt.HasField("shape") else None


def _shape_text(vi: Any) -> str:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return "[?]"
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim) + "]"


def _swap_dims(vi: Any) -> None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape") or len(tt.shape.dim) != 3:
        return
    a, b = type(tt.shape.dim[0])(), type(tt.shape.dim[0])()
    a.CopyFrom(tt.shape.dim[0])
    b.CopyFrom(tt.shape.dim[1])
    tt.shape.dim[0].CopyFrom(b)
    tt.shape.dim[1].CopyFrom(a)


def _rename_uses(graph: Any, old: str, new: str) -> None:
    """Every node input (subgraphs included) reading ``old`` reads ``new``."""
    for g in _all_graphs(graph):
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new


def _rename_everywhere(graph: Any, old: str, new: str) -> None:
    """The tensor ``old`` (produced by a node) is renamed ``new`` for its producer and readers."""
    _rename_uses(graph, old, new)
    for n in graph.node:
        for k, o in enumerate(n.output):
            if o == old:
                n.output[k] = new
