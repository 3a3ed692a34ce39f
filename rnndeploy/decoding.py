"""Backend-agnostic decoding: greedy, beam search and temperature sampling on numpy arrays.

The torch models (rnndeploy.models.seq2seq / charlm) and the deploy-side ONNX Runtime
decoder drive these SAME loops with their own step functions, so the only thing that
can differ between two backends is the numbers a step returns; the algorithms cannot.
Torch-free (numpy 1.26 and 2.x, Python 3.9).

Step functions:

    seq2seq: step(tokens, states, memory, src_lengths) -> (scores, new_states, attention)
        tokens      int64 [batch]            previous output token of each row
        states      tuple of float arrays    decoder state(s), batch on ``state_batch_axis``
                                             (rnndeploy's spec convention: [layers, batch, hidden])
        memory      float [batch, src_seq, M] encoder outputs
        src_lengths int64 [batch]
        scores      float [batch, vocab]     logits or log-probabilities (log_softmax is
                                             applied here; it leaves log-probabilities unchanged)
        attention   float [batch, src_seq] or None

    char-LM: step(tokens, states) -> (logits, new_states)
        tokens [batch, seq] int64; states None (start from zeros) or a tuple; logits
        [batch, seq, vocab].

Scores are sums of natural-log probabilities computed in float64. Ties are broken
towards the lower token id (and, in beam search, the lower beam slot), identically in
greedy and beam search, which is why ``beam_size=1`` reproduces greedy exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import UsageError

States = Tuple[np.ndarray, ...]
Seq2SeqStep = Callable[[np.ndarray, States, np.ndarray, np.ndarray], Tuple[np.ndarray, States, Optional[np.ndarray]]]
LMStep = Callable[[np.ndarray, Optional[States]], Tuple[np.ndarray, States]]


@dataclass(frozen=True)
class Hypothesis:
    """One decoded output sequence.

    Attributes:
        tokens: generated ids, bos and eos excluded.
        score: sum of log-probabilities of the generated tokens (eos included when finished).
        finished: True when the sequence ended with eos (False: cut at max_len).
        normalized_score: ``score / length ** length_penalty`` with length = tokens + eos
            (equals ``score`` for greedy decoding and length_penalty 0).
        attention: [steps, src_seq] attention weights per generated step (eos step
            included), when requested and the step returns them.
    """

    tokens: Tuple[int, ...]
    score: float
    finished: bool
    normalized_score: float
    attention: Optional[np.ndarray] = field(default=None, compare=False, repr=False)

    @property
    def length(self) -> int:
        """Generated steps, eos included."""
        return len(self.tokens) + (1 if self.finished else 0)

    def with_eos(self, eos_id: int) -> List[int]:
        """The tokens followed by eos when the sequence finished."""
        return list(self.tokens) + ([eos_id] if self.finished else [])

    def to_dict(self) -> Dict[str, Any]:
        return {"tokens": list(self.tokens), "score": self.score, "finished": self.finished, "normalized_score": self.normalized_score}


# -- numerics -----------------------------------------------------------------------------
def log_softmax(scores: np.ndarray) -> np.ndarray:
    """log_softmax over the last axis, in float64."""
    z = np.asarray(scores, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def length_normalize(score: float, length: int, length_penalty: float) -> float:
    """``score / length ** length_penalty`` (0 = raw sum of log-probabilities)."""
    if length_penalty == 0.0 or length <= 0:
        return float(score)
    return float(score) / float(length) ** length_penalty


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Draw one id per row from ``softmax(logits / temperature)``.

    Args:
        logits: [..., vocab] float.
        temperature: > 0 scales the logits (below 1 sharper, above 1 flatter); 0 means
            argmax (the limit as temperature → 0).
        rng: a numpy Generator; exactly one uniform draw per row is consumed (also at
            temperature 0), so two backends given the same seed stay in lockstep.

    Returns:
        int64 array of shape ``logits.shape[:-1]``.
    """
    if temperature < 0 or not np.isfinite(temperature):
        raise UsageError(f"temperature {temperature!r} is invalid", "use 0 (argmax) or a positive number")
    z = np.asarray(logits, dtype=np.float64)
    lead = z.shape[:-1]
    z = z.reshape(-1, z.shape[-1])
    u = rng.random(z.shape[0])
    if temperature == 0:
        return z.argmax(axis=-1).astype(np.int64).reshape(lead)
    z = z / temperature
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    cdf = np.cumsum(p, axis=-1)
    # Inverse CDF: the first id whose cumulative mass exceeds u (ids with zero mass are never drawn).
    ids = (cdf <= (u * cdf[:, -1])[:, None]).sum(axis=-1)
    return np.minimum(ids, z.shape[-1] - 1).astype(np.int64).reshape(lead)


