"""Reference model zoo (torch). NOT importable on the deploy side.

Interface contract (other stages rely on it; change it only together with them):

    validate_config(family: str | None, model_cfg: Mapping) -> dict
        the recipe's [model] table checked and completed (defaults filled, aliases and
        cell names canonical); raises RecipeError naming a bad key / type / value.
        Needs no torch (lives in rnndeploy.models.config).

    build_model(model_cfg: Mapping, data_info: Mapping, seed: int | None = None) -> ZooModel
        model_cfg  the recipe's [model] table (family, cell, sizes, ...); validated here
        data_info  facts from the dataset: input_size / output_size / vocab sizes /
                   num_classes / special token ids / normalisation statistics
                   (per family, see the family's module docstring)
        seed       when given, the weights are drawn under this torch seed without
                   touching the global RNG; same seed → identical weights

    class ZooModel(torch.nn.Module):
        config: dict                       resolved model config (JSON-able)
        data_info: dict
        def spec(self) -> rnndeploy.spec.ModelSpec
        def graph_module(self, graph="model", with_state=False) -> torch.nn.Module
            a module whose forward takes the graph's spec inputs positionally, in
            spec order, and returns a tuple of the spec outputs in spec order: the
            thing export traces and the torch runner runs. with_state=True keeps the
            optional (role "state") tensors; models that cannot stream raise UsageError.
        def example_inputs(self, graph="model", batch=2, seq=7, with_state=False,
                           seed=0) -> dict[str, torch.Tensor]   keyed by spec names

    Training forwards (what a loss is computed on):
        regressor   model(x, lengths=None) -> y  [batch, out] or [batch, seq, out]
        classifier  model(tokens, lengths) -> logits [batch, num_classes]
        charlm      model(tokens) -> logits [batch, seq, vocab]
        seq2seq     model(src_tokens, src_lengths, tgt_in) -> logits [batch, tgt_seq, tgt_vocab]
                    (teacher forcing; tgt_in starts with bos)

Families and their graphs:
    regressor   "model"                       rnndeploy.models.regressor
    classifier  "model"                       rnndeploy.models.classifier
    charlm      "model" (streaming: h0/c0)    rnndeploy.models.charlm    (+ generate)
    seq2seq     "encoder", "decoder_step"     rnndeploy.models.seq2seq   (+ greedy/beam decode)
Decoding and sampling algorithms live in the torch-free rnndeploy.decoding, so a
deploy-side (onnxruntime) decoder runs exactly the same loop.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Optional

from rnndeploy.models.config import validate_config

_FAMILIES = {
    "regressor": ("rnndeploy.models.regressor", "SequenceRegressor"),
    "classifier": ("rnndeploy.models.classifier", "TextClassifier"),
    "charlm": ("rnndeploy.models.charlm", "CharLM"),
    "seq2seq": ("rnndeploy.models.seq2seq", "Seq2Seq"),
}


def model_class(family: str) -> Any:
    """The ZooModel subclass of ``family`` (imports torch)."""
    module, name = _FAMILIES[family]
    return getattr(importlib.import_module(module), name)


def build_model(model_cfg: Mapping[str, Any], data_info: Mapping[str, Any], seed: Optional[int] = None) -> Any:
    """Validate ``model_cfg`` and build the zoo model it names (see the module docstring)."""
    import torch

    cfg = validate_config(None, model_cfg)
    cls = model_class(cfg["family"])
    if seed is None:
        return cls(cfg, data_info)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return cls(cfg, data_info)


def __getattr__(name: str) -> Any:
    # ZooModel without importing torch when only validate_config is wanted.
    if name == "ZooModel":
        from rnndeploy.models.base import ZooModel

        return ZooModel
    raise AttributeError(name)


__all__ = ["build_model", "validate_config", "model_class", "ZooModel"]
