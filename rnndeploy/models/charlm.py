"""Character language model with explicit state: Embedding → LSTM/GRU/SimpleRNN → Linear(vocab).

Config keys (besides the common ones in rnndeploy.models.config):
    embedding_dim    character embedding size (default 32)
(unidirectional by construction: a language model cannot read the future it predicts).

data_info: ``vocab_size``; optional ``vocab`` (list of the characters, index = id), which
lets ``generate`` take and return text.

Graph "model": input tokens [batch, seq] int64 (+ h0 [, c0] [num_layers, batch, hidden],
optional: the streaming form); outputs logits [batch, seq, vocab] (+ hn [, cn]). Without
the state inputs the model starts from zeros. Running chunk by chunk with the state
carried equals running the whole sequence.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from rnndeploy.decoding import States, generate_text
from rnndeploy.errors import RecipeError, UsageError
from rnndeploy.models.base import ZooModel, need, state_specs
from rnndeploy.models.recurrent import RecurrentStack, State
from rnndeploy.spec import DEFAULT_TOLERANCES, GraphSpec, ModelSpec, TensorSpec


class CharLM(ZooModel):
    family = "charlm"

    def __init__(self, config: Mapping[str, Any], data_info: Mapping[str, Any]):
        super().__init__(config, data_info)
        cfg = self.config
        self.vocab_size = need(data_info, "vocab_size", self.family, minimum=2)
        vocab = data_info.get("vocab")
        if vocab is not None and len(vocab) != self.vocab_size:
            raise RecipeError(f"data_info 'vocab' has {len(vocab)} entries but vocab_size is {self.vocab_size}")
        self.embedding = nn.Embedding(self.vocab_size, cfg["embedding_dim"])
        self.rnn = RecurrentStack(cfg["cell"], cfg["embedding_dim"], cfg["hidden_size"], cfg["num_layers"], False, "concat", cfg["dropout"])
        self.drop = nn.Dropout(cfg["dropout"])
        self.head = nn.Linear(cfg["hidden_size"], self.vocab_size)
        self._init_weights()

    @property
    def state_names(self) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        """(input state names, output state names)."""
        if self.config["cell"] == "lstm":
            return ("h0", "c0"), ("hn", "cn")
        return ("h0",), ("hn",)

    def forward(self, tokens: Tensor, state: Optional[State] = None) -> Tensor:
        """Training forward: logits [batch, seq, vocab]."""
        return self.step(tokens, state)[0]

    def step(self, tokens: Tensor, state: Optional[State] = None) -> Tuple[Tensor, State]:
        """(logits [batch, seq, vocab], new state) from tokens [batch, seq] and a state (None: zeros)."""
        seq, _, new_state = self.rnn(self.embedding(tokens), None, state)
        return self.head(self.drop(seq)), new_state

    def run_graph(self, graph: str, with_state: bool, *inputs: Tensor) -> Tuple[Tensor, ...]:
        tokens = inputs[0]
        logits, new_state = self.step(tokens, tuple(inputs[1:]) if with_state else None)
        return (logits, *new_state) if with_state else (logits,)

    def zero_state(self, batch: int) -> State:
        shape = (self.rnn.state_layers, batch, self.config["hidden_size"])
        device = self.head.weight.device
        return tuple(torch.zeros(shape, device=device) for _ in range(self.rnn.num_states))

    def numpy_step(self):
        """A ``rnndeploy.decoding`` LM step running this model (eval mode, no grad)."""
        gm = self.graph_module(with_state=True)
        device = self.head.weight.device

        def step(tokens: np.ndarray, states: Optional[States]) -> Tuple[np.ndarray, States]:
            with torch.no_grad():
                t = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).to(device)
                st = self.zero_state(t.shape[0]) if states is None else tuple(torch.from_numpy(np.asarray(s)).to(device) for s in states)
                outs = gm(t, *st)
            return outs[0].cpu().numpy(), tuple(o.cpu().numpy() for o in outs[1:])

        return step

    def generate(
        self, prime: Union[str, Sequence[int]], n_chars: int, temperature: float = 1.0, seed: int = 0
    ) -> Union[str, np.ndarray]:
        """Sample ``n_chars`` continuations of ``prime`` (rnndeploy.decoding.generate_text).

        ``prime`` is text (needs data_info["vocab"]; returns text) or a sequence of ids
        (returns an int64 array). The model is put in eval mode. Same seed → same output,
        and the same as the ONNX Runtime generator given the same seed.
        """
        self.eval()
        vocab = self.data_info.get("vocab")
        if isinstance(prime, str):
            if vocab is None:
                raise UsageError("this char-LM has no vocabulary to encode text with", "give the prime as token ids")
            lut = {c: i for i, c in enumerate(vocab)}
            missing = sorted({c for c in prime if c not in lut})
            if missing:
                raise UsageError(f"characters {''.join(missing)!r} are not in the model's vocabulary", "remove them from the prime")
            ids = generate_text(self.numpy_step(), [lut[c] for c in prime], n_chars, temperature, seed)
            return "".join(vocab[int(i)] for i in ids)
        return generate_text(self.numpy_step(), list(prime), n_chars, temperature, seed)

    def spec(self) -> ModelSpec:
        cfg = self.config
        state_in, state_out = self.state_names
        layers, hidden = self.rnn.state_layers, cfg["hidden_size"]
        inputs = (
            TensorSpec("tokens", "int64", ("batch", "seq"), "tokens", time_axis=1, low=0, high=self.vocab_size,
                       description="character ids"),
            *state_specs(cfg["cell"], layers, hidden, state_in, "state before the chunk (zeros when absent)"),
        )
        outputs = (
            TensorSpec("logits", "float32", ("batch", "seq", self.vocab_size), "logits", time_axis=1,
                       description="next-character scores at every step"),
            *state_specs(cfg["cell"], layers, hidden, state_out, "state after the chunk: feed it back as the next chunk's state"),
        )
        graph = GraphSpec("model", inputs, outputs, tolerances=dict(DEFAULT_TOLERANCES))
        return ModelSpec(
            name=cfg["name"],
            family=self.family,
            graphs={"model": graph},
            attrs=self._attrs(vocab_size=self.vocab_size, state_inputs=list(state_in), state_outputs=list(state_out)),
        )
