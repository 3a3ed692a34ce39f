"""The input-projection hoisting rewrite: same outputs as the original graph (onnxruntime
where installed, else the float64 numpy reference), structure, eligibility, build wiring."""

from __future__ import annotations

import numpy as np
import pytest

from rnndeploy.engine.rewrite import hoist_input_projection
from rnndeploy.precision import convert_to_fp16, run_model
from tests.onnx_models import feeds, make_rnn_model, save


def _outputs(model, f):
    """onnxruntime CPU (onnx.reference cannot run reverse Scans, at least up to onnx 1.19)."""
    import importlib.util

    if not importlib.util.find_spec("onnxruntime"):
        pytest.skip("the numeric comparison needs onnxruntime (structure was checked)")
    return run_model(model, f, engine="onnxruntime")


def _with_states_and_all_outputs(cell, direction, lbr=1, activation=None):
    """One recurrent node with initial_h (/c) inputs and every output exposed."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    D, H, n_in, G = (2 if direction == "bidirectional" else 1), 5, 3, {"LSTM": 4, "GRU": 3, "RNN": 1}[cell]
    inits = [numpy_helper.from_array(rng.uniform(-0.6, 0.6, s).astype(np.float32), n)
             for n, s in (("W", (D, G * H, n_in)), ("R", (D, G * H, H)), ("B", (D, 2 * G * H)))]
    attrs = {"hidden_size": H, "direction": direction}
    if cell == "GRU":
        attrs["linear_before_reset"] = lbr
    if activation:
        attrs["activations"] = [activation] * D
    ins = ["x", "W", "R", "B", "", "h0"] + (["c0"] if cell == "LSTM" else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if cell == "LSTM" else [])
    graph_in = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", n_in]),
                helper.make_tensor_value_info("h0", TensorProto.FLOAT, [D, "N", H])]
    if cell == "LSTM":
        graph_in.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [D, "N", H]))
    g = helper.make_graph([helper.make_node(cell, ins, outs, name="rnn", **attrs)], "g", graph_in,
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["T", D, "N", H] if o == "Y" else [D, "N", H])
                           for o in outs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    f = {"x": rng.uniform(-1, 1, (9, 3, n_in)).astype(np.float32), "h0": rng.uniform(-1, 1, (D, 3, H)).astype(np.float32)}
    if cell == "LSTM":
        f["c0"] = rng.uniform(-1, 1, (D, 3, H)).astype(np.float32)
    return m, f


@pytest.mark.parametrize("cell,direction,lbr,act", [
    ("LSTM", "forward", 1, None), ("LSTM", "bidirectional", 1, None), ("LSTM", "reverse", 1, None),
    ("GRU", "bidirectional", 1, None), ("GRU", "forward", 0, None), ("GRU", "reverse", 0, None),
    ("RNN", "bidirectional", 1, None), ("RNN", "forward", 1, "Relu"),
])
def test_rewrite_keeps_every_output(cell, direction, lbr, act):
    model, f = _with_states_and_all_outputs(cell, direction, lbr, act)
    hoisted, report = hoist_input_projection(model)
    assert list(report.rewritten) == ["rnn"] and report.skipped == {}
    ops = [n.op_type for n in hoisted.graph.node]
    assert cell not in ops and ops.count("Scan") == (2 if direction == "bidirectional" else 1) and ops.count("MatMul") == 1
    assert {i.name for i in hoisted.graph.initializer}.isdisjoint({"W", "R", "B"})  # originals dropped
    want, got = _outputs(model, f), _outputs(hoisted, f)
    for name in want:
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=2e-6, err_msg=name)


def test_rewrite_whole_models_and_ineligible_nodes():
    with_lengths = make_rnn_model("LSTM", with_lengths=True)
    same, report = hoist_input_projection(with_lengths)
    assert report.rewritten == {} and report.skipped == {"lstm0": "has sequence_lens"}
    assert [n.op_type for n in same.graph.node] == [n.op_type for n in with_lengths.graph.node]
    for cell, bi in (("LSTM", True), ("GRU", False)):
        model = make_rnn_model(cell, bidirectional=bi, layers=2, hidden=16)
        hoisted, report = hoist_input_projection(model)
        assert len(report.rewritten) == 2 and "hoisted the input projection of 2" in report.render()
        f = feeds(batch=2, seq=33)
        np.testing.assert_allclose(_outputs(hoisted, f)["y"], _outputs(model, f)["y"], rtol=1e-5, atol=2e-6)


def test_hoisted_graph_converts_to_fp16_with_scans_fp32():
    model = make_rnn_model("GRU", bidirectional=True, hidden=16)
    hoisted, _ = hoist_input_projection(model)
    converted, report = convert_to_fp16(hoisted, "fp16")
    assert {k.op for k in report.kept} == {"Scan"} and all(k.reason == "subgraph" for k in report.kept)
    import onnx

    onnx.checker.check_model(converted)
    f = feeds(batch=2, seq=17)
    ref = _outputs(model, f)["y"]
    got = _outputs(converted, f)["y"]
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 3e-3


def test_build_plan_wiring(tmp_path):
    from click.testing import CliRunner

    from rnndeploy.cli import cli
    from rnndeploy.engine.builder import BuildOptions, plan_build

    path = save(make_rnn_model("LSTM", bidirectional=True, layers=2), tmp_path / "m.onnx")
    plan = plan_build(path, BuildOptions(fp16=True, policy="fp16-keep-recurrence", hoist=True))
    scans = [s for ss in plan.rewrite["rewritten"].values() for s in ss]
    assert len(scans) == 4 and plan.kept_fp32 == {s: "policy" for s in scans}
    r = CliRunner().invoke(cli, ["build-engine", path, "--fp16", "--hoist-input-projection", "--dry-run"])
    assert r.exit_code == 0 and "rewrite    2 node(s) hoisted" in r.output


@pytest.mark.filterwarnings("ignore")
def test_rewrite_torch_exported_stack():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import io

    import onnx

    torch.manual_seed(0)
    net = torch.nn.GRU(6, 10, num_layers=2, batch_first=True, bidirectional=True).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(2, 5, 6),), buf, dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["y", "h"], dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}, "h": {1: "batch"}})
    model = onnx.load_from_string(buf.getvalue())
    hoisted, report = hoist_input_projection(model)
    assert len(report.rewritten) == 2
    x = np.random.default_rng(1).uniform(-1, 1, (3, 40, 6)).astype(np.float32)
    with torch.no_grad():
        y_ref, h_ref = (t.numpy() for t in net(torch.from_numpy(x)))
    out = run_model(hoisted, {"x": x}, engine="onnxruntime")
    np.testing.assert_allclose(out["y"], y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["h"], h_ref, rtol=1e-4, atol=1e-5)
