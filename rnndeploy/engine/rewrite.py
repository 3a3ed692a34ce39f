"""Optional ONNX rewrite: hoist the input projection of every timestep out of the recurrence.

TensorRT's ONNX parser turns an LSTM/GRU/RNN node into an ILoop that computes, at every
step, ``X_t·Wᵀ`` *and* ``H_{t-1}·Rᵀ``. Only the second depends on the previous step.
This rewrite replaces an eligible node by

    P = X·W_allᵀ + b          one MatMul over all T×N rows (all directions at once),
                              ahead of the recurrence: a large, efficient GEMM
    Scan per direction        body: H_{t-1}·Rᵀ + P_t, the gate maths, the new state
                              (reverse direction: Scan's scan_input/output_directions)
    Concat / Unsqueeze        Y [T, D, N, H], Y_h / Y_c [D, N, H] exactly as before

so each loop iteration does one small GEMM instead of two. Whether that is faster on a
GPU is what the GPU verification measures (per-step launch overhead may dominate at
batch 1); outputs equal the original's in onnxruntime to float32 rounding (tested).

Eligible nodes: default domain, opset >= 13, W and R (and B) initializers, layout 0, no
sequence_lens, no peepholes, no clip, input_forget 0, default activations (RNN: one of
Tanh/Relu/Sigmoid, the same both ways). Others are left as they are and reported.

Precision: the Scan bodies are subgraphs, which rnndeploy.precision keeps FP32; on the
TensorRT 8.6 FP16-flag path TensorRT chooses precision inside the loop itself, and
``fp16-keep-recurrence`` pins the Scan's layers to FP32 as it does for the original nodes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rnndeploy.onnx_info import node_attr, tensors_read

RNN_ACTIVATIONS = {"Tanh": "Tanh", "Relu": "Relu", "Sigmoid": "Sigmoid"}


@dataclass(frozen=True)
class HoistReport:
    """Which nodes were rewritten (original name → the Scan node names that replace it)
    and which were left alone (name → reason)."""

    rewritten: Dict[str, List[str]] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        parts = [f"hoisted the input projection of {len(self.rewritten)} recurrent node(s)"]
        if self.skipped:
            parts.append("left: " + ", ".join(f"{k} ({v})" for k, v in self.skipped.items()))
        return "; ".join(parts)


def hoist_input_projection(model: Any) -> Tuple[Any, HoistReport]:
    """Rewrite every eligible LSTM/GRU/RNN node of the main graph (see module docstring).
    Returns (a new model, report); the input model is not modified."""
    import onnx

    m = type(model)()
    m.CopyFrom(model)
    opset = max([o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] or [0])
    inits = {i.name: i for i in m.graph.initializer}
    new_nodes: List[Any] = []
    new_inits: List[Any] = []
    report = HoistReport()
    for idx, node in enumerate(m.graph.node):
        name = node.name or f"{node.op_type}_{idx}"
        if node.op_type not in ("LSTM", "GRU", "RNN") or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        why = _ineligible(node, inits, opset)
        if why:
            report.skipped[name] = why
            new_nodes.append(node)
            continue
        nodes, tensors, scans = _rewrite(node, name, inits)
        new_nodes.extend(nodes)
        new_inits.extend(tensors)
        report.rewritten[name] = scans
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    m.graph.initializer.extend(new_inits)
    if report.rewritten:  # drop the original W/R/B nobody reads any more
        used = tensors_read(m.graph) | {o.name for o in m.graph.output}
        keep = [i for i in m.graph.initializer if i.name in used]
        del m.graph.initializer[:]
        m.graph.initializer.extend(keep)
    del m.graph.value_info[:]
    m = onnx.shape_inference.infer_shapes(m)
    onnx.checker.check_model(m)
    return m, report


def _ineligible(node: Any, inits: Dict[str, Any], opset: int) -> Optional[str]:
    ins = list(node.input) + [""] * (8 - len(node.input))
    if opset < 13:
        return f"opset {opset} < 13"
    if ins[1] not in inits or ins[2] not in inits or (ins[3] and ins[3] not in inits):
        return "W/R/B are not initializers"
    if ins[4]:
        return "has sequence_lens"
    if node.op_type == "LSTM" and ins[7]:
        return "has peepholes"
    if node_attr(node, "layout", 0) != 0:
        return "layout 1"
    if node_attr(node, "clip") is not None:
        return "has clip"
    if node_attr(node, "input_forget", 0):
        return "input_forget"
    acts = node_attr(node, "activations")
    if node.op_type == "RNN":
        if acts and (len(set(acts)) != 1 or acts[0] not in RNN_ACTIVATIONS):
            return f"activations {acts}"
    elif acts:
        defaults = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}[node.op_type]
        if acts not in (defaults, defaults * 2):
            return f"activations {acts}"
    if node_attr(node, "activation_alpha") or node_attr(node, "activation_beta"):
        return "activation alpha/beta"
    return None


class _Emitter:
    """The nodes and initializers of one generated graph, every name under ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: List[Any] = []
        self.inits: List[Any] = []

    def const(self, suffix: str, arr: Any, dtype: Any = None) -> str:
        """An initializer PREFIX/suffix holding ``arr`` (once per name); its name."""
        from onnx import numpy_helper

        name = f"{self.prefix}/{suffix}"
        if all(t.name != name for t in self.inits):  # np.array keeps 0-d arrays 0-d
            self.inits.append(numpy_helper.from_array(np.array(arr, dtype=dtype, order="C"), name))
        return name

    def node(self, op_type: str, inputs: List[str], n_out: int = 1, **attrs: Any) -> List[str]:
        """A node named PREFIX/OpK; its output names."""
        from onnx import helper

        k = len(self.nodes)
        outputs = [f"{self.prefix}/{op_type.lower()}{k}_{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=f"{self.prefix}/{op_type}{k}", **attrs))
        return outputs


def _rewrite(node: Any, name: str, inits: Dict[str, Any]) -> Tuple[List[Any], List[Any], List[str]]:
    from onnx import helper, numpy_helper

    op = node.op_type
    ins = list(node.input) + [""] * (8 - len(node.input))
    outs = list(node.output) + [""] * (3 - len(node.output))
    W = numpy_helper.to_array(inits[ins[1]]).astype(np.float32)
    R = numpy_helper.to_array(inits[ins[2]]).astype(np.float32)
    D, GH, _ = W.shape
    H = R.shape[2]
    B = numpy_helper.to_array(inits[ins[3]]).astype(np.float32) if ins[3] else np.zeros((D, 2 * GH), np.float32)
    lbr = int(node_attr(node, "linear_before_reset", 0) or 0)
    direction = node_attr(node, "direction", "forward")
    act = (node_attr(node, "activations") or ["Tanh"])[0] if op == "RNN" else None
    p = f"{name}/hoist"
    emit = _Emitter(p)
    nodes, tensors, const, mk = emit.nodes, emit.inits, emit.const, emit.node

    # P = X·W_allᵀ + bias: the recurrence-free part of every gate, all steps, all directions
    bias = np.zeros((D, GH), np.float32)
    for d in range(D):
        wb, rb = B[d, :GH], B[d, GH:]
        if op == "GRU" and lbr:
            bias[d] = wb + np.concatenate([rb[: 2 * H], np.zeros(H, np.float32)])  # R_bh stays inside r ⊙ (…)
        else:
            bias[d] = wb + rb
    w_all = np.concatenate([W[d].T for d in range(D)], axis=1)  # [I, D*GH]
    (proj,) = mk("MatMul", [ins[0], const("W_all", w_all)])
    (proj,) = mk("Add", [proj, const("bias", bias.reshape(-1))])

    # zeros [N, H] for absent initial states
    zeros = None
    if not ins[5] or (op == "LSTM" and not ins[6]):
        (shape,) = mk("Shape", [ins[0]])
        (n,) = mk("Gather", [shape, const("one", np.array([1], np.int64))], axis=0)
        (dims,) = mk("Concat", [n, const("H", np.array([H], np.int64))], axis=0)
        (zeros,) = mk("ConstantOfShape", [dims], value=numpy_helper.from_array(np.zeros(1, np.float32)))

    def state(index: int, d: int) -> str:
        if not ins[index]:
            return zeros  # type: ignore[return-value]
        (s,) = mk("Gather", [ins[index], const(f"d{d}", np.array(d, np.int64))], axis=0)
        return s

    ys, hs, cs, scans = [], [], [], []
    for d in range(D):
        reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
        (p_d,) = mk("Slice", [proj, const(f"s{d}", np.array([d * GH], np.int64)), const(f"e{d}", np.array([(d + 1) * GH], np.int64)),
                              const("ax2", np.array([2], np.int64))])
        body = _body(op, p, d, R[d], B[d, GH:], H, lbr, act)
        scan_in = [state(5, d)] + ([state(6, d)] if op == "LSTM" else []) + [p_d]
        n_state = 2 if op == "LSTM" else 1
        scan_out = mk("Scan", scan_in, n_state + 1, body=body, num_scan_inputs=1,
                      scan_input_directions=[1 if reverse else 0], scan_output_directions=[1 if reverse else 0])
        scans.append(nodes[-1].name)
        hs.append(scan_out[0])
        if op == "LSTM":
            cs.append(scan_out[1])
        ys.append(scan_out[-1])

    ax0, ax1 = const("axis0", np.array([0], np.int64)), const("axis1", np.array([1], np.int64))

    def stack(parts: List[str], axes: str, out: str) -> None:
        ups = [mk("Unsqueeze", [t, axes])[0] for t in parts]
        nodes.append(helper.make_node("Concat", ups, [out], name=f"{p}/Concat_{out}", axis=int(axes == ax1)))

    if outs[0]:
        stack(ys, ax1, outs[0])  # [T, D, N, H]
    if outs[1]:
        stack(hs, ax0, outs[1])  # [D, N, H]
    if op == "LSTM" and outs[2]:
        stack(cs, ax0, outs[2])
    return nodes, tensors, scans


def _body(op: str, prefix: str, d: int, R: np.ndarray, rb: np.ndarray, H: int, lbr: int, act: Optional[str]) -> Any:
    """The Scan body for one direction: (h[, c], p_t) → (h'[, c'], y_t)."""
    from onnx import TensorProto, helper, numpy_helper

    q = f"{prefix}/body{d}"
    emit = _Emitter(q)
    nodes, inits, mk = emit.nodes, emit.inits, emit.node

    def const(suffix: str, arr: np.ndarray) -> str:
        return emit.const(suffix, arr, np.float32)

    def split(t: str, sizes: List[int]) -> List[str]:
        s = f"{q}/split{len(nodes)}"
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), s))
        return mk("Split", [t, s], len(sizes), axis=1)

    h_in, c_in, p_in = f"{q}/h", f"{q}/c", f"{q}/p"
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(h_in, f32, ["N", H])]
    if op == "LSTM":
        inputs.append(helper.make_tensor_value_info(c_in, f32, ["N", H]))
    inputs.append(helper.make_tensor_value_info(p_in, f32, ["N", R.shape[0]]))

    if op == "LSTM":
        (hr,) = mk("MatMul", [h_in, const("Rt", R.T)])
        (z,) = mk("Add", [p_in, hr])
        i, o, f, g = split(z, [H] * 4)
        (i,) = mk("Sigmoid", [i])
        (o,) = mk("Sigmoid", [o])
        (f,) = mk("Sigmoid", [f])
        (g,) = mk("Tanh", [g])
        (fc,) = mk("Mul", [f, c_in])
        (ig,) = mk("Mul", [i, g])
        (c_new,) = mk("Add", [fc, ig])
        (tc,) = mk("Tanh", [c_new])
        (h_new,) = mk("Mul", [o, tc])
        state_out = [h_new, c_new]
    elif op == "GRU":
        pz, pr, ph = split(p_in, [H, H, H])
        if lbr:
            (hr,) = mk("MatMul", [h_in, const("Rt", R.T)])
            (hr,) = mk("Add", [hr, const("rb", np.concatenate([np.zeros(2 * H, np.float32), rb[2 * H:]]))])
            hz, hrr, hh = split(hr, [H, H, H])
            (zt,) = mk("Sigmoid", [mk("Add", [pz, hz])[0]])
            (rt,) = mk("Sigmoid", [mk("Add", [pr, hrr])[0]])
            (n,) = mk("Tanh", [mk("Add", [ph, mk("Mul", [rt, hh])[0]])[0]])
        else:
            (hzr,) = mk("MatMul", [h_in, const("Rzr_t", R[: 2 * H].T)])
            hz, hrr = split(hzr, [H, H])
            (zt,) = mk("Sigmoid", [mk("Add", [pz, hz])[0]])
            (rt,) = mk("Sigmoid", [mk("Add", [pr, hrr])[0]])
            (rh,) = mk("Mul", [rt, h_in])
            (n,) = mk("Tanh", [mk("Add", [ph, mk("MatMul", [rh, const("Rh_t", R[2 * H:].T)])[0]])[0]])
        # h' = (1 - z) ⊙ n + z ⊙ h  =  n + z ⊙ (h - n)
        (diff,) = mk("Sub", [h_in, n])
        (h_new,) = mk("Add", [n, mk("Mul", [zt, diff])[0]])
        state_out = [h_new]
    else:
        (hr,) = mk("MatMul", [h_in, const("Rt", R.T)])
        (h_new,) = mk(RNN_ACTIVATIONS[act or "Tanh"], [mk("Add", [p_in, hr])[0]])
        state_out = [h_new]
    (y,) = mk("Identity", [h_new])
    outputs = [helper.make_tensor_value_info(t, f32, ["N", H]) for t in state_out + [y]]
    return helper.make_graph(nodes, f"{q}", inputs, outputs, inits)
