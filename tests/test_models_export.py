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

pytestmark = pytest.mark.usefixtures("one_torch_thread")

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
    assert not ops.keys() & {"Loop", "Scan", "If"}, dict(ops)
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


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_classifier_exports(cell):
    m = build_model({"family": "classifier", "cell": cell, "hidden_size": 6, "embedding_dim": 5, "bidirectional": True,
                     "num_layers": 2, "attention": True, "dense_units": 4}, {"vocab_size": 20, "num_classes": 3}, seed=0)
    export_and_check(m)
    m = build_model({"family": "classifier", "cell": cell, "hidden_size": 6, "bidirectional": True, "merge_mode": "mul"},
                    {"vocab_size": 20, "num_classes": 3}, seed=0)
    export_and_check(m)


def ort_session(model, graph="model", with_state=False):
    model.eval()
    spec = model.graph_spec(graph, with_state)
    gm = model.graph_module(graph, with_state)
    ex = model.example_inputs(graph, with_state=with_state)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(gm, tuple(ex.values()), buf, dynamo=False, opset_version=17, input_names=list(gm.input_names),
                          output_names=list(gm.output_names),
                          dynamic_axes={t.name: t.dynamic_axes for t in spec.inputs + spec.outputs if t.dynamic_axes})
    return ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]), gm


@pytest.mark.parametrize("cell", ("lstm", "gru", "rnn_tanh"))
def test_charlm_exports_and_streams_in_onnxruntime(cell):
    m = build_model({"family": "charlm", "cell": cell, "hidden_size": 8, "num_layers": 2}, {"vocab_size": 11}, seed=0)
    export_and_check(m)
    export_and_check(m, with_state=True)
    sess, gm = ort_session(m, with_state=True)
    names = list(gm.input_names)
    tokens = np.random.default_rng(0).integers(0, 11, size=(2, 20)).astype(np.int64)
    state = [np.zeros((2, 2, 8), np.float32) for _ in names[1:]]
    pieces = []
    for a, b in ((0, 5), (5, 6), (6, 20)):
        logits, *state = sess.run(None, dict(zip(names, [tokens[:, a:b], *state])))
        pieces.append(logits)
    with torch.no_grad():
        whole = m(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_seq2seq_exports_and_onnxruntime_decodes_the_same_tokens(cell):
    from rnndeploy.decoding import beam_search, greedy_decode

    info = {"src_vocab_size": 13, "tgt_vocab_size": 10, "pad_id": 0, "bos_id": 2, "eos_id": 3}
    m = build_model({"family": "seq2seq", "cell": cell, "hidden_size": 8, "embedding_dim": 6, "num_layers": 2}, info, seed=1)
    with torch.no_grad():
        m.out.weight.mul_(4.0)  # clear-cut choices from an untrained model
    export_and_check(m, "encoder")
    export_and_check(m, "decoder_step")
    enc, enc_gm = ort_session(m, "encoder")
    dec, dec_gm = ort_session(m, "decoder_step")
    dec_names = list(dec_gm.input_names)

    def ort_step(tokens, states, memory, src_lengths):
        outs = dec.run(None, dict(zip(dec_names, [tokens, *states, memory, src_lengths])))
        return outs[0], tuple(outs[1:-1]), outs[-1]

    rng = np.random.default_rng(3)
    lengths = np.array([9, 4, 1, 6, 9], dtype=np.int64)
    src = rng.integers(4, 13, size=(5, 9)).astype(np.int64)
    src[np.arange(9)[None, :] >= lengths[:, None]] = 0
    memory, *states = enc.run(None, {"src_tokens": src, "src_lengths": lengths})
    common = dict(bos_id=2, eos_id=3, max_len=12)
    ort_greedy = greedy_decode(ort_step, states, memory, lengths, **common)
    ort_beam = beam_search(ort_step, states, memory, lengths, beam_size=3, **common)
    torch_greedy = m.decode(torch.from_numpy(src), torch.from_numpy(lengths), beam_size=1, max_len=12)
    torch_beam = m.decode(torch.from_numpy(src), torch.from_numpy(lengths), beam_size=3, max_len=12)
    assert [h.tokens for h in ort_greedy] == [r[0].tokens for r in torch_greedy]
    assert [r[0].tokens for r in ort_beam] == [r[0].tokens for r in torch_beam]
    np.testing.assert_allclose([r[0].score for r in ort_beam], [r[0].score for r in torch_beam], rtol=1e-4)
