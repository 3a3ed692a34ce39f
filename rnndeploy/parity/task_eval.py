"""A deployed model on its real data split, scored with its recipe's own metric (torch-free).

The ONNX metadata carries the dataset's recipe (``data_config``, see
rnndeploy.data.feeds) and, for models exported from a recipe, the quality bar
(``export_info["quality"]``). From them::

    data = load_task_data(source, split="test")          # real inputs + ground truth
    outs = run_task(runner, data)                         # the runner over the split, in batches
    scores = score_task(data, outs, source.graph_spec)    # {"accuracy": 0.77, "loss": ...}
    scores[data.metric]

Seq2seq models (encoder + decoder step) need the decoder's runner: the decoder is run
with teacher forcing (the recipe's token accuracy) and greedily (sequence accuracy);
``run_task`` returns the teacher-forced logits as ``TEACHER_FORCED`` and the greedy
tokens, padded with -1, as ``GREEDY``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from rnndeploy.backends.base import ModelSource, Runner
from rnndeploy.errors import DataError, UsageError
from rnndeploy.spec import GraphSpec
from rnndeploy.task_metrics import (
    PRIMARY_METRIC,
    TokenScores,
    classification_metrics,
    greedy_metrics,
    higher_is_better,
    regression_metrics,
)

TEACHER_FORCED = "teacher_forced_logits"
GREEDY = "greedy_tokens"
DEFAULT_BATCH = 256  # rows per call: bounds memory on long splits, big enough to keep runtimes busy


@dataclass(frozen=True)
class TaskData:
    """A real data split as a graph's inputs, with its ground truth and the metric to report.

    Attributes:
        model: model name.
        task: "regression" | "classification" | "language_model" | "seq2seq".
        split: "test", "val" or "train".
        rows: examples used (the first ``rows`` of the split).
        feeds: graph inputs keyed by input name, ``rows`` long on the batch axis.
        truth: the split's dataset arrays (y, baseline, labels, targets, tgt_in, tgt_out, ...).
        data_info: the dataset's facts (normalisation, special ids).
        metric: the recipe's quality metric (or the task's primary one).
        bound: the recipe's bar for ``metric``, when known.
    """

    model: str
    task: str
    split: str
    rows: int
    feeds: Mapping[str, np.ndarray]
    truth: Mapping[str, np.ndarray]
    data_info: Mapping[str, Any] = field(default_factory=dict)
    metric: str = ""
    bound: Optional[float] = None

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.task, self.metric)

    def describe(self) -> str:
        return f"{self.split} split of {self.model}'s data ({self.rows} rows), metric {self.metric}"


def load_task_data(source: ModelSource, split: str = "test", limit: Optional[int] = None,
                   export_info: Optional[Mapping[str, Any]] = None) -> TaskData:
    """The ``split`` of the data ``source``'s model was trained on, as its graph's inputs.

    Raises:
        DataError: the model records no data (not trained by rnndeploy), the data cannot be
            loaded here, or the graph cannot be fed from it (a decoder step alone).
    """
    from rnndeploy.data.feeds import dataset_for_spec, spec_feeds

    if limit is not None and limit < 1:
        raise UsageError(f"a data row limit must be at least 1, got {limit}")
    spec = source.spec
    ds = dataset_for_spec(spec)
    if split not in ds.splits:
        raise DataError(f"dataset {ds.name!r} has no split {split!r}", "use train, val or test")
    graph = source.graph_spec
    feeds = spec_feeds(ds, graph, split, limit)
    rows = len(next(iter(feeds.values())))
    for t in graph.inputs:
        if t.name not in feeds and t.role == "state":  # streaming form: start from zero state
            feeds[t.name] = np.zeros(t.shape_for({"batch": rows}), dtype=np.dtype(t.dtype))
    truth = {k: np.asarray(v)[:rows] for k, v in ds.splits[split].items()}
    info = dict(export_info if export_info is not None else _onnx_export_info(source))
    quality = info.get("quality") if isinstance(info.get("quality"), Mapping) else {}
    task = str(ds.task)
    metric = str(quality.get("metric") or PRIMARY_METRIC.get(task, ""))
    bound = quality.get("bound")
    return TaskData(spec.name, task, split, rows, feeds, truth, dict(ds.data_info), metric,
                    float(bound) if isinstance(bound, (int, float)) else None)


def run_task(runner: Runner, data: TaskData, decoder: Optional[Runner] = None,
             batch: int = DEFAULT_BATCH) -> Dict[str, np.ndarray]:
    """``runner``'s graph outputs over the whole split (batched, concatenated on the batch axis).

    A seq2seq encoder needs ``decoder`` (its decoder-step runner); then the result also
    holds TEACHER_FORCED [rows, T, vocab] and GREEDY [rows, T] (-1 past the end).
    """
    graph = runner.graph_spec
    if data.task == "seq2seq" and decoder is None:
        raise UsageError(f"{data.model}: scoring a seq2seq model needs its decoder step too",
                         "pass --decoder FILE (default: NAME.decoder_step.onnx beside NAME.encoder.onnx)")
    parts: Dict[str, List[np.ndarray]] = {}
    for start in range(0, data.rows, max(1, int(batch))):
        stop = min(data.rows, start + int(batch))
        feed = {t.name: _rows(data.feeds[t.name], t.dims, start, stop) for t in graph.inputs}
        out = runner.infer(feed)
        for t in graph.outputs:
            parts.setdefault(t.name, []).append(out[t.name])
        if decoder is not None:
            _decode_batch(runner, decoder, feed, data, start, stop, parts)
    result: Dict[str, np.ndarray] = {}
    for t in graph.outputs:
        axis = t.dims.index("batch") if "batch" in t.dims else 0
        result[t.name] = np.concatenate(parts[t.name], axis=axis)
    if decoder is not None:
        result[TEACHER_FORCED] = np.concatenate(parts[TEACHER_FORCED], axis=0)
        result[GREEDY] = np.concatenate(parts[GREEDY], axis=0)
    return result


def score_task(data: TaskData, outputs: Mapping[str, np.ndarray], graph: GraphSpec) -> Dict[str, float]:
    """The recipe's metrics of ``outputs`` (from ``run_task``) against the split's ground truth."""
    truth, task = data.truth, data.task
    if task == "regression":
        pred = _output(graph, outputs, "prediction")
        return regression_metrics(pred, truth["y"], truth["baseline"], data.data_info)
    if task == "classification":
        return classification_metrics(_output(graph, outputs, "logits", "probs"), truth["labels"])
    if task == "language_model":
        t = next(o for o in graph.outputs if o.role in ("logits", "probs"))
        logits = np.moveaxis(np.asarray(outputs[t.name]), t.time_axis if t.time_axis is not None else 1, 1)
        scores = TokenScores()
        for start in range(0, len(logits), DEFAULT_BATCH):  # log-softmax in float64 one batch at a time
            scores.add(logits[start:start + DEFAULT_BATCH], truth["targets"][start:start + DEFAULT_BATCH])
        return scores.lm_metrics()
    if task == "seq2seq":
        pad, eos = int(data.data_info["pad_id"]), int(data.data_info["eos_id"])
        scores = TokenScores(ignore=pad)
        scores.add(outputs[TEACHER_FORCED], truth["tgt_out"])
        decoded = [[int(x) for x in row if x >= 0] for row in np.asarray(outputs[GREEDY])]
        return {**scores.seq2seq_metrics(), **greedy_metrics(decoded, truth["tgt_out"], eos, pad)}
    raise DataError(f"no task metrics for task {task!r}")


def metric_change(reference: float, value: float, higher: bool) -> float:
    """How much worse ``value`` is than ``reference``, in percent of |reference| (negative: better)."""
    worse = (reference - value) if higher else (value - reference)
    scale = abs(reference) if reference else 1.0
    return 100.0 * worse / scale


# -- helpers -------------------------------------------------------------------------------------------
def _rows(arr: np.ndarray, dims: Any, start: int, stop: int) -> np.ndarray:
    axis = list(dims).index("batch") if "batch" in dims else 0
    index = [slice(None)] * arr.ndim
    index[axis] = slice(start, stop)
    return np.ascontiguousarray(arr[tuple(index)])


def _output(graph: GraphSpec, outputs: Mapping[str, np.ndarray], *roles: str) -> np.ndarray:
    t = next((o for o in graph.outputs if o.role in roles), None)
    if t is None:
        raise DataError(f"graph {graph.name!r} has no {'/'.join(roles)} output to score")
    return np.asarray(outputs[t.name])


def _decode_batch(encoder: Runner, decoder: Runner, feed: Dict[str, np.ndarray], data: TaskData, start: int,
                  stop: int, parts: Dict[str, List[np.ndarray]]) -> None:
    from rnndeploy.parity.task import greedy_hypotheses, teacher_forced_scores

    tgt_in = np.asarray(data.truth["tgt_in"][start:stop])
    parts.setdefault(TEACHER_FORCED, []).append(teacher_forced_scores(encoder, decoder, feed, tgt_in))
    bos, eos = int(data.data_info["bos_id"]), int(data.data_info["eos_id"])
    max_len = int(data.truth["tgt_out"].shape[1])
    hyps = greedy_hypotheses(encoder, decoder, feed, bos, eos, max_len)
    width = max_len + 1  # at most max_len tokens and the eos: one width for every batch
    padded = np.full((stop - start, width), -1, dtype=np.int64)
    for i, h in enumerate(hyps):
        row = list(h.tokens) + ([eos] if h.finished else [])  # the metric counts the eos, as training does
        padded[i, : len(row)] = row
    parts.setdefault(GREEDY, []).append(padded)


def _onnx_export_info(source: ModelSource) -> Dict[str, Any]:
    if not source.onnx:
        return {}
    from rnndeploy.artefacts.onnx_file import load_metadata, load_onnx

    meta = load_metadata(load_onnx(source.onnx, external_data=False), source.onnx)
    return {} if meta is None else meta.export_info
