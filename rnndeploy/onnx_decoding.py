"""Decoding through exported ONNX files with onnxruntime (torch-free, deploy side).

- ``OnnxSeq2Seq``: ``encoder.onnx`` + ``decoder_step.onnx`` → greedy and beam-search decodes.
- ``OnnxCharLM``: a char-LM exported ``--with-state`` → text generation with the state
  carried between steps.

Both drive the SAME loops as the PyTorch models (``rnndeploy.decoding``): only the
numbers a step returns can differ, so decoded tokens match the torch decoder's as long
as the ONNX graphs match torch (which export validated). Everything these classes need
(state tensor names, bos/eos ids, vocabulary) is read from the files' rnndeploy metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from rnndeploy.decoding import Hypothesis, States, beam_search, generate_text, greedy_decode
from rnndeploy.errors import SpecError, UsageError
from rnndeploy.onnx_file import load_onnx
from rnndeploy.optional import require
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec, read_onnx_metadata

PathLike = Union[str, "os.PathLike[str]"]


class _OnnxGraph:
    """One ONNX file in an onnxruntime session, with its rnndeploy spec."""

    def __init__(self, path: PathLike, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):

        ort = require("onnxruntime", "decoding with ONNX models")
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise UsageError(f"ONNX file {self.path} does not exist", "export it with rnndeploy export")
        model = load_onnx(self.path, external_data=False)
        self.spec, self.graph_name, self.export_info = read_onnx_metadata(model, self.path)
        self.graph: GraphSpec = self.spec.graph(self.graph_name)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(
            self.path, sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def by_role(self, tensors: Sequence[TensorSpec], role: str) -> List[TensorSpec]:
        return [t for t in tensors if t.role == role]

    def one(self, tensors: Sequence[TensorSpec], role: str, what: str) -> TensorSpec:
        found = self.by_role(tensors, role)
        if len(found) != 1:
            raise SpecError(f"{self.path}: expected one {what} (role {role!r}), found {len(found)}")
        return found[0]


def seq2seq_paths(out: PathLike) -> Tuple[Path, Path]:
    """(encoder, decoder_step) paths of a seq2seq export given its ``-o``: ``NAME.onnx`` →
    ``NAME.encoder.onnx`` + ``NAME.decoder_step.onnx``; a directory → ``DIR/encoder.onnx``
    + ``DIR/decoder_step.onnx``."""
    p = Path(out)
    if p.is_dir():
        return p / "encoder.onnx", p / "decoder_step.onnx"
    return p.with_name(f"{p.stem}.encoder.onnx"), p.with_name(f"{p.stem}.decoder_step.onnx")


class OnnxSeq2Seq:
    """A seq2seq model from its two ONNX files.

    Args:
        encoder, decoder_step: paths of the exported graphs (see ``seq2seq_paths``).
        providers: onnxruntime execution providers (default CPU).
        threads: intra-op threads per session (default: onnxruntime's choice).
    """

    def __init__(
        self,
        encoder: PathLike,
        decoder_step: PathLike,
        providers: Optional[Sequence[str]] = None,
        threads: Optional[int] = None,
    ):
        self.encoder = _OnnxGraph(encoder, providers, threads)
        self.decoder = _OnnxGraph(decoder_step, providers, threads)
        if self.encoder.graph_name != "encoder" or self.decoder.graph_name != "decoder_step":
            raise SpecError(
                f"{encoder} holds graph {self.encoder.graph_name!r} and {decoder_step} holds {self.decoder.graph_name!r}",
                "give the encoder file first, then the decoder_step file",
            )
        if self.encoder.spec.name != self.decoder.spec.name:
            raise SpecError(
                f"{encoder} is from model {self.encoder.spec.name!r} but {decoder_step} from {self.decoder.spec.name!r}",
                "use the two files of one export",
            )
        self.spec: ModelSpec = self.decoder.spec
        attrs = self.spec.attrs
        for key in ("bos_id", "eos_id"):
            if key not in attrs:
                raise SpecError(f"{decoder_step}: the model spec has no {key!r}", "re-export with this rnndeploy")
        self.bos_id = int(attrs["bos_id"])
        self.eos_id = int(attrs["eos_id"])
        self.pad_id = int(attrs.get("pad_id", 0))
        self.max_decode_len = int(attrs.get("max_decode_len", 64))
        self.state_batch_axis = int(attrs.get("state_batch_axis", 1))
        enc, dec = self.encoder.graph, self.decoder.graph
        names = attrs.get("decoder_state") or {}
        self.enc_states = list(
            names.get("encoder_outputs") or [t.name for t in self.encoder.by_role(enc.outputs, "state")]
        )
        self.dec_states_in = list(names.get("inputs") or [t.name for t in self.decoder.by_role(dec.inputs, "state")])
        self.dec_states_out = list(names.get("outputs") or [t.name for t in self.decoder.by_role(dec.outputs, "state")])
        if not (len(self.enc_states) == len(self.dec_states_in) == len(self.dec_states_out)):
            raise SpecError(f"{decoder_step}: encoder and decoder state tensors do not pair up")
        self.src_tokens = self.encoder.one(enc.inputs, "tokens", "source token input").name
        self.src_lengths = self.encoder.one(enc.inputs, "lengths", "source lengths input").name
        self.memory_out = self.encoder.one(enc.outputs, "memory", "memory output").name
        self.token_in = self.decoder.one(dec.inputs, "token", "token input").name
        self.memory_in = self.decoder.one(dec.inputs, "memory", "memory input").name
        self.lengths_in = self.decoder.one(dec.inputs, "lengths", "source lengths input").name
        self.logits_out = self.decoder.by_role(dec.outputs, "logits")[0].name
        att = self.decoder.by_role(dec.outputs, "attention")
        self.attention_out = att[0].name if att else None

    @classmethod
    def from_export(cls, out: PathLike, **kwargs: Any) -> OnnxSeq2Seq:
        """Open the files ``rnndeploy export -o OUT`` wrote for a seq2seq model."""
        enc, dec = seq2seq_paths(out)
        return cls(enc, dec, **kwargs)

    def encode(self, src_tokens: np.ndarray, src_lengths: np.ndarray) -> Tuple[np.ndarray, States]:
        """(memory [batch, src_seq, M], decoder initial states)."""
        outs = self.encoder.run(
            {
                self.src_tokens: np.asarray(src_tokens, dtype=np.int64),
                self.src_lengths: np.asarray(src_lengths, dtype=np.int64),
            }
        )
        return outs[self.memory_out], tuple(outs[n] for n in self.enc_states)

    def step(
        self, tokens: np.ndarray, states: States, memory: np.ndarray, src_lengths: np.ndarray
    ) -> Tuple[np.ndarray, States, Optional[np.ndarray]]:
        """One decoder step (the ``rnndeploy.decoding`` seq2seq step signature)."""
        feeds = {
            self.token_in: np.asarray(tokens, dtype=np.int64),
            self.memory_in: np.ascontiguousarray(memory, dtype=np.float32),
            self.lengths_in: np.asarray(src_lengths, dtype=np.int64),
        }
        for name, s in zip(self.dec_states_in, states):
            feeds[name] = np.ascontiguousarray(s, dtype=np.float32)
        outs = self.decoder.run(feeds)
        att = outs[self.attention_out] if self.attention_out else None
        return outs[self.logits_out], tuple(outs[n] for n in self.dec_states_out), att

    def decode(
        self,
        src_tokens: np.ndarray,
        src_lengths: np.ndarray,
        beam_size: int = 1,
        max_len: Optional[int] = None,
        length_penalty: float = 0.0,
        n_best: int = 1,
        return_attention: bool = False,
    ) -> List[List[Hypothesis]]:
        """Decode every row: greedy when beam_size is 1 (and n_best 1), else beam search.

        Returns per row its ``n_best`` hypotheses, best first (same as the torch model's
        ``decode``). ``max_len`` defaults to the model's ``max_decode_len``.
        """
        src = np.asarray(src_tokens, dtype=np.int64)
        lengths = np.asarray(src_lengths, dtype=np.int64)
        if src.ndim != 2 or lengths.shape != (src.shape[0],):
            raise UsageError(
                f"source tokens {list(src.shape)} and lengths {list(lengths.shape)} do not fit",
                "give tokens [batch, src_seq] and lengths [batch]",
            )
        memory, states = self.encode(src, lengths)
        common = dict(
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            max_len=int(max_len or self.max_decode_len),
            return_attention=return_attention,
        )
        if beam_size == 1 and n_best == 1:
            return [[h] for h in greedy_decode(self.step, states, memory, lengths, **common)]
        return beam_search(
            self.step,
            states,
            memory,
            lengths,
            beam_size=beam_size,
            length_penalty=length_penalty,
            n_best=n_best,
            state_batch_axis=self.state_batch_axis,
            **common,
        )


class OnnxCharLM:
    """A char-LM exported with ``--with-state``, generating text in onnxruntime."""

    def __init__(self, path: PathLike, providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):
        self.model = _OnnxGraph(path, providers, threads)
        g = self.model.graph
        self.tokens_in = self.model.one(g.inputs, "tokens", "token input").name
        self.logits_out = self.model.one(g.outputs, "logits", "logits output").name
        self.states_in = self.model.by_role(g.inputs, "state")
        self.states_out = [t.name for t in self.model.by_role(g.outputs, "state")]
        if not self.states_in or len(self.states_in) != len(self.states_out):
            raise UsageError(
                f"{path} has no state inputs/outputs: generation needs the streaming form",
                "re-export with rnndeploy export --with-state",
            )
        self.vocab: Optional[List[str]] = self.model.spec.attrs.get("vocab")

    def zero_states(self, batch: int) -> States:
        return tuple(np.zeros(t.shape_for({"batch": batch}), dtype=np.float32) for t in self.states_in)

    def step(self, tokens: np.ndarray, states: Optional[States]) -> Tuple[np.ndarray, States]:
        """(logits [batch, seq, vocab], new states); states None starts from zeros."""
        tok = np.ascontiguousarray(tokens, dtype=np.int64)
        st = self.zero_states(tok.shape[0]) if states is None else states
        feeds = {self.tokens_in: tok}
        for t, s in zip(self.states_in, st):
            feeds[t.name] = np.ascontiguousarray(s, dtype=np.float32)
        outs = self.model.run(feeds)
        return outs[self.logits_out], tuple(outs[n] for n in self.states_out)

    def generate(
        self, prime: Union[str, Sequence[int]], n_chars: int, temperature: float = 1.0, seed: int = 0
    ) -> Union[str, np.ndarray]:
        """Sample ``n_chars`` continuations of ``prime`` (text when the model has a vocabulary,
        else ids). Same seed → same output as the torch model's ``generate``."""
        if isinstance(prime, str):
            if not self.vocab:
                raise UsageError(
                    f"{self.model.path} carries no vocabulary to encode text with", "give the prime as token ids"
                )
            lut = {c: i for i, c in enumerate(self.vocab)}
            missing = sorted({c for c in prime if c not in lut})
            if missing:
                raise UsageError(
                    f"characters {''.join(missing)!r} are not in the model's vocabulary", "remove them from the prime"
                )
            ids = generate_text(self.step, [lut[c] for c in prime], n_chars, temperature, seed)
            return "".join(self.vocab[int(i)] for i in ids)
        return generate_text(self.step, list(prime), n_chars, temperature, seed)
