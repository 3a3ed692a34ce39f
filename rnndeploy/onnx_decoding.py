"""Decoding through runners (torch-free, deploy side): the step functions the decoding
loops of rnndeploy.decoding call, built on any Runner, and two conveniences on top.

- ``encode`` / ``seq2seq_step``: an encoder and a decoder-step runner → the seq2seq step
  signature; ``lm_step``: a char-LM runner → the char-LM step signature. Tensors are
  found by the spec's typed I/O descriptions (``Seq2SeqIO``, ``LanguageModelIO``), so
  parity's decoding / sampling agreement and the classes below read the same tensors.
- ``OnnxSeq2Seq``: ``NAME.encoder.onnx`` + ``NAME.decoder_step.onnx`` → greedy and
  beam-search decodes.
- ``OnnxCharLM``: a char-LM exported ``--with-state`` → text generation with the state
  carried between steps.

Both classes drive the SAME loops as the PyTorch models: only the numbers a step
returns can differ, so decoded tokens match the torch decoder's as long as the ONNX
graphs match torch (which export validated). Everything they need (state tensor names,
bos/eos ids, vocabulary) is read from the files' rnndeploy metadata; they run in the
``ort-cpu`` runner unless another ``backend`` is named.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from rnndeploy.artefacts.naming import seq2seq_paths
from rnndeploy.backends import RunnerOptions, create_runner
from rnndeploy.backends.base import Runner
from rnndeploy.backends.source import resolve_source
from rnndeploy.decoding import Hypothesis, LMStep, Seq2SeqStep, States, beam_search, generate_text, greedy_decode
from rnndeploy.errors import SpecError, UsageError
from rnndeploy.fileio import PathLike
from rnndeploy.spec import LanguageModelIO, ModelSpec, Seq2SeqIO, TensorSpec, numpy_dtype

__all__ = ["OnnxCharLM", "OnnxSeq2Seq", "encode", "lm_step", "seq2seq_paths", "seq2seq_step"]


def _cast(t: TensorSpec, value: Any) -> np.ndarray:
    return np.ascontiguousarray(value, dtype=numpy_dtype(t.dtype))


def _log_scores(t: TensorSpec, scores: Any) -> np.ndarray:
    """Scores as the decoding loops take them: logits as they are, probabilities as logs."""
    s = np.asarray(scores, dtype=np.float64)
    return np.log(np.maximum(s, 1e-300)) if t.role == "probs" else s


# -- seq2seq --------------------------------------------------------------------------------------------
def encode(encoder: Runner, io: Seq2SeqIO, feed: Mapping[str, np.ndarray]) -> Tuple[np.ndarray, States, np.ndarray]:
    """(memory, decoder initial states, source lengths) from one encoder run on ``feed``.

    Source lengths come from the encoder's lengths input, else every memory step counts.
    """
    out = encoder.infer(feed)
    memory = out[io.memory_out.name]
    states = tuple(out[t.name] for t in io.enc_states)
    if io.src_lengths is not None:
        lengths = np.asarray(feed[io.src_lengths.name], dtype=np.int64)
    else:
        lengths = np.full((memory.shape[0],), memory.shape[1], dtype=np.int64)
    return memory, states, lengths


def seq2seq_step(decoder: Runner, io: Seq2SeqIO) -> Seq2SeqStep:
    """The rnndeploy.decoding seq2seq step running ``decoder`` (the decoder-step graph)."""

    def step(tokens: np.ndarray, states: States, memory: np.ndarray,
             src_lengths: np.ndarray) -> Tuple[np.ndarray, States, Optional[np.ndarray]]:
        feed = {io.token_in.name: _cast(io.token_in, tokens), io.memory_in.name: _cast(io.memory_in, memory)}
        feed.update({t.name: _cast(t, s) for t, s in zip(io.dec_states_in, states)})
        if io.src_lengths_in is not None:
            feed[io.src_lengths_in.name] = _cast(io.src_lengths_in, src_lengths)
        if io.src_mask_in is not None:
            mask = np.arange(memory.shape[1])[None, :] < np.asarray(src_lengths).reshape(-1, 1)
            feed[io.src_mask_in.name] = _cast(io.src_mask_in, mask)
        out = decoder.infer(feed)
        attention = out[io.attention.name] if io.attention is not None else None
        return _log_scores(io.scores, out[io.scores.name]), tuple(out[t.name] for t in io.dec_states_out), attention

    return step


# -- char-LM ---------------------------------------------------------------------------------------------
def lm_step(runner: Runner, io: Optional[LanguageModelIO] = None) -> LMStep:
    """The rnndeploy.decoding char-LM step running ``runner``'s graph.

    Stateful graphs (state in → state out) take only the new ids, starting from zero
    states; a stateless graph is re-run on the growing prefix, which the step keeps as
    its "state".
    """
    io = io or LanguageModelIO.resolve(runner.graph_spec)
    time_axis = io.scores.time_axis

    def run(tokens: np.ndarray, extra: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        batch, seq = tokens.shape
        feed = {io.tokens.name: _cast(io.tokens, tokens), **extra}
        if io.lengths is not None:
            feed[io.lengths.name] = np.full((batch,), seq, dtype=numpy_dtype(io.lengths.dtype))
        if io.mask is not None:
            feed[io.mask.name] = np.ones((batch, seq), dtype=numpy_dtype(io.mask.dtype))
        return runner.infer(feed)

    def scores(out: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.moveaxis(_log_scores(io.scores, out[io.scores.name]), time_axis, 1)

    if io.stateful:
        def step(tokens: np.ndarray, states: Optional[States]) -> Tuple[np.ndarray, States]:
            tokens = np.asarray(tokens)
            if states is None:
                states = tuple(np.zeros(t.shape_for({"batch": tokens.shape[0]}), numpy_dtype(t.dtype))
                               for t in io.states_in)
            out = run(tokens, {t.name: _cast(t, s) for t, s in zip(io.states_in, states)})
            return scores(out), tuple(_cast(i, out[o.name]) for i, o in zip(io.states_in, io.states_out))
        return step

    def step_prefix(tokens: np.ndarray, states: Optional[States]) -> Tuple[np.ndarray, States]:
        prefix = np.asarray(tokens) if states is None else np.concatenate([states[0], tokens], axis=1)
        return scores(run(prefix, {})), (prefix,)
    return step_prefix


# -- conveniences over ONNX files ---------------------------------------------------------------------------
def _runner(path: PathLike, backend: str, options: RunnerOptions) -> Runner:
    """An active runner on one exported ONNX file, its spec read from the file's metadata."""
    return create_runner(backend, resolve_source(onnx=str(path), auto_checkpoint=False), options).activate()


