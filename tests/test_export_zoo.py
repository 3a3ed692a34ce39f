"""Exporting zoo models (built with build_model, no training): every family exports to
native recurrent nodes and validates; the streaming form runs chunk by chunk; padded
batches equal sequences run alone; dynamo pitfalls are caught; fallback is recorded."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rnndeploy.errors import ExportError, UsageError  # noqa: E402
from rnndeploy.export import ExportOptions, export_zoo_model  # noqa: E402
from rnndeploy.export import exporters as ex  # noqa: E402
from rnndeploy.inputs import generate_inputs  # noqa: E402
from rnndeploy.models import build_model  # noqa: E402
from rnndeploy.onnx_info import describe_onnx  # noqa: E402
from rnndeploy.spec import read_onnx_metadata  # noqa: E402
from tests.zoo import REG_INFO, ZOO, zoo_model  # noqa: E402


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_exports_native_and_validates(name, tmp_path):
    model = zoo_model(name)
    opts = ExportOptions(exporter="auto", **ZOO[name][2])
    result = export_zoo_model(model, str(tmp_path / f"{name}.onnx"), opts)
    family = ZOO[name][0]["family"]
    expected_graphs = ["encoder", "decoder_step"] if family == "seq2seq" else ["model"]
    assert [g.graph for g in result.graphs] == expected_graphs
    for g in result.graphs:
        assert g.exporter == "torchscript" and [a.exporter for a in g.attempts] == ["torchscript"]
        assert g.recurrence == "native", g.info.op_histogram
        assert g.validation is not None and g.validation.ok and len(g.validation.sizes) >= 4
        sizes = g.validation.sizes
        assert {"batch": 1} in [{k: v for k, v in s.items() if k == "batch"} for s in sizes]
        assert min(max(v for k, v in s.items() if k != "batch") for s in sizes) == 1  # a seq (or src_seq) of 1
        assert max(max(v for k, v in s.items() if k != "batch") for s in sizes) >= 256  # longer than training
        m = onnx.load(g.path)
        spec, graph, meta = read_onnx_metadata(m)
        assert graph == g.graph and spec.family == family and meta["family"] == family
        assert meta["opset"] == 17 and meta["with_state"] == opts.with_state and meta["validated"]
        assert meta["normalization"]["input"] == model.data_info.get("normalization")
        gs = spec.graph(graph)
        assert [t.name for t in gs.inputs] == [i.name for i in g.info.inputs]
        for t_spec, t_onnx in zip(gs.inputs + gs.outputs, g.info.inputs + g.info.outputs):
            assert t_onnx.dims == t_spec.dims  # every dynamic axis is a dim_param named by the spec
        if opts.with_state:
            assert any(t.role == "state" for t in gs.inputs) and any(t.role == "state" for t in gs.outputs)
    if family == "seq2seq":
        assert (tmp_path / f"{name}.encoder.onnx").is_file() and (tmp_path / f"{name}.decoder_step.onnx").is_file()
    assert "native ONNX recurrent nodes" in result.render()


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("name", ["reg-gru-seq-state", "charlm-lstm-state"])
def test_streaming_chunks_equal_whole_sequence(name, tmp_path):
    model = zoo_model(name, seed=1)
    out = tmp_path / "s.onnx"
    export_zoo_model(model, str(out), ExportOptions(with_state=True))
    spec, graph, _ = read_onnx_metadata(onnx.load(str(out)))
    g = spec.graph(graph)
    states_in = [t for t in g.inputs if t.role == "state"]
    states_out = [t.name for t in g.outputs if t.role == "state"]
    seq_in = [t for t in g.inputs if t.role != "state"][0]
    feeds = generate_inputs(g, {"batch": 3, "seq": 40}, seed=5)
    x = feeds[seq_in.name]
    zeros = {t.name: np.zeros(t.shape_for({"batch": 3}), np.float32) for t in states_in}
    sess = _session(out)
    names = [o.name for o in sess.get_outputs()]
    whole = dict(zip(names, sess.run(None, {seq_in.name: x, **zeros})))
    state = dict(zeros)
    pieces = []
    for a, b in ((0, 1), (1, 8), (8, 9), (9, 33), (33, 40)):  # uneven chunks, including single steps
        got = dict(zip(names, sess.run(None, {seq_in.name: x[:, a:b], **state})))
        pieces.append(got[g.outputs[0].name])
        state = {t.name: got[o] for t, o in zip(states_in, states_out)}
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole[g.outputs[0].name], atol=2e-6, rtol=1e-5)
    for o in states_out:
        np.testing.assert_allclose(got[o], whole[o], atol=2e-6, rtol=1e-5)
    # and the whole-sequence ONNX run is the torch model's
    with torch.no_grad():
        ref = model.graph_module("model", with_state=True)(
            torch.from_numpy(x), *[torch.from_numpy(zeros[t.name]) for t in states_in]
        )
    np.testing.assert_allclose(whole[g.outputs[0].name], ref[0].numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["reg-lstm-bi-mul-var", "reg-gru-bi-ave-seq-var", "cls-lstm-bi-att"])
def test_padded_batch_equals_each_sequence_alone(name, tmp_path):
    model = zoo_model(name, seed=2)
    out = tmp_path / "v.onnx"
    export_zoo_model(model, str(out), ExportOptions())
    info = describe_onnx(out)
    assert all(r.uses_sequence_lens for r in info.recurrent_nodes)  # native sequence_lens, no unrolled masking
    spec, graph, _ = read_onnx_metadata(onnx.load(str(out)))
    g = spec.graph(graph)
    lengths = np.array([11, 4, 1, 7], dtype=np.int64)
    feeds = generate_inputs(g, {"batch": 4, "seq": 11}, seed=3)
    feeds["lengths"] = lengths
    seq_name = g.inputs[0].name
    if feeds[seq_name].dtype == np.int64:  # tokens: pad id past each length
        feeds[seq_name][np.arange(11)[None, :] >= lengths[:, None]] = 0
    else:  # features: garbage past each length must not matter
        feeds[seq_name][np.arange(11)[None, :] >= lengths[:, None]] = 123.0
    sess = _session(out)
    batched = sess.run(None, feeds)
    for i, n in enumerate(lengths):
        alone = sess.run(None, {seq_name: feeds[seq_name][i : i + 1, :n], "lengths": lengths[i : i + 1]})
        for k, (b, a) in enumerate(zip(batched, alone)):
            t = g.outputs[k]
            if t.time_axis is not None:  # a per-step output: compare the valid steps, padding must be 0
                np.testing.assert_allclose(b[i, :n], a[0], atol=1e-5, rtol=1e-5)
                assert np.all(b[i, n:] == 0)
            else:
                np.testing.assert_allclose(b[i], a[0], atol=1e-5, rtol=1e-5)


def test_with_state_refused_for_bidirectional(tmp_path):
    with pytest.raises(UsageError, match="streaming"):
        export_zoo_model(zoo_model("reg-rnn-relu-bi-sum"), str(tmp_path / "b.onnx"), ExportOptions(with_state=True))
    assert list(tmp_path.iterdir()) == []


def test_opset_and_summary_recorded(tmp_path):
    result = export_zoo_model(
        zoo_model("cls-gru-dense"), str(tmp_path / "c.onnx"), ExportOptions(opset=15, exporter="torchscript")
    )
    g = result.graphs[0]
    assert g.info.opset == 15 and g.info.export_info["opset"] == 15
    text = result.render()
    for piece in ("torchscript exporter", "opset 15", "validation [torchscript]", "batch=1 seq=1", "logits"):
        assert piece in text


def test_validation_failure_writes_nothing(tmp_path, monkeypatch):
    """A graph that ran but whose numbers differ (here: the weights scaled after export)
    fails with every output reported, and leaves no file."""
    model = zoo_model("reg-lstm-2l")
    real = ex.export_torchscript

    def tampered(module, graph, example, opset):
        m = real(module, graph, example, opset)
        for init in m.graph.initializer:
            arr = onnx.numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.size > 1:
                init.CopyFrom(onnx.numpy_helper.from_array(arr * 1.5, init.name))
        return m

    monkeypatch.setattr(ex, "export_torchscript", tampered)
    from rnndeploy.export import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        export_zoo_model(model, str(tmp_path / "t.onnx"), ExportOptions(exporter="torchscript"))
    assert "y fails at 4 of 4 shapes" in str(err.value)
    (report,) = err.value.reports
    assert not report.ok and len(report.failures) == 4
    assert all(c.atol_needed > c.tolerance.atol for c in report.failures)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_dynamo_frozen_sequence_axis_is_caught(tmp_path):
    """torch 2.13's dynamo exporter unrolls a relu SimpleRNN at the example length; the
    I/O dim check refuses it instead of writing a graph that only runs at seq 7."""
    model = build_model({"family": "regressor", "name": "relu", "cell": "rnn_relu", "hidden_size": 8}, REG_INFO, seed=0)
    with pytest.raises(ExportError, match=r"froze axis 1 \(seq\) of input 'x'"):
        export_zoo_model(model, str(tmp_path / "r.onnx"), ExportOptions(exporter="dynamo"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_auto_falls_back_to_dynamo_and_records_it(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ExportError("the TorchScript exporter failed: simulated")

    monkeypatch.setattr(ex, "export_torchscript", broken)
    model = zoo_model("charlm-gru")  # no packed lengths: dynamo cannot export those (FINDINGS §2)
    result = export_zoo_model(model, str(tmp_path / "f.onnx"), ExportOptions(exporter="auto"))
    g = result.graphs[0]
    assert g.exporter == "dynamo" and g.validation.ok and g.recurrence == "native"
    assert [(a.exporter, a.ok) for a in g.attempts] == [("torchscript", False), ("dynamo", True)]
    meta = g.info.export_info
    assert meta["exporter"] == "dynamo" and meta["exporter_attempts"][0]["exporter"] == "torchscript"
    assert (
        "fallback: torchscript was tried first and failed: the TorchScript exporter failed: simulated"
        in result.render()
    )
    assert any("down-converted it to 17" in n for n in g.notes)
    # an explicitly named exporter gets no fallback
    with pytest.raises(ExportError, match="simulated"):
        export_zoo_model(model, str(tmp_path / "g.onnx"), ExportOptions(exporter="torchscript"))
