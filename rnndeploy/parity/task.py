"""Task-level agreement: does the deployed model make the same *decisions*?

- char-LM sampling: each runtime generates text from the same prompt with the same
  uniform draws (inverse-CDF sampling), so two runtimes produce the same tokens unless
  their probabilities differ enough to cross a draw. Reported: fraction of generated
  tokens equal to the reference's, and the first divergence (row, step).
- argmax agreement is computed per output in rnndeploy.parity.metrics.

Runners are driven through the generic Runner interface, so any backend works.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rnndeploy.backends.base import Runner
from rnndeploy.errors import SpecError
from rnndeploy.spec import GraphSpec, TensorSpec


def _first(tensors: Tuple[TensorSpec, ...], *roles: str) -> Optional[TensorSpec]:
    for t in tensors:
        if t.role in roles:
            return t
    return None


def sampling_plan(graph: GraphSpec) -> Dict[str, Any]:
    """Which tensors char-LM sampling uses: tokens input, logits output, state pairs.

    Raises:
        SpecError: the graph has no tokens input or no logits/probs output with a time axis.
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


def sample_tokens(runner: Runner, prompt: np.ndarray, steps: int, draws: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Generate ``steps`` tokens per row after ``prompt`` [batch, p] with fixed uniform ``draws`` [batch, steps].

    Stateful graphs (state in, state out) are stepped one token at a time; stateless
    ones are re-run on the growing prefix. Returns [batch, steps] int64.
    """
    graph = runner.graph_spec
    plan = sampling_plan(graph)
    batch = prompt.shape[0]
    tok_dtype = np.dtype(plan["tokens"].dtype)
    out = np.zeros((batch, steps), dtype=np.int64)
    if plan["state_in"]:
        state = {t.name: np.zeros(t.shape_for({"batch": batch}), dtype=np.dtype(t.dtype)) for t in plan["state_in"]}
        chunk = prompt
        for step in range(steps):
            feed = _feed(plan, chunk.astype(tok_dtype), batch)
            feed.update(state)
            res = runner.infer(feed)
            last = _last_step(res[plan["logits"].name], plan["logits"].time_axis, plan["logits"].role == "probs")
            nxt = _draw(last, draws[:, step], temperature)
            out[:, step] = nxt
            state = {i.name: res[o.name].astype(np.dtype(i.dtype)) for i, o in zip(plan["state_in"], plan["state_out"])}
            chunk = nxt.reshape(batch, 1)
        return out
    seq = prompt
    for step in range(steps):
        res = runner.infer(_feed(plan, seq.astype(tok_dtype), batch))
        last = _last_step(res[plan["logits"].name], plan["logits"].time_axis, plan["logits"].role == "probs")
        nxt = _draw(last, draws[:, step], temperature)
        out[:, step] = nxt
        seq = np.concatenate([seq, nxt.reshape(batch, 1)], axis=1)
    return out


def sampling_draws(batch: int, steps: int, seed: int) -> np.ndarray:
    """The uniform draws every runtime uses (same seed → same draws)."""
    return np.random.default_rng([int(seed), 7919]).uniform(size=(batch, steps))


def token_agreement(ref: np.ndarray, test: np.ndarray) -> Tuple[float, Optional[List[int]]]:
    """(fraction of equal tokens, [row, step] of the first divergence in row-major order or None)."""
    same = ref == test
    if same.all():
        return 1.0, None
    rows, steps = np.nonzero(~same)
    first = int(np.argmin(steps))  # earliest step over all rows
    return float(same.mean()), [int(rows[first]), int(steps[first])]


# -- helpers --------------------------------------------------------------------------------------------
def _feed(plan: Dict[str, Any], tokens: np.ndarray, batch: int) -> Dict[str, np.ndarray]:
    feed = {plan["tokens"].name: tokens}
    seq = tokens.shape[1]
    if plan["lengths"] is not None:
        feed[plan["lengths"].name] = np.full((batch,), seq, dtype=np.dtype(plan["lengths"].dtype))
    if plan["mask"] is not None:
        feed[plan["mask"].name] = np.ones((batch, seq), dtype=np.dtype(plan["mask"].dtype))
    return feed


def _last_step(scores: np.ndarray, time_axis: int, probs: bool = False) -> np.ndarray:
    """Scores at the last timestep as logits [batch, vocab] (probabilities are turned into log-probs)."""
    last = np.take(np.asarray(scores, dtype=np.float64), -1, axis=time_axis).reshape(scores.shape[0], -1)
    return np.log(np.maximum(last, 1e-300)) if probs else last


def _draw(logits: np.ndarray, u: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / max(temperature, 1e-6)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=1)
    cdf /= cdf[:, -1:]
    idx = (cdf < u.reshape(-1, 1)).sum(axis=1)
    return np.minimum(idx, logits.shape[1] - 1).astype(np.int64)
