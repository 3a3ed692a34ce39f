"""Small seeded ONNX recurrent models for the precision / engine / runner tests, built with
onnx.helper (no torch), and a float64 numpy reference for them (checked in
tests/test_engine_models.py).

Graph shape (what torch's TorchScript exporter writes for a batch_first RNN + Linear head):
    x[batch, seq, I] → Transpose → {LSTM|GRU|RNN} x layers → Transpose/Reshape
    → Transpose → MatMul + Add → y[batch, seq, O]
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec, write_onnx_metadata

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def make_rnn_model(cell: str = "LSTM", bidirectional: bool = False, layers: int = 1, input_size: int = 4,
                   hidden: int = 8, outputs: int = 3, seed: int = 0, metadata: bool = True,
                   engine: Optional[Dict[str, object]] = None, with_lengths: bool = False):
    """An onnx.ModelProto (opset 17, IR 8) with named dynamic axes batch/seq."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    dirs = 2 if bidirectional else 1
    g = GATES[cell]
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=arr.dtype), name))
        return name

    nodes.append(helper.make_node("Transpose", ["x"], ["x_t"], perm=[1, 0, 2], name="in_transpose"))
    cur, cur_size = "x_t", input_size
    seq_lens = ""
    if with_lengths:
        nodes.append(helper.make_node("Cast", ["lengths"], ["lengths_i32"], to=TensorProto.INT32, name="lengths_cast"))
        seq_lens = "lengths_i32"
    scale = 1.0 / np.sqrt(hidden)
    for k in range(layers):
        W = init(f"W{k}", rng.uniform(-scale, scale, (dirs, g * hidden, cur_size)).astype(np.float32))
        R = init(f"R{k}", rng.uniform(-scale, scale, (dirs, g * hidden, hidden)).astype(np.float32))
        B = init(f"B{k}", rng.uniform(-scale, scale, (dirs, 2 * g * hidden)).astype(np.float32))
        attrs = {"hidden_size": hidden, "direction": "bidirectional" if bidirectional else "forward"}
        if cell == "GRU":
            attrs["linear_before_reset"] = 1
        nodes.append(helper.make_node(cell, [cur, W, R, B, seq_lens], [f"Y{k}", f"Yh{k}"], name=f"{cell.lower()}{k}", **attrs))
        # Y: [seq, dirs, batch, H] -> [seq, batch, dirs*H]
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3], name=f"y_transpose{k}"))
        shape = init(f"shape{k}", np.array([0, 0, dirs * hidden], dtype=np.int64))
        nodes.append(helper.make_node("Reshape", [f"Yt{k}", shape], [f"Yr{k}"], name=f"y_reshape{k}"))
        cur, cur_size = f"Yr{k}", dirs * hidden
    nodes.append(helper.make_node("Transpose", [cur], ["h_bf"], perm=[1, 0, 2], name="out_transpose"))
    Wh = init("W_head", rng.uniform(-0.5, 0.5, (cur_size, outputs)).astype(np.float32))
    bh = init("b_head", rng.uniform(-0.1, 0.1, (outputs,)).astype(np.float32))
    nodes.append(helper.make_node("MatMul", ["h_bf", Wh], ["head_mm"], name="head_matmul"))
    nodes.append(helper.make_node("Add", ["head_mm", bh], ["y"], name="head_add"))
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", input_size])]
    if with_lengths:
        graph_inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]))
    graph = helper.make_graph(nodes, f"tiny_{cell.lower()}", graph_inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", outputs])], inits)
    model = helper.make_model(graph, producer_name="rnndeploy-tests", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        write_onnx_metadata(model, make_spec(cell, input_size, outputs, with_lengths), "model",
                            {"exporter": "onnx.helper", **({"engine": engine} if engine else {})})
    return model


def make_spec(cell: str = "LSTM", input_size: int = 4, outputs: int = 3, with_lengths: bool = False) -> ModelSpec:
    inputs = [TensorSpec("x", "float32", ("batch", "seq", input_size), "features", time_axis=1, low=-1.0, high=1.0)]
    if with_lengths:
        inputs.append(TensorSpec("lengths", "int64", ("batch",), "lengths"))
    outs = [TensorSpec("y", "float32", ("batch", "seq", outputs), "prediction", time_axis=1)]
    return ModelSpec(name=f"tiny-{cell.lower()}", family="regressor", graphs={"model": GraphSpec("model", tuple(inputs), tuple(outs))},
                     attrs={"cell": cell.lower()})


def feeds(batch: int = 2, seq: int = 9, input_size: int = 4, seed: int = 1, lengths: bool = False):
    rng = np.random.default_rng(seed)
    out = {"x": rng.uniform(-1, 1, (batch, seq, input_size)).astype(np.float32)}
    if lengths:
        out["lengths"] = rng.integers(1, seq + 1, (batch,)).astype(np.int64)
    return out


# -- a float64 numpy reference for ONNX LSTM / GRU / RNN (both directions, sequence_lens) ----------------
def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def rnn_reference(op: str, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, direction="forward",
                  linear_before_reset=0):
    """ONNX LSTM/GRU/RNN semantics in float64 (default activations, layout 0, no peepholes/clip).

    X [seq, batch, I]; returns (Y [seq, dirs, batch, H], Y_h [dirs, batch, H], Y_c or None). Steps at or
    beyond a row's sequence length leave its state unchanged and write zeros to Y (onnxruntime's
    semantics; onnx.reference ignores sequence_lens)."""
    X, W, R = (np.asarray(a, np.float64) for a in (X, W, R))
    T, N = X.shape[0], X.shape[1]
    dirs, G, H = W.shape[0], W.shape[1] // R.shape[2], R.shape[2]
    B = np.zeros((dirs, 2 * G * H)) if B is None else np.asarray(B, np.float64)
    lens = np.full(N, T) if sequence_lens is None else np.asarray(sequence_lens).astype(np.int64)
    h0 = np.zeros((dirs, N, H)) if initial_h is None else np.asarray(initial_h, np.float64)
    c0 = np.zeros((dirs, N, H)) if initial_c is None else np.asarray(initial_c, np.float64)
    Y = np.zeros((T, dirs, N, H))
    Yh, Yc = np.zeros((dirs, N, H)), np.zeros((dirs, N, H))
    for d in range(dirs):
        reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
        w, r, wb, rb = W[d], R[d], B[d, : G * H], B[d, G * H:]
        h, c = h0[d].copy(), c0[d].copy()
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            active = (t < lens)[:, None]
            x = X[t]
            if op == "LSTM":
                z = x @ w.T + h @ r.T + wb + rb
                i, o, f, g = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H]), _sigmoid(z[:, 2 * H:3 * H]), np.tanh(z[:, 3 * H:])
                c_new = f * c + i * g
                h_new = o * np.tanh(c_new)
                c = np.where(active, c_new, c)
            elif op == "GRU":
                xz, xr, xh = np.split(x @ w.T + wb, 3, axis=1)
                hz, hr, hh = np.split(h @ r.T, 3, axis=1)
                rbz, rbr, rbh = np.split(rb, 3)
                zt, rt = _sigmoid(xz + hz + rbz), _sigmoid(xr + hr + rbr)
                if linear_before_reset:
                    ht = np.tanh(xh + rt * (hh + rbh))
                else:
                    ht = np.tanh(xh + (rt * h) @ r[2 * H:].T + rbh)
                h_new = (1 - zt) * ht + zt * h
            else:
                h_new = np.tanh(x @ w.T + h @ r.T + wb + rb)
            h = np.where(active, h_new, h)
            Y[t, d] = np.where(active, h, 0.0)
        Yh[d], Yc[d] = h, c
    return Y, Yh, (Yc if op == "LSTM" else None)


