"""Run the runners on the cases — the run half of a parity check; nothing is compared here.

Polygraphy's Comparator shape: ``run_reference`` and ``run_backend`` each activate one
runner (one at a time, so two GPU runtimes never hold memory together), run it on every
case and return a ``RunnerRun`` holding what it produced — outputs per case, and for the
task checks the tokens it sampled (char-LM) or decoded greedily (seq2seq). Comparing is
rnndeploy.parity.compare's job, on these plain arrays.

A runtime that raises on a case (e.g. an ONNX file whose sequence length was frozen at
export) is a finding: the error is kept for that case and the other cases still run. The
reference raising is not: without its outputs nothing can be compared (ParityError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from rnndeploy.backends import ModelSource, RunnerOptions
from rnndeploy.backends.base import Runner
from rnndeploy.errors import ParityError, RnnDeployError, first_line
from rnndeploy.inputs import Case
from rnndeploy.memory import is_out_of_memory, out_of_memory
from rnndeploy.parity.cases import CaseSet, Outputs, sampling_prompt
from rnndeploy.parity.task import greedy_tokens, sample_tokens
from rnndeploy.progress import progress
from rnndeploy.spec import LanguageModelIO

RunnerFactory = Callable[[str, ModelSource, RunnerOptions], Runner]


@dataclass(frozen=True)
class TaskPlan:
    """The task checks a run performs besides the outputs (decided once, before any runner).

    Attributes:
        sample_steps: char-LM tokens to sample per row after the prompt (0 = no sampling).
        temperature / seed: sampling settings.
        decoder: the decoder-step source of a seq2seq model (None = no decoding check).
        bos_id / eos_id / max_len: greedy decoding settings.
    """

    sample_steps: int = 0
    temperature: float = 1.0
    seed: int = 0
    decoder: Optional[ModelSource] = None
    bos_id: int = 0
    eos_id: int = 0
    max_len: int = 64


@dataclass
class RunnerRun:
    """What one runner produced.

    Attributes:
        label: the backend label ("ort-cpu", "torch:fp16", ...; for a file reference, its backend).
        description: RunDescription.to_dict() as it ran.
        outputs: per case, the outputs (None where it raised).
        errors: per case, why it raised (None where it ran).
        samples: [rows, steps] sampled ids (char-LM sampling), if planned.
        decoded: greedy output sequences, all cases' rows in order (seq2seq), if planned.
        task_errors: task kind ("sampling" / "decoding") → why that check raised.
    """

    label: str
    description: Dict[str, Any] = field(default_factory=dict)
    outputs: List[Optional[Outputs]] = field(default_factory=list)
    errors: List[Optional[str]] = field(default_factory=list)
    samples: Optional[np.ndarray] = None
    decoded: Optional[List[Tuple[int, ...]]] = None
    task_errors: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResults:
    """The reference's run and every backend's, ready to compare."""

    reference: RunnerRun
    runs: Tuple[RunnerRun, ...]


def file_reference(case_set: CaseSet) -> RunnerRun:
    """The reference a golden / expected file holds, as a run."""
    outputs = list(case_set.reference_outputs or ())
    return RunnerRun(str(case_set.reference.get("backend")), dict(case_set.reference.get("description") or {}),
                     outputs, [None] * len(outputs))


def run_reference(label: str, source: ModelSource, options: RunnerOptions, case_set: CaseSet, tasks: TaskPlan,
                  runner_factory: RunnerFactory, show_progress: Optional[bool] = None) -> RunnerRun:
    """The reference backend on every case (and the planned task checks).

    Raises:
        ParityError: the reference raised on a case.
    """
    with runner_factory(label, source, options) as runner:
        run = RunnerRun(label, runner.describe().to_dict())
        for case in progress(list(case_set.cases), f"reference {label}", enabled=show_progress):
            run.outputs.append(_reference_case(runner, label, case))
            run.errors.append(None)
        _run_tasks(run, runner, source, options, case_set, tasks, runner_factory)
    return run


def run_backend(label: str, source: ModelSource, options: RunnerOptions, case_set: CaseSet, tasks: TaskPlan,
                runner_factory: RunnerFactory, show_progress: Optional[bool] = None) -> RunnerRun:
    """One backend under test on every case (and the planned task checks); errors are kept."""
    with runner_factory(label, source, options) as runner:
        run = RunnerRun(label, runner.describe().to_dict())
        title = f"{label} vs {case_set.reference.get('backend')}"
        for case in progress(list(case_set.cases), title, enabled=show_progress):
            try:
                run.outputs.append(runner.infer(case.inputs))
                run.errors.append(None)
            except RnnDeployError:
                raise
            except Exception as exc:  # a runtime failing on this case is a finding, not a crash
                if is_out_of_memory(exc):  # ... unless the case did not fit this machine: bad input
                    raise out_of_memory(f"{label} on case {case.id}") from None
                run.outputs.append(None)
                run.errors.append(f"{label} raised {type(exc).__name__}: {first_line(exc, 400)}")
        _run_tasks(run, runner, source, options, case_set, tasks, runner_factory)
    return run


def _reference_case(runner: Runner, label: str, case: Case) -> Outputs:
    try:
        return runner.infer(case.inputs)
    except RnnDeployError:
        raise
    except Exception as exc:  # without reference outputs nothing can be compared
        if is_out_of_memory(exc):
            raise out_of_memory(f"reference {label} on case {case.id}") from None
        raise ParityError(f"reference backend {label!r} failed on case {case.id!r}: {type(exc).__name__}: "
                          f"{first_line(exc, 400)}",
                          "check the reference runs at this shape, or choose another --reference") from exc


def _run_tasks(run: RunnerRun, runner: Runner, source: ModelSource, options: RunnerOptions, case_set: CaseSet,
               tasks: TaskPlan, runner_factory: RunnerFactory) -> None:
    """Sampling and decoding with ``runner``; a runtime that raises fails that check only."""
    if tasks.sample_steps:
        io = LanguageModelIO.resolve(runner.graph_spec)
        prompt = sampling_prompt(case_set.cases, io.tokens.name)
        _guarded(run, "sampling", lambda: setattr(run, "samples", sample_tokens(
            runner, prompt, tasks.sample_steps, tasks.seed, tasks.temperature)))
    if tasks.decoder is not None:
        with runner_factory(run.label, tasks.decoder, options) as decoder:
            def decode() -> None:
                seqs: List[Tuple[int, ...]] = []
                for case in case_set.cases:
                    seqs += greedy_tokens(runner, decoder, dict(case.inputs), tasks.bos_id, tasks.eos_id, tasks.max_len)
                run.decoded = seqs
            _guarded(run, "decoding", decode)


def _guarded(run: RunnerRun, kind: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except RnnDeployError:
        raise
    except Exception as exc:
        run.task_errors[kind] = f"{type(exc).__name__}: {first_line(exc, 400)}"
