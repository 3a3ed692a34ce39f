"""rnndeploy normalize: rewrites (layout, batch-first state, folding, OpenVINO clip), their
verification, the compatibility table, the CLI, and the automatic rewrite in parity."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from rnndeploy.cli import cli
from rnndeploy.errors import UsageError
from rnndeploy.graph.compat import check_compat, render_compat, unrunnable
from rnndeploy.graph.files import normalize_model
from rnndeploy.graph.normalize import (
    NO_OP_CLIP,
    NormalizeOptions,
    fold_constants,
    layout_to_time_major,
    make_state_batch_first,
    needs_layout_rewrite,
    openvino_workarounds,
)
from rnndeploy.graph.reference import reference_run
from rnndeploy.graph.verify import VerificationError, verify_same_function
from tests.helpers import run_cli
from tests.onnx_rnn_cases import RnnCase, build, cases

LAYOUT1 = [c for c in cases() if c.layout == 1]


def _io(model):
    def sig(vi):
        return vi.name, tuple(d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim)

    return [sig(v) for v in model.graph.input], [sig(v) for v in model.graph.output]


@pytest.mark.parametrize("case", LAYOUT1, ids=[c.id for c in LAYOUT1])
def test_layout1_becomes_layout0_with_the_same_io_and_outputs(case):
    model, feed = build(case)
    new, rewrites = layout_to_time_major(model)
    assert needs_layout_rewrite(model) == [f"{case.op.lower()}_node"] and needs_layout_rewrite(new) == []
    assert [r.kind for r in rewrites] == ["layout"] and "layout=1 → layout=0" in rewrites[0].text
    assert _io(new) == _io(model)
    onnx.checker.check_model(new)
    want = reference_run(model, feed)
    got = reference_run(new, feed)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6)


def test_layout0_counterpart_has_the_batch_first_outputs_transposed():
    """A layout=1 model and its layout=0 twin (same weights) agree once axes are swapped:
    the reference's layout handling is what the rewrite relies on."""
    m1, feed1 = build(RnnCase("GRU", "bidirectional", 1, seq_lens=True, initial=True))
    m0, _ = build(RnnCase("GRU", "bidirectional", 0, seq_lens=True, initial=True))
    feed0 = {"X": feed1["X"].transpose(1, 0, 2), "lens": feed1["lens"], "h0": feed1["h0"].transpose(1, 0, 2)}
    out1, out0 = reference_run(m1, feed1), reference_run(m0, feed0)
    np.testing.assert_allclose(out1["Y"], out0["Y"].transpose(2, 0, 1, 3), atol=1e-6)
    np.testing.assert_allclose(out1["Y_h"], out0["Y_h"].transpose(1, 0, 2), atol=1e-6)


def test_make_state_batch_first_swaps_state_io_and_keeps_the_function():
    model, feed = build(RnnCase("LSTM", "bidirectional", 0, seq_lens=True, initial=True))
    new = make_state_batch_first(model)
    ins, outs = dict(_io(new)[0]), dict(_io(new)[1])
    assert ins["h0"] == ("batch", 2, 5) and ins["c0"] == ("batch", 2, 5) and ins["X"] == ("seq", "batch", 3)
    assert outs["Y_h"] == ("batch", 2, 5) and outs["Y_c"] == ("batch", 2, 5) and outs["Y"] == ("seq", 2, "batch", 5)
    want = reference_run(model, feed)
    feed2 = {**feed, "h0": feed["h0"].transpose(1, 0, 2), "c0": feed["c0"].transpose(1, 0, 2)}
    got = reference_run(new, feed2)
    np.testing.assert_allclose(got["Y"], want["Y"], atol=1e-6)
    np.testing.assert_allclose(got["Y_h"], want["Y_h"].transpose(1, 0, 2), atol=1e-6)
    np.testing.assert_allclose(got["Y_c"], want["Y_c"].transpose(1, 0, 2), atol=1e-6)