# -- seq2seq ------------------------------------------------------------------------------
def greedy_decode(
    step: Seq2SeqStep,
    states: Sequence[np.ndarray],
    memory: np.ndarray,
    src_lengths: np.ndarray,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    return_attention: bool = False,
) -> List[Hypothesis]:
    """Greedy decoding of every row in one batch; one Hypothesis per row.

    Every row stays in the batch until all rows finished (a finished row is fed its eos
    and ignored), so a row's numbers never depend on when other rows finish.
    """
    _check_decode_args(max_len)
    batch = int(memory.shape[0])
    st = tuple(np.asarray(s) for s in states)
    tokens = np.full((batch,), bos_id, dtype=np.int64)
    out: List[List[int]] = [[] for _ in range(batch)]
    attn: List[List[np.ndarray]] = [[] for _ in range(batch)]
    scores = np.zeros(batch, dtype=np.float64)
    done = np.zeros(batch, dtype=bool)
    for _ in range(max_len):
        logits, st, att = step(tokens, st, memory, src_lengths)
        st = tuple(st)
        logp = log_softmax(logits)
        nxt = logp.argmax(axis=-1).astype(np.int64)
        for b in range(batch):
            if done[b]:
                continue
            scores[b] += logp[b, nxt[b]]
            if return_attention and att is not None:
                attn[b].append(np.asarray(att[b], dtype=np.float32))
            if nxt[b] == eos_id:
                done[b] = True
            else:
                out[b].append(int(nxt[b]))
        tokens = np.where(done, eos_id, nxt).astype(np.int64)
        if done.all():
            break
    return [
        Hypothesis(tuple(out[b]), float(scores[b]), bool(done[b]), float(scores[b]), _stack(attn[b]) if return_attention else None)
        for b in range(batch)
    ]


