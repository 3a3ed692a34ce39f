"""FP32 → FP16 conversion with the RNN-aware policies, checked structurally and numerically."""

from __future__ import annotations

import numpy as np
import pytest

from rnndeploy.errors import UsageError
from rnndeploy.precision import (
    FP16_MAX,
    compare_models,
    convert_to_fp16,
    fp32_nodes,
    is_fp16_model,
    out_of_range_tensors,
    precision_report_of,
    run_model,
)
from tests.onnx_models import engines_for, feeds, make_rnn_model, save

FLOAT, FLOAT16 = 1, 10
ENGINES = engines_for(bidirectional=False)


def _node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def _init_types(model):
    return {i.name: i.data_type for i in model.graph.initializer}


def _producer_type(model, tensor):
    """Element type of ``tensor`` after conversion, from the inferred value_info / outputs."""
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        if vi.name == tensor:
            return vi.type.tensor_type.elem_type
    raise KeyError(tensor)


@pytest.mark.parametrize("cell,bi,layers", [("LSTM", False, 1), ("LSTM", True, 2), ("GRU", True, 1), ("RNN", False, 2)])
@pytest.mark.parametrize("policy", ["fp16", "fp16-keep-recurrence"])
def test_policies_convert_and_stay_close(cell, bi, layers, policy):
    import onnx

    model = make_rnn_model(cell, bidirectional=bi, layers=layers)
    converted, report = convert_to_fp16(model, policy)
    onnx.checker.check_model(converted, full_check=True)
    # boundary stays FP32
    assert converted.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == FLOAT
    assert is_fp16_model(converted) and not is_fp16_model(model)
    types = _init_types(converted)
    assert types["W_head"] == FLOAT16  # the head is FP16 under both policies
    rec = [f"{cell.lower()}{k}" for k in range(layers)]
    if policy == "fp16":
        assert all(types[f"W{k}"] == FLOAT16 and types[f"R{k}"] == FLOAT16 for k in range(layers))
        assert report.kept_recurrent == ()
    else:
        assert all(types[f"W{k}"] == FLOAT and types[f"R{k}"] == FLOAT for k in range(layers))
        assert report.kept_recurrent == tuple(rec)
        assert all(_producer_type(converted, f"Y{k}") == FLOAT for k in range(layers))
    f = feeds(batch=3, seq=20)
    engines = engines_for(bi)
    if not engines:
        pytest.skip("numeric check needs onnxruntime, or an onnx whose reference evaluator has bidirectional RNNs")
    for engine in engines:
        for err in compare_models(model, converted, f, engine=engine):
            assert err.rel_l2 < 3e-3, (engine, err)
            assert err.rel_l2 > 0  # it really computed something in FP16


def test_keep_recurrence_keeps_the_input_path_fp32():
    """x -> Transpose -> LSTM must not round x to FP16 when the LSTM stays FP32."""
    model = make_rnn_model("LSTM")
    converted, report = convert_to_fp16(model, "fp16-keep-recurrence")
    lstm = _node(converted, "lstm0")
    assert lstm.input[0] == "x_t"  # fed directly by the (FP32) transpose, no cast in between
    assert _producer_type(converted, "x_t") == FLOAT
    assert report.neutral_fp32 >= 1
    # the LSTM output is moved in FP32 and cast once, right before the FP16 head
    assert _producer_type(converted, "h_bf") == FLOAT
    assert _node(converted, "head_matmul").input[0] == "h_bf_to_fp16"
    assert sum(n.op_type == "Cast" for n in converted.graph.node) == 2  # + the output cast back to FP32


def test_keep_io_types_false_retypes_the_boundary():
    import onnx

    model = make_rnn_model("GRU")
    converted, _ = convert_to_fp16(model, "fp16", keep_io_types=False)
    onnx.checker.check_model(converted)
    assert converted.graph.input[0].type.tensor_type.elem_type == FLOAT16
    assert converted.graph.output[0].type.tensor_type.elem_type == FLOAT16
    f = {"x": feeds()["x"].astype(np.float16)}
    out = run_model(converted, f, engine="reference")["y"]
    assert out.dtype == np.float16
    ref = run_model(model, feeds(), engine="reference")["y"]
    assert np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref) < 3e-3


def _with_big_scale(value: float):
    """The tiny LSTM with y = (head) * scale, scale an initializer = ``value``; and a tiny weight."""
    from onnx import helper, numpy_helper

    model = make_rnn_model("LSTM")
    g = model.graph
    g.output[0].name = "y"
    head_add = _node(model, "head_add")
    head_add.output[0] = "y_pre"
    g.initializer.extend([numpy_helper.from_array(np.array([value, 1.0, 2.0], np.float32), "scale")])
    g.node.extend([helper.make_node("Mul", ["y_pre", "scale"], ["y"], name="scale_mul")])
    # a weight with a value FP16 flushes to zero
    w = [i for i in g.initializer if i.name == "W_head"][0]
    arr = numpy_helper.to_array(w).copy()
    arr[0, 0] = 1e-9
    w.CopyFrom(numpy_helper.from_array(arr, "W_head"))
    return model


def test_out_of_range_initializer_is_reported_and_kept_fp32_not_clipped():
    import onnx
    from onnx import numpy_helper

    model = _with_big_scale(1e5)
    found = out_of_range_tensors(model)
    assert [(o.name, o.max_abs, o.consumers) for o in found] == [("scale", 1e5, ("scale_mul",))]
    kept = fp32_nodes(model, "fp16")
    assert kept["scale_mul"].reason == "range"
    converted, report = convert_to_fp16(model, "fp16")
    onnx.checker.check_model(converted)
    assert report.out_of_range[0].name == "scale" and report.out_of_range[0].max_abs > FP16_MAX
    scale = [i for i in converted.graph.initializer if i.name == "scale"][0]
    assert scale.data_type == FLOAT and numpy_helper.to_array(scale)[0] == np.float32(1e5)  # not clipped
    assert report.flushed_to_zero == {"W_head": 1}
    assert "beyond FP16 range" in report.render() and "scale" in report.render()
    for err in compare_models(model, converted, feeds(), engine="reference"):
        assert np.isfinite(err.max_abs) and err.rel_l2 < 3e-3