def _options(threads: Optional[int], options: Optional[RunnerOptions]) -> RunnerOptions:
    if options is not None:
        return options
    return RunnerOptions(threads=int(threads) if threads else None)


class OnnxSeq2Seq:
    """A seq2seq model from its two ONNX files.

    Args:
        encoder, decoder_step: paths of the exported graphs (see ``seq2seq_paths``).
        backend: the runner both graphs run in (default "ort-cpu"; any ONNX backend).
        threads: intra-op threads per session (default: the runtime's choice).
        options: full RunnerOptions instead of ``threads``.
    """

    def __init__(
        self,
        encoder: PathLike,
        decoder_step: PathLike,
        backend: str = "ort-cpu",
        threads: Optional[int] = None,
        options: Optional[RunnerOptions] = None,
    ):
        opts = _options(threads, options)
        self.encoder = _runner(encoder, backend, opts)
        self.decoder = _runner(decoder_step, backend, opts)
        if self.encoder.source.graph != "encoder" or self.decoder.source.graph != "decoder_step":
            raise SpecError(
                f"{encoder} holds graph {self.encoder.source.graph!r} and {decoder_step} holds "
                f"{self.decoder.source.graph!r}",
                "give the encoder file first, then the decoder_step file",
            )
        if self.encoder.source.spec.name != self.decoder.source.spec.name:
            raise SpecError(
                f"{encoder} is from model {self.encoder.source.spec.name!r} but {decoder_step} from "
                f"{self.decoder.source.spec.name!r}",
                "use the two files of one export",
            )
        self.spec: ModelSpec = self.decoder.source.spec
        attrs = self.spec.attrs
        for key in ("bos_id", "eos_id"):
            if key not in attrs:
                raise SpecError(f"{decoder_step}: the model spec has no {key!r}", "re-export with this rnndeploy")
        self.bos_id = int(attrs["bos_id"])
        self.eos_id = int(attrs["eos_id"])
        self.pad_id = int(attrs.get("pad_id", 0))
        self.max_decode_len = int(attrs.get("max_decode_len", 64))
        self.state_batch_axis = int(attrs.get("state_batch_axis", 1))
        self.io = Seq2SeqIO.resolve(self.encoder.graph_spec, self.decoder.graph_spec, attrs)
        if self.io.src_tokens is None or self.io.src_lengths is None:
            raise SpecError(f"{encoder}: the encoder takes no source tokens and lengths", "re-export with this rnndeploy")
        self.step: Seq2SeqStep = seq2seq_step(self.decoder, self.io)

    @classmethod
    def from_export(cls, out: PathLike, **kwargs: Any) -> OnnxSeq2Seq:
        """Open the files ``rnndeploy export -o OUT`` wrote for a seq2seq model."""
        enc, dec = seq2seq_paths(out)
        return cls(enc, dec, **kwargs)

    def close(self) -> None:
        """Release both runners."""
        self.encoder.deactivate()
        self.decoder.deactivate()

    def encode(self, src_tokens: np.ndarray, src_lengths: np.ndarray) -> Tuple[np.ndarray, States]:
        """(memory [batch, src_seq, M], decoder initial states)."""
        assert self.io.src_tokens is not None and self.io.src_lengths is not None  # checked in __init__
        feed = {self.io.src_tokens.name: _cast(self.io.src_tokens, src_tokens),
                self.io.src_lengths.name: _cast(self.io.src_lengths, src_lengths)}
        memory, states, _ = encode(self.encoder, self.io, feed)
        return memory, states

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
    """A char-LM exported with ``--with-state``, generating text (see OnnxSeq2Seq for the args)."""

    def __init__(self, path: PathLike, backend: str = "ort-cpu", threads: Optional[int] = None,
                 options: Optional[RunnerOptions] = None):
        self.path = str(path)
        self.runner = _runner(path, backend, _options(threads, options))
        self.io = LanguageModelIO.resolve(self.runner.graph_spec)
        if not self.io.stateful:
            self.runner.deactivate()
            raise UsageError(
                f"{path} has no state inputs/outputs: generation needs the streaming form",
                "re-export with rnndeploy export --with-state",
            )
        self.vocab: Optional[List[str]] = self.runner.source.spec.attrs.get("vocab")
        self.step: LMStep = lm_step(self.runner, self.io)

    def close(self) -> None:
        self.runner.deactivate()

    def generate(
        self, prime: Union[str, Sequence[int]], n_chars: int, temperature: float = 1.0, seed: int = 0
    ) -> Union[str, np.ndarray]:
        """Sample ``n_chars`` continuations of ``prime`` (text when the model has a vocabulary,
        else ids). Same seed → same output as the torch model's ``generate``."""
        if isinstance(prime, str):
            if not self.vocab:
                raise UsageError(f"{self.path} carries no vocabulary to encode text with", "give the prime as token ids")
            lut = {c: i for i, c in enumerate(self.vocab)}
            missing = sorted({c for c in prime if c not in lut})
            if missing:
                raise UsageError(
                    f"characters {''.join(missing)!r} are not in the model's vocabulary", "remove them from the prime"
                )
            ids = generate_text(self.step, [lut[c] for c in prime], n_chars, temperature, seed)
            return "".join(self.vocab[int(i)] for i in ids)
        return generate_text(self.step, list(prime), n_chars, temperature, seed)