def _two_layer_with_state():
    """What torch exports for a 2-layer GRU with h0 in / hn out: Slice per layer, Concat of the Y_h."""
    rng = np.random.default_rng(3)
    H, n_in = 4, 3
    inits = [numpy_helper.from_array(rng.uniform(-0.5, 0.5, s).astype(np.float32), n)
             for n, s in [("W0", (1, 3 * H, n_in)), ("R0", (1, 3 * H, H)), ("W1", (1, 3 * H, H)), ("R1", (1, 3 * H, H))]]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              [("s0", [0]), ("e0", [1]), ("s1", [1]), ("e1", [2]), ("ax0", [0]), ("ax1", [1])]]
    nodes = [
        helper.make_node("Slice", ["h0", "s0", "e0", "ax0"], ["h0_0"]),
        helper.make_node("Slice", ["h0", "s1", "e1", "ax0"], ["h0_1"]),
        helper.make_node("GRU", ["x", "W0", "R0", "", "", "h0_0"], ["y0", "hn0"], hidden_size=H, name="gru0"),
        helper.make_node("Squeeze", ["y0", "ax1"], ["y0s"]),
        helper.make_node("GRU", ["y0s", "W1", "R1", "", "", "h0_1"], ["y1", "hn1"], hidden_size=H, name="gru1"),
        helper.make_node("Concat", ["hn0", "hn1"], ["hn"], axis=0),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", n_in]),
                                       helper.make_tensor_value_info("h0", TensorProto.FLOAT, [2, "batch", H])],
                          [helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["seq", 1, "batch", H]),
                           helper.make_tensor_value_info("hn", TensorProto.FLOAT, [2, "batch", H])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    return m


def test_batch_first_state_traces_through_slice_and_concat_and_verifies():
    model = _two_layer_with_state()
    new, report = normalize_model(model, NormalizeOptions(batch_first_state=True, fold=False))
    assert [(r.kind, r.node) for r in report.rewrites] == [("state-batch-first", "h0"), ("state-batch-first", "hn")]
    assert dict(_io(new)[0])["h0"] == ("batch", 2, 4) and dict(_io(new)[1])["hn"] == ("batch", 2, 4)
    assert report.verification is not None and report.verification.max_abs < 1e-6


def test_batch_first_state_updates_the_rnndeploy_spec():
    from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec, read_onnx_metadata, write_onnx_metadata

    model = _two_layer_with_state()
    g = GraphSpec("model", (TensorSpec("x", "float32", ("seq", "batch", 3), "features", time_axis=0),
                            TensorSpec("h0", "float32", (2, "batch", 4), "state")),
                  (TensorSpec("y1", "float32", ("seq", 1, "batch", 4), "other"),
                   TensorSpec("hn", "float32", (2, "batch", 4), "state")))
    write_onnx_metadata(model, ModelSpec("two", "custom", {"model": g}), "model", {"exporter": "test"})
    new = make_state_batch_first(model)
    spec, graph, info = read_onnx_metadata(new)
    assert spec.graph("model").input("h0").dims == ("batch", 2, 4)
    assert spec.graph("model").output("hn").dims == ("batch", 2, 4)
    assert spec.graph("model").input("x").dims == ("seq", "batch", 3)
    assert info["state_layout"] == "batch-first" and info["exporter"] == "test"


def _shape_subgraph_model(dynamic_batch: bool):
    """x [B, 6] → Reshape(x, Concat(Gather(Shape(x), 0), [2, 3])) → y [B, 2, 3]."""
    batch = "batch" if dynamic_batch else 4
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Concat", ["b1", "rest"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "rest")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_fold_constants_folds_static_shape_subgraphs_only():
    static, rewrites = fold_constants(_shape_subgraph_model(dynamic_batch=False))
    assert [n.op_type for n in static.graph.node] == ["Reshape"]
    assert rewrites and "folded 4 constant node(s)" in rewrites[0].text
    shape = {i.name: numpy_helper.to_array(i) for i in static.graph.initializer}[static.graph.node[0].input[1]]
    assert shape.tolist() == [4, 2, 3]
    verify_same_function(_shape_subgraph_model(False), static)
    dynamic, rewrites = fold_constants(_shape_subgraph_model(dynamic_batch=True))
    assert rewrites == [] and len(dynamic.graph.node) == 5


def test_openvino_workaround_adds_a_no_op_clip_only_where_lengths_have_none():
    model, feed = build(RnnCase("LSTM", "reverse", 0, seq_lens=True))
    new, rewrites = openvino_workarounds(model)
    clip = [a.f for a in new.graph.node[0].attribute if a.name == "clip"]
    assert clip == [pytest.approx(NO_OP_CLIP)] and rewrites[0].kind == "openvino"
    for name, arr in reference_run(model, feed).items():
        np.testing.assert_array_equal(reference_run(new, feed)[name], arr)
    clipped, _ = build(RnnCase("LSTM", seq_lens=True, clip=0.5))
    assert openvino_workarounds(clipped)[1] == []
    plain, _ = build(RnnCase("LSTM"))
    assert openvino_workarounds(plain)[1] == []


def test_verification_catches_a_wrong_rewrite():
    model, _ = build(RnnCase("GRU", "forward", 1, initial=True))
    new, _ = layout_to_time_major(model)
    for node in new.graph.node:  # break it: the Transpose after Y now scrambles the axes
        if node.op_type == "Transpose" and node.output[0] == "Y":
            node.attribute[0].ints[:] = [2, 1, 0, 3]
    with pytest.raises(VerificationError, match="output 'Y'"):
        verify_same_function(model, new)