def test_onnxconverter_common_clips_what_we_keep():
    """Why precision.py does not use onnxconverter-common: it maps 2e4 to 1e4 by default."""
    pytest.importorskip("onnxconverter_common")
    from onnxconverter_common import float16

    model = _with_big_scale(2e4)
    theirs = float16.convert_float_to_float16(model, keep_io_types=True)
    ours, _ = convert_to_fp16(model, "fp16")
    f = feeds()
    ref = run_model(model, f, engine="reference")["y"]
    # column 0 is multiplied by the out-of-range constant
    ours_y = run_model(ours, f, engine="reference")["y"]
    theirs_y = run_model(theirs, f, engine="reference")["y"]
    np.testing.assert_allclose(ours_y[..., 0], ref[..., 0], rtol=3e-3, atol=1e-2 * np.abs(ref[..., 0]).max())
    assert np.abs(theirs_y[..., 0] - ref[..., 0]).max() > 0.3 * np.abs(ref[..., 0]).max()


def test_user_keep_nodes_and_ops():
    model = make_rnn_model("LSTM")
    converted, report = convert_to_fp16(model, "fp16", keep_nodes=["head_matmul"])
    assert any(k.name == "head_matmul" and k.reason == "user" for k in report.kept)
    assert _init_types(converted)["W_head"] == FLOAT
    assert _init_types(converted)["W0"] == FLOAT16


def test_subgraph_nodes_stay_fp32_and_outer_references_are_cast():
    import onnx
    from onnx import TensorProto, helper

    model = make_rnn_model("LSTM")
    g = model.graph
    head_add = _node(model, "head_add")
    head_add.output[0] = "y_pre"
    # If(cond) then y_pre*2 else y_pre — the branches read y_pre from the outer scope
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    then_g = helper.make_graph([helper.make_node("Mul", ["y_pre", "two_c"], ["t_out"]),
                                ], "then", [], [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)], [two])
    then_g.initializer[0].name = "two_c"
    else_g = helper.make_graph([helper.make_node("Identity", ["y_pre"], ["e_out"])], "else", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)])
    g.initializer.extend([helper.make_tensor("cond", TensorProto.BOOL, [], [True])])
    g.node.extend([helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g, name="branch")])
    onnx.checker.check_model(model)
    converted, report = convert_to_fp16(model, "fp16")
    assert any(k.name == "branch" and k.reason == "subgraph" for k in report.kept)
    onnx.checker.check_model(converted)
    branch = _node(converted, "branch")
    then_inputs = [i for n in branch.attribute[0].g.node for i in n.input] + [i for n in branch.attribute[1].g.node for i in n.input]
    assert "y_pre" not in then_inputs and any(i.endswith("_to_fp32") for i in then_inputs)
    for engine in ENGINES:
        for err in compare_models(model, converted, feeds(), engine=engine):
            assert err.rel_l2 < 3e-3, (engine, err)


def test_refusals():
    model = make_rnn_model("LSTM")
    with pytest.raises(UsageError, match="policy 'int8' is unknown"):
        convert_to_fp16(model, "int8")
    converted, _ = convert_to_fp16(model, "fp16")
    with pytest.raises(UsageError, match="already holds FP16"):
        convert_to_fp16(converted, "fp16")


def test_conversion_keeps_metadata_and_records_the_report(tmp_path):
    import onnx

    from rnndeploy.artefacts.onnx_file import load_onnx
    from rnndeploy.spec import read_onnx_metadata
    from tests.helpers import convert_onnx_file

    src = save(make_rnn_model("GRU", bidirectional=True), tmp_path / "m.onnx")
    report = convert_onnx_file(src, tmp_path / "m16.onnx", "fp16-keep-recurrence")
    out = onnx.load(str(tmp_path / "m16.onnx"))
    spec, graph, info = read_onnx_metadata(out)
    assert spec.name == "tiny-gru" and graph == "model" and info["exporter"] == "onnx.helper"
    stored = precision_report_of(out)
    assert stored == report.to_dict() and stored["policy"] == "fp16-keep-recurrence"
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    with pytest.raises(UsageError, match="does not exist"):
        load_onnx(tmp_path / "missing.onnx")


@pytest.mark.filterwarnings("ignore")
def test_torch_exported_rnns_convert_and_match():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    import io

    import onnx

    class Net(torch.nn.Module):
        def __init__(self, cell):
            super().__init__()
            self.rnn = getattr(torch.nn, cell)(6, 12, num_layers=2, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(24, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    x = np.random.default_rng(3).uniform(-1, 1, (3, 25, 6)).astype(np.float32)
    for cell in ("LSTM", "GRU", "RNN"):
        torch.manual_seed(0)
        net = Net(cell).eval()
        buf = io.BytesIO()
        torch.onnx.export(net, (torch.zeros(2, 5, 6),), buf, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}})
        model = onnx.load_from_string(buf.getvalue())
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        for policy in ("fp16", "fp16-keep-recurrence"):
            converted, report = convert_to_fp16(model, policy)
            onnx.checker.check_model(converted)
            y = run_model(converted, {"x": x}, engine="onnxruntime")["y"]
            rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
            assert rel < 3e-3, (cell, policy, rel)
            assert (len(report.kept_recurrent) == 2) == (policy == "fp16-keep-recurrence")
