"""Smoke: every zoo family exports with the TorchScript exporter (opset 17, dynamic axes from
the spec), keeps native recurrent nodes, and runs in onnxruntime at other batch/seq sizes.

Only a smoke test of the models' exportability; the real exporter and its validation are
rnndeploy.export's.
"""

from __future__ import annotations

import collections
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from rnndeploy.models import build_model  # noqa: E402

RECURRENT_OPS = {"LSTM", "GRU", "RNN"}


def export_and_check(model, graph="model", with_state=False, export_at=(2, 7), run_at=((1, 1), (4, 13), (3, 30))):
    """Export one graph; return its op histogram after checking it against torch at run_at."""
    model.eval()
    spec = model.graph_spec(graph, with_state)
    gm = model.graph_module(graph, with_state)
    ex = model.example_inputs(graph, batch=export_at[0], seq=export_at[1], with_state=with_state)
    dynamic_axes = {t.name: t.dynamic_axes for t in spec.inputs + spec.outputs if t.dynamic_axes}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            gm, tuple(ex.values()), buf, dynamo=False, opset_version=17,
            input_names=list(gm.input_names), output_names=list(gm.output_names), dynamic_axes=dynamic_axes,
        )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto, full_check=True)
    # Every dynamic axis stays a named dim in the file.
    for vi in list(proto.graph.input) + list(proto.graph.output):
        t = next(t for t in spec.inputs + spec.outputs if t.name == vi.name)
        for axis, name in t.dynamic_axes.items():
            assert vi.type.tensor_type.shape.dim[axis].dim_param, (vi.name, axis, name)
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    assert ops.keys() & RECURRENT_OPS, f"no native recurrent node: {dict(ops)}"
    assert not ops.keys() & {"Loop", "Scan"}, dict(ops)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(gm.input_names)
    for batch, seq in run_at:
        ex = model.example_inputs(graph, batch=batch, seq=seq, with_state=with_state, seed=batch * 100 + seq)
        got = sess.run(None, {k: v.numpy() for k, v in ex.items()})
        with torch.no_grad():
            want = gm(*ex.values())
        for name, g, w in zip(gm.output_names, got, want):
            assert g.shape == tuple(w.shape), (name, batch, seq)
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5, err_msg=f"{name} at batch {batch} seq {seq}")
    return ops


REGRESSORS = [
    {"cell": "lstm", "num_layers": 2},
    {"cell": "gru", "bidirectional": True, "output": "sequence"},
    {"cell": "rnn_relu", "num_layers": 2, "bidirectional": True, "merge_mode": "ave", "variable_length": True},
    {"cell": "rnn_tanh", "variable_length": True, "output": "sequence"},
    {"cell": "lstm", "bidirectional": True, "num_layers": 2, "variable_length": True},
]


@pytest.mark.parametrize("cfg", REGRESSORS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_regressor_exports(cfg):
    m = build_model({"family": "regressor", "hidden_size": 6, **cfg}, {"input_size": 3, "output_size": 2}, seed=0)
    ops = export_and_check(m)
    if cfg.get("variable_length"):
        # packed sequences become the native node's sequence_lens input
        assert ops.keys() & RECURRENT_OPS
    if not cfg.get("bidirectional"):
        export_and_check(m, with_state=True)