def test_compat_table_lists_what_each_runtime_gets_wrong():
    peep, _ = build(RnnCase("LSTM", initial=True, peepholes=True))
    issues = check_compat(peep)
    assert [(i.runtime, i.severity) for i in issues] == [("ort-cuda", "cpu-fallback"), ("openvino", "wrong")]
    assert "peephole" in render_compat(issues)
    lay, _ = build(RnnCase("GRU", layout=1))
    sev = {(i.runtime, i.severity) for i in check_compat(lay)}
    assert {("ort-cpu", "refuses"), ("trt-10", "wrong"), ("openvino", "wrong")} <= sev
    forget, _ = build(RnnCase("LSTM", attrs={"input_forget": 1}))
    assert ("trt-8.6", "refuses") in {(i.runtime, i.severity) for i in check_compat(forget)}
    assert unrunnable(check_compat(forget)) == {}


def _custom_domain_model():
    nodes = [helper.make_node("ATen", ["x"], ["y"], domain="org.pytorch.aten", name="aten_lstm", operator="lstm")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("org.pytorch.aten", 1)])
    m.ir_version = 8
    return m


def test_cli_normalize_writes_a_verified_file_and_the_table(tmp_path):
    model, feed = build(RnnCase("LSTM", "bidirectional", 1, seq_lens=True, initial=True))
    src, out, rep = tmp_path / "bf.onnx", tmp_path / "tm.onnx", tmp_path / "rep.json"
    onnx.save(model, src)
    r = CliRunner().invoke(cli, ["normalize", str(src), "-o", str(out), "--json", str(rep)])
    assert r.exit_code == 0, r.output
    assert "rewrite: LSTM node 'lstm_node': layout=1 → layout=0" in r.output
    assert "verified: same outputs as the original (onnx.reference" in r.output
    assert "openvino  WRONG VALUES" in r.output and "sequence_lens" in r.output
    written = onnx.load(str(out))
    assert needs_layout_rewrite(written) == [] and _io(written) == _io(model)
    doc = json.loads(rep.read_text())
    assert doc["rewrites"][0]["kind"] == "layout" and doc["output"] == str(out)
    r = CliRunner().invoke(cli, ["normalize", str(src), "-o", str(tmp_path / "ov.onnx"), "--for", "openvino"])
    assert r.exit_code == 0 and "openvino  ok" in r.output and "clip=3.403e+38 (no-op)" in r.output


def test_cli_normalize_without_output_writes_nothing(tmp_path):
    model, _ = build(RnnCase("RNN", layout=1))
    onnx.save(model, tmp_path / "a.onnx")
    r = CliRunner().invoke(cli, ["normalize", str(tmp_path / "a.onnx")])
    assert r.exit_code == 0 and "rewrite: RNN node" in r.output and "wrote" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]


def test_cli_normalize_refuses_a_model_no_runtime_runs(tmp_path):
    onnx.save(_custom_domain_model(), tmp_path / "aten.onnx")
    r = CliRunner().invoke(cli, ["normalize", str(tmp_path / "aten.onnx"), "-o", str(tmp_path / "out.onnx")])
    assert r.exit_code == 2, r.output
    assert "node 'aten_lstm' (org.pytorch.aten::ATen) runs correctly on no runtime" in r.output
    for rt in ("ort-cpu", "ort-cuda", "trt-8.6", "trt-10", "openvino"):
        assert f"{rt} refuses" in r.output
    assert "nothing written" in r.output and not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("args, message", [
    (["missing.onnx", "-o", "x.onnx"], "does not exist"),
    (["same.onnx", "-o", "same.onnx"], "is the input same.onnx: it would be overwritten"),
    (["garbage.onnx", "-o", "x.onnx"], "is not a readable ONNX model"),
])
def test_cli_normalize_bad_input_is_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not onnx")
    onnx.save(build(RnnCase("RNN"))[0], tmp_path / "same.onnx")
    r = CliRunner().invoke(cli, ["normalize", *args])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.onnx").exists()


def test_normalize_refusal_is_a_usage_error():
    with pytest.raises(UsageError, match="aten_lstm"):
        normalize_model(_custom_domain_model(), NormalizeOptions())