def beam_search(
    step: Seq2SeqStep,
    states: Sequence[np.ndarray],
    memory: np.ndarray,
    src_lengths: np.ndarray,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam_size: int = 4,
    length_penalty: float = 0.0,
    n_best: int = 1,
    state_batch_axis: int = 1,
    return_attention: bool = False,
) -> List[List[Hypothesis]]:
    """Batched beam search; for each row its ``n_best`` hypotheses, best first.

    The step runs on ``batch * beam_size`` rows (beam slots of row b are rows
    b*beam_size .. b*beam_size+beam_size-1). Per step and row, the 2×beam_size best
    (slot, token) extensions are scanned in score order: an eos among the top
    beam_size finishes a hypothesis, other tokens refill the beam. A row is done when it
    holds beam_size finished hypotheses and no live beam can still beat the worst of
    them (with length_penalty 0 this is exact, since log-probabilities only lower a
    score; with a penalty it is the usual heuristic of comparing at the current length).
    At max_len live beams join the finished ones as unfinished hypotheses.

    Args:
        length_penalty: alpha in ``score / length ** alpha`` used to rank hypotheses
            (0: raw log-probability; ~0.6-1.0 favours longer outputs).
        state_batch_axis: the batch axis of every state array.
    """
    _check_decode_args(max_len)
    if beam_size < 1 or n_best < 1 or n_best > beam_size:
        raise UsageError(f"beam_size {beam_size} / n_best {n_best} is invalid", "use 1 <= n_best <= beam_size")
    k = beam_size
    batch = int(memory.shape[0])
    mem = np.repeat(np.asarray(memory), k, axis=0)
    lens = np.repeat(np.asarray(src_lengths), k, axis=0)
    st = tuple(np.repeat(np.asarray(s), k, axis=state_batch_axis) for s in states)
    tokens = np.full((batch * k,), bos_id, dtype=np.int64)
    # Only slot 0 is live at the start: identical slots would fill the beam with copies.
    beam_scores = np.full((batch, k), -np.inf)
    beam_scores[:, 0] = 0.0
    hist: List[List[int]] = [[] for _ in range(batch * k)]
    ahist: List[List[np.ndarray]] = [[] for _ in range(batch * k)]
    finished: List[List[Hypothesis]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)

    for t in range(max_len):
        logits, st, att = step(tokens, st, mem, lens)
        st = tuple(st)
        logp = log_softmax(logits)
        vocab = logp.shape[-1]
        cand = (beam_scores[:, :, None] + logp.reshape(batch, k, vocab)).reshape(batch, k * vocab)
        src_slot = np.arange(batch * k)  # by default a slot keeps its own state
        new_tokens = np.full((batch * k,), eos_id, dtype=np.int64)
        new_scores = np.full((batch, k), -np.inf)
        new_hist = list(hist)
        new_ahist = list(ahist)
        length = t + 1
        for b in range(batch):
            if done[b]:
                continue
            order = np.argsort(-cand[b], kind="stable")[: 2 * k]
            filled = 0
            for rank, flat in enumerate(order):
                score = cand[b, flat]
                if not np.isfinite(score):
                    break
                slot, tok = divmod(int(flat), vocab)
                parent = b * k + slot
                step_att = [np.asarray(att[parent], dtype=np.float32)] if (return_attention and att is not None) else []
                if tok == eos_id:
                    if rank < k:
                        finished[b].append(
                            Hypothesis(tuple(hist[parent]), float(score), True, length_normalize(score, length, length_penalty),
                                       _stack(ahist[parent] + step_att) if return_attention else None)
                        )
                    continue
                dest = b * k + filled
                src_slot[dest] = parent
                new_tokens[dest] = tok
                new_scores[b, filled] = score
                new_hist[dest] = hist[parent] + [tok]
                if return_attention:
                    new_ahist[dest] = ahist[parent] + step_att
                filled += 1
                if filled == k:
                    break
            finished[b].sort(key=lambda h: -h.normalized_score)
            del finished[b][k:]
            if not np.isfinite(new_scores[b]).any():
                done[b] = True  # nothing left to extend
            elif len(finished[b]) >= k:
                bound = length_normalize(float(new_scores[b].max()), length, length_penalty)
                done[b] = not (bound > finished[b][-1].normalized_score)
        hist, ahist, beam_scores, tokens = new_hist, new_ahist, new_scores, new_tokens
        st = tuple(np.take(s, src_slot, axis=state_batch_axis) for s in st)
        if done.all():
            break

    results: List[List[Hypothesis]] = []
    for b in range(batch):
        hyps = list(finished[b])
        if not done[b]:
            for slot in range(k):
                score = float(beam_scores[b, slot])
                if np.isfinite(score):
                    i = b * k + slot
                    hyps.append(
                        Hypothesis(tuple(hist[i]), score, False, length_normalize(score, len(hist[i]), length_penalty),
                                   _stack(ahist[i]) if return_attention else None)
                    )
        hyps.sort(key=lambda h: -h.normalized_score)
        results.append(hyps[:n_best])
    return results


# -- char-LM ------------------------------------------------------------------------------
def generate_text(
    step: LMStep,
    prime_ids: Sequence[int],
    n: int,
    temperature: float = 1.0,
    seed: int = 0,
    states: Optional[States] = None,
) -> np.ndarray:
    """Sample ``n`` ids after ``prime_ids`` from a language model, carrying its state.

    The prime runs through ``step`` as one chunk; then each sampled id is fed back one
    step at a time. ``prime_ids`` is 1-D (one text) or 2-D [batch, prime_len]; the result
    has the same leading shape with ``n`` ids (int64). Same seed → same ids.
    """
    prime = np.asarray(prime_ids, dtype=np.int64)
    single = prime.ndim == 1
    if single:
        prime = prime[None, :]
    if prime.ndim != 2 or prime.shape[1] == 0:
        raise UsageError("the prime text is empty", "give at least one character to start from")
    if n < 0:
        raise UsageError(f"cannot generate {n} characters", "use a count >= 0")
    rng = np.random.default_rng(seed)
    out = np.zeros((prime.shape[0], n), dtype=np.int64)
    if n == 0:
        return out[0] if single else out
    logits, states = step(prime, states)
    for i in range(n):
        ids = sample(np.asarray(logits)[:, -1, :], temperature, rng)
        out[:, i] = ids
        if i + 1 < n:
            logits, states = step(ids[:, None], states)
    return out[0] if single else out


# -- helpers --------------------------------------------------------------------------------
def _check_decode_args(max_len: int) -> None:
    if max_len < 1:
        raise UsageError(f"max_len {max_len} is invalid", "decode at least one step")


def _stack(rows: List[np.ndarray]) -> Optional[np.ndarray]:
    return np.stack(rows) if rows else None
