"""Keras files in both formats and dialects, and every bad Keras input: one line, exit 2,
nothing written. The good files are written by Keras itself (KERAS_BACKEND=torch); the
Keras 2 (tf.keras) file is assembled here in tf.keras 2.15's own layout, since
TensorFlow is not installed."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.keras_helpers import keras_or_skip, save, scramble

keras = keras_or_skip()
L = keras.layers
h5py = pytest.importorskip("h5py")
ort = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.keras import convert_keras, load_keras_file  # noqa: E402
from tests.helpers import run_cli  # noqa: E402


def _sine_lstm(tmp_path: Path, fmt: str = "keras") -> str:
    model = scramble(keras.Sequential([keras.Input((None, 3)), L.LSTM(4, name="lstm"), L.Dense(1, name="dense")]))
    return save(model, tmp_path, "m", fmt)


def _rewrite_zip(src: str, dst: Path, edit) -> str:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    edit(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    dst.write_bytes(buf.getvalue())
    return str(dst)


def _set_units(members, units):
    cfg = json.loads(members["config.json"])
    for layer in cfg["config"]["layers"]:
        if layer["class_name"] == "LSTM":
            layer["config"]["units"] = units
    members["config.json"] = json.dumps(cfg).encode()


# -- bad input, table-driven -----------------------------------------------------------------
def _corrupt(tmp_path):
    p = tmp_path / "bad.keras"
    p.write_bytes(np.random.default_rng(0).bytes(2000))
    return str(p)


def _truncated_keras(tmp_path):
    data = Path(_sine_lstm(tmp_path)).read_bytes()
    p = tmp_path / "cut.keras"
    p.write_bytes(data[: len(data) // 2])
    return str(p)


def _truncated_h5(tmp_path):
    data = Path(_sine_lstm(tmp_path, "h5")).read_bytes()
    p = tmp_path / "cut.h5"
    p.write_bytes(data[: len(data) // 2])
    return str(p)


def _weights_only_keras3(tmp_path):
    model = scramble(keras.Sequential([keras.Input((None, 3)), L.LSTM(4)]))
    p = tmp_path / "w.weights.h5"
    model.save_weights(str(p))
    return str(p)


def _weights_only_keras2(tmp_path):
    p = tmp_path / "w2.h5"
    with h5py.File(p, "w") as f:  # tf.keras 2 save_weights(): layer_names at the root, no model_config
        f.attrs["layer_names"] = [b"lstm"]
        f.attrs["keras_version"] = b"2.15.0"
        g = f.create_group("lstm")
        g.attrs["weight_names"] = [b"lstm/lstm_cell/kernel:0"]
        g.create_dataset("lstm/lstm_cell/kernel:0", data=np.zeros((3, 16), np.float32))
    return str(p)


def _lambda_layer(tmp_path):
    model = keras.Sequential([keras.Input((None, 3)), L.Lambda(lambda x: x * 2.0, name="double"), L.LSTM(2)])
    return save(model, tmp_path, "lam", "keras")


@keras.saving.register_keras_serializable(package="rnndeploy_tests")
class Scale(L.Layer):
    def call(self, x):
        return x * 3.0


def _custom_layer(tmp_path):
    model = keras.Sequential([keras.Input((None, 3)), Scale(name="scale"), L.LSTM(2)])
    return save(model, tmp_path, "custom", "keras")


def _unsupported_layer(tmp_path):
    model = keras.Sequential([keras.Input((None, 3)), L.Conv1D(4, 3, name="conv"), L.LSTM(2)])
    return save(model, tmp_path, "conv", "keras")


def _wrong_weight_shapes(tmp_path):
    return _rewrite_zip(_sine_lstm(tmp_path), tmp_path / "units.keras", lambda m: _set_units(m, 5))


def _newer_keras_zip(tmp_path):
    def edit(members):
        members["metadata.json"] = json.dumps({"keras_version": "4.0.0"}).encode()

    return _rewrite_zip(_sine_lstm(tmp_path), tmp_path / "new.keras", edit)


def _newer_keras_h5(tmp_path):
    path = _sine_lstm(tmp_path, "h5")
    with h5py.File(path, "a") as f:
        f.attrs["keras_version"] = "4.1.0"
    return path


def _subclassed(tmp_path):
    def edit(members):
        members["config.json"] = json.dumps({"class_name": "MyModel", "config": {}, "module": "mine"}).encode()

    return _rewrite_zip(_sine_lstm(tmp_path), tmp_path / "sub.keras", edit)


BAD = {
    "corrupt bytes": (_corrupt, r"neither a \.keras archive nor an HDF5 file"),
    "truncated .keras": (_truncated_keras, r"not a readable \.keras archive"),
    "truncated .h5": (_truncated_h5, r"not a readable HDF5 file \(truncated or corrupt"),
    "Keras 3 weights-only": (_weights_only_keras3, r"holds weights only.*model\.save\('model\.keras'\)"),
    "Keras 2 weights-only": (_weights_only_keras2, r"holds weights only.*model\.save\('model\.keras'\)"),
    "Lambda layer": (_lambda_layer, r"layer 'double' is a Lambda.*cannot be converted.*supported: "),
    "custom layer": (_custom_layer, r"custom layer Scale \('scale'\) is not supported — supported layers: .*LSTM"),
    "unsupported layer": (_unsupported_layer, r"layer Conv1D \('conv'\) is not supported — supported layers: "),
    "weights disagree with config": (_wrong_weight_shapes, r"LSTM layer 'lstm'.*kernel has shape \[3, 16\] but the config implies \[3, 20\]"),
    "newer Keras (.keras)": (_newer_keras_zip, r"saved by Keras 4\.0\.0, newer than this converter knows"),
    "newer Keras (.h5)": (_newer_keras_h5, r"saved by Keras 4\.1\.0, newer than this converter knows"),
    "subclassed model": (_subclassed, r"holds a MyModel model: subclassed models"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_keras_input_is_one_line_exit_2_nothing_written(case, tmp_path):
    make, pattern = BAD[case]
    path = make(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    res = CliRunner().invoke(cli, ["export", path, "-o", str(out / "m.onnx")])
    assert res.exit_code == 2, (res.output, res.exception)
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert list(out.iterdir()) == []


def test_bad_input_through_a_real_subprocess(tmp_path):
    path = _weights_only_keras3(tmp_path)
    proc = run_cli("export", path, "-o", str(tmp_path / "m.onnx"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "holds weights only" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_missing_file_and_keras_only_options(tmp_path):
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "nope.keras"), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2 and "does not exist" in res.output
    path = _sine_lstm(tmp_path)
    for extra, msg in ((["--exporter", "dynamo"], "--exporter applies to torch"),
                       (["--simplify"], "--simplify applies to torch"),
                       (["--input", "x:float32[batch,seq,3]"], "--input/--output describe")):
        res = CliRunner().invoke(cli, ["export", path, "-o", str(tmp_path / "m.onnx"), *extra])
        assert res.exit_code == 2 and msg in res.output, res.output
    assert not (tmp_path / "m.onnx").exists()


# -- Keras 2 (tf.keras) files ------------------------------------------------------------------
def _keras2_layer(cls, name, **cfg):
    return {"class_name": cls, "config": {"name": name, "trainable": True, "dtype": "float32", **cfg}}


def _write_keras2_h5(path: Path, config: dict, weights: dict) -> None:
    """An .h5 laid out as tf.keras 2.15's model.save(..., save_format="h5") writes it."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = [n.encode() for n in weights]
        mw.attrs["backend"] = b"tensorflow"
        mw.attrs["keras_version"] = b"2.15.0"
        for lname, named in weights.items():
            g = mw.create_group(lname)
            g.attrs["weight_names"] = [n.encode() for n in named]
            for wname, value in named.items():
                g.create_dataset(wname, data=value)