def test_parity_normalises_a_layout1_file_and_says_so(tmp_path):
    pytest.importorskip("onnxruntime")
    model, feed = build(RnnCase("GRU", "reverse", 1, seq_lens=True, initial=True, lbr=1))
    onnx.save(model, tmp_path / "bf.onnx")
    np.savez(tmp_path / "in.npz", **feed)
    np.savez(tmp_path / "out.npz", **reference_run(model, feed))
    proc = run_cli("parity", str(tmp_path / "bf.onnx"), "--backend", "ort-cpu", "--inputs", str(tmp_path / "in.npz"),
                   "--expected", str(tmp_path / "out.npz"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "normalised" in line]
    assert len(lines) == 1 and "layout=1 → 0 on 'gru_node'" in lines[0] and "running that copy" in lines[0]
    assert "PASSED" in proc.stdout


def test_parity_without_backend_runs_every_available_runtime_and_says_which(tmp_path):
    pytest.importorskip("onnxruntime")
    from rnndeploy.backends import ModelSource, default_backends
    from rnndeploy.spec import spec_from_onnx_io

    model, feed = build(RnnCase("LSTM", "bidirectional", 0, seq_lens=True, initial=True))
    onnx.save(model, tmp_path / "m.onnx")
    chosen, skipped = default_backends(ModelSource(spec_from_onnx_io(model), onnx=str(tmp_path / "m.onnx")))
    assert "ort-cpu" in chosen and "torch" not in chosen and "onnx-ref" not in chosen
    assert skipped["torch"] == "no checkpoint or module given" and "name it with --backend onnx-ref" in skipped["onnx-ref"]
    np.savez(tmp_path / "in.npz", **feed)
    np.savez(tmp_path / "out.npz", **reference_run(model, feed))
    proc = run_cli("parity", str(tmp_path / "m.onnx"), "--inputs", str(tmp_path / "in.npz"),
                   "--expected", str(tmp_path / "out.npz"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stderr.splitlines() if "no --backend given" in x)
    assert f"running {', '.join(chosen)}" in line and "skipped torch: no checkpoint or module given" in line
    assert all(f"Under test: {b} " in proc.stdout for b in chosen)


def test_default_runtimes_add_torch_with_a_module_and_say_why_trt_is_skipped(tmp_path):
    """torch joins the defaults when a checkpoint or module is given; TensorRT is skipped with
    the reason (no package, no GPU, or no --engine: the trt runner runs engines only)."""
    pytest.importorskip("torch")
    from rnndeploy.backends import ModelSource, default_backends
    from rnndeploy.spec import spec_from_onnx_io

    model, _ = build(RnnCase("GRU", lbr=1))
    spec = spec_from_onnx_io(model)
    bare, _ = default_backends(ModelSource(spec, onnx="m.onnx"))
    with_module, skipped = default_backends(ModelSource(spec, onnx="m.onnx", module="net.py:build"))
    assert "torch" not in bare and set(with_module) == set(bare) | {"torch"}
    assert "trt" in skipped and any(w in skipped["trt"] for w in ("not installed", "no CUDA GPU", "--engine"))
    _, skipped = default_backends(ModelSource(spec, onnx="m.onnx", engine="m.plan"))
    assert "--engine" not in skipped.get("trt", "")


def test_bench_normalises_a_layout1_file_and_defaults_to_every_available_runtime(tmp_path):
    """bench takes the same path as parity: a layout=1 file is timed through its verified
    normalised copy (said in one line), and without --backend every available runtime is a row."""
    pytest.importorskip("onnxruntime")
    from rnndeploy.backends import ModelSource, default_backends
    from rnndeploy.spec import spec_from_onnx_io

    model, _ = build(RnnCase("LSTM", "bidirectional", 1, initial=True))
    onnx.save(model, tmp_path / "bf.onnx")
    chosen, _ = default_backends(ModelSource(spec_from_onnx_io(model), onnx=str(tmp_path / "bf.onnx")))
    proc = run_cli("bench", str(tmp_path / "bf.onnx"), "--batch", "2", "--seq", "3", "--iters", "3", "--warmup", "1",
                   "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert [x for x in lines if "normalised" in x and "layout=1 → 0 on 'lstm_node'" in x and "running that copy" in x]
    assert [x for x in lines if f"no --backend given: running {', '.join(chosen)}" in x]
    doc = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert {m["backend"] for m in doc["measurements"]} == set(chosen)


def test_build_engine_dry_run_plans_from_the_normalised_copy(tmp_path):
    model, _ = build(RnnCase("LSTM", "bidirectional", 1, seq_lens=True, initial=True))
    onnx.save(model, tmp_path / "bf.onnx")
    r = CliRunner().invoke(cli, ["build-engine", str(tmp_path / "bf.onnx"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "normalised" in r.output and "building from that copy" in r.output
    assert "X [1..32, 1..1024, 3]" in r.output  # the profile keeps the file's batch-first input
