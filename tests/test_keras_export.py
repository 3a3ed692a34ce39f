"""`rnndeploy export MODEL.keras`, the contract it writes, and the tools that read it:
inspect, parity and bench (with the keras runner beside onnxruntime), char-LM generation
through the streaming form. Validation failures and a missing Keras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.keras_helpers import keras_or_skip, save, scramble

keras = keras_or_skip()
L = keras.layers
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.errors import MissingDependencyError  # noqa: E402
from rnndeploy.spec import read_onnx_metadata  # noqa: E402
from tests.helpers import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """Embedding(mask_zero) → Bidirectional(LSTM) → Dense(sigmoid), saved as .keras."""
    d = tmp_path_factory.mktemp("sentiment")
    model = scramble(keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(50, 6, mask_zero=True),
                                       L.Bidirectional(L.LSTM(4)), L.Dense(1, activation="sigmoid", name="score")],
                                      name="sentiment"))
    return save(model, d, "sentiment", "keras")


@pytest.fixture(scope="module")
def charlm(tmp_path_factory):
    d = tmp_path_factory.mktemp("charlm")
    model = scramble(keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(12, 5),
                                       L.LSTM(8, return_sequences=True, name="lstm"), L.Dense(12, name="logits")]),
                     scale=0.8)
    return save(model, d, "charlm", "keras")


def test_cli_export_writes_the_contract(sentiment, tmp_path):
    out = tmp_path / "s.onnx"
    res = CliRunner().invoke(cli, ["export", sentiment, "-o", str(out), "--long-seq", "10", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    graph = summary["graphs"][0]
    assert graph["exporter"] == "keras" and graph["recurrence"] == "native" and graph["validation"]["ok"]
    assert graph["validation"]["reference"].startswith("keras 3")
    import onnx

    spec, name, info = read_onnx_metadata(onnx.load(str(out)))
    g = spec.graph(name)
    assert spec.name == "sentiment" and spec.family == "classifier"
    tokens = g.inputs[0]
    assert (tokens.role, tokens.dtype, tokens.dims, tokens.low, tokens.high, tokens.time_axis) == \
        ("tokens", "int32", ("batch", "seq"), 1, 50, 1)
    assert g.outputs[0].name == "score" and g.outputs[0].dims == ("batch", 1)
    assert spec.attrs["pad_id"] == 0 and spec.attrs["padding"] == {tokens.name: {"kind": "tokens", "value": 0}}
    assert spec.attrs["recurrent_layers"][0]["direction"] == "bidirectional"
    assert info["exporter"] == "keras" and info["validated"] is True and info["keras_format"] == "keras"
    assert any("pre-padded" in c for c in info["validation"]["cases"])
    assert "seq=20" in " ".join(info["validation"]["cases"]) or "seq=32" in " ".join(info["validation"]["cases"])
    # dynamic batch and sequence in the graph itself
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "seq"]


def test_subprocess_export_then_inspect_parity_bench(sentiment, tmp_path):
    out = tmp_path / "s.onnx"
    run_cli("export", sentiment, "-o", str(out), "--long-seq", "8", check=True, timeout=300)
    insp = run_cli("inspect", str(out), check=True)
    assert "LSTM(bidirectional)" in insp.stdout and "tokens" in insp.stdout
    golden = tmp_path / "golden"
    import importlib.util

    openvino = ["--backend", "openvino"] if importlib.util.find_spec("openvino") else []
    par = run_cli("parity", str(out), "--keras", sentiment, "--backend", "ort-cpu", "--backend", "keras", *openvino,
                  "--shapes", "1x1,3x12", "--json", str(tmp_path / "p.json"), "--save-golden", str(golden),
                  check=True, timeout=300)
    assert "PASSED" in par.stdout and "Reference: keras" in par.stdout
    assert not openvino or "openvino  b3-s12" in par.stdout  # OpenVINO runs the packing ops too
    results = json.loads((tmp_path / "p.json").read_text())
    assert results  # the report tool reads this file format
    # the generated batch is pre-padded as pad_sequences pads (the model masks token 0): the mask runs
    with np.load(golden / "b3-s12.inputs.npz") as z:
        ids = z[list(z)[0]]
    valid = (ids != 0).sum(axis=1)
    assert valid.max() == 12 and valid.min() < 12
    assert all((row[: 12 - n] == 0).all() and (row[12 - n:] != 0).all() for row, n in zip(ids, valid))
    again = run_cli("parity", str(out), "--golden", str(golden), "--backend", "ort-cpu", check=True, timeout=300)
    assert "PASSED" in again.stdout
    bench = run_cli("bench", str(out), "--keras", sentiment, "--backend", "ort-cpu", "--backend", "keras",
                    "--batch", "1", "--seq", "8", "--iters", "3", "--warmup", "1", check=True, timeout=300)
    assert "keras" in bench.stdout and "ort-cpu" in bench.stdout
    # no torch row: ratios are taken against Keras, and the column says so
    assert "ratios are median / median of keras" in bench.stdout and "vs keras" in bench.stdout
    ort_row = next(line for line in bench.stdout.splitlines() if line.startswith("ort-cpu "))
    assert ort_row.split()[9].endswith("×")


def test_parity_takes_pad_sequences_output(sentiment, tmp_path):
    """--inputs holding pad_sequences' zeros (the padding id, outside the 1..vocab-1 generated ids)
    are valid input; an id past the vocabulary is still refused, naming both."""
    out = tmp_path / "s.onnx"
    assert CliRunner().invoke(cli, ["export", sentiment, "-o", str(out), "--long-seq", "8"]).exit_code == 0
    ids = np.array([[0, 0, 0, 7, 3, 9], [4, 4, 8, 2, 0, 0], [0, 1, 49, 0, 5, 0]], dtype=np.int32)
    want = keras.ops.convert_to_numpy(keras.saving.load_model(sentiment)(ids))
    import onnx

    name = read_onnx_metadata(onnx.load(str(out)))[0].graph("model").inputs[0].name
    np.savez(tmp_path / "in.npz", **{name: ids})
    np.savez(tmp_path / "out.npz", score=np.asarray(want))
    args = ["parity", str(out), "--backend", "ort-cpu", "--inputs", str(tmp_path / "in.npz"),
            "--expected", str(tmp_path / "out.npz"), "--tol", "score:1e-5:0"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0 and "PASSED" in res.output, res.output
    ids[2, 1] = 50
    np.savez(tmp_path / "in.npz", **{name: ids})
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert "has 50 at index [2, 1], outside the allowed 1..49 or the padding id 0" in res.output


def test_keras_model_alone_is_a_source(sentiment):
    """parity on MODEL.keras with no ONNX file: the spec comes from converting it."""
    from rnndeploy.backends import create_runner
    from rnndeploy.backends.source import resolve_source

    source = resolve_source(sentiment)
    assert source.keras == sentiment and source.onnx is None
    ids = np.array([[0, 0, 4, 9, 2]], dtype=np.int32)
    with create_runner("keras", source) as runner:
        got = runner.infer({source.graph_spec.inputs[0].name: ids})
    want = keras.ops.convert_to_numpy(keras.saving.load_model(sentiment)(ids))
    np.testing.assert_allclose(got["score"], want, atol=1e-7)


def test_char_lm_generates_the_same_text_as_keras(charlm, tmp_path):
    """One character at a time through the streaming form: onnxruntime and Keras sample the same ids."""
    from rnndeploy.backends import create_runner
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.decoding import generate_text
    from rnndeploy.onnx_decoding import OnnxCharLM

    out = tmp_path / "lm.onnx"
    res = CliRunner().invoke(cli, ["export", charlm, "-o", str(out), "--with-state", "--long-seq", "8"])
    assert res.exit_code == 0, res.output
    lm = OnnxCharLM(str(out))
    onnx_ids = lm.generate([3, 1, 4, 1, 5], 40, temperature=0.8, seed=7)
    source = resolve_source(str(out), keras=charlm)
    assert source.with_state
    with create_runner("keras", source) as runner:
        names_in = [t.name for t in source.graph_spec.inputs]
        states_out = [t.name for t in source.graph_spec.outputs if t.role == "state"]

        def step(tokens, states):
            feed = {names_in[0]: np.asarray(tokens, dtype=np.int32)}
            if states is None:
                states = tuple(np.zeros((feed[names_in[0]].shape[0], 8), np.float32) for _ in states_out)
            feed.update(dict(zip(names_in[1:], states)))
            outs = runner.infer(feed)
            return outs["logits"], tuple(outs[n] for n in states_out)

        keras_ids = generate_text(step, [3, 1, 4, 1, 5], 40, temperature=0.8, seed=7)
    np.testing.assert_array_equal(onnx_ids, keras_ids)


def test_failed_validation_writes_nothing(sentiment, tmp_path, monkeypatch):
    """A converter bug (here: LSTM gates left in Keras' order) is caught by the comparison with
    Keras; the table names the failing output and no file is written."""
    from rnndeploy.keras import recurrent

    real = recurrent.onnx_weights

    def keras_gate_order(rc, weights, input_size, where):
        W, R, B, f = real(rc, weights, input_size, where)
        if rc.op != "LSTM":
            return W, R, B, f
        k, r = (np.asarray(w, dtype=np.float32) for w in weights[:2])
        return k.T.copy(), r.T.copy(), B, f

    monkeypatch.setattr(recurrent, "onnx_weights", keras_gate_order)
    out = tmp_path / "s.onnx"
    res = CliRunner().invoke(cli, ["export", sentiment, "-o", str(out), "--long-seq", "8"])
    assert res.exit_code == 1, res.output
    assert "does not reproduce Keras" in res.output and "FAIL" in res.output and "score" in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_without_keras_the_file_is_written_unvalidated_and_says_so(sentiment, tmp_path, monkeypatch):
    from rnndeploy.keras import reference

    def no_keras(*a, **k):
        raise MissingDependencyError("keras", "keras-runtime", "running Keras models")

    monkeypatch.setattr(reference, "KerasModel", no_keras)
    out = tmp_path / "s.onnx"
    res = CliRunner().invoke(cli, ["export", sentiment, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "NOT validated (see note)" in res.output and "Keras is not installed here" in res.output
    import onnx

    assert read_onnx_metadata(onnx.load(str(out)))[2]["validated"] is False
    res = CliRunner().invoke(cli, ["export", sentiment, "-o", str(tmp_path / "t.onnx"), "--no-validate"])
    assert res.exit_code == 0 and "(--no-validate)" in res.output
