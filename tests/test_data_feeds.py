"""Real dataset splits as graph inputs (torch-free): what parity uses to run deployed models
on the data they were trained for."""

from __future__ import annotations

import numpy as np
import pytest

from rnndeploy.data import load_dataset
from rnndeploy.data.feeds import dataset_for_spec, spec_feeds, spec_targets
from rnndeploy.errors import DataError
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec


def regressor_spec(data_info):
    g = GraphSpec(
        "model",
        (
            TensorSpec("x", "float32", ("batch", "seq", 1), "features", time_axis=1),
            TensorSpec("h0", "float32", (1, "batch", 8), "state", optional=True),
        ),
        (TensorSpec("y", "float32", ("batch", 1), "prediction"),),
    )
    return ModelSpec("sine-lstm", "regressor", {"model": g}, attrs=dict(data_info))


def test_spec_round_trip_rebuilds_the_same_test_split():
    ds = load_dataset({"source": "sine", "n_series": 200, "seed": 3})
    assert ds.data_info["data_config"]["n_series"] == 200
    spec = ModelSpec.from_json(regressor_spec(ds.data_info).to_json())  # as read from ONNX metadata
    again = dataset_for_spec(spec)
    np.testing.assert_array_equal(again.test["x"], ds.test["x"])
    feeds = spec_feeds(again, spec.graph("model"), "test", limit=7)
    assert list(feeds) == ["x"] and feeds["x"].shape == (7, 50, 1) and feeds["x"].dtype == np.float32
    targets = spec_targets(again, spec.graph("model"), "test", limit=7)
    np.testing.assert_array_equal(targets["y"], ds.test["y"][:7])


def test_classifier_feeds_tokens_and_lengths(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "\n".join(f"word{i % 5} thing,{i % 2}" for i in range(30)) + "\n")
    ds = load_dataset({"source": "labelled_text", "path": str(path), "max_len": 6})
    g = GraphSpec(
        "model",
        (
            TensorSpec("tokens", "int64", ("batch", "seq"), "tokens", time_axis=1),
            TensorSpec("lengths", "int64", ("batch",), "lengths"),
        ),
        (
            TensorSpec("logits", "float32", ("batch", 2), "logits"),
            TensorSpec("attention", "float32", ("batch", "seq"), "attention"),
        ),
    )
    feeds = spec_feeds(ds, g, "val")
    assert feeds["tokens"].shape == (3, 6) and feeds["lengths"].tolist() == ds.val["lengths"].tolist()
    assert list(spec_targets(ds, g, "val")) == ["logits"]


def test_graphs_the_data_cannot_feed():
    ds = load_dataset({"source": "sine", "n_series": 50})
    step = GraphSpec(
        "decoder_step",
        (TensorSpec("token", "int64", ("batch",), "token"),),
        (TensorSpec("logits", "float32", ("batch", 9), "logits"),),
    )
    with pytest.raises(DataError, match="input 'token'"):
        spec_feeds(ds, step)
    with pytest.raises(DataError, match="no split 'dev'"):
        spec_feeds(ds, step, "dev")
    with pytest.raises(DataError, match="no data_config"):
        dataset_for_spec(ModelSpec("foreign", "custom", {"decoder_step": step}))
