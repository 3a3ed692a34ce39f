"""Text classifier: Embedding → (bi)LSTM/GRU/SimpleRNN → optional additive attention → dense head.

Config keys (besides the common ones in rnndeploy.models.config):
    embedding_dim    token embedding size (default 64)
    bidirectional    false
    merge_mode       "concat" | "sum" | "mul" | "ave" (Keras Bidirectional; default "concat")
    attention        false: classify from the last valid step (Keras' return_sequences=False);
                     true: additive attention pooling over the valid steps
    attention_size   attention MLP size (0: the recurrent output size)
    dense_units      a hidden ReLU layer before the output layer (0: none)

data_info: ``vocab_size``, ``num_classes``, ``pad_id`` (default 0; its embedding row
is zero and padded steps are skipped via ``lengths``), plus any JSON-able facts
(class names, tokenizer, vocabulary) copied into the spec's attrs.

Graph "model": inputs tokens [batch, seq] int64, lengths [batch] int64; outputs logits
[batch, num_classes] (+ attention [batch, seq] when attention is on: weights over
time, 0 at padded steps).
"""

from __future__ import annotations

from typing import Any, Mapping, Tuple

from torch import Tensor, nn

from rnndeploy.models.attention import ATTENTION_FP16, AdditiveAttention
from rnndeploy.models.base import ZooModel, need, special_id
from rnndeploy.models.recurrent import RecurrentStack, length_mask
from rnndeploy.spec import DEFAULT_TOLERANCES, GraphSpec, ModelSpec, TensorSpec


class TextClassifier(ZooModel):
    family = "classifier"

    def __init__(self, config: Mapping[str, Any], data_info: Mapping[str, Any]):
        super().__init__(config, data_info)
        cfg = self.config
        self.vocab_size = need(data_info, "vocab_size", self.family, minimum=2)
        self.num_classes = need(data_info, "num_classes", self.family, minimum=2)
        self.pad_id = special_id(data_info, "pad_id", self.vocab_size, default=0)
        self.data_info["pad_id"] = self.pad_id
        self.embedding = nn.Embedding(self.vocab_size, cfg["embedding_dim"], padding_idx=self.pad_id)
        self.rnn = RecurrentStack(
            cfg["cell"], cfg["embedding_dim"], cfg["hidden_size"], cfg["num_layers"],
            cfg["bidirectional"], cfg["merge_mode"], cfg["dropout"],
        )
        feat = self.rnn.output_size
        self.attention = AdditiveAttention(feat, cfg["attention_size"] or feat) if cfg["attention"] else None
        layers: list = [nn.Dropout(cfg["dropout"])]
        if cfg["dense_units"]:
            layers += [nn.Linear(feat, cfg["dense_units"]), nn.ReLU(), nn.Dropout(cfg["dropout"])]
            feat = cfg["dense_units"]
        layers.append(nn.Linear(feat, self.num_classes))
        self.head = nn.Sequential(*layers)
        self._init_weights()

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """Training forward: logits [batch, num_classes]."""
        return self._run(tokens, lengths)[0]

    def _run(self, tokens: Tensor, lengths: Tensor) -> Tuple[Tensor, ...]:
        seq, last, _ = self.rnn(self.embedding(tokens), lengths)
        if self.attention is None:
            return (self.head(last),)
        context, weights = self.attention(seq, length_mask(lengths, tokens.shape[1], seq.device))
        return self.head(context), weights

    def run_graph(self, graph: str, with_state: bool, *inputs: Tensor) -> Tuple[Tensor, ...]:
        tokens, lengths = inputs
        return self._run(tokens, lengths)

    def spec(self) -> ModelSpec:
        cfg = self.config
        inputs = (
            TensorSpec("tokens", "int64", ("batch", "seq"), "tokens", time_axis=1, low=0, high=self.vocab_size,
                       description=f"token ids, right-padded with pad_id {self.pad_id}"),
            TensorSpec("lengths", "int64", ("batch",), "lengths", low=1, description="valid tokens per row, 1..seq"),
        )
        outputs = [TensorSpec("logits", "float32", ("batch", self.num_classes), "logits", description="class scores (softmax for probabilities)")]
        overrides = {}
        if cfg["attention"]:
            outputs.append(TensorSpec("attention", "float32", ("batch", "seq"), "attention", time_axis=1,
                                      description="attention weights over time; 0 at padded steps"))
            overrides["attention"] = {"fp16": ATTENTION_FP16}
        graph = GraphSpec("model", inputs, tuple(outputs), tolerances=dict(DEFAULT_TOLERANCES), output_tolerances=overrides)
        return ModelSpec(
            name=cfg["name"],
            family=self.family,
            graphs={"model": graph},
            attrs=self._attrs(vocab_size=self.vocab_size, num_classes=self.num_classes, pad_id=self.pad_id),
        )