def _rnn_cfg(units, **extra):
    base = {"return_sequences": False, "return_state": False, "go_backwards": False, "stateful": False,
            "unroll": False, "time_major": False, "units": units, "activation": "tanh",
            "recurrent_activation": "sigmoid", "use_bias": True, "dropout": 0.0, "recurrent_dropout": 0.0,
            "implementation": 2}
    base.update(extra)
    return base


def test_keras2_sequential_h5(tmp_path):
    k3 = scramble(keras.Sequential([keras.Input((None, 3)), L.Masking(0.0), L.LSTM(4, return_sequences=True),
                                    L.LSTM(4), L.Dense(2)]))
    w = k3.get_weights()
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, None, 3], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "lstm_input"}},
        _keras2_layer("Masking", "masking", mask_value=0.0),
        _keras2_layer("LSTM", "lstm", **_rnn_cfg(4, return_sequences=True), unit_forget_bias=True),
        _keras2_layer("LSTM", "lstm_1", **_rnn_cfg(4), unit_forget_bias=True),
        _keras2_layer("Dense", "dense", units=2, activation="linear", use_bias=True),
    ]}}
    weights = {
        "masking": {},
        "lstm": {"lstm/lstm_cell/kernel:0": w[0], "lstm/lstm_cell/recurrent_kernel:0": w[1], "lstm/lstm_cell/bias:0": w[2]},
        "lstm_1": {"lstm_1/lstm_cell/kernel:0": w[3], "lstm_1/lstm_cell/recurrent_kernel:0": w[4],
                   "lstm_1/lstm_cell/bias:0": w[5]},
        "dense": {"dense/kernel:0": w[6], "dense/bias:0": w[7]},
    }
    path = tmp_path / "k2.h5"
    _write_keras2_h5(path, config, weights)
    kf = load_keras_file(str(path))
    assert (kf.fmt, kf.keras_version, kf.backend) == ("h5", "2.15.0", "tensorflow")
    conv = convert_keras(kf)
    sess = ort.InferenceSession(conv.model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 9, 3)).astype(np.float32)
    x[1, :4] = 0.0  # pre-padded row
    np.testing.assert_allclose(sess.run(None, {"lstm_input": x})[0], keras.ops.convert_to_numpy(k3(x)), atol=1e-5)


