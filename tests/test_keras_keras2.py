"""Keras 2 (tf.keras) .h5 files: the Keras 2 config dialect (``batch_input_shape``,
nested-list inbound nodes, string dtypes) and weight naming (``lstm/lstm_cell/kernel:0``).
TensorFlow is not installed, so each file is assembled here in tf.keras 2.15's own
layout from a Keras 3 model's weights, and the conversion is compared with that Keras 3
model (the same maths). Bad Keras inputs are rows of tests/test_bad_inputs.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.keras_helpers import keras_or_skip, scramble

keras = keras_or_skip()
L = keras.layers
h5py = pytest.importorskip("h5py")
pytest.importorskip("onnxruntime")  # validate_cases runs the conversion in it


from rnndeploy.keras import convert_keras, load_keras_file  # noqa: E402
from rnndeploy.keras.validate import keras_cases  # noqa: E402


def _matches_keras3_twin(conv, twin, padded: bool) -> None:
    """The conversion against the Keras 3 model holding the same weights, at every export
    validation shape (batch 1 × seq 1, others, 2× the longest training sequence 16, and — for
    a masking model — pre-/post-padded and holey batches), within 1e-5."""
    from rnndeploy.export.validate import validate_cases

    graph = conv.spec.graph()
    cases = keras_cases(graph, conv.padding, 32)
    names = [t.name for t in graph.inputs]

    def reference(feeds):
        out = twin([feeds[n] for n in names] if len(names) > 1 else feeds[names[0]])
        return {graph.outputs[0].name: np.asarray(keras.ops.convert_to_numpy(out))}

    report = validate_cases(conv.model.SerializeToString(), graph, [(c.sizes, c.feeds, c.label) for c in cases],
                            reference, "keras 3 twin", "keras")
    assert report.ok, report.render()
    assert max(report.max_errors().values()) <= 1e-5
    where = {c.where for c in report.checks}
    assert {"batch=1 seq=1", "batch=3 seq=32"} <= where
    assert padded == ({"batch=4 seq=12 pre-padded", "batch=4 seq=12 post-padded", "batch=3 seq=9 holes"} <= where)


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
    assert [t.name for t in conv.spec.graph().inputs] == ["lstm_input"]
    _matches_keras3_twin(conv, k3, padded=True)


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
    assert [t.name for t in conv.spec.graph().inputs] == ["input_1"]
    _matches_keras3_twin(conv, k3, padded=True)


def test_keras2_sequential_h5_gru_reset_before_backwards_rnn_time_distributed(tmp_path):
    """tf.keras 2 defaults of older saves (GRU reset_after=False), a go_backwards SimpleRNN, a
    Bidirectional SimpleRNN summed, TimeDistributed(Dense): weights named as tf.keras 2 names them."""
    k3 = scramble(keras.Sequential([
        keras.Input((None, 3)), L.Masking(-1.0),
        L.GRU(4, return_sequences=True, reset_after=False),
        L.SimpleRNN(3, return_sequences=True, go_backwards=True, activation="relu"),
        L.Bidirectional(L.SimpleRNN(2, return_sequences=True), merge_mode="sum"),
        L.TimeDistributed(L.Dense(2, activation="softmax"))]), seed=4)
    w = k3.get_weights()
    rnn = _keras2_layer("SimpleRNN", "simple_rnn_1", **_rnn_cfg(2, return_sequences=True))
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, None, 3], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "masking_input"}},
        _keras2_layer("Masking", "masking", mask_value=-1.0),
        _keras2_layer("GRU", "gru", **_rnn_cfg(4, return_sequences=True, reset_after=False)),
        _keras2_layer("SimpleRNN", "simple_rnn", **_rnn_cfg(3, return_sequences=True, go_backwards=True,
                                                            activation="relu")),
        _keras2_layer("Bidirectional", "bidirectional", merge_mode="sum", layer=rnn),
        _keras2_layer("TimeDistributed", "time_distributed", layer=_keras2_layer(
            "Dense", "dense", units=2, activation="softmax", use_bias=True)),
    ]}}
    cell = "bidirectional/{}_simple_rnn_1/simple_rnn_cell/{}:0"
    weights = {
        "masking": {},
        "gru": {f"gru/gru_cell/{n}:0": w[i] for i, n in enumerate(("kernel", "recurrent_kernel", "bias"))},
        "simple_rnn": {f"simple_rnn/simple_rnn_cell/{n}:0": w[3 + i]
                       for i, n in enumerate(("kernel", "recurrent_kernel", "bias"))},
        "bidirectional": {cell.format(d, n): w[6 + i] for i, (d, n) in enumerate(
            [(d, n) for d in ("forward", "backward") for n in ("kernel", "recurrent_kernel", "bias")])},
        "time_distributed": {"time_distributed/kernel:0": w[12], "time_distributed/bias:0": w[13]},
    }
    assert len(w) == 14 and w[2].shape == (12,)  # reset_after=False: one bias row
    path = tmp_path / "k2b.h5"
    _write_keras2_h5(path, config, weights)
    conv = convert_keras(load_keras_file(str(path)))
    assert conv.padding == {"masking_input": {"kind": "features", "value": -1.0}}
    _matches_keras3_twin(conv, k3, padded=True)
