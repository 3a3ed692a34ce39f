"""Model config validation: the recipe's ``[model]`` table → a resolved, JSON-able dict.

Keys follow Keras vocabulary where one exists (``units`` is accepted for
``hidden_size``, ``merge_mode`` as in ``keras.layers.Bidirectional``, ``SimpleRNN``
for ``rnn_tanh``). Every family accepts:

    family           "regressor" | "classifier" | "charlm" | "seq2seq" (required)
    name             model name written into the spec (default "<family>-<cell>")
    cell             "lstm" | "gru" | "rnn_tanh" | "rnn_relu"  (default "lstm";
                     "simplernn"/"rnn" mean "rnn_tanh")
    hidden_size      units per direction per layer (default 64; alias "units")
    num_layers       stacked recurrent layers (default 1)
    dropout          dropout between stacked layers / before the head, in [0, 1) (default 0.0)
    init             "keras": Xavier-uniform input weights, orthogonal recurrent weights,
                     zero biases; "torch": PyTorch's default uniform init (default "keras")
    unit_forget_bias LSTM forget-gate bias 1, as Keras (bias_ih + bias_hh slices sum to 1;
                     default true; applies with init "keras")

Family-specific keys are listed in ``FAMILY_KEYS`` below with their defaults and
documented in the family's module. Importing this module needs no torch.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from rnndeploy.errors import RecipeError

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
CELL_ALIASES = {"simplernn": "rnn_tanh", "simple_rnn": "rnn_tanh", "rnn": "rnn_tanh", "tanh": "rnn_tanh", "relu": "rnn_relu"}
MERGE_MODES = ("concat", "sum", "mul", "ave")
KEY_ALIASES = {"units": "hidden_size"}


class _Key:
    """One config key: its default and a checker returning the normalised value."""

    def __init__(self, default: Any, check: Callable[[str, str, Any], Any], doc: str):
        self.default = default
        self.check = check
        self.doc = doc


def _int(low: int, high: Optional[int] = None) -> Callable[[str, str, Any], Any]:
    def check(family: str, key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise RecipeError(f"model key {key!r} must be an integer, got {v!r} ({type(v).__name__})", _range_hint(low, high))
        if v < low or (high is not None and v > high):
            raise RecipeError(f"model key {key!r} = {v} is out of range", _range_hint(low, high))
        return int(v)

    return check


def _range_hint(low: int, high: Optional[int]) -> str:
    return f"use an integer >= {low}" if high is None else f"use an integer in [{low}, {high}]"


def _float(low: float, high: float) -> Callable[[str, str, Any], Any]:
    def check(family: str, key: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RecipeError(f"model key {key!r} must be a number, got {v!r} ({type(v).__name__})", f"use a number in [{low}, {high})")
        if not (low <= float(v) < high):
            raise RecipeError(f"model key {key!r} = {v} is out of range", f"use a number in [{low}, {high})")
        return float(v)

    return check


def _bool(family: str, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise RecipeError(f"model key {key!r} must be true or false, got {v!r} ({type(v).__name__})", "write true or false")
    return v


def _str(family: str, key: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise RecipeError(f"model key {key!r} must be a non-empty string, got {v!r}", "write a quoted name")
    return v


def _choice(choices: Tuple[str, ...], aliases: Optional[Mapping[str, str]] = None) -> Callable[[str, str, Any], Any]:
    def check(family: str, key: str, v: Any) -> str:
        if isinstance(v, str):
            low = v.strip().lower()
            low = (aliases or {}).get(low, low)
            if low in choices:
                return low
        raise RecipeError(f"model key {key!r} = {v!r} is not allowed", f"use one of {', '.join(repr(c) for c in choices)}")

    return check


_COMMON: Dict[str, _Key] = {
    "name": _Key(None, _str, "model name in the spec"),
    "cell": _Key("lstm", _choice(CELLS, CELL_ALIASES), "recurrent cell (every family takes every cell)"),
    "hidden_size": _Key(64, _int(1, 65536), "units per direction per layer"),
    "num_layers": _Key(1, _int(1, 64), "stacked recurrent layers"),
    "dropout": _Key(0.0, _float(0.0, 1.0), "dropout between layers and before the head"),
    "init": _Key("keras", _choice(("keras", "torch")), "weight initialisation scheme"),
    "unit_forget_bias": _Key(True, _bool, "LSTM forget-gate bias 1"),
}

FAMILY_KEYS: Dict[str, Dict[str, _Key]] = {
    "regressor": {
        "bidirectional": _Key(False, _bool, "bidirectional recurrent layers"),
        "merge_mode": _Key("concat", _choice(MERGE_MODES), "how the two directions are merged (Keras Bidirectional)"),
        "output": _Key("last", _choice(("last", "sequence")), "predict from the last valid step, or at every step"),
        "variable_length": _Key(False, _bool, "add a 'lengths' input; padded steps are ignored"),
    },
    "classifier": {
        "embedding_dim": _Key(64, _int(1, 65536), "token embedding size"),
        "bidirectional": _Key(False, _bool, "bidirectional recurrent layers"),
        "merge_mode": _Key("concat", _choice(MERGE_MODES), "how the two directions are merged (Keras Bidirectional)"),
        "attention": _Key(False, _bool, "additive attention pooling over time (else the last valid step)"),
        "attention_size": _Key(0, _int(0, 65536), "attention hidden size (0: the recurrent output size)"),
        "dense_units": _Key(0, _int(0, 65536), "hidden ReLU layer in the head (0: none)"),
    },
    "charlm": {
        "embedding_dim": _Key(32, _int(1, 65536), "character embedding size"),
    },
    "seq2seq": {
        "embedding_dim": _Key(64, _int(1, 65536), "token embedding size (source and target)"),
        "bidirectional": _Key(True, _bool, "bidirectional encoder"),
        "merge_mode": _Key("concat", _choice(MERGE_MODES), "how the encoder's two directions are merged"),
        "attention_size": _Key(0, _int(0, 65536), "Bahdanau attention hidden size (0: the decoder hidden size)"),
        "max_decode_len": _Key(64, _int(1, 100000), "default maximum output length of greedy/beam decoding"),
    },
}


def allowed_keys(family: str) -> Dict[str, _Key]:
    """Every key of ``family`` (without "family") → its definition."""
    if family not in FAMILY_KEYS:
        raise RecipeError(f"model family {family!r} is unknown", f"use one of {', '.join(repr(f) for f in FAMILY_KEYS)}")
    keys = dict(_COMMON)
    keys.update(FAMILY_KEYS[family])
    return keys


def validate_config(family: Optional[str], cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Check a model config and fill in defaults.

    Args:
        family: the model family; None takes it from ``cfg["family"]``.
        cfg: the recipe's ``[model]`` table (``family`` may be present; it must agree).

    Returns:
        A new dict with every key of the family (defaults filled, aliases resolved,
        cell names canonical), ``family`` and ``name`` included.

    Raises:
        RecipeError: unknown key (with the closest allowed key and the full list),
            wrong type, or a value out of range.
    """
    if not isinstance(cfg, Mapping):
        raise RecipeError(f"the [model] table must be a table of keys, got {type(cfg).__name__}")
    given = dict(cfg)
    fam_in_cfg = given.pop("family", None)
    if family is None:
        family = fam_in_cfg
    if family is None:
        raise RecipeError("the [model] table has no 'family'", f"add family = one of {', '.join(repr(f) for f in FAMILY_KEYS)}")
    if not isinstance(family, str):
        raise RecipeError(f"model key 'family' must be a string, got {family!r}")
    family = family.strip().lower()
    keys = allowed_keys(family)
    if fam_in_cfg is not None and str(fam_in_cfg).strip().lower() != family:
        raise RecipeError(f"model family {fam_in_cfg!r} in the [model] table contradicts {family!r}")

    for alias, target in KEY_ALIASES.items():
        if alias in given:
            if target in given:
                raise RecipeError(f"model keys {alias!r} and {target!r} mean the same thing", f"keep only {target!r}")
            given[target] = given.pop(alias)

    for key in given:
        if key not in keys:
            close = difflib.get_close_matches(key, list(keys) + list(KEY_ALIASES), n=1, cutoff=0.6)
            suggestion = f"did you mean {close[0]!r}? " if close else ""
            raise RecipeError(
                f"unknown model key {key!r} for family {family!r}",
                f"{suggestion}allowed keys: {', '.join(sorted(keys))}",
            )

    out: Dict[str, Any] = {"family": family}
    for key, spec in keys.items():
        if key in given:
            out[key] = spec.check(family, key, given[key])
        else:
            out[key] = spec.default
    if out["name"] is None:
        out["name"] = f"{family}-{out['cell'].replace('_', '-')}"
    return out


def describe_keys(family: str) -> Dict[str, Tuple[Any, str]]:
    """key → (default, one-line description), for docs and ``--help`` texts."""
    return {k: (v.default, v.doc) for k, v in allowed_keys(family).items()}
