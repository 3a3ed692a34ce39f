"""A recipe's quality metrics computed from model outputs with numpy alone.

Training (rnndeploy.train, with torch) and the deploy side (a deployed model on the
real test split, rnndeploy.parity.task_eval, without torch) compute the same numbers
through these functions, so "the recipe's metric" means one thing everywhere.

Per task (the names are the recipe's, rnndeploy.recipe.METRICS):

- regression: ``regression_metrics`` — MSE/RMSE/MAE in model and original units and
  against the persistence forecast;
- classification: ``classification_metrics`` — accuracy and cross-entropy;
- language model: ``TokenScores`` summed over batches → cross-entropy, bits per
  character, perplexity, top-1 accuracy;
- seq2seq: ``TokenScores`` over teacher-forced target tokens (pad ignored) → token
  accuracy and loss; ``greedy_metrics`` over greedy decodes → sequence accuracy and
  position-wise greedy token accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

# The metric each task reports first when a model does not record its recipe's bar.
PRIMARY_METRIC = {
    "regression": "mse",
    "classification": "accuracy",
    "language_model": "bits_per_char",
    "seq2seq": "token_accuracy",
}


def regression_metrics(
    pred: np.ndarray, y: np.ndarray, baseline: np.ndarray, data_info: Mapping[str, Any]
) -> Dict[str, float]:
    """MSE/RMSE/MAE in model units and original units, and against the persistence forecast."""
    from rnndeploy.data.series import denormalize

    pred = np.asarray(pred, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    err = pred - y
    mse = float(np.mean(err**2))
    base_mse = float(np.mean((baseline - y) ** 2))
    err_orig = denormalize(pred, dict(data_info)) - denormalize(y, dict(data_info))
    base_orig = denormalize(baseline, dict(data_info)) - denormalize(y, dict(data_info))
    mse_orig = float(np.mean(err_orig**2))
    return {
        "loss": mse,
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(np.mean(np.abs(err))),
        "mse_orig": mse_orig,
        "rmse_orig": math.sqrt(mse_orig),
        "mae_orig": float(np.mean(np.abs(err_orig))),
        "mse_ratio": mse / base_mse if base_mse > 0 else float("inf"),
        "baseline_mse": base_mse,
        "baseline_mse_orig": float(np.mean(base_orig**2)),
        "baseline_mae_orig": float(np.mean(np.abs(base_orig))),
    }


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) of ``logits`` [n, classes] against integer ``labels`` [n]."""
    logp = log_softmax(logits)
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Accuracy, cross-entropy and the majority-class accuracy of ``logits`` [n, classes]."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    majority = np.bincount(labels, minlength=logits.shape[1]).max() / max(1, len(labels))
    return {
        "accuracy": float(np.mean(logits.argmax(axis=1) == labels)),
        "loss": cross_entropy(logits, labels),
        "majority_accuracy": float(majority),
    }


@dataclass
class TokenScores:
    """Summed next-token cross-entropy and top-1 hits over batches of [.., vocab] logits.

    ``add`` one batch at a time (memory stays one batch); ``lm_metrics`` or
    ``seq2seq_metrics`` turn the sums into the recipe's numbers. Targets equal to
    ``ignore`` (a pad id) are left out.
    """

    ignore: Optional[int] = None
    total: float = 0.0
    correct: int = 0
    count: int = 0

    def add(self, logits: np.ndarray, targets: np.ndarray) -> None:
        flat = np.asarray(logits).reshape(-1, np.asarray(logits).shape[-1])
        tgt = np.asarray(targets).reshape(-1).astype(np.int64)
        if self.ignore is not None:
            keep = tgt != self.ignore
            flat, tgt = flat[keep], tgt[keep]
        if not len(tgt):
            return
        logp = log_softmax(flat)
        self.total += float(-logp[np.arange(len(tgt)), tgt].sum())
        self.correct += int((flat.argmax(-1) == tgt).sum())
        self.count += int(len(tgt))

    @property
    def mean_ce(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def lm_metrics(self) -> Dict[str, float]:
        ce = self.mean_ce
        return {
            "loss": ce,
            "bits_per_char": ce / math.log(2),
            "perplexity": math.exp(min(ce, 50.0)),
            "accuracy": self.correct / self.count if self.count else float("nan"),
        }

    def seq2seq_metrics(self) -> Dict[str, float]:
        return {"loss": self.mean_ce, "token_accuracy": self.correct / self.count if self.count else float("nan")}


def greedy_metrics(decoded: Sequence[Sequence[int]], tgt_out: np.ndarray, eos_id: int, pad_id: int) -> Dict[str, float]:
    """Exact-match and position-wise accuracy of greedy decodes against ``tgt_out`` [n, T].

    ``decoded`` rows are token ids; a row is cut after its first eos (kept), and the
    reference row is its non-pad tokens (target tokens + eos). Position-wise accuracy
    divides by the longer of the two.
    """
    seq_ok, tok_ok, tok_n = 0, 0, 0
    for row, ref in zip(decoded, np.asarray(tgt_out)):
        row = [int(t) for t in row]
        ref_l = [int(t) for t in ref if t != pad_id]
        hyp = row[: row.index(eos_id) + 1] if eos_id in row else row
        seq_ok += int(hyp == ref_l)
        tok_ok += sum(1 for a, r in zip(hyp, ref_l) if a == r)
        tok_n += max(len(hyp), len(ref_l))
    n_rows = len(np.asarray(tgt_out))
    return {"sequence_accuracy": seq_ok / max(1, n_rows), "greedy_token_accuracy": tok_ok / max(1, tok_n)}


def higher_is_better(task: str, metric: str) -> bool:
    """Whether a larger ``metric`` of ``task`` is better (rnndeploy.recipe.METRICS decides)."""
    from rnndeploy.recipe import METRICS

    entry = METRICS.get(task, {}).get(metric)
    if entry is not None:
        return bool(entry[0])
    return metric.endswith("accuracy") or metric == "agreement"
