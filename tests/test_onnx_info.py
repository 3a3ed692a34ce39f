"""describe_onnx / OnnxInfo.render on hand-built graphs (torch-free: runs under Python 3.9 too)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from rnndeploy.errors import UsageError
from rnndeploy.onnx_info import describe_onnx
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec, write_onnx_metadata

H, NIN = 3, 2


def _lstm_model(opset: int = 17, layout: int = 0, dims=("batch", "seq")) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((1, 4 * H, NIN)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.standard_normal((1, 4 * H, H)).astype(np.float32), "R")
    lens = helper.make_node("Cast", ["lengths"], ["lens32"], to=TensorProto.INT32)
    lstm = helper.make_node(
        "LSTM", ["xt", "W", "R", "", "lens32"], ["Y", "Yh"], hidden_size=H, layout=layout, name="lstm0"
    )
    tr = helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2])
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "ax")
    out = helper.make_node("Squeeze", ["Yh", "ax"], ["h"])
    graph = helper.make_graph(
        [tr, lens, lstm, out],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [dims[0], dims[1], NIN]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, [dims[0]]),
        ],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, [dims[0], H])],
        initializer=[w, r, axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")


def _spec() -> ModelSpec:
    g = GraphSpec(
        "model",
        inputs=(
            TensorSpec("x", "float32", ("batch", "seq", NIN), "features", time_axis=1),
            TensorSpec("lengths", "int64", ("batch",), "lengths"),
        ),
        outputs=(TensorSpec("h", "float32", ("batch", H), "prediction"),),
    )
    return ModelSpec("tiny-lstm", "regressor", {"model": g}, attrs={"cell": "lstm"})


def test_describe_native_lstm_file(tmp_path):
    m = _lstm_model()
    write_onnx_metadata(m, _spec(), "model", {"exporter": "torchscript", "opset": 17, "with_state": False})
    m.metadata_props.add(key="author", value="someone")
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    onnx.checker.check_model(str(path), full_check=True)

    info = describe_onnx(path)
    assert info.path == str(path)
    assert info.file_size == path.stat().st_size
    assert info.opset == 17 and info.opsets == {"ai.onnx": 17}
    assert [t.name for t in info.inputs] == ["x", "lengths"]
    assert info.inputs[0].dims == ("batch", "seq", NIN) and info.inputs[0].dtype == "float32"
    assert info.inputs[1].dtype == "int64"
    assert info.outputs[0].dims == ("batch", H)
    assert info.dynamic_dims() == ("batch", "seq")
    assert info.op_histogram == {"Cast": 1, "LSTM": 1, "Squeeze": 1, "Transpose": 1}
    assert info.n_parameters == 4 * H * NIN + 4 * H * H + 1
    assert info.recurrence == "native"
    (node,) = info.recurrent_nodes
    assert node.op == "LSTM" and node.hidden_size == H and node.uses_sequence_lens and not node.uses_initial_state
    assert info.model_spec == _spec()
    assert info.graph == "model" and info.export_info["exporter"] == "torchscript"
    assert info.other_metadata == {"author": "someone"}
    assert info.notes == ()
    json.dumps(info.to_dict())  # serialisable

    text = info.render()
    assert "tiny-lstm" in text and "[batch, seq, 2]" in text and "(features)" in text
    assert "LSTM(forward) x1" in text and "exporter=torchscript" in text
    assert len(text.splitlines()) < 25


def test_notes_for_deployment_caveats():
    info = describe_onnx(_lstm_model(opset=18, layout=1, dims=(None, None)))
    joined = " | ".join(info.notes)
    assert "opset 18" in joined and "TensorRT 8.6" in joined
    assert "layout=1" in joined
    assert "unknown size" in joined
    assert info.inputs[0].dims == (None, None, NIN)
    assert info.path is None and info.file_size == _lstm_model(opset=18, layout=1, dims=(None, None)).ByteSize()


def test_loop_body_ops_are_counted_and_recurrence_is_loop():
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "one"], ["s_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1]),
        ],
        initializer=[numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )
    loop = helper.make_node("Loop", ["n", "", "s0"], ["s"], body=body)
    graph = helper.make_graph(
        [loop],
        "g",
        [
            helper.make_tensor_value_info("n", TensorProto.INT64, []),
            helper.make_tensor_value_info("s0", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
    )
    info = describe_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert info.recurrence == "loop"
    assert info.op_histogram["Add"] == 1 and info.op_histogram["Loop"] == 1 and info.n_nodes == 3
    assert info.spec is None and "rnndeploy model" not in info.render()


def test_unrolled_and_cell_forms_come_from_export_metadata():
    m = _lstm_model()
    # a graph without recurrent ops whose exporter says it unrolled a cell
    del m.graph.node[:]
    m.graph.node.extend([helper.make_node("ReduceMean", ["x"], ["h"], axes=[1], keepdims=0)])
    del m.graph.initializer[:]
    write_onnx_metadata(m, _spec(), "model", {"recurrence": "unrolled"})
    info = describe_onnx(m)
    assert info.recurrence == "unrolled"
    assert any("exported sequence length" in n for n in info.notes)
    write_onnx_metadata(m, _spec(), "model", {})
    assert describe_onnx(m).recurrence == "none"


def test_bad_paths(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        describe_onnx(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01not a model at all" * 10)
    with pytest.raises(UsageError, match="not a readable ONNX model"):
        describe_onnx(junk)
