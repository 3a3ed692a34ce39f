"""LoadTestResult: one ``rnndeploy loadtest`` sweep, in the results format parity and bench use.

Measuring (loadtest.py), holding (this module) and rendering (rnndeploy.report) stay apart:
a Level keeps every latency sample and every count; percentiles and throughput are derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rnndeploy.bench.measurement import Measurement

RESULT_VERSION = 1
MAX_FAILURES_KEPT = 20


@dataclass(frozen=True)
class Level:
    """One concurrency level.

    Attributes:
        concurrency: clients sending at once (each waits for its answer before the next request).
        latencies: seconds per timed request (answered, right or wrong), in completion order.
        sent: requests sent. verified: answers equal to the local reference (and to the request's id).
        wrong: answers that came back different. errors: requests answered with an error or not at all.
        abandoned: streaming requests never sent because an earlier request of their sequence failed.
        wall_s: seconds from the first timed request's start to the last timed answer.
        steps_per_request: batch × sequence length of one request (for time steps per second).
        failures: the first MAX_FAILURES_KEPT failures, {"request", "kind", "message"}.
        failure_counts: failure kind and message → how many times.
    """

    concurrency: int
    latencies: Tuple[float, ...]
    sent: int
    verified: int
    wrong: int = 0
    errors: int = 0
    abandoned: int = 0
    wall_s: float = 0.0
    steps_per_request: int = 1
    failures: Tuple[Mapping[str, Any], ...] = ()
    failure_counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def measurement(self) -> Measurement:
        """The latencies as a bench Measurement (one set of percentile rules for every latency figure)."""
        return Measurement(backend="triton", sizes={"batch": 1}, times=self.latencies)

    @property
    def p50(self) -> float:
        return self.measurement.median

    @property
    def p90(self) -> float:
        return self.measurement.p90

    @property
    def p99(self) -> float:
        return self.measurement.p99

    @property
    def throughput(self) -> float:
        """Answered timed requests per second."""
        return len(self.latencies) / self.wall_s if self.wall_s > 0 and self.latencies else float("nan")

    @property
    def steps_per_s(self) -> float:
        return self.throughput * self.steps_per_request

    @property
    def passed(self) -> bool:
        return self.sent > 0 and self.verified == self.sent and not (self.wrong or self.errors or self.abandoned)

    def to_dict(self) -> Dict[str, Any]:
        def clean(v: float) -> Optional[float]:
            return None if v != v else v

        return {
            "concurrency": self.concurrency, "latencies": [float(f"{t:.4g}") for t in self.latencies],
            "sent": self.sent, "verified": self.verified, "wrong": self.wrong, "errors": self.errors,
            "abandoned": self.abandoned, "wall_s": self.wall_s, "steps_per_request": self.steps_per_request,
            "failures": [dict(f) for f in self.failures], "failure_counts": dict(self.failure_counts),
            "stats": {"p50": clean(self.p50), "p90": clean(self.p90), "p99": clean(self.p99),
                      "throughput": clean(self.throughput)},  # informative: readers recompute
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "load test level") -> Level:
        """Read a level back, every field checked (UsageError naming ``where`` and the field)."""
        from rnndeploy.validation import Fields

        f = Fields(d, where)
        counts = f.mapping("failure_counts", required=False, default={})
        for k, v in counts.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise f.fail(f"failure_counts.{k}", "an integer >= 0", v)
        return cls(
            concurrency=f.int("concurrency", minimum=1), latencies=tuple(f.numbers("latencies", required=False, above=0.0)),
            sent=f.int("sent", minimum=0), verified=f.int("verified", minimum=0),
            wrong=f.int("wrong", required=False, default=0, minimum=0),
            errors=f.int("errors", required=False, default=0, minimum=0),
            abandoned=f.int("abandoned", required=False, default=0, minimum=0),
            wall_s=f.number("wall_s", required=False, default=0.0, minimum=0.0),
            steps_per_request=f.int("steps_per_request", required=False, default=1, minimum=1),
            failures=tuple(r.data for r in f.records("failures", required=False)),
            failure_counts=counts,
        )


@dataclass(frozen=True)
class LoadTestResult:
    """A concurrency sweep against one served model, every answer checked.

    Attributes:
        model: {"name" (spec), "served_as", "url", "protocol", "streaming", "max_batch_size",
            "reference" (backend), "onnx_sha256", ...}.
        levels: one per concurrency, in sweep order.
        settings: {"requests", "max_seconds", "batch", "seq", "chunks", "warmup", "timeout_s", "seed"}.
        warnings / machine / command / created: as in BenchResult.
    """

    model: Mapping[str, Any]
    levels: Tuple[Level, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    warnings: Tuple[str, ...] = ()
    machine: Mapping[str, Any] = field(default_factory=dict)
    command: str = ""
    created: str = ""

    kind = "loadtest"

    @property
    def passed(self) -> bool:
        return bool(self.levels) and all(lv.passed for lv in self.levels)

    @property
    def status(self) -> str:
        """"passed", "failed", or "invalid" when no request was sent."""
        if not any(lv.sent for lv in self.levels):
            return "invalid"
        return "passed" if self.passed else "failed"

    def invalid_reason(self) -> Optional[str]:
        return "it sent no request: nothing was checked" if self.status == "invalid" else None

    def failures(self) -> List[str]:
        out = []
        for lv in self.levels:
            for what, n in lv.failure_counts.items():
                out.append(f"concurrency {lv.concurrency}: {n} × {what}")
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "result_version": RESULT_VERSION, "model": dict(self.model),
            "levels": [lv.to_dict() for lv in self.levels], "settings": dict(self.settings),
            "passed": self.passed, "warnings": list(self.warnings), "machine": dict(self.machine),
            "command": self.command, "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "load test result") -> LoadTestResult:
        """Read a result back, every field checked (UsageError naming ``where`` and the field)."""
        from rnndeploy.validation import Fields

        f = Fields(d, where)
        return cls(
            model=f.mapping("model", required=False, default={}),
            levels=tuple(Level.from_dict(r.data, r.where) for r in f.records("levels")),
            settings=f.mapping("settings", required=False, default={}),
            **f.stamps(),
        )
