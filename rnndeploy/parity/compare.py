"""Compare the runs of a parity check — the compare half; no runner is touched here.

Works on plain arrays (rnndeploy.parity.run.RunResults), so comparison logic is tested
with hand-made numbers: each output of each case against the reference through
rnndeploy.metrics, argmax agreement over logits/probs outputs, sampling and decoding
agreement from the tokens each runner produced, and the recipe's task metric on a real
data split.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from rnndeploy.inputs import Case
from rnndeploy.metrics import OutputComparison, compare_output
from rnndeploy.parity.cases import CaseSet, Outputs, sampling_prompt
from rnndeploy.parity.results import CaseResult, TaskAgreement
from rnndeploy.parity.run import RunnerRun, RunResults, TaskPlan
from rnndeploy.parity.task import sequence_agreement, token_agreement
from rnndeploy.parity.tolerances import ToleranceOverrides, resolve_tolerance
from rnndeploy.spec import GraphSpec, LanguageModelIO


def compare_case(graph: GraphSpec, case: Case, out: Outputs, ref: Outputs, label: str, precision: str,
                 overrides: ToleranceOverrides, reference: str) -> CaseResult:
    """Every output of one case against the reference (tolerance per output and precision)."""
    lengths = next((np.asarray(case.inputs[t.name]) for t in graph.inputs if t.role == "lengths"), None)
    comps: List[OutputComparison] = []
    for t in graph.outputs:
        tol = resolve_tolerance(graph, t.name, precision, overrides)
        batch_axis = t.dims.index("batch") if "batch" in t.dims else None
        # foreign models have no declared time axis; a dimension named "seq" is one
        time_axis = t.time_axis if t.time_axis is not None else (t.dims.index("seq") if "seq" in t.dims else None)
        comps.append(compare_output(
            t.name, out[t.name], ref[t.name], tol, backend=label, reference=reference,
            time_axis=time_axis, role=t.role, lengths=lengths, batch_axis=batch_axis,
        ))
    return CaseResult(case.id, case.sizes, label, tuple(comps))


def argmax_tasks(results: List[CaseResult], label: str, graph: GraphSpec,
                 threshold: Optional[float]) -> List[TaskAgreement]:
    """Argmax agreement per logits/probs output, weighted by positions over every case."""
    tasks = []
    for t in graph.outputs:
        if t.role not in ("logits", "probs"):
            continue
        num = den = 0
        for c in results:
            if c.backend != label:
                continue
            for o in c.outputs:
                if o.output == t.name and o.argmax_agreement is not None:
                    n = int(np.prod(o.shape[:-1])) if len(o.shape) > 1 else 1
                    num += o.argmax_agreement * n
                    den += n
        if den:
            tasks.append(TaskAgreement("argmax", label, t.name, num / den, den, {}, threshold))
    return tasks


def sampling_task(graph: GraphSpec, ref: RunnerRun, run: RunnerRun, cases: Tuple[Case, ...], plan: TaskPlan,
                  threshold: Optional[float]) -> TaskAgreement:
    """Sampled-token agreement of ``run`` with the reference (a check that raised fails)."""
    error = run.task_errors.get("sampling") or ref.task_errors.get("sampling")
    if error or run.samples is None or ref.samples is None:
        return _failed("sampling", run.label, error or "no samples", threshold)
    io = LanguageModelIO.resolve(graph)
    prompt = sampling_prompt(cases, io.tokens.name)
    agree, first = token_agreement(ref.samples, run.samples)
    return TaskAgreement("sampling", run.label, io.scores.name, agree, int(ref.samples.size),
                         {"steps": plan.sample_steps, "rows": int(prompt.shape[0]), "prompt_len": int(prompt.shape[1]),
                          "seed": plan.seed, "temperature": plan.temperature, "first_divergence": first,
                          "stateful": io.stateful},
                         threshold)


def decoding_task(ref: RunnerRun, run: RunnerRun, plan: TaskPlan, threshold: Optional[float]) -> TaskAgreement:
    """Greedy-decoding agreement of ``run`` with the reference, token by token and per sequence."""
    error = run.task_errors.get("decoding") or ref.task_errors.get("decoding")
    if error or run.decoded is None or ref.decoded is None:
        return _failed("decoding", run.label, error or "no decoded sequences", threshold)
    agree, exact, total = sequence_agreement(ref.decoded, run.decoded)
    first = next((i for i, (r, t) in enumerate(zip(ref.decoded, run.decoded)) if r != t), None)
    details: Dict[str, Any] = {"sequences": len(ref.decoded), "exact_sequences": exact, "max_len": plan.max_len,
                               "decoder_graph": plan.decoder.graph if plan.decoder is not None else None}
    if first is not None:
        details["first_mismatch"] = {"row": first, "reference": list(ref.decoded[first]),
                                     "test": list(run.decoded[first])}
    return TaskAgreement("decoding", run.label, "", agree, total, details, threshold)


def task_metrics(data: Any, outputs: Mapping[str, np.ndarray], graph: GraphSpec) -> Dict[str, Any]:
    """The recipe's metric (and its companions) of ``outputs`` on the real data split."""
    from rnndeploy.parity.task_eval import score_task

    scores = score_task(data, outputs, graph)
    return {"metric": data.metric, "value": scores.get(data.metric), "split": data.split, "rows": data.rows,
            "metrics": {k: float(v) for k, v in scores.items()}}


def compare_runs(graph: GraphSpec, case_set: CaseSet, results: RunResults, plan: TaskPlan,
                 overrides: ToleranceOverrides, min_agreement: Optional[float]
                 ) -> Tuple[List[CaseResult], List[TaskAgreement], Dict[str, Dict[str, Any]]]:
    """(case results, task agreements, task metrics) of every run against the reference."""
    ref = results.reference
    reference = str(case_set.reference.get("backend"))
    cases: List[CaseResult] = []
    tasks: List[TaskAgreement] = []
    metrics: Dict[str, Dict[str, Any]] = {}
    data = case_set.task_data if case_set.task_data is not None and case_set.task_data.task != "seq2seq" else None
    if data is not None and ref.outputs and ref.outputs[0] is not None:
        metrics[f"{reference} (reference)"] = task_metrics(data, ref.outputs[0], graph)
    for run in results.runs:
        precision = str(run.description.get("precision", "fp32"))
        for case, out, err, ref_out in zip(case_set.cases, run.outputs, run.errors, ref.outputs):
            if out is None:
                cases.append(CaseResult(case.id, case.sizes, run.label, (), err))
                continue
            cases.append(compare_case(graph, case, out, ref_out or {}, run.label, precision, overrides, reference))
            if data is not None:
                metrics[run.label] = task_metrics(data, out, graph)
        tasks += argmax_tasks(cases, run.label, graph, min_agreement)
        if plan.sample_steps:
            tasks.append(sampling_task(graph, ref, run, case_set.cases, plan, min_agreement))
        if plan.decoder is not None:
            tasks.append(decoding_task(ref, run, plan, min_agreement))
    return cases, tasks, metrics


def _failed(kind: str, label: str, error: str, threshold: Optional[float]) -> TaskAgreement:
    return TaskAgreement(kind, label, "", 0.0, 0, {"error": error}, threshold if threshold is not None else 1.0)
