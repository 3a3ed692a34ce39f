"""Find the TensorRT layers that implement given ONNX nodes, and pin them to FP32.

TensorRT 8.6 has no strongly typed networks: to keep an LSTM in FP32 inside an FP16
engine, the builder gets BuilderFlag.FP16 plus per-layer precision constraints on the
layers the ONNX parser made for that node. The parser turns one LSTM/GRU/RNN node into
an ILoop of dozens of layers, most of them unnamed, so names cannot find them. Data
flow can: the layers of node N are exactly those reachable *backwards* from N's output
tensors without crossing a tensor that the ONNX graph names (a graph input, an
initializer, another node's output) — the parser keeps ONNX tensor names on the tensors
it produces for node outputs. Recurrence back-edges make cycles; the walk tolerates them.

Works on anything shaped like ``trt.INetworkDefinition`` (num_layers, get_layer,
num_inputs, get_input; layers with num_inputs/get_input/num_outputs/get_output/type;
tensors with name/dtype), so the grouping is unit-tested on stand-ins.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Set

# Layer types that carry no arithmetic of their own (or whose precision TensorRT may
# reject): constants and shape plumbing; and the loop's boundary layers, which hold the
# recurrent state between steps — pinned only on request (the first attempt), because
# whether TensorRT accepts precision constraints on them is not documented.
SKIP_LAYER_TYPES = frozenset({"CONSTANT", "SHAPE", "TRIP_LIMIT", "CONDITION", "CONDITIONAL_INPUT", "CONDITIONAL_OUTPUT",
                              "ASSERTION", "IDENTITY"})
LOOP_BOUNDARY_TYPES = frozenset({"ITERATOR", "LOOP_OUTPUT", "RECURRENCE"})


def onnx_tensor_names(model: Any) -> Set[str]:
    """Every tensor name the ONNX graph defines: inputs, initializers, node outputs."""
    g = model.graph
    names = {vi.name for vi in g.input} | {i.name for i in g.initializer}
    for n in g.node:
        names.update(o for o in n.output if o)
    return names


def node_outputs(model: Any, node_names: Iterable[str]) -> Dict[str, List[str]]:
    """Node name → its output tensor names, for the named nodes of the main graph."""
    wanted = set(node_names)
    out: Dict[str, List[str]] = {}
    for i, n in enumerate(model.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        if name in wanted:
            out[name] = [o for o in n.output if o]
    return out


def layers_of_nodes(network: Any, model: Any, node_names: Iterable[str]) -> Dict[str, List[int]]:
    """Node name → indices of the network layers that implement it (see module docstring).

    A node whose outputs the network does not contain (e.g. folded away by the parser)
    maps to an empty list.
    """
    producers: Dict[str, int] = {}
    for li in range(network.num_layers):
        layer = network.get_layer(li)
        for k in range(layer.num_outputs):
            t = layer.get_output(k)
            if t is not None:
                producers[t.name] = li
    boundary_all = onnx_tensor_names(model)
    result: Dict[str, List[int]] = {}
    for node, outputs in node_outputs(model, node_names).items():
        boundary = boundary_all - set(outputs)
        seen: Set[int] = set()
        stack = [producers[o] for o in outputs if o in producers]
        while stack:
            li = stack.pop()
            if li in seen:
                continue
            seen.add(li)
            layer = network.get_layer(li)
            for k in range(layer.num_inputs):
                t = layer.get_input(k)
                if t is None or t.name in boundary:
                    continue
                p = producers.get(t.name)
                if p is not None and p not in seen:
                    stack.append(p)
        result[node] = sorted(seen)
    return result


def _type_name(value: Any) -> str:
    name = getattr(value, "name", None)
    return str(name if isinstance(name, str) else value).split(".")[-1].upper()


def pin_fp32(trt: Any, network: Any, layer_indices: Iterable[int], loop_boundaries: bool = False) -> List[str]:
    """Set precision FP32 (and FP32 output types) on the arithmetic layers among
    ``layer_indices``; return the names of the layers pinned.

    Layers whose outputs are not all floating point, and the types in SKIP_LAYER_TYPES,
    are left alone: a precision constraint on them is meaningless or rejected. The loop's
    ITERATOR / LOOP_OUTPUT / RECURRENCE layers are pinned only with ``loop_boundaries``.
    """
    fp32 = trt.float32
    floats = {_type_name(trt.float32), _type_name(trt.float16)}
    pinned = []
    for li in sorted(set(layer_indices)):
        layer = network.get_layer(li)
        kind = _type_name(layer.type)
        if kind in SKIP_LAYER_TYPES or (kind in LOOP_BOUNDARY_TYPES and not loop_boundaries):
            continue
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        if not outs or any(t is None or _type_name(t.dtype) not in floats for t in outs):
            continue
        layer.precision = fp32
        for k in range(layer.num_outputs):
            layer.set_output_type(k, fp32)
        pinned.append(layer.name)
    return pinned


def summarize(groups: Mapping[str, List[int]]) -> Dict[str, int]:
    """Node name → number of layers found (for the sidecar)."""
    return {k: len(v) for k, v in groups.items()}