def test_keras2_functional_h5_bidirectional_gru(tmp_path):
    inp = keras.Input((None,), dtype="int32")
    x = L.Embedding(30, 5, mask_zero=True)(inp)
    x = L.Bidirectional(L.GRU(3, return_sequences=True, reset_after=True))(x)
    k3 = scramble(keras.Model(inp, L.Dense(1, activation="sigmoid")(L.GlobalAveragePooling1D()(x))))
    w = k3.get_weights()
    node = lambda src: [[[src, 0, 0, {}]]]  # noqa: E731  (tf.keras 2 inbound node)
    gru = _rnn_cfg(3, return_sequences=True, reset_after=True)
    config = {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, None], "dtype": "int32", "sparse": False, "ragged": False,
                    "name": "input_1"}},
        {**_keras2_layer("Embedding", "embedding", input_dim=30, output_dim=5, mask_zero=True, input_length=None),
         "name": "embedding", "inbound_nodes": node("input_1")},
        {**_keras2_layer("Bidirectional", "bidirectional", merge_mode="concat",
                         layer={"class_name": "GRU", "config": {"name": "gru", "trainable": True, "dtype": "float32", **gru}}),
         "name": "bidirectional", "inbound_nodes": node("embedding")},
        {**_keras2_layer("GlobalAveragePooling1D", "global_average_pooling1d", data_format="channels_last",
                         keepdims=False), "name": "global_average_pooling1d", "inbound_nodes": node("bidirectional")},
        {**_keras2_layer("Dense", "dense", units=1, activation="sigmoid", use_bias=True), "name": "dense",
         "inbound_nodes": node("global_average_pooling1d")},
    ], "input_layers": [["input_1", 0, 0]], "output_layers": [["dense", 0, 0]]}}
    cell = "bidirectional/{}_gru/gru_cell/{}:0"
    weights = {
        "input_1": {},
        "embedding": {"embedding/embeddings:0": w[0]},
        "bidirectional": {cell.format(d, n): w[i] for i, (d, n) in enumerate(
            [(d, n) for d in ("forward", "backward") for n in ("kernel", "recurrent_kernel", "bias")], start=1)},
        "global_average_pooling1d": {},
        "dense": {"dense/kernel:0": w[7], "dense/bias:0": w[8]},
    }
    path = tmp_path / "k2f.h5"
    _write_keras2_h5(path, config, weights)
    conv = convert_keras(load_keras_file(str(path)))
    sess = ort.InferenceSession(conv.model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(1).integers(1, 30, (4, 8)).astype(np.int32)
    ids[1, :5] = 0  # pre-padded
    ids[2, 6:] = 0  # post-padded
    np.testing.assert_allclose(sess.run(None, {"input_1": ids})[0], keras.ops.convert_to_numpy(k3(ids)), atol=1e-5)
