"""Seq2seq encoder–decoder with Bahdanau (additive) attention; the decoder runs one step at a time.

Config keys (besides the common ones in rnndeploy.models.config):
    embedding_dim    source and target token embedding size (default 64)
    bidirectional    bidirectional encoder (default true)
    merge_mode       how the encoder's directions are merged (default "concat")
    attention_size   Bahdanau MLP size (0: the decoder hidden size)
    max_decode_len   default output length limit of greedy / beam decoding (default 64)
``cell``, ``hidden_size`` and ``num_layers`` apply to encoder and decoder alike.

data_info: ``src_vocab_size``, ``tgt_vocab_size``, ``pad_id`` (default 0), ``bos_id``,
``eos_id`` (target vocabulary), optional ``src_pad_id`` (default pad_id).

Graphs:
    encoder       src_tokens [batch, src_seq], src_lengths [batch]
                  → memory [batch, src_seq, M] (0 at padded steps), h0 (+ c0) [num_layers, batch, hidden]
    decoder_step  token [batch], h (+ c) [num_layers, batch, hidden], memory, src_lengths
                  → logits [batch, tgt_vocab], h_next (+ c_next), attention [batch, src_seq]
One decoder step: attend from the previous top-layer state over the valid source steps
(Bahdanau), feed [embedding(token); context] through the recurrent layers for one step
(an nn.GRU / nn.LSTM over a length-1 sequence: one native ONNX node per layer under the
TorchScript exporter, where a GRUCell exports as cell maths), predict from [output; context].
The state maps: encoder h0/c0 → decoder h/c; decoder h_next/c_next → next step's h/c
(also in the spec attrs under "decoder_state").
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from rnndeploy.decoding import Hypothesis, States, beam_search, greedy_decode
from rnndeploy.errors import UsageError
from rnndeploy.models.attention import ATTENTION_FP16, AdditiveAttention
from rnndeploy.models.base import ZooModel, need, special_id, state_range
from rnndeploy.models.recurrent import RecurrentStack, length_mask, make_rnn
from rnndeploy.spec import DEFAULT_TOLERANCES, GraphSpec, ModelSpec, TensorSpec


class Seq2Seq(ZooModel):
    family = "seq2seq"
    graph_names = ("encoder", "decoder_step")

    def __init__(self, config: Mapping[str, Any], data_info: Mapping[str, Any]):
        super().__init__(config, data_info)
        cfg = self.config
        self.src_vocab_size = need(data_info, "src_vocab_size", self.family, minimum=2)
        self.tgt_vocab_size = need(data_info, "tgt_vocab_size", self.family, minimum=3)
        self.pad_id = special_id(data_info, "pad_id", self.tgt_vocab_size, default=0)
        self.src_pad_id = special_id(data_info, "src_pad_id", self.src_vocab_size, default=self.pad_id)
        self.bos_id = special_id(data_info, "bos_id", self.tgt_vocab_size)
        self.eos_id = special_id(data_info, "eos_id", self.tgt_vocab_size)
        for k, v in (("pad_id", self.pad_id), ("src_pad_id", self.src_pad_id), ("bos_id", self.bos_id), ("eos_id", self.eos_id)):
            self.data_info[k] = v
        cell, hidden, layers, emb = cfg["cell"], cfg["hidden_size"], cfg["num_layers"], cfg["embedding_dim"]
        self.src_embedding = nn.Embedding(self.src_vocab_size, emb, padding_idx=self.src_pad_id)
        self.encoder = RecurrentStack(cell, emb, hidden, layers, cfg["bidirectional"], cfg["merge_mode"], cfg["dropout"])
        mem = self.encoder.output_size
        self.memory_size = mem
        self.bridge_h = nn.Linear(mem, layers * hidden)
        self.bridge_c = nn.Linear(mem, layers * hidden) if cell == "lstm" else None
        self.tgt_embedding = nn.Embedding(self.tgt_vocab_size, emb, padding_idx=self.pad_id)
        self.attention = AdditiveAttention(mem, cfg["attention_size"] or hidden, query_size=hidden)
        self.decoder = make_rnn(cell, emb + mem, hidden, layers, False, cfg["dropout"])
        self.drop = nn.Dropout(cfg["dropout"])
        self.out = nn.Linear(hidden + mem, self.tgt_vocab_size)
        self._init_weights()

    # -- names -------------------------------------------------------------------------------
    @property
    def num_states(self) -> int:
        return 2 if self.config["cell"] == "lstm" else 1

    @property
    def state_names(self) -> Dict[str, List[str]]:
        """Encoder outputs, decoder inputs and decoder outputs holding the decoder state."""
        names = ["h", "c"][: self.num_states]
        return {
            "encoder_outputs": [f"{n}0" for n in names],
            "inputs": names,
            "outputs": [f"{n}_next" for n in names],
        }

    def pad_id_for(self, tensor: str) -> Optional[int]:
        return self.src_pad_id if tensor == "src_tokens" else self.pad_id

    # -- computation ---------------------------------------------------------------------------
    def encode(self, src_tokens: Tensor, src_lengths: Tensor) -> Tuple[Tensor, Tuple[Tensor, ...]]:
        """(memory [B, S, M], decoder initial state(s) [layers, B, hidden])."""
        memory, last, _ = self.encoder(self.src_embedding(src_tokens), src_lengths)
        layers, hidden = self.config["num_layers"], self.config["hidden_size"]

        def bridge(lin: nn.Linear) -> Tensor:
            return torch.tanh(lin(last)).reshape(-1, layers, hidden).transpose(0, 1).contiguous()

        states = (bridge(self.bridge_h),) if self.bridge_c is None else (bridge(self.bridge_h), bridge(self.bridge_c))
        return memory, states

    def decode_step(
        self,
        token: Tensor,
        states: Tuple[Tensor, ...],
        memory: Tensor,
        src_lengths: Tensor,
        cache: Optional[Tuple[Tensor, Tensor]] = None,
    ) -> Tuple[Tensor, Tuple[Tensor, ...], Tensor]:
        """(logits [B, V], new state(s), attention [B, S]) for one target step.

        ``cache``: (source mask, ``attention.key_proj(memory)``), computed once and reused across the
        steps of teacher-forced training; the exported decoder_step recomputes them.
        """
        h = states[0]
        top = self.config["num_layers"] - 1
        mask, keys = cache if cache is not None else (length_mask(src_lengths, memory.shape[1], memory.device), None)
        context, weights = self.attention(memory, mask, h[top], projected_keys=keys)
        x = torch.cat([self.tgt_embedding(token), context], dim=-1).unsqueeze(1)
        hx = states if self.bridge_c is not None else states[0]
        out, new = self.decoder(x, hx)
        new_states = tuple(new) if isinstance(new, tuple) else (new,)
        logits = self.out(self.drop(torch.cat([out[:, 0], context], dim=-1)))
        return logits, new_states, weights

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits [batch, tgt_seq, tgt_vocab] (tgt_in starts with bos)."""
        memory, states = self.encode(src_tokens, src_lengths)
        cache = (length_mask(src_lengths, memory.shape[1], memory.device), self.attention.key_proj(memory))
        steps = []
        for t in range(tgt_in.shape[1]):
            logits, states, _ = self.decode_step(tgt_in[:, t], states, memory, src_lengths, cache)
            steps.append(logits)
        return torch.stack(steps, dim=1)

    def run_graph(self, graph: str, with_state: bool, *inputs: Tensor) -> Tuple[Tensor, ...]:
        if graph == "encoder":
            memory, states = self.encode(*inputs)
            return (memory, *states)
        if graph == "decoder_step":
            n = self.num_states
            token, states, memory, src_lengths = inputs[0], tuple(inputs[1 : 1 + n]), inputs[1 + n], inputs[2 + n]
            logits, new_states, weights = self.decode_step(token, states, memory, src_lengths)
            return (logits, *new_states, weights)
        raise UsageError(f"seq2seq model has no graph {graph!r}", "graphs: encoder, decoder_step")

    # -- decoding (the algorithms live in rnndeploy.decoding, shared with the ORT decoder) ----------
    def numpy_encoder(self):
        """``encode(src_tokens, src_lengths) -> (memory, states)`` on numpy arrays."""
        gm = self.graph_module("encoder")
        device = self.out.weight.device

        def encode(src_tokens: np.ndarray, src_lengths: np.ndarray) -> Tuple[np.ndarray, States]:
            with torch.no_grad():
                outs = gm(_tensor(src_tokens, device), _tensor(src_lengths, device))
            arrays = tuple(o.cpu().numpy() for o in outs)
            return arrays[0], arrays[1:]

        return encode

    def numpy_step(self):
        """A ``rnndeploy.decoding`` seq2seq step running this model's decoder_step graph."""
        gm = self.graph_module("decoder_step")
        device = self.out.weight.device

        def step(tokens: np.ndarray, states: States, memory: np.ndarray, src_lengths: np.ndarray):
            with torch.no_grad():
                outs = gm(_tensor(tokens, device), *(_tensor(s, device) for s in states), _tensor(memory, device),
                          _tensor(src_lengths, device))
            arrays = [o.cpu().numpy() for o in outs]
            return arrays[0], tuple(arrays[1:-1]), arrays[-1]

        return step

    def decode(
        self,
        src_tokens: Any,
        src_lengths: Any,
        beam_size: int = 1,
        max_len: Optional[int] = None,
        length_penalty: float = 0.0,
        n_best: int = 1,
        return_attention: bool = False,
    ) -> List[List[Hypothesis]]:
        """Decode every source row: greedy when beam_size is 1, else beam search.

        Returns per row a list of ``n_best`` rnndeploy.decoding.Hypothesis, best first.
        The model is put in eval mode.
        """
        self.eval()
        src = _numpy(src_tokens, np.int64)
        lengths = _numpy(src_lengths, np.int64)
        memory, states = self.numpy_encoder()(src, lengths)
        max_len = int(max_len or self.config["max_decode_len"])
        common = dict(bos_id=self.bos_id, eos_id=self.eos_id, max_len=max_len, return_attention=return_attention)
        if beam_size == 1 and n_best == 1:
            return [[h] for h in greedy_decode(self.numpy_step(), states, memory, lengths, **common)]
        return beam_search(self.numpy_step(), states, memory, lengths, beam_size=beam_size, length_penalty=length_penalty,
                           n_best=n_best, state_batch_axis=1, **common)

    def greedy_decode(self, src_tokens: Any, src_lengths: Any, max_len: Optional[int] = None) -> Tuple[Tensor, Tensor]:
        """(tokens [batch, L] int64 — eos included when produced, pad after it —, scores [batch])."""
        return self._pack(self.decode(src_tokens, src_lengths, 1, max_len))

    def beam_search(
        self, src_tokens: Any, src_lengths: Any, beam_size: int = 4, max_len: Optional[int] = None, length_penalty: float = 0.0
    ) -> Tuple[Tensor, Tensor]:
        """Like greedy_decode, with beam search; scores are the best hypotheses' normalised scores."""
        return self._pack(self.decode(src_tokens, src_lengths, beam_size, max_len, length_penalty))

    def _pack(self, results: List[List[Hypothesis]]) -> Tuple[Tensor, Tensor]:
        rows = [r[0].with_eos(self.eos_id) for r in results]
        width = max([len(r) for r in rows] + [1])
        tokens = torch.full((len(rows), width), self.pad_id, dtype=torch.int64)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        return tokens, torch.tensor([r[0].normalized_score for r in results], dtype=torch.float64)

    # -- contract ---------------------------------------------------------------------------------
    def spec(self) -> ModelSpec:
        cfg = self.config
        layers, hidden, mem = cfg["num_layers"], cfg["hidden_size"], self.memory_size
        names = self.state_names

        def states(kind: str, role_desc: str) -> Tuple[TensorSpec, ...]:
            out = []
            for name in names[kind]:
                low, high = state_range(cfg["cell"], name[0])
                out.append(TensorSpec(name, "float32", (layers, "batch", hidden), "state", low=low, high=high, description=role_desc))
            return tuple(out)

        memory = TensorSpec("memory", "float32", ("batch", "src_seq", mem), "memory", time_axis=1, low=-1.0, high=1.0,
                            description="encoder outputs (0 at padded source steps)")
        src_lengths = TensorSpec("src_lengths", "int64", ("batch",), "lengths", low=1, description="valid source tokens per row")
        encoder = GraphSpec(
            "encoder",
            (
                TensorSpec("src_tokens", "int64", ("batch", "src_seq"), "tokens", time_axis=1, low=0, high=self.src_vocab_size,
                           description=f"source ids, right-padded with {self.src_pad_id}"),
                src_lengths,
            ),
            (memory, *states("encoder_outputs", "decoder initial state")),
            tolerances=dict(DEFAULT_TOLERANCES),
        )
        decoder = GraphSpec(
            "decoder_step",
            (
                TensorSpec("token", "int64", ("batch",), "token", low=0, high=self.tgt_vocab_size,
                           description=f"previous target token (bos {self.bos_id} first)"),
                *states("inputs", "decoder state before this step"),
                memory,
                src_lengths,
            ),
            (
                TensorSpec("logits", "float32", ("batch", self.tgt_vocab_size), "logits", description="next-token scores"),
                *states("outputs", "decoder state after this step"),
                TensorSpec("attention", "float32", ("batch", "src_seq"), "attention", time_axis=1,
                           description="attention over source steps; 0 at padding"),
            ),
            tolerances=dict(DEFAULT_TOLERANCES),
            output_tolerances={"attention": {"fp16": ATTENTION_FP16}},
        )
        return ModelSpec(
            name=cfg["name"],
            family=self.family,
            graphs={"encoder": encoder, "decoder_step": decoder},
            attrs=self._attrs(
                src_vocab_size=self.src_vocab_size,
                tgt_vocab_size=self.tgt_vocab_size,
                memory_size=mem,
                decoder_state=names,
                state_batch_axis=1,
            ),
        )


def _numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=dtype)


def _tensor(x: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)
