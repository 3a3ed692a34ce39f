"""Inputs generated from the spec: ranges, lengths, masks, padding, seeding, shape parsing."""

from __future__ import annotations

import numpy as np
import pytest

from rnndeploy.cli.harness_options import parse_int_list, parse_shapes
from rnndeploy.errors import SpecError, UsageError
from rnndeploy.inputs import generate_cases, generate_inputs, infer_sizes, sizes_for
from rnndeploy.spec import GraphSpec, TensorSpec


def graph() -> GraphSpec:
    return GraphSpec(
        "model",
        (
            TensorSpec("tokens", "int64", ("batch", "seq"), "tokens", time_axis=1, low=1, high=50),
            TensorSpec("lengths", "int64", ("batch",), "lengths"),
            TensorSpec("mask", "bool", ("batch", "seq"), "mask"),
            TensorSpec("feat", "float32", ("batch", "seq", 3), "features", time_axis=1, low=-2.0, high=5.0),
            TensorSpec("h0", "float32", (2, "batch", 8), "state", low=-0.5, high=0.5),
            TensorSpec("memory", "float16", ("batch", "src_seq", 4), "memory"),
        ),
        (TensorSpec("y", "float32", ("batch", 2), "logits"),),
    )


def test_generated_inputs_follow_the_spec():
    g = graph()
    sizes = sizes_for(g, 6, 9)
    assert sizes == {"batch": 6, "seq": 9, "src_seq": 9}
    x = generate_inputs(g, sizes, seed=3, pad_id=0)
    assert list(x) == [t.name for t in g.inputs]
    assert x["tokens"].shape == (6, 9) and x["tokens"].dtype == np.int64
    lens = x["lengths"]
    assert lens.min() >= 1 and lens.max() == 9  # the longest is exactly seq
    valid = np.arange(9)[None, :] < lens[:, None]
    assert (x["mask"] == valid).all() and x["mask"].dtype == np.bool_
    assert (x["tokens"][valid] >= 1).all() and (x["tokens"][valid] < 50).all()
    assert (x["tokens"][~valid] == 0).all()  # padding holds the pad id
    assert x["feat"].dtype == np.float32 and x["feat"].min() >= -2.0 and x["feat"].max() <= 5.0
    assert x["feat"].max() > 3.0  # the range is really used
    assert x["h0"].shape == (2, 6, 8) and np.abs(x["h0"]).max() <= 0.5
    assert x["memory"].dtype == np.float16 and x["memory"].shape == (6, 9, 4)


def test_seeding_is_per_case_and_reproducible():
    g = graph()
    a = generate_cases(g, [(2, 5), (3, 7)], seed=1)
    b = generate_cases(g, [(3, 7)], seed=1)
    c = generate_cases(g, [(3, 7)], seed=2)
    assert a[1].id == "b3-s7" and a[1].batch == 3 and a[1].seq == 7
    for k in a[1].inputs:
        assert np.array_equal(a[1].inputs[k], b[0].inputs[k])  # independent of the other cases
    assert not np.array_equal(a[1].inputs["feat"], c[0].inputs["feat"])


def test_inputs_a_keras_model_masks_are_pre_padded_in_cases():
    """attrs["padding"] (a Keras Embedding(mask_zero) / Masking input): rows pre-padded as
    pad_sequences does — one row full, every row at least one valid step — and nothing else changes."""
    g = GraphSpec("model", (TensorSpec("ids", "int32", ("batch", "seq"), "tokens", time_axis=1, low=1, high=20),
                            TensorSpec("feat", "float32", ("batch", "seq", 3), "features", time_axis=1)),
                  (TensorSpec("y", "float32", ("batch", 1), "prediction"),))
    attrs = {"padding": {"ids": {"kind": "tokens", "value": 0}, "feat": {"kind": "features", "value": -1.0}}}
    plain = generate_cases(g, [(6, 9)], seed=4)[0].inputs
    padded = generate_cases(g, [(6, 9)], seed=4, attrs=attrs)[0].inputs
    assert (plain["ids"] >= 1).all() and not (plain["feat"] == -1.0).all(axis=-1).any()
    for name, is_pad in (("ids", padded["ids"] == 0), ("feat", (padded["feat"] == -1.0).all(axis=-1))):
        valid = (~is_pad).sum(axis=1)
        assert valid.max() == 9 and valid.min() >= 1 and valid.min() < 9, name
        for row, n in enumerate(valid):  # the padding comes first, the values after it are untouched
            assert is_pad[row, : 9 - n].all() and not is_pad[row, 9 - n:].any()
            np.testing.assert_array_equal(padded[name][row, 9 - n:], plain[name][row, 9 - n:])


def test_batch_one_length_is_full():
    x = generate_inputs(graph(), {"batch": 1, "seq": 12, "src_seq": 12})
    assert x["lengths"].tolist() == [12]


def test_unknown_dynamic_axis_needs_dim():
    g = GraphSpec("model", (TensorSpec("x", "float32", ("N", "T", 3), "features"),),
                  (TensorSpec("y", "float32", ("N", 3), "other"),))
    with pytest.raises(SpecError, match="--dim"):
        sizes_for(g, 1, 4)
    sizes = sizes_for(g, 1, 4, {"N": 2, "T": 5})
    assert generate_inputs(g, sizes)["x"].shape == (2, 5, 3)
    assert infer_sizes(g, {"x": np.zeros((2, 5, 3))}) == {"N": 2, "T": 5}


def test_parse_shapes_and_lists():
    assert parse_shapes("1x16, 4X128") == [(1, 16), (4, 128)]
    for bad in ("", "1x", "ax2", "0x4", "1x2x3"):
        with pytest.raises(UsageError):
            parse_shapes(bad)
    assert parse_int_list("1,32,256", "--batch") == [1, 32, 256]
    for bad in ("", "1,a", "0"):
        with pytest.raises(UsageError):
            parse_int_list(bad, "--batch")
