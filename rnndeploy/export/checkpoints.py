"""A ``rnndeploy train`` checkpoint's export defaults — the recipe's [export] section (opset,
exporter, with_state, example sizes, longest training sequence). The checkpoint itself
loads through rnndeploy.checkpoint.load_model."""

from __future__ import annotations

from typing import Any, Dict

# data_info / [data] keys that give the longest training sequence, per dataset kind
_LENGTH_KEYS = ("longest_train_seq", "max_seq_len", "max_len", "seq_len", "window", "max_word_len", "max_src_len")


def checkpoint_defaults(loaded: Any) -> Dict[str, Any]:
    """Export defaults from a LoadedCheckpoint: opset, exporter, with_state, example
    sizes, longest_train_seq, the recipe's name and the checkpoint's hashes (None where unknown)."""
    recipe = getattr(loaded, "recipe", None)
    section = dict(getattr(recipe, "export", None) or {})
    data_section = dict(getattr(recipe, "data", None) or {})
    recipe_name = getattr(recipe, "name", None)
    data_info = dict(getattr(loaded, "data_info", None) or {})
    out: Dict[str, Any] = {}
    for key in ("opset", "exporter", "with_state"):
        if section.get(key) is not None:
            out[key] = section[key]
    example = {}
    if section.get("example_batch"):
        example["batch"] = int(section["example_batch"])
    if section.get("example_seq"):
        example["seq"] = int(section["example_seq"])
    out["example"] = example
    out["longest_train_seq"] = longest_train_seq(section, data_info, data_section)
    # The manifest hashes every file of the checkpoint, so its own hash names the whole checkpoint.
    out["sha256"] = getattr(loaded, "manifest_sha256", None)
    out["weights_sha256"] = getattr(loaded, "weights_sha256", None)
    out["recipe"] = recipe_name
    # the recipe's promise: the deploy side measures a deployed model on the same metric and split
    bar = getattr(recipe, "quality_bar", None) if recipe is not None and getattr(recipe, "quality", None) else None
    out["quality"] = ({"metric": bar.metric, "split": bar.split, "bound": bar.bound,
                       "higher_is_better": bar.higher_is_better} if bar is not None else None)
    engine = getattr(recipe, "engine", None)
    out["engine"] = {k: v for k, v in dict(engine).items() if v is not None} if engine else None
    return out


def longest_train_seq(export_section: Dict[str, Any], data_info: Dict[str, Any], data_section: Dict[str, Any]) -> Any:
    """The longest sequence seen in training: the recipe's [export] longest_train_seq, else the
    dataset's own length facts (window, max_len, seq_len, max_src_len, ...); None if unknown."""
    if export_section.get("longest_train_seq") is not None:
        return int(export_section["longest_train_seq"])
    for source in (data_info, data_section):
        for key in _LENGTH_KEYS:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return int(value)
    return None
