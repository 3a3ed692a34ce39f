"""`rnndeploy export --model file.py:factory`: users' own modules, the --input/--output
grammar, validation, metadata, simplification and the bad-input cases."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.errors import UsageError  # noqa: E402
from rnndeploy.export.user_module import load_user_module, parse_input, parse_output, user_spec  # noqa: E402
from rnndeploy.onnx_info import describe_onnx  # noqa: E402
from rnndeploy.spec import read_onnx_metadata  # noqa: E402
from tests.helpers import REPO, run_cli  # noqa: E402

MODELS = REPO / "tests" / "data" / "user_models"


def invoke(*args: str):
    return CliRunner().invoke(cli, ["export", *args])


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _no_onnx_left(directory: Path) -> None:
    assert [p.name for p in directory.iterdir()] == [], "a failed export left files behind"


# -- the --input / --output grammar ---------------------------------------------------------
def test_parse_input_forms():
    t = parse_input("x:float32[batch,seq,8]")
    assert (t.name, t.dtype, t.dims, t.role, t.time_axis) == ("x", "float32", ("batch", "seq", 8), "features", 1)
    t = parse_input("ids:int64[batch,seq]:tokens:0..5000")
    assert (t.dtype, t.role, t.low, t.high, t.time_axis) == ("int64", "tokens", 0.0, 5000.0, 1)
    assert parse_input("x[batch,4]").dtype == "float32"
    assert parse_input("lengths:int64[batch]").role == "lengths"
    assert parse_input("tok:long[batch]").role == "token"
    assert parse_input("h0:f32[2,batch,16]:state").role == "state"
    assert parse_input("x:float[batch,seq,3]:-2.5..2.5").low == -2.5
    assert parse_input("s:float32[]").dims == ()


@pytest.mark.parametrize(
    "text, match",
    [
        ("x[batch,seq", "malformed"),
        ("x", "malformed"),
        ("x:float64[batch]", "dtype 'float64'"),
        ("x[batch,-3]", "dimension '-3'"),
        ("x[batch,seq]:weird", "role 'weird'"),
        ("x[batch]:3..1", "empty"),
        ("1x[batch]", "malformed"),
    ],
)
def test_parse_input_errors(text, match):
    with pytest.raises(UsageError, match=match):
        parse_input(text)


def test_parse_output_forms():
    assert parse_output("y") == ("y", None, None)
    assert parse_output("logits:logits") == ("logits", None, "logits")
    name, t, role = parse_output("y:float32[batch,1]:prediction")
    assert name == "y" and t.dims == ("batch", 1) and role == "prediction"
    with pytest.raises(UsageError, match="role"):
        parse_output("y:nonsense")


def test_user_spec_finds_output_dims():
    m = load_user_module(f"{MODELS}/gru_state.py:build")
    spec = user_spec(m, [parse_input("x[batch,seq,3]"), parse_input("h0[1,batch,8]:state")], ["y", "hn:state"])
    g = spec.graph("model")
    assert spec.family == "custom"
    assert [(t.name, t.dims, t.role) for t in g.outputs] == [
        ("y", ("batch", "seq", 8), "prediction"),
        ("hn", (1, "batch", 8), "state"),
    ]
    assert g.outputs[0].time_axis == 1
    with pytest.raises(UsageError, match="has rank 3, the spec says 2"):
        user_spec(m, [parse_input("x[batch,seq,3]"), parse_input("h0[1,batch,8]")], ["y:float32[batch,8]", "hn"])


# -- exports that must work -------------------------------------------------------------------
USER_CASES = {
    "two_inputs": (["x:float32[batch,seq,5]", "context:float32[batch,3]"], ["logits:logits"], "GRU"),
    "layernorm_stack": (["x[batch,seq,4]"], ["y"], "LSTM"),
    "gru_state": (["x[batch,seq,3]", "h0[1,batch,8]:state"], ["y", "hn:state"], "GRU"),
    "bidir_lengths": (["tokens:int64[batch,seq]", "lengths:int64[batch]"], ["logits:logits"], "LSTM"),
}


@pytest.mark.parametrize("case", sorted(USER_CASES))
def test_user_module_exports_and_matches_torch(case, tmp_path):
    inputs, outputs, op = USER_CASES[case]
    out = tmp_path / f"{case}.onnx"
    args = ["--model", f"{MODELS}/{case}.py:build", "-o", str(out)]
    for i in inputs:
        args += ["--input", i]
    for o in outputs:
        args += ["--output", o]
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert "validation [torchscript]" in res.output and "FAIL" not in res.output

    info = describe_onnx(out)
    assert info.recurrence == "native" and info.op_histogram.get(op, 0) >= 1
    assert info.opset == 17
    spec, graph, meta = read_onnx_metadata(__import__("onnx").load(str(out)))
    assert graph == "model" and spec.family == "custom"
    assert meta["exporter"] == "torchscript" and meta["opset"] == 17 and meta["validated"] is True
    assert meta["source"].endswith(f"{case}.py:build") and meta["torch_version"] == torch.__version__
    assert len(meta["validation"]["sizes"]) >= 4
    g = spec.graph("model")
    for t_onnx, t_spec in zip(info.inputs + info.outputs, g.inputs + g.outputs):
        assert t_onnx.name == t_spec.name and t_onnx.dims == t_spec.dims  # dynamic axes are named dims

    # independent of the exporter's own validation: a fresh shape, ORT vs the module
    from rnndeploy.inputs import generate_inputs

    module = load_user_module(f"{MODELS}/{case}.py:build")
    feeds = generate_inputs(g, {"batch": 6, "seq": 33}, seed=7)
    got = _session(out).run(None, feeds)
    with torch.no_grad():
        ref = module(*[torch.from_numpy(feeds[t.name]) for t in g.inputs])
    from rnndeploy.export.user_module import flatten_outputs

    for a, r in zip(got, flatten_outputs(ref)):
        np.testing.assert_allclose(a, r.numpy(), atol=1e-5, rtol=1e-4)


def test_padded_batch_equals_each_sequence_alone(tmp_path):
    out = tmp_path / "bi.onnx"
    inputs, outputs, _ = USER_CASES["bidir_lengths"]
    res = invoke(
        "--model", f"{MODELS}/bidir_lengths.py:build", "--input", inputs[0], "--input", inputs[1], "-o", str(out)
    )
    assert res.exit_code == 0, res.output
    assert describe_onnx(out).recurrent_nodes[0].uses_sequence_lens  # native sequence_lens, not a mask
    sess = _session(out)
    rng = np.random.default_rng(0)
    lengths = np.array([9, 4, 1, 6], dtype=np.int64)
    tokens = rng.integers(1, 50, size=(4, 9)).astype(np.int64)
    tokens[np.arange(9)[None, :] >= lengths[:, None]] = 0  # padding
    (batched,) = sess.run(None, {"tokens": tokens, "lengths": lengths})
    for i, n in enumerate(lengths):
        (alone,) = sess.run(None, {"tokens": tokens[i : i + 1, :n], "lengths": lengths[i : i + 1]})
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-5, rtol=1e-5)


def test_simplify_kept_and_recorded(tmp_path):
    out = tmp_path / "ln.onnx"
    res = invoke(
        "--model", f"{MODELS}/layernorm_stack.py:build", "--input", "x[batch,seq,4]", "--simplify", "-o", str(out)
    )
    assert res.exit_code == 0, res.output
    assert "simplified with onnxslim" in res.output and "onnxslim" in res.output
    meta = describe_onnx(out).export_info
    assert meta["simplified"] is True and meta["validated"] is True


def test_no_validate_is_explicit_and_recorded(tmp_path):
    out = tmp_path / "g.onnx"
    res = invoke(
        "--model", f"{MODELS}/layernorm_stack.py:build", "--input", "x[batch,seq,4]", "--no-validate", "-o", str(out)
    )
    assert res.exit_code == 0, res.output
    assert "NOT validated" in res.output
    meta = describe_onnx(out).export_info
    assert meta["validated"] is False and "validation" not in meta


def test_output_directory_and_json(tmp_path):
    res = invoke(
        "--model", f"{MODELS}/layernorm_stack.py:build", "--input", "x[batch,seq,4]", "-o", str(tmp_path), "--json"
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["graphs"][0]["path"] == str(tmp_path / "model.onnx") and (tmp_path / "model.onnx").is_file()
    assert doc["graphs"][0]["validation"]["ok"] is True


def test_opset_selectable(tmp_path):
    out = tmp_path / "o18.onnx"
    res = invoke(
        "--model", f"{MODELS}/layernorm_stack.py:build", "--input", "x[batch,seq,4]", "--opset", "18", "-o", str(out)
    )
    assert res.exit_code == 0, res.output
    info = describe_onnx(out)
    assert info.opset == 18 and any("TensorRT 8.6" in n for n in info.notes)


# -- bad input: one line, non-zero exit, nothing written ------------------------------------------
NEGATIVE = [
    (
        ["--model", "{m}/bad.py:python_loop", "--input", "x[batch,seq,3]", "--exporter", "torchscript"],
        1,
        "depends on Python values",
    ),
    (["--model", "{m}/bad.py:proj_size", "--input", "x[batch,seq,3]"], 1, "proj_size=4"),
    (
        ["--model", "{m}/bad.py:raises", "--input", "x[batch,seq,3]"],
        2,
        "raised RuntimeError: weights file model.pt not found",
    ),
    (["--model", "{m}/bad.py:not_a_module", "--input", "x[batch,seq,3]"], 2, "not a torch.nn.Module"),
    (["--model", "{m}/bad.py:nope", "--input", "x[batch,seq,3]"], 2, "no callable 'nope'"),
    (["--model", "{m}/bad.py", "--input", "x[batch,seq,3]"], 2, "names no factory"),
    (["--model", "{m}/missing.py:build", "--input", "x[batch,seq,3]"], 2, "does not exist"),
    (["--model", "{m}/gru_state.py:build", "--input", "x[batch,seq"], 2, "malformed"),
    (["--model", "{m}/gru_state.py:build", "--input", "x[batch,seq,3]"], 2, "forward raised TypeError"),
    (
        ["--model", "{m}/gru_state.py:build", "--input", "x[batch,seq,3]", "--input", "h0[1,batch,8]", "--output", "y"],
        2,
        "2 output(s)",
    ),
    (["--model", "{m}/gru_state.py:build"], 2, "at least one --input"),
    (
        ["--model", "{m}/squeezer.py:build", "--input", "x[batch,seq,3]", "--exporter", "torchscript"],
        1,
        "torch itself failed",
    ),
    (["--input", "x[batch,seq,3]"], 2, "either a CHECKPOINT"),
]


@pytest.mark.parametrize("args, code, message", NEGATIVE, ids=[n[2][:24] for n in NEGATIVE])
def test_bad_user_input(args, code, message, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = invoke(*[a.format(m=MODELS) for a in args], "-o", str(out_dir / "m.onnx"))
    assert res.exit_code == code, res.output
    assert message in res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    lines = [x for x in res.output.splitlines() if x.startswith("rnndeploy: error:")]
    assert len(lines) == 1
    _no_onnx_left(out_dir)


def test_output_in_missing_directory(tmp_path):
    res = invoke(
        "--model",
        f"{MODELS}/layernorm_stack.py:build",
        "--input",
        "x[batch,seq,4]",
        "-o",
        str(tmp_path / "nope" / "m.onnx"),
    )
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "nope").exists()


def test_every_failing_output_is_reported(tmp_path):
    res = invoke(
        "--model", f"{MODELS}/drifting.py:build", "--input", "x[batch,seq,3]", "--output", "y", "--output", "h",
        "--exporter", "torchscript", "-o", str(tmp_path / "d.onnx"),
    )  # fmt: skip
    assert res.exit_code == 1
    error = [x for x in res.output.splitlines() if x.startswith("rnndeploy: error:")][0]
    assert "y fails at 4 of 4 shapes" in error and "h fails at 4 of 4 shapes" in error
    table_rows = [x for x in res.output.splitlines() if x.rstrip().endswith("FAIL")]
    assert len(table_rows) == 8  # 2 outputs x 4 shapes, each in the table
    assert "batch=1 seq=1" in res.output and "seq=256" in res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_subprocess_export_and_failure(tmp_path):
    out = tmp_path / "two.onnx"
    proc = run_cli(
        "export", "--model", f"{MODELS}/two_inputs.py:build", "--input", "x:float32[batch,seq,5]",
        "--input", "context:float32[batch,3]", "-o", str(out), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "recurrence: native ONNX recurrent nodes: GRU(forward) x2" in proc.stdout
    assert out.is_file()
    proc = run_cli(
        "export", "--model", f"{MODELS}/bad.py:proj_size", "--input", "x[batch,seq,3]", "-o", str(tmp_path / "p.onnx")
    )
    assert proc.returncode == 1 and proc.stderr.strip().startswith("rnndeploy: error: LSTM lstm uses proj_size")
    assert "Traceback" not in proc.stderr and not (tmp_path / "p.onnx").exists()


def test_simplify_result_dropped_when_it_does_not_validate(tmp_path, monkeypatch):
    import onnx

    from rnndeploy.export import simplify as simplify_mod

    def harmful(model):  # a "simplifier" that changes the numbers
        out = onnx.ModelProto()
        out.CopyFrom(model)
        for init in out.graph.initializer:
            arr = onnx.numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.size > 1:
                init.CopyFrom(onnx.numpy_helper.from_array(arr * 0.5, init.name))
        return out, "onnxslim (test double)"

    monkeypatch.setattr(simplify_mod, "simplify", harmful)
    out = tmp_path / "ln.onnx"
    res = invoke(
        "--model", f"{MODELS}/layernorm_stack.py:build", "--input", "x[batch,seq,4]", "--simplify", "-o", str(out)
    )
    assert res.exit_code == 0, res.output
    assert "onnxslim result dropped" in res.output and "validation failed" in res.output
    meta = describe_onnx(out).export_info
    assert meta["simplified"] is False and meta["validated"] is True
    # the file written is the unsimplified, validated graph
    module = load_user_module(f"{MODELS}/layernorm_stack.py:build")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 9, 4)).astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_session(out).run(None, {"x": x})[0], ref, atol=1e-5)


@pytest.mark.slow
def test_user_module_with_dynamo_in_a_fresh_process(tmp_path):
    out = tmp_path / "gd.onnx"
    res = invoke(
        "--model", f"{MODELS}/gru_state.py:build", "--input", "x[batch,seq,3]", "--input", "h0[1,batch,8]:state",
        "--output", "y", "--output", "hn:state", "--exporter", "dynamo", "-o", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = describe_onnx(out)
    assert info.export_info["exporter"] == "dynamo" and info.recurrence == "native"
    assert info.outputs[0].dims == ("batch", "seq", 8)  # dynamo declared seq as 7; renamed, then validated at 4 sizes
    assert "declared output 'y' axis 1 as 7" in res.output


# -- derived output axes ------------------------------------------------------------------------------
def test_derived_output_axis_exports_validates_and_runs(tmp_path):
    """`decoded.view(-1, ntoken)`: the declared axis 'rows' is no input axis, so it is derived."""
    out = tmp_path / "wlm.onnx"
    res = invoke("--model", f"{MODELS}/word_lm.py:build", "--input", "ids:int64[seq,batch]",
                 "--output", "logits:float32[rows,50]:logits", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert re.search(r"seq=256 batch=3 +logits +\[768,50\]", res.output)  # checked at every validation shape
    spec, graph, _ = read_onnx_metadata(__import__("onnx").load(str(out)))
    g = spec.graph(graph)
    assert g.output("logits").dims == ("rows", 50) and g.derived_dims == ("rows",) and g.input_dims == ("seq", "batch")
    assert describe_onnx(out).outputs[0].dims == ("rows", 50)
    res = CliRunner().invoke(cli, ["parity", str(out), "--module", f"{MODELS}/word_lm.py:build", "--backend", "ort-cpu",
                                   "--shapes", "1x1,3x17", "--no-progress"])
    assert res.exit_code == 0, res.output


def test_undeclared_derived_axis_says_how_to_declare_it(tmp_path):
    res = invoke("--model", f"{MODELS}/word_lm.py:build", "--input", "ids:int64[seq,batch]", "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 2 and "follows no input axis" in res.output and "derived axis" in res.output


def test_declared_output_still_checked_against_the_module(tmp_path):
    res = invoke("--model", f"{MODELS}/word_lm.py:build", "--input", "ids:int64[seq,batch]",
                 "--output", "logits:float32[rows,49]", "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 2 and "axis 1 is 50, the spec says 49" in res.output
    res = invoke("--model", f"{MODELS}/word_lm.py:build", "--input", "ids:int64[seq,batch]",
                 "--output", "logits:float32[seq,50]", "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 2 and "'seq' = 7" in res.output
    assert not (tmp_path / "m.onnx").exists()


def test_validation_checks_declared_sizes_at_every_shape(tmp_path):
    """Declared [batch,5,4] holds at the probe sizes (seq 7, 10) but not at seq 1: validation fails."""
    res = invoke("--model", f"{MODELS}/word_lm.py:short_window", "--input", "x[batch,seq,3]",
                 "--output", "y:float32[batch,5,4]", "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 1, res.output
    assert "torch output 'y' axis 1 is 1, the spec says 5" in res.output
    assert not (tmp_path / "m.onnx").exists()


def test_shape_problem_holds_a_derived_axis_to_one_size():
    from rnndeploy.spec import TensorSpec, shape_problem

    a = TensorSpec("a", "float32", ("rows", 3), "other")
    b = TensorSpec("b", "float32", ("rows", "batch"), "other")
    seen: dict = {}
    assert shape_problem(a, (12, 3), {"batch": 2}, seen) is None and seen == {"rows": 12}
    assert shape_problem(b, (12, 2), {"batch": 2}, seen) is None
    assert "'rows' = 12" in shape_problem(b, (11, 2), {"batch": 2}, seen)
    assert "rank 1" in shape_problem(a, (12,), {}, {})
