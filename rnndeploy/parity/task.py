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

Runners are driven through the generic Runner interface, so every backend works the
same way, and the decoding loops are the very ones the torch side uses.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.backends.base import Runner
from rnndeploy.errors import SpecError
from rnndeploy.spec import GraphSpec, TensorSpec


def _first(tensors: Tuple[TensorSpec, ...], *roles: str) -> Optional[TensorSpec]:
    for t in tensors:
        if t.role in roles:
            return t
    return None


# -- char-LM -------------------------------------------------------------------------------------------
def sampling_plan(graph: GraphSpec) -> Dict[str, Any]:
    """Which tensors char-LM sampling uses: tokens input, logits output, state pairs.

    Raises:
        SpecError: the graph has no tokens input or no per-step logits/probs output.
    """
    tokens = _first(graph.inputs, "tokens")
    logits = _first(graph.outputs, "logits", "probs")
    if tokens is None or logits is None or logits.time_axis is None:
        raise SpecError(f"graph {graph.name!r} is not a token-in, logits-per-step-out graph",
                        "sampling agreement applies to char-LM models")
    state_in = [t for t in graph.inputs if t.role == "state"]
    state_out = [t for t in graph.outputs if t.role == "state"]
    stateful = bool(state_in) and len(state_in) == len(state_out)
    others = [t for t in graph.inputs if t.role not in ("tokens", "state", "lengths", "mask")]
    if others:
        raise SpecError(f"graph {graph.name!r} has inputs sampling cannot fill: {', '.join(t.name for t in others)}")
    return {"tokens": tokens, "logits": logits, "state_in": state_in if stateful else [],
            "state_out": state_out if stateful else [], "lengths": _first(graph.inputs, "lengths"),
            "mask": _first(graph.inputs, "mask")}


def lm_step(runner: Runner) -> Any:
    """A ``decoding.LMStep`` running ``runner``'s graph.

    Stateful graphs (state in → state out) take only the new ids; a stateless graph
    is re-run on the growing prefix, which the step keeps as its "state".
    """
    plan = sampling_plan(runner.graph_spec)
    tok_dtype = np.dtype(plan["tokens"].dtype)
    probs = plan["logits"].role == "probs"

    def scores(res: Dict[str, np.ndarray]) -> np.ndarray:
        s = np.moveaxis(np.asarray(res[plan["logits"].name], dtype=np.float64), plan["logits"].time_axis, 1)
        return np.log(np.maximum(s, 1e-300)) if probs else s

    if plan["state_in"]:
        def step(tokens: np.ndarray, states: Optional[Tuple[np.ndarray, ...]]) -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
            batch = tokens.shape[0]
            if states is None:
                states = tuple(np.zeros(t.shape_for({"batch": batch}), dtype=np.dtype(t.dtype)) for t in plan["state_in"])
            feed = _lm_feed(plan, tokens.astype(tok_dtype))
            feed.update({t.name: s for t, s in zip(plan["state_in"], states)})
            res = runner.infer(feed)
            new = tuple(res[o.name].astype(np.dtype(i.dtype)) for i, o in zip(plan["state_in"], plan["state_out"]))
            return scores(res), new
        return step

    def step_prefix(tokens: np.ndarray, states: Optional[Tuple[np.ndarray, ...]]) -> Tuple[np.ndarray, Tuple[np.ndarray, ...]]:
        prefix = tokens if states is None else np.concatenate([states[0], tokens], axis=1)
        res = runner.infer(_lm_feed(plan, prefix.astype(tok_dtype)))
        return scores(res), (prefix,)
    return step_prefix


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


def _lm_feed(plan: Dict[str, Any], tokens: np.ndarray) -> Dict[str, np.ndarray]:
    batch, seq = tokens.shape
    feed = {plan["tokens"].name: tokens}
    if plan["lengths"] is not None:
        feed[plan["lengths"].name] = np.full((batch,), seq, dtype=np.dtype(plan["lengths"].dtype))
    if plan["mask"] is not None:
        feed[plan["mask"].name] = np.ones((batch, seq), dtype=np.dtype(plan["mask"].dtype))
    return feed


