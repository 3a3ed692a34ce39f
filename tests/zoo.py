"""Zoo models built with build_model (no training) for the export, parity and Triton tests.

ZOO maps a case name to (model config, data info, ExportOptions keywords). Importing this
module does not import torch; building a model does (callers importorskip torch first).
"""

from __future__ import annotations

REG_INFO = {"input_size": 3, "output_size": 2, "normalization": {"mean": [0.5, 0.0, 1.0], "std": [2.0, 1.0, 0.5]}}
CLS_INFO = {"vocab_size": 40, "num_classes": 3}
LM_INFO = {"vocab_size": 12, "vocab": list("abcdefghij .")}
S2S_INFO = {"src_vocab_size": 20, "tgt_vocab_size": 15, "bos_id": 1, "eos_id": 2}

ZOO = {
    "reg-lstm-2l": ({"family": "regressor", "cell": "lstm", "num_layers": 2}, REG_INFO, {}),
    "reg-gru-seq-state": ({"family": "regressor", "cell": "gru", "output": "sequence"}, REG_INFO, {"with_state": True}),
    "reg-rnn-tanh": ({"family": "regressor", "cell": "rnn_tanh"}, REG_INFO, {}),
    "reg-rnn-relu-bi-sum": (
        {"family": "regressor", "cell": "rnn_relu", "bidirectional": True, "merge_mode": "sum"},
        REG_INFO,
        {},
    ),
    "reg-lstm-bi-mul-var": (
        {
            "family": "regressor",
            "cell": "lstm",
            "bidirectional": True,
            "merge_mode": "mul",
            "variable_length": True,
            "num_layers": 2,
        },
        REG_INFO,
        {},
    ),
    "reg-gru-bi-ave-seq-var": (
        {
            "family": "regressor",
            "cell": "gru",
            "bidirectional": True,
            "merge_mode": "ave",
            "output": "sequence",
            "variable_length": True,
        },
        REG_INFO,
        {},
    ),
    "cls-lstm-bi-att": (
        {"family": "classifier", "cell": "lstm", "bidirectional": True, "attention": True},
        CLS_INFO,
        {},
    ),
    "cls-gru-dense": ({"family": "classifier", "cell": "gru", "num_layers": 2, "dense_units": 8}, CLS_INFO, {}),
    "charlm-lstm-state": ({"family": "charlm", "cell": "lstm", "num_layers": 2}, LM_INFO, {"with_state": True}),
    "charlm-gru": ({"family": "charlm", "cell": "gru"}, LM_INFO, {}),
    "s2s-gru": ({"family": "seq2seq", "cell": "gru"}, S2S_INFO, {}),
    "s2s-lstm-2l": ({"family": "seq2seq", "cell": "lstm", "num_layers": 2, "bidirectional": False}, S2S_INFO, {}),
}


def zoo_model(name: str, seed: int = 0):
    """A small untrained model of ZOO[name] (hidden 8, embeddings 6), seeded, in eval mode."""
    cfg, info, _ = ZOO[name]
    small = {"name": name, "hidden_size": 8, **cfg}
    if cfg["family"] != "regressor":
        small.setdefault("embedding_dim", 6)
    from rnndeploy.models import build_model

    return build_model(small, info, seed=seed).eval()


def torch_factory(model):
    """A runner_factory for run_parity whose "torch" runner runs ``model`` itself (not a checkpoint)."""
    from rnndeploy.backends import create_runner
    from rnndeploy.backends.torch_runner import TorchRunner

    def make(name, source, options):
        if name == "torch":
            return TorchRunner(source, options, module=model.graph_module(source.graph, source.with_state))
        return create_runner(name, source, options)
    return make
