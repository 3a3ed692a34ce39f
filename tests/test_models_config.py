"""Model config validation (torch-free: rnndeploy.models.config)."""

from __future__ import annotations

import pytest

from rnndeploy.errors import RecipeError
from rnndeploy.models.config import FAMILY_KEYS, describe_keys, validate_config
from rnndeploy.spec import FAMILIES


def test_every_spec_family_but_custom_has_a_schema():
    assert set(FAMILY_KEYS) == set(FAMILIES) - {"custom"}


@pytest.mark.parametrize("family", sorted(FAMILY_KEYS))
def test_defaults_are_filled_and_valid(family):
    cfg = validate_config(family, {})
    assert cfg["family"] == family
    assert set(cfg) == set(describe_keys(family)) | {"family"}
    assert cfg["cell"] == "lstm" and cfg["init"] == "keras" and cfg["name"] == f"{family}-lstm"
    # A resolved config validates to itself (checkpoints store the resolved form).
    assert validate_config(None, cfg) == cfg


def test_family_from_table_and_aliases():
    cfg = validate_config(None, {"family": "Regressor", "cell": "SimpleRNN", "units": 8, "merge_mode": "AVE"})
    assert cfg["family"] == "regressor"
    assert cfg["cell"] == "rnn_tanh"
    assert cfg["hidden_size"] == 8
    assert cfg["merge_mode"] == "ave"
    assert cfg["name"] == "regressor-rnn-tanh"


def test_unknown_key_suggests_closest_and_lists_allowed():
    with pytest.raises(RecipeError) as exc:
        validate_config("regressor", {"hiden_size": 4})
    msg = str(exc.value)
    assert "'hiden_size'" in msg and "did you mean 'hidden_size'" in msg
    assert "allowed keys:" in msg and "merge_mode" in msg and "variable_length" in msg
    assert exc.value.exit_code == 2


def test_unknown_key_without_close_match_still_lists_allowed():
    with pytest.raises(RecipeError) as exc:
        validate_config("charlm", {"zzz": 1})
    assert "did you mean" not in str(exc.value) and "embedding_dim" in str(exc.value)


def test_family_specific_keys_are_not_shared():
    # charlm has no bidirectional key: a bidirectional LM cannot generate.
    with pytest.raises(RecipeError, match="'bidirectional'"):
        validate_config("charlm", {"bidirectional": True})


@pytest.mark.parametrize(
    "cfg, needle",
    [
        ({"hidden_size": "64"}, "must be an integer"),
        ({"hidden_size": 0}, "out of range"),
        ({"num_layers": True}, "must be an integer"),
        ({"dropout": 1.0}, "out of range"),
        ({"dropout": "0.1"}, "must be a number"),
        ({"bidirectional": "yes"}, "true or false"),
        ({"cell": "transformer"}, "'lstm', 'gru', 'rnn_tanh', 'rnn_relu'"),
        ({"merge_mode": "max"}, "'concat', 'sum', 'mul', 'ave'"),
        ({"output": "first"}, "'last', 'sequence'"),
        ({"units": 4, "hidden_size": 4}, "mean the same thing"),
        ({"family": "classifier"}, "contradicts"),
    ],
)
def test_bad_values_name_key_and_expectation(cfg, needle):
    with pytest.raises(RecipeError) as exc:
        validate_config("regressor", cfg)
    assert needle in str(exc.value)


def test_bad_family_and_missing_family():
    with pytest.raises(RecipeError, match="'transformer' is unknown.*'regressor'"):
        validate_config("transformer", {})
    with pytest.raises(RecipeError, match="no 'family'"):
        validate_config(None, {"cell": "gru"})
    with pytest.raises(RecipeError, match="table of keys"):
        validate_config("regressor", ["cell", "gru"])


def test_input_is_not_mutated():
    given = {"family": "seq2seq", "units": 16}
    validate_config(None, given)
    assert given == {"family": "seq2seq", "units": 16}