# -- seq2seq ---------------------------------------------------------------------------------------------
def seq2seq_plan(encoder: GraphSpec, decoder: GraphSpec) -> Dict[str, Any]:
    """Tensor roles greedy decoding needs, matched between the encoder and the decoder step.

    Encoder: outputs "memory" and "state" (initial decoder states, in order).
    Decoder step: inputs "token", "state" (same count), "memory", optional "lengths"/"mask"
    (source lengths); outputs "logits"/"probs" [batch, vocab], "state", optional "attention".
    """
    memory_out = _first(encoder.outputs, "memory")
    enc_states = [t for t in encoder.outputs if t.role == "state"]
    token = _first(decoder.inputs, "token")
    dec_states_in = [t for t in decoder.inputs if t.role == "state"]
    dec_states_out = [t for t in decoder.outputs if t.role == "state"]
    memory_in = _first(decoder.inputs, "memory")
    logits = _first(decoder.outputs, "logits", "probs")
    if None in (memory_out, token, memory_in, logits) or len(dec_states_in) != len(dec_states_out):
        raise SpecError(f"graphs {encoder.name!r}/{decoder.name!r} do not form an encoder / decoder-step pair",
                        "the decoder step needs token, state, memory inputs and logits, state outputs")
    if len(enc_states) != len(dec_states_in):
        raise SpecError(f"encoder gives {len(enc_states)} states, decoder step takes {len(dec_states_in)}")
    return {"memory_out": memory_out, "enc_states": enc_states, "token": token, "dec_states_in": dec_states_in,
            "dec_states_out": dec_states_out, "memory_in": memory_in, "logits": logits,
            "attention": _first(decoder.outputs, "attention"), "src_lengths": _first(decoder.inputs, "lengths"),
            "src_mask": _first(decoder.inputs, "mask")}


def decoder_step(decoder: Runner, plan: Dict[str, Any]) -> Any:
    """A ``decoding.StepFn`` running ``decoder`` (a decoder-step graph, see ``seq2seq_plan``):
    (tokens [batch], states, memory, source lengths) → (log-scores [batch, vocab], states, attention)."""
    probs = plan["logits"].role == "probs"

    def step(tokens: np.ndarray, st: Tuple[np.ndarray, ...], mem: np.ndarray, lens: np.ndarray) -> Any:
        f = {plan["token"].name: tokens.astype(np.dtype(plan["token"].dtype)), plan["memory_in"].name: mem}
        f.update({t.name: s.astype(np.dtype(t.dtype)) for t, s in zip(plan["dec_states_in"], st)})
        if plan["src_lengths"] is not None:
            f[plan["src_lengths"].name] = lens.astype(np.dtype(plan["src_lengths"].dtype))
        if plan["src_mask"] is not None:
            m = np.arange(mem.shape[1])[None, :] < lens.reshape(-1, 1)
            f[plan["src_mask"].name] = m.astype(np.dtype(plan["src_mask"].dtype))
        res = decoder.infer(f)
        scores = np.asarray(res[plan["logits"].name], dtype=np.float64)
        if probs:
            scores = np.log(np.maximum(scores, 1e-300))
        att = res[plan["attention"].name] if plan["attention"] is not None else None
        return scores, tuple(res[t.name] for t in plan["dec_states_out"]), att

    return step


def encode(encoder: Runner, plan: Dict[str, Any], feed: Dict[str, np.ndarray]) -> Tuple[np.ndarray, Tuple[np.ndarray, ...], np.ndarray]:
    """(memory, initial decoder states, source lengths) from ``encoder`` on ``feed``."""
    enc = encoder.infer(feed)
    memory = enc[plan["memory_out"].name]
    states = tuple(enc[t.name] for t in plan["enc_states"])
    len_in = _first(encoder.graph_spec.inputs, "lengths")
    src_len = (np.asarray(feed[len_in.name], dtype=np.int64) if len_in is not None
               else np.full((memory.shape[0],), memory.shape[1]))
    return memory, states, src_len


def greedy_hypotheses(encoder: Runner, decoder: Runner, feed: Dict[str, np.ndarray], bos_id: int, eos_id: int,
                      max_len: int) -> List[Any]:
    """Greedy ``decoding.Hypothesis`` per row with ``encoder`` and ``decoder`` runners."""
    from rnndeploy.decoding import greedy_decode

    plan = seq2seq_plan(encoder.graph_spec, decoder.graph_spec)
    memory, states, src_len = encode(encoder, plan, feed)
    return list(greedy_decode(decoder_step(decoder, plan), states, memory, src_len, bos_id=bos_id, eos_id=eos_id,
                              max_len=max_len))


def greedy_tokens(encoder: Runner, decoder: Runner, feed: Dict[str, np.ndarray], bos_id: int, eos_id: int,
                  max_len: int) -> List[Tuple[int, ...]]:
    """Greedy output tokens per row (eos excluded) with ``encoder`` and ``decoder`` runners."""
    return [h.tokens for h in greedy_hypotheses(encoder, decoder, feed, bos_id, eos_id, max_len)]


def teacher_forced_scores(encoder: Runner, decoder: Runner, feed: Dict[str, np.ndarray],
                          tgt_in: np.ndarray) -> np.ndarray:
    """Log-scores [batch, T, vocab] of the decoder step fed the target tokens ``tgt_in`` [batch, T]
    (teacher forcing), after encoding ``feed``."""
    plan = seq2seq_plan(encoder.graph_spec, decoder.graph_spec)
    memory, states, src_len = encode(encoder, plan, feed)
    step = decoder_step(decoder, plan)
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
