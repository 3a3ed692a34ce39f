"""Task-level agreement: does the deployed model make the same *decisions*?

- char-LM sampling: every runtime generates text from the same prompt with the same
  seed through rnndeploy.decoding.generate_text (one uniform draw per row and step, so
  two runtimes emit the same ids unless their probabilities differ enough to cross a
  draw). Reported: fraction of generated ids equal to the reference's and the first
  divergence (row, step).
- seq2seq: greedy decoding through rnndeploy.decoding.greedy_decode with the encoder
  and decoder-step graphs of each runtime; reported: fraction of output tokens equal
  to the reference's (sequences compared position by position, padded with -1) and
  the fraction of identical sequences.
- argmax agreement is computed per output in rnndeploy.metrics.

Runners are driven through the generic Runner interface and the step functions of
rnndeploy.onnx_decoding (the tensors found by the spec's ``Seq2SeqIO`` /
``LanguageModelIO``), so every backend works the same way, and the decoding loops are
the very ones the torch side uses.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.backends.base import Runner
from rnndeploy.onnx_decoding import encode, lm_step, seq2seq_step
from rnndeploy.spec import Seq2SeqIO


# -- char-LM -------------------------------------------------------------------------------------------
def sample_tokens(runner: Runner, prompt: np.ndarray, steps: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """[batch, steps] ids generated after ``prompt`` [batch, p] by rnndeploy.decoding.generate_text."""
    from rnndeploy.decoding import generate_text

    return np.asarray(generate_text(lm_step(runner), np.asarray(prompt, dtype=np.int64), steps, temperature, seed))


def token_agreement(ref: np.ndarray, test: np.ndarray) -> Tuple[float, Optional[List[int]]]:
    """(fraction of equal ids, [row, step] of the earliest divergence or None)."""
    same = np.asarray(ref) == np.asarray(test)
    if same.all():
        return 1.0, None
    rows, steps = np.nonzero(~same)
    first = int(np.argmin(steps))
    return float(same.mean()), [int(rows[first]), int(steps[first])]


# -- seq2seq ---------------------------------------------------------------------------------------------
def greedy_hypotheses(encoder: Runner, decoder: Runner, feed: Dict[str, np.ndarray], bos_id: int, eos_id: int,
                      max_len: int) -> List[Any]:
    """Greedy ``decoding.Hypothesis`` per row with ``encoder`` and ``decoder`` runners."""
    from rnndeploy.decoding import greedy_decode

    io = Seq2SeqIO.resolve(encoder.graph_spec, decoder.graph_spec, encoder.source.spec.attrs)
    memory, states, src_len = encode(encoder, io, feed)
    return list(greedy_decode(seq2seq_step(decoder, io), states, memory, src_len, bos_id=bos_id, eos_id=eos_id,
                              max_len=max_len))


def greedy_tokens(encoder: Runner, decoder: Runner, feed: Dict[str, np.ndarray], bos_id: int, eos_id: int,
                  max_len: int) -> List[Tuple[int, ...]]:
    """Greedy output tokens per row (eos excluded) with ``encoder`` and ``decoder`` runners."""
    return [h.tokens for h in greedy_hypotheses(encoder, decoder, feed, bos_id, eos_id, max_len)]


def teacher_forced_scores(encoder: Runner, decoder: Runner, feed: Dict[str, np.ndarray],
                          tgt_in: np.ndarray) -> np.ndarray:
    """Log-scores [batch, T, vocab] of the decoder step fed the target tokens ``tgt_in`` [batch, T]
    (teacher forcing), after encoding ``feed``."""
    io = Seq2SeqIO.resolve(encoder.graph_spec, decoder.graph_spec, encoder.source.spec.attrs)
    memory, states, src_len = encode(encoder, io, feed)
    step = seq2seq_step(decoder, io)
    out = []
    for t in range(tgt_in.shape[1]):
        scores, states, _ = step(np.ascontiguousarray(tgt_in[:, t]), states, memory, src_len)
        out.append(scores)
    return np.stack(out, axis=1)


def sequence_agreement(ref: Sequence[Tuple[int, ...]], test: Sequence[Tuple[int, ...]]) -> Tuple[float, float, int]:
    """(token agreement, exact-sequence agreement, tokens compared); shorter sequences padded with -1."""
    same = total = exact = 0
    for r, t in zip(ref, test):
        n = max(len(r), len(t))
        rp = list(r) + [-1] * (n - len(r))
        tp = list(t) + [-1] * (n - len(t))
        same += sum(1 for a, b in zip(rp, tp) if a == b)
        total += n
        exact += int(tuple(r) == tuple(t))
    rows = max(len(ref), 1)
    return (same / total if total else 1.0), exact / rows, total
