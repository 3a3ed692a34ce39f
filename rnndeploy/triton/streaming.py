"""The streaming form Triton's sequence batcher needs: batch-first state and control inputs.

A streaming rnndeploy model (char-LM, a regressor exported ``--with-state``) takes its
recurrent state as optional inputs that start at zeros (``h0`` [, ``c0``]) and returns the
state after the chunk (``hn`` [, ``cn``]). Triton keeps such state on the server
(``sequence_batching.state``, implicit state) when:

- the state tensors are batch-first (Triton stacks the states of a batch's sequences along
  axis 0) — the rewrite ``make_state_batch_first`` of ``rnndeploy.graph.normalize`` does that;
- the sequence controls it sends are model inputs (its onnxruntime backend refuses a control
  the model does not declare): here START, END, READY ([batch, 1] float32) and CORRID
  ([batch, 1] int64).

The graph uses them so that the model is right under either sequence-batcher strategy:
START=1 starts that row from zero state (as Triton's zero ``initial_state`` does), READY=0
returns the incoming state unchanged (an empty batch slot must not advance). END and CORRID
are declared and not read. ``verify_streaming`` runs both files in ONNX Runtime and checks
exactly that, plus that START=0, READY=1 equals the original model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rnndeploy.errors import RnnDeployError, UsageError
from rnndeploy.spec import GraphSpec, TensorSpec
from rnndeploy.triton.config import Streaming

CONTROLS = {"start": "START", "end": "END", "ready": "READY", "corrid": "CORRID"}


def state_pairs(graph: GraphSpec) -> Tuple[Tuple[str, str], ...]:
    """(state input, state output) pairs of a graph's optional (streaming) state tensors, in order.

    Raises:
        UsageError: the numbers or shapes of state inputs and outputs differ.
    """
    ins = [t for t in graph.inputs if t.role == "state" and t.optional]
    outs = [t for t in graph.outputs if t.role == "state" and t.optional]
    if len(ins) != len(outs):
        raise UsageError(f"graph {graph.name!r} has {len(ins)} optional state inputs but {len(outs)} state outputs",
                         "a streaming model returns one state output per state input")
    for i, o in zip(ins, outs):
        if tuple(i.dims) != tuple(o.dims) or i.dtype != o.dtype:
            raise UsageError(f"state input {i.name!r} {list(i.dims)} {i.dtype} does not match output {o.name!r} "
                             f"{list(o.dims)} {o.dtype}")
    return tuple((i.name, o.name) for i, o in zip(ins, outs))


def is_streaming(graph: GraphSpec) -> bool:
    """True when the graph (in the form a file holds) has optional state tensors."""
    return any(t.role == "state" and t.optional for t in graph.inputs)


def prepare_streaming(model: Any) -> Tuple[Any, Streaming]:
    """The Triton streaming form of an rnndeploy ONNX model (a copy; ``model`` is untouched).

    Returns (model, Streaming(states, controls)); the spec in the copy's metadata lists the
    controls as optional "other" inputs whose generated values leave the model's maths
    unchanged (START 0, READY 1), so parity and bench run on the file as they do on the original.

    Raises:
        UsageError: not a streaming rnndeploy model, or a name the controls need is taken.
    """
    import onnx
    from onnx import TensorProto, helper

    from rnndeploy.spec import read_onnx_metadata, write_onnx_metadata

    spec, graph_name, info = read_onnx_metadata(model)
    graph = spec.graph(graph_name).streaming(True)
    pairs = state_pairs(graph)
    if not pairs:
        raise UsageError(f"graph {graph_name!r} of {spec.name!r} has no optional state, so no streaming form",
                         "export with --with-state")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if any(graph.input(i).dims[0] != "batch" for i, _ in pairs):
        m = _batch_first(m)
        spec, graph_name, info = read_onnx_metadata(m)
        graph = spec.graph(graph_name).streaming(True)
    g = m.graph
    taken = {v.name for v in list(g.input) + list(g.output) + list(g.value_info)}
    taken |= {o for n in g.node for o in n.output}
    clash = sorted(taken & set(CONTROLS.values()))
    if clash:
        raise UsageError(f"the model already uses the name(s) {', '.join(clash)}", "rename them before serving it on Triton")

    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    for kind, name in CONTROLS.items():
        dtype = TensorProto.INT64 if kind == "corrid" else TensorProto.FLOAT
        g.input.append(helper.make_tensor_value_info(name, dtype, ["batch", 1]))
    nodes: List[Any] = []
    one = "rnndeploy_triton/one"
    g.initializer.append(helper.make_tensor(one, TensorProto.FLOAT, [], [1.0]))
    keep = "rnndeploy_triton/not_start"
    not_ready = "rnndeploy_triton/not_ready"
    nodes.append(helper.make_node("Sub", [one, "START"], [keep], name="rnndeploy_triton/keep_state"))
    nodes.append(helper.make_node("Sub", [one, "READY"], [not_ready], name="rnndeploy_triton/not_ready"))
    outputs = {o.name for o in g.output}
    for i, o in pairs:
        t = graph.input(i)
        rank = len(t.dims)
        elem = next(v.type.tensor_type.elem_type for v in g.input if v.name == i)
        start_b = _broadcast(nodes, g, keep, rank, elem, opset, f"{i}/not_start")
        ready_b = _broadcast(nodes, g, "READY", rank, elem, opset, f"{i}/ready")
        unready_b = _broadcast(nodes, g, not_ready, rank, elem, opset, f"{i}/not_ready")
        reset = f"rnndeploy_triton/{i}/reset"
        _rename_uses(g, i, reset)
        nodes.append(helper.make_node("Mul", [i, start_b], [reset], name=f"rnndeploy_triton/{i}/reset"))
        if o not in outputs:
            raise UsageError(f"state output {o!r} is not an output of the ONNX graph")
        raw = f"rnndeploy_triton/{o}/new"
        _rename_producer(g, o, raw)
        advanced = f"rnndeploy_triton/{o}/advanced"
        held = f"rnndeploy_triton/{o}/held"
        nodes.append(helper.make_node("Mul", [raw, ready_b], [advanced], name=f"rnndeploy_triton/{o}/advanced"))
        nodes.append(helper.make_node("Mul", [reset, unready_b], [held], name=f"rnndeploy_triton/{o}/held"))
        nodes.append(helper.make_node("Add", [advanced, held], [o], name=f"rnndeploy_triton/{o}/gated"))
    # prepend: every new node reads graph inputs or each other, except the gates, which read
    # the renamed state outputs; a topological order puts them after their producers.
    g.node.extend(nodes)
    _topological_sort(g)

    controls = (
        TensorSpec("START", "float32", ("batch", 1), "other", low=0.0, high=0.0, optional=True,
                   description="Triton sequence control: 1 starts this row from zero state"),
        TensorSpec("END", "float32", ("batch", 1), "other", low=0.0, high=0.0, optional=True,
                   description="Triton sequence control: 1 on a sequence's last request (not read)"),
        TensorSpec("READY", "float32", ("batch", 1), "other", low=1.0, high=1.0, optional=True,
                   description="Triton sequence control: 0 for an empty batch slot (state held)"),
        TensorSpec("CORRID", "int64", ("batch", 1), "other", low=0, high=1, optional=True,
                   description="Triton sequence control: the correlation id (not read)"),
    )
    full = spec.graph(graph_name)
    new_graph = replace(full, inputs=full.inputs + controls)
    attrs = dict(spec.attrs)
    attrs["triton"] = {"states": [list(p) for p in pairs], "controls": dict(CONTROLS)}
    new_spec = replace(spec, graphs={**spec.graphs, graph_name: new_graph}, attrs=attrs)
    write_onnx_metadata(m, new_spec, graph_name, {**info, "triton_streaming": True})
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as exc:  # a bug here, not bad input
        raise RnnDeployError(f"the Triton streaming form does not pass the ONNX checker: {exc}") from exc
    return m, Streaming(states=pairs, controls=dict(CONTROLS))


def _batch_first(model: Any) -> Any:
    try:
        from rnndeploy.graph.normalize import make_state_batch_first
    except ImportError as exc:  # pragma: no cover - present once the normalize stage lands
        raise UsageError("this rnndeploy cannot make the state batch-first yet (rnndeploy.graph.normalize is missing)",
                         "serve the model without implicit state (--no-streaming)") from exc
    return make_state_batch_first(model)


def _broadcast(nodes: List[Any], g: Any, name: str, rank: int, elem: int, opset: int, tag: str) -> str:
    """``name`` ([batch, 1] float) reshaped to [batch, 1, ...] of ``rank`` and cast to ``elem``."""
    from onnx import TensorProto, helper

    out = name
    if rank > 2:
        axes = list(range(2, rank))
        dst = f"rnndeploy_triton/{tag}/b"
        if opset >= 13:
            axes_name = f"rnndeploy_triton/{tag}/axes"
            g.initializer.append(helper.make_tensor(axes_name, TensorProto.INT64, [len(axes)], axes))
            nodes.append(helper.make_node("Unsqueeze", [out, axes_name], [dst], name=dst))
        else:
            nodes.append(helper.make_node("Unsqueeze", [out], [dst], name=dst, axes=axes))
        out = dst
    if elem != TensorProto.FLOAT:
        dst = f"rnndeploy_triton/{tag}/cast"
        nodes.append(helper.make_node("Cast", [out], [dst], name=dst, to=elem))
        out = dst
    return out


def _rename_uses(g: Any, old: str, new: str) -> None:
    """Every node input ``old`` (subgraphs included) reads ``new`` instead."""
    for n in g.node:
        for k, x in enumerate(n.input):
            if x == old:
                n.input[k] = new
        for a in n.attribute:
            for sub in ([a.g] if a.type == a.GRAPH else list(a.graphs) if a.type == a.GRAPHS else []):
                _rename_uses(sub, old, new)


def _rename_producer(g: Any, old: str, new: str) -> None:
    """The node producing graph output ``old`` produces ``new``; its other readers follow."""
    for n in g.node:
        for k, x in enumerate(n.output):
            if x == old:
                n.output[k] = new
    _rename_uses(g, old, new)
    for v in g.value_info:
        if v.name == old:
            v.name = new


def _topological_sort(g: Any) -> None:
    from collections import deque

    nodes = list(g.node)
    available = {v.name for v in g.input} | {i.name for i in g.initializer} | {""}
    producers: Dict[str, int] = {o: k for k, n in enumerate(nodes) for o in n.output}
    needs: List[set] = []
    for n in nodes:
        deps = {x for x in _inputs_with_subgraphs(n) if x not in available and x in producers}
        needs.append(deps)
    order: List[int] = []
    ready = deque(k for k, d in enumerate(needs) if not d)
    done = set()
    consumers: Dict[str, List[int]] = {}
    for k, d in enumerate(needs):
        for x in d:
            consumers.setdefault(x, []).append(k)
    while ready:
        k = ready.popleft()
        order.append(k)
        for o in nodes[k].output:
            done.add(o)
            for c in consumers.get(o, []):
                if needs[c] and needs[c] <= done and c not in order and c not in ready:
                    ready.append(c)
    if len(order) != len(nodes):
        raise RnnDeployError("the Triton streaming rewrite left a cycle in the graph")
    del g.node[:]
    g.node.extend(nodes[k] for k in order)


def _inputs_with_subgraphs(n: Any) -> List[str]:
    out = list(n.input)
    for a in n.attribute:
        for sub in ([a.g] if a.type == a.GRAPH else list(a.graphs) if a.type == a.GRAPHS else []):
            inner = {o for m in sub.node for o in m.output} | {v.name for v in sub.input} | {i.name for i in sub.initializer}
            for m in sub.node:
                out += [x for x in _inputs_with_subgraphs(m) if x not in inner]
    return out


# -- verification --------------------------------------------------------------------------------------------
def verify_streaming(original: Any, triton_form: Any, streaming: Streaming, seed: int = 0,
                     atol: float = 1e-5) -> Optional[str]:
    """Run both models in ONNX Runtime on one small batch and check the control semantics.

    Checks: START=0, READY=1 equals the original (states carried, batch-first transposed);
    START=1 equals the original from zero state; READY=0 returns the incoming state.
    Returns None when onnxruntime is missing (nothing checked), else "ok".

    Raises:
        RnnDeployError: a check failed (a bug in the rewrite; the repository is not written).
    """
    from rnndeploy.backends import RunnerOptions, create_runner, model_source
    from rnndeploy.inputs import generate_inputs
    from rnndeploy.optional import available
    from rnndeploy.spec import read_onnx_metadata

    if not available("onnxruntime"):
        return None

    spec, gname, _ = read_onnx_metadata(original)
    graph = spec.graph(gname).streaming(True)
    tspec, tname, _ = read_onnx_metadata(triton_form)
    tgraph = tspec.graph(tname)
    batch, seq = 3, 5
    feed = generate_inputs(graph, {"batch": batch, "seq": seq}, seed)
    out_names = [o.name for o in graph.outputs]
    with create_runner("ort-cpu", model_source(original), RunnerOptions(threads=1)) as orig, \
            create_runner("ort-cpu", model_source(triton_form), RunnerOptions(threads=1)) as trit:
        return _check_controls(orig, trit, graph, tgraph, feed, streaming, out_names, batch, atol)


def _check_controls(orig: Any, trit: Any, graph: GraphSpec, tgraph: GraphSpec, feed: Dict[str, np.ndarray],
                    streaming: Streaming, out_names: List[str], batch: int, atol: float) -> str:
    """verify_streaming's checks, on active runners of the original and the Triton form."""

    def batch_axis(g: GraphSpec, name: str) -> int:
        return list(next(t for t in g.inputs + g.outputs if t.name == name).dims).index("batch")

    def to_triton(name: str, arr: np.ndarray) -> np.ndarray:
        return np.moveaxis(arr, batch_axis(graph, name), batch_axis(tgraph, name))

    def run_triton(start: float, ready: float, states: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        f = {k: v for k, v in feed.items() if k not in states}
        f.update({k: to_triton(k, v) for k, v in states.items()})
        col = np.ones((batch, 1), np.float32)
        f.update({"START": col * start, "END": col * 0, "READY": col * ready, "CORRID": np.zeros((batch, 1), np.int64)})
        outs = trit.infer(f)
        return {n: outs[n] for n in out_names}

    states = {i: feed[i] for i, _ in streaming.states}
    ref = orig.infer(feed)
    zero_feed = {**feed, **{i: np.zeros_like(feed[i]) for i in states}}
    ref_zero = orig.infer(zero_feed)
    checks = (("START=0 READY=1", run_triton(0.0, 1.0, states), ref),
              ("START=1", run_triton(1.0, 1.0, states), ref_zero))
    for label, got, want in checks:
        for name in out_names:
            w = to_triton(name, want[name])
            if not np.allclose(got[name], w, atol=atol, rtol=1e-5):
                raise RnnDeployError(f"the Triton streaming form differs from the model ({label}, output {name!r}: "
                                     f"max abs {float(np.max(np.abs(got[name] - w))):.3g})")
    held = run_triton(0.0, 0.0, states)
    for i, o in streaming.states:
        if not np.allclose(held[o], to_triton(i, states[i]), atol=atol, rtol=1e-5):
            raise RnnDeployError(f"the Triton streaming form advances state {o!r} with READY=0")
    return "ok"
