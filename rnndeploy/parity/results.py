"""Typed parity results (frozen dataclasses that round-trip through JSON).

A ParityResult holds one CaseResult per (backend under test, input case); each
CaseResult holds one OutputComparison per output. Summaries (worst error per output,
error versus sequence length across the sweep, argmax agreement) are derived here;
numbers are formatted only in rnndeploy.report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rnndeploy.errors import ParityError
from rnndeploy.metrics import OutputComparison, TimeProfile, summarize_profiles
from rnndeploy.validation import Fields

RESULT_VERSION = 1


@dataclass(frozen=True)
class CaseResult:
    """One backend on one input case.

    Attributes:
        case: case id ("b4-s128", or a golden's case id).
        sizes: named axis sizes ({"batch": 4, "seq": 128}).
        backend: the runtime under test.
        outputs: per-output comparisons (empty when the run failed).
        error: why the backend produced no outputs (it raised), else None.
    """

    case: str
    sizes: Mapping[str, int]
    backend: str
    outputs: Tuple[OutputComparison, ...] = ()
    error: Optional[str] = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(o.passed for o in self.outputs)

    def to_dict(self) -> Dict[str, Any]:
        return {"case": self.case, "sizes": dict(self.sizes), "backend": self.backend, "passed": self.passed,
                "error": self.error, "outputs": [o.to_dict() for o in self.outputs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "case") -> CaseResult:
        f = Fields(d, where)
        out = cls(f.str("case"), f.sizes("sizes"), f.str("backend"),
                  tuple(OutputComparison.from_dict(o.data, o.where) for o in f.records("outputs", required=False)),
                  f.str("error", required=False))
        _same_verdict(f, out.passed)
        return out


@dataclass(frozen=True)
class TaskAgreement:
    """A task-level check: argmax agreement, sampled char-LM tokens, decoded seq2seq tokens.

    Attributes:
        kind: "argmax", "sampling" or "decoding".
        backend: the runtime under test.
        output: the output it concerns (logits name), or "" for whole-model checks.
        agreement: fraction in [0, 1] of positions/tokens that agree with the reference.
        total: number of positions/tokens compared.
        details: e.g. {"first_divergence": [row, step], "steps": 64, "seed": 0, "temperature": 1.0}.
        threshold: minimum agreement required (None: reported, not enforced).
    """

    kind: str
    backend: str
    output: str
    agreement: float
    total: int
    details: Mapping[str, Any] = field(default_factory=dict)
    threshold: Optional[float] = None

    @property
    def passed(self) -> bool:
        return self.threshold is None or self.agreement >= self.threshold

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "backend": self.backend, "output": self.output, "agreement": self.agreement,
                "total": self.total, "details": dict(self.details), "threshold": self.threshold, "passed": self.passed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "task") -> TaskAgreement:
        f = Fields(d, where)
        out = cls(f.str("kind"), f.str("backend"), f.str("output", required=False, default=""),
                  f.number("agreement", minimum=0.0, maximum=1.0), f.int("total", minimum=0),
                  f.mapping("details", required=False, default={}),
                  f.number("threshold", required=False, minimum=0.0, maximum=1.0))
        _same_verdict(f, out.passed)
        return out


def _same_verdict(f: Fields, passed: bool) -> None:
    """A recorded ``passed`` flag must agree with the verdict recomputed from the record's parts."""
    recorded = f.bool("passed", required=False)
    if recorded is not None and recorded != passed:
        raise f.error(f"{f.path('passed')} records {str(recorded).lower()} but its parts say "
                      f"{'passed' if passed else 'failed'}", "this result cannot be verified: run parity again")


@dataclass(frozen=True)
class SeqLenPoint:
    """One point of an error-versus-sequence-length curve (one case of the sweep)."""

    seq: int
    batch: int
    max_abs: float
    rel_l2: float


@dataclass(frozen=True)
class ParityResult:
    """Everything one ``rnndeploy parity`` run found.

    Attributes:
        model: {"name", "family", "graph", "with_state", "onnx", "onnx_sha256", "checkpoint_sha256", ...}.
        reference: {"backend", "source": "run" | "golden" | "expected", "path", "description"}.
        backends: backend name -> RunDescription dict (as run).
        seed: input seed (None for inputs read from files).
        cases: one CaseResult per (backend, case).
        tasks: task-level agreements.
        warnings: things worth knowing that did not fail the run.
        machine: rnndeploy.environment.describe_machine().
        command: the command line that produced it.
        created: ISO-8601 UTC time.
    """

    model: Mapping[str, Any]
    reference: Mapping[str, Any]
    backends: Mapping[str, Mapping[str, Any]]
    seed: Optional[int]
    cases: Tuple[CaseResult, ...]
    tasks: Tuple[TaskAgreement, ...] = ()
    # backend → {"metric", "value", "split", "rows", "metrics"}: the recipe's metric on real data
    task_metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    warnings: Tuple[str, ...] = ()
    tolerance_overrides: Mapping[str, Any] = field(default_factory=dict)
    machine: Mapping[str, Any] = field(default_factory=dict)
    command: str = ""
    created: str = ""

    kind = "parity"

    @property
    def status(self) -> str:
        """"passed", "failed" or "invalid" — invalid when nothing was compared (no case,
        a case without outputs, or only outputs whose tolerance is inf): never "passed"."""
        if not self.cases:
            return "invalid"
        if not all(c.passed for c in self.cases) or not all(t.passed for t in self.tasks):
            return "failed"
        if any(not c.outputs for c in self.cases) or not any(o.checked for c in self.cases for o in c.outputs):
            return "invalid"
        return "passed"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def invalid_reason(self) -> Optional[str]:
        """Why the result is invalid (None when it is not)."""
        if self.status != "invalid":
            return None
        if not self.cases:
            return "it holds no cases: nothing was compared"
        empty = [f"{c.backend} @ {c.case}" for c in self.cases if not c.outputs]
        if empty:
            return f"{empty[0]} compared nothing (no outputs)"
        return "nothing was checked: every output's tolerance is inf"

    def no_usable_numbers(self) -> bool:
        """True when the first failure is a runtime that gave nothing to measure: it raised,
        or an output was NaN/Inf or of the wrong shape (rather than a tolerance miss)."""
        for c in self.cases:
            if c.error:
                return True
            for o in c.outputs:
                if not o.passed:
                    return o.stats is None
        first = next((t for t in self.tasks if not t.passed), None)
        return first is not None and bool(first.details.get("error"))

    def verdict(self) -> Optional[ParityError]:
        """The error a failed check exits with (None when it passed): how many problems, the
        first one, and what to do about it."""
        if self.passed:
            return None
        failures = self.failures()
        if not failures:
            return ParityError(f"parity is {self.status}: {self.invalid_reason()}")
        msg = f"parity failed: {len(failures)} problem{'s' if len(failures) != 1 else ''}; first: {failures[0]}"
        if self.no_usable_numbers():
            return ParityError(msg, "the runtime produced no usable numbers: check the model at that shape / precision")
        return ParityError(msg, "see the table above; loosen with --tol OUTPUT:ATOL:RTOL only if the error is expected")

    def failures(self) -> List[str]:
        """One line per failed (backend, case, output), task check or backend error."""
        out = []
        for c in self.cases:
            if c.error:
                out.append(f"{c.backend} @ {c.case}: {c.error}")
            for o in c.outputs:
                if not o.passed:
                    out.append(f"{c.backend} @ {c.case}: {o.failure}")
        for t in self.tasks:
            if t.passed:
                continue
            if t.details.get("error"):
                out.append(f"{t.backend}: {t.kind} check raised {t.details['error']}")
            else:
                out.append(f"{t.backend}: {t.kind} agreement {t.agreement:.4%} below {t.threshold:.4%} "
                           f"on {t.output or 'the model'}")
        return out

    def backend_names(self) -> List[str]:
        seen: Dict[str, None] = {}
        for c in self.cases:
            seen.setdefault(c.backend, None)
        return list(seen)

    def output_names(self) -> List[str]:
        seen: Dict[str, None] = {}
        for c in self.cases:
            for o in c.outputs:
                seen.setdefault(o.output, None)
        return list(seen)

    def worst(self, backend: str, output: str) -> Optional[OutputComparison]:
        """The comparison with the largest relative L2 for (backend, output) across cases."""
        found = [o for c in self.cases if c.backend == backend for o in c.outputs if o.output == output]
        if not found:
            return None
        failing = [o for o in found if o.stats is None]
        if failing:
            return failing[0]
        return max(found, key=lambda o: o.stats.rel_l2 if o.stats else 0.0)

    def error_vs_seq_len(self, backend: str, output: str) -> List[SeqLenPoint]:
        """Error of ``output`` for each case of the sweep, sorted by seq then batch."""
        pts = []
        for c in self.cases:
            if c.backend != backend:
                continue
            seq = c.sizes.get("seq", c.sizes.get("src_seq"))
            for o in c.outputs:
                if o.output == output and o.stats is not None and seq is not None:
                    pts.append(SeqLenPoint(int(seq), int(c.sizes.get("batch", 1)), o.stats.max_abs, o.stats.rel_l2))
        return sorted(pts, key=lambda p: (p.seq, p.batch))

    def time_profile(self, backend: str, output: str) -> Optional[TimeProfile]:
        """Error vs timestep for (backend, output): elementwise max over cases, aligned at t=0."""
        profiles = [o.time_profile for c in self.cases if c.backend == backend for o in c.outputs
                    if o.output == output and o.time_profile is not None]
        return summarize_profiles(profiles)

    def argmax_agreement(self, backend: str, output: str) -> Optional[float]:
        """Mean argmax agreement over cases, weighted by positions compared."""
        num = den = 0.0
        for c in self.cases:
            if c.backend != backend:
                continue
            for o in c.outputs:
                if o.output == output and o.argmax_agreement is not None:
                    n = 1
                    for s in o.shape[:-1]:
                        n *= int(s)
                    num += o.argmax_agreement * n
                    den += n
        return None if den == 0 else num / den

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.kind,
            "result_version": RESULT_VERSION,
            "passed": self.passed,
            "status": self.status,
            "model": dict(self.model),
            "reference": dict(self.reference),
            "backends": {k: dict(v) for k, v in self.backends.items()},
            "seed": self.seed,
            "cases": [c.to_dict() for c in self.cases],
            "tasks": [t.to_dict() for t in self.tasks],
            "task_metrics": {k: dict(v) for k, v in self.task_metrics.items()},
            "warnings": list(self.warnings),
            "tolerance_overrides": dict(self.tolerance_overrides),
            "machine": dict(self.machine),
            "command": self.command,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "parity result") -> ParityResult:
        """Read a result back, every field checked (UsageError naming ``where`` and the field).

        Recorded verdicts must follow from the recorded numbers (see
        ``OutputComparison.from_dict``); a result whose cases are missing reads as
        "invalid" (``status``), which the report refuses.
        """
        f = Fields(d, where)
        out = cls(
            model=f.mapping("model", required=False, default={}),
            reference=f.mapping("reference", required=False, default={}),
            backends=f.objects("backends", required=False),
            seed=f.int("seed", required=False),
            cases=tuple(CaseResult.from_dict(c.data, c.where) for c in f.records("cases", required=False)),
            tasks=tuple(TaskAgreement.from_dict(t.data, t.where) for t in f.records("tasks", required=False)),
            task_metrics=f.objects("task_metrics", required=False),
            tolerance_overrides=f.mapping("tolerance_overrides", required=False, default={}),
            **f.stamps(),
        )
        if out.status == "invalid":
            raise f.error(f"{where} cannot be verified: {out.invalid_reason()}",
                          "give results written by rnndeploy parity --json FILE")
        _same_verdict(f, out.passed)
        status = f.str("status", required=False)
        if status is not None and status != out.status:
            raise f.error(f"{f.path('status')} records {status!r} but its cases say {out.status!r}",
                          "this result cannot be verified: run parity again")
        return out