def numpy_reference(model, feed):
    """Outputs of ``model`` in float64: onnx.reference for every op, with LSTM/GRU/RNN replaced
    by ``rnn_reference`` (bidirectional and sequence_lens included, whatever the onnx version)."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    def make(op_name):
        class Op(OpRun):
            op_domain = ""

            def _run(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, activation_alpha=None,
                     activation_beta=None, activations=None, clip=None, direction=None, hidden_size=None,
                     input_forget=None, layout=None, linear_before_reset=None):
                Y, Yh, Yc = rnn_reference(op_name, X, W, R, B, sequence_lens, initial_h, initial_c,
                                          (direction or b"forward").decode() if isinstance(direction, bytes) else (direction or "forward"),
                                          linear_before_reset or 0)
                outs = (Y, Yh) if Yc is None else (Y, Yh, Yc)
                return tuple(o.astype(X.dtype) for o in outs)

        Op.__name__ = op_name
        return Op

    f64 = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in feed.items()}
    names = [o.name for o in model.graph.output]
    ref = ReferenceEvaluator(_as_float64(model), new_ops=[make("LSTM"), make("GRU"), make("RNN")])
    return dict(zip(names, ref.run(names, f64)))


def _as_float64(model):
    """A float64 copy of an FP32 model (initializers, declared types, Cast targets)."""
    from onnx import numpy_helper

    m = type(model)()
    m.CopyFrom(model)
    for init in m.graph.initializer:
        if init.data_type == 1:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if vi.type.tensor_type.elem_type == 1:
            vi.type.tensor_type.elem_type = 11
    for n in m.graph.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == 1:
                a.i = 11
            if n.op_type == "Constant" and a.name == "value" and a.t.data_type == 1:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64)))
    del m.metadata_props[:]
    return m


def reference_supports_bidirectional() -> bool:
    """onnx.reference gained bidirectional RNNs after onnx 1.19 (the GPU kit's version)."""
    from rnndeploy.precision import run_model

    try:
        run_model(make_rnn_model("RNN", bidirectional=True, metadata=False), feeds(seq=2), engine="reference")
    except NotImplementedError:
        return False
    return True


def engines_for(bidirectional: bool):
    """The numeric engines that can run such a model here (ORT CPU and/or onnx.reference)."""
    import importlib.util

    out = ["onnxruntime"] if importlib.util.find_spec("onnxruntime") else []
    if not bidirectional or reference_supports_bidirectional():
        out.append("reference")
    return out


def save(model, path) -> str:
    import onnx

    onnx.save(model, str(path))
    return str(path)
