"""Single-node RNN / GRU / LSTM ONNX models built with onnx.helper, and their inputs.

Every variant the ONNX operator specification allows and deployment cares about:
forward / reverse / bidirectional, layout 0 (time-major) and 1 (batch-first),
``sequence_lens``, initial states, LSTM peepholes, GRU ``linear_before_reset`` 0/1,
``clip``. Weights and inputs are seeded, so a case is the same in every process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

INPUT, HIDDEN, BATCH, SEQ = 3, 5, 4, 6
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


@dataclass(frozen=True)
class RnnCase:
    """One recurrent node configuration."""

    op: str
    direction: str = "forward"
    layout: int = 0
    seq_lens: bool = False
    initial: bool = False
    peepholes: bool = False
    lbr: int = 0
    clip: Optional[float] = None
    attrs: Dict[str, object] = field(default_factory=dict)

    @property
    def id(self) -> str:
        parts = [self.op.lower(), {"forward": "fwd", "reverse": "rev", "bidirectional": "bi"}[self.direction],
                 f"layout{self.layout}"]
        if self.seq_lens:
            parts.append("lens")
        if self.initial:
            parts.append("init")
        if self.peepholes:
            parts.append("peep")
        if self.op == "GRU":
            parts.append(f"lbr{self.lbr}")
        if self.clip is not None:
            parts.append("clip")
        parts += [f"{k}{v}" for k, v in sorted(self.attrs.items())]
        return "-".join(parts)

    @property
    def dirs(self) -> int:
        return 2 if self.direction == "bidirectional" else 1


def build(case: RnnCase, seed: int = 0):
    """(onnx.ModelProto, feed) for ``case``: graph inputs X[, lens][, h0[, c0]]; outputs Y, Y_h[, Y_c]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    D, G, H = case.dirs, GATES[case.op], HIDDEN
    inits = [
        numpy_helper.from_array(rng.uniform(-0.6, 0.6, (D, G * H, INPUT)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.uniform(-0.6, 0.6, (D, G * H, H)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.uniform(-0.3, 0.3, (D, 2 * G * H)).astype(np.float32), "B"),
    ]
    f32, i32 = TensorProto.FLOAT, TensorProto.INT32
    x_dims = ["batch", "seq", INPUT] if case.layout else ["seq", "batch", INPUT]
    s_dims = ["batch", D, H] if case.layout else [D, "batch", H]
    graph_inputs = [helper.make_tensor_value_info("X", f32, x_dims)]
    node_inputs = ["X", "W", "R", "B", "", "", "", ""] if case.op == "LSTM" else ["X", "W", "R", "B", "", ""]
    feed: Dict[str, np.ndarray] = {"X": rng.uniform(-1, 1, (BATCH, SEQ, INPUT) if case.layout else (SEQ, BATCH, INPUT))
                                   .astype(np.float32)}
    if case.seq_lens:
        graph_inputs.append(helper.make_tensor_value_info("lens", i32, ["batch"]))
        node_inputs[4] = "lens"
        lens = rng.integers(1, SEQ + 1, BATCH).astype(np.int32)
        lens[0] = SEQ
        feed["lens"] = lens
    state_names = ["h0"] + (["c0"] if case.op == "LSTM" else [])
    if case.initial:
        for k, name in enumerate(state_names):
            graph_inputs.append(helper.make_tensor_value_info(name, f32, s_dims))
            node_inputs[5 + k] = name
            shape = (BATCH, D, H) if case.layout else (D, BATCH, H)
            feed[name] = rng.uniform(-1, 1, shape).astype(np.float32)
    if case.peepholes:
        inits.append(numpy_helper.from_array(rng.uniform(-0.8, 0.8, (D, 3 * H)).astype(np.float32), "P"))
        node_inputs[7] = "P"
    while node_inputs and node_inputs[-1] == "":
        node_inputs.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if case.op == "LSTM" else [])
    attrs: Dict[str, object] = {"hidden_size": H, "direction": case.direction}
    if case.layout:
        attrs["layout"] = 1
    if case.op == "GRU":
        attrs["linear_before_reset"] = case.lbr
    if case.clip is not None:
        attrs["clip"] = case.clip
    attrs.update(case.attrs)
    node = helper.make_node(case.op, node_inputs, outputs, name=f"{case.op.lower()}_node", **attrs)
    y_dims = ["batch", "seq", D, H] if case.layout else ["seq", D, "batch", H]
    graph_outputs = [helper.make_tensor_value_info("Y", f32, y_dims)] + [
        helper.make_tensor_value_info(o, f32, s_dims) for o in outputs[1:]]
    graph = helper.make_graph([node], case.id.replace("-", "_"), graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], producer_name="onnx-rnn-cases")
    model.ir_version = 8
    return model, feed


def cases() -> List[RnnCase]:
    """The Proof matrix: every op x direction x layout, plain and with every option on."""
    out: List[RnnCase] = []
    for op in ("RNN", "GRU", "LSTM"):
        for direction in ("forward", "reverse", "bidirectional"):
            for layout in (0, 1):
                out.append(RnnCase(op, direction, layout, lbr=1 if op == "GRU" else 0))
                out.append(RnnCase(op, direction, layout, seq_lens=True, initial=True, clip=0.9))
                if op == "LSTM":
                    out.append(RnnCase(op, direction, layout, initial=True, peepholes=True))
    return out


def ids(items: List[RnnCase]) -> Tuple[str, ...]:
    return tuple(c.id for c in items)
