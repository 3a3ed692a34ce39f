"""Measurement: raw latency samples of one configuration plus metadata; statistics derived.

Measuring (rnndeploy.bench.timing), holding (this module) and rendering
(rnndeploy.report) are separate, as in torch.utils.benchmark: a Measurement keeps
every sample, statistics are computed from them on demand, and nothing here formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

# IQR/median above this makes a figure unreliable: say so beside it.
VARIANCE_WARN = 0.10
MIN_SAMPLES_WARN = 5


@dataclass(frozen=True)
class Measurement:
    """Latency samples of one backend at one (batch, seq).

    Attributes:
        backend: registry name.
        sizes: {"batch": B, "seq": S, ...}.
        times: seconds per call, one entry per timed block (a block runs ``number``
            calls back to back and records their mean).
        number: calls per block.
        warmup: untimed calls made before the first sample.
        description: RunDescription.to_dict() of the runner — what the figure includes.
        metadata: anything else worth keeping (model name, graph, ...).
    """

    backend: str
    sizes: Mapping[str, int]
    times: Tuple[float, ...]
    number: int = 1
    warmup: int = 0
    description: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    # -- derived statistics (seconds) -----------------------------------------------------------
    def _q(self, q: float) -> float:
        if not self.times:
            return float("nan")
        return float(np.percentile(np.asarray(self.times, dtype=np.float64), q))

    @property
    def median(self) -> float:
        return self._q(50)

    @property
    def p90(self) -> float:
        return self._q(90)

    @property
    def p99(self) -> float:
        return self._q(99)

    @property
    def q1(self) -> float:
        return self._q(25)

    @property
    def q3(self) -> float:
        return self._q(75)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def min(self) -> float:
        return float(min(self.times)) if self.times else float("nan")

    @property
    def max(self) -> float:
        return float(max(self.times)) if self.times else float("nan")

    @property
    def mean(self) -> float:
        return float(np.mean(self.times)) if self.times else float("nan")

    @property
    def iqr_rel(self) -> float:
        """IQR / median (dimensionless spread)."""
        m = self.median
        return self.iqr / m if m > 0 else float("nan")

    @property
    def batch(self) -> int:
        return int(self.sizes.get("batch", 1))

    @property
    def seq(self) -> int:
        return int(self.sizes.get("seq", self.sizes.get("src_seq", 1)))

    @property
    def sequences_per_s(self) -> float:
        """Throughput at the median: batch / median latency."""
        return self.batch / self.median if self.median > 0 else float("nan")

    @property
    def timesteps_per_s(self) -> float:
        """batch × seq / median latency."""
        return self.batch * self.seq / self.median if self.median > 0 else float("nan")

    @property
    def warnings(self) -> List[str]:
        out = []
        if len(self.times) < MIN_SAMPLES_WARN:
            out.append(f"only {len(self.times)} samples")
        spread = self.iqr_rel
        if spread == spread and spread > VARIANCE_WARN:  # not NaN
            out.append(f"high variance: IQR is {spread:.0%} of the median")
        return out

    def stats(self) -> Dict[str, Any]:
        """Derived statistics as a dict (seconds; throughput per second)."""
        return {
            "median": self.median, "mean": self.mean, "p90": self.p90, "p99": self.p99, "min": self.min,
            "max": self.max, "q1": self.q1, "q3": self.q3, "iqr": self.iqr, "iqr_rel": self.iqr_rel,
            "samples": len(self.times), "sequences_per_s": self.sequences_per_s,
            "timesteps_per_s": self.timesteps_per_s,
        }

    def to_dict(self) -> Dict[str, Any]:
        stats = {k: (None if isinstance(v, float) and v != v else v) for k, v in self.stats().items()}
        return {
            "backend": self.backend,
            "sizes": dict(self.sizes),
            # 4 significant digits: far below the run-to-run noise, and half the file size
            "times": [float(f"{t:.4g}") for t in self.times],
            "number": self.number,
            "warmup": self.warmup,
            "description": dict(self.description),
            "metadata": dict(self.metadata),
            "stats": stats,  # informative: readers recompute from "times"
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "measurement") -> Measurement:
        """Read one measurement back: at least one finite, positive time (UsageError naming the field)."""
        from rnndeploy.validation import Fields

        f = Fields(d, where)
        sizes = f.sizes("sizes")
        if "batch" not in sizes:  # every row is measured at a batch size: without it, a figure of nothing
            raise f.fail("sizes.batch", "an integer >= 1")
        for axis in ("batch", "seq"):
            if axis in sizes and sizes[axis] < 1:
                raise f.fail(f"sizes.{axis}", "an integer >= 1", sizes[axis])
        return cls(
            backend=f.str("backend"),
            sizes=sizes,
            times=tuple(f.numbers("times", above=0.0, nonempty=True)),
            number=f.int("number", required=False, default=1, minimum=1),
            warmup=f.int("warmup", required=False, default=0, minimum=0),
            description=f.mapping("description", required=False, default={}),
            metadata=f.mapping("metadata", required=False, default={}),
        )


def find(measurements: List[Measurement], backend: str, batch: int, seq: int) -> Optional[Measurement]:
    for m in measurements:
        if m.backend == backend and m.batch == batch and m.seq == seq:
            return m
    return None


def merge_rounds(parts: List[Measurement]) -> Measurement:
    """One Measurement from blocks of the same backend and shape timed in several rounds: the
    samples of every round, in order; the first round's description and metadata; the warm-up
    calls of all rounds together."""
    if not parts:
        raise ValueError("merge_rounds needs at least one measurement")
    first = parts[0]
    if any((p.backend, dict(p.sizes), p.number) != (first.backend, dict(first.sizes), first.number) for p in parts):
        raise ValueError("merge_rounds: every part must be the same backend, sizes and calls per block")
    return Measurement(first.backend, dict(first.sizes), tuple(t for p in parts for t in p.times), first.number,
                       sum(p.warmup for p in parts), dict(first.description), dict(first.metadata))
