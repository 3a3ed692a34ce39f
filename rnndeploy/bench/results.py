"""BenchResult: the measurements of one ``rnndeploy bench`` run, with the machine and command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rnndeploy.bench.measurement import Measurement, find

RESULT_VERSION = 1


@dataclass(frozen=True)
class BenchResult:
    """Latency of several backends over a batch × seq sweep, measured side by side.

    Attributes:
        model: {"name", "family", "graph", "with_state", "onnx", "onnx_sha256", ...}.
        measurements: one per (backend, batch, seq), in measurement order.
        baseline: the backend ratios are taken against ("torch" when it ran).
        settings: {"warmup", "iters", "min_time", "number", "seed"}.
        warnings: e.g. no torch row, harness notes.
        machine / command / created: provenance.
    """

    model: Mapping[str, Any]
    measurements: Tuple[Measurement, ...]
    baseline: Optional[str] = "torch"
    settings: Mapping[str, Any] = field(default_factory=dict)
    warnings: Tuple[str, ...] = ()
    machine: Mapping[str, Any] = field(default_factory=dict)
    command: str = ""
    created: str = ""

    kind = "bench"

    def backends(self) -> List[str]:
        return list(dict.fromkeys(m.backend for m in self.measurements))

    def batches(self) -> List[int]:
        return sorted({m.batch for m in self.measurements})

    def seqs(self) -> List[int]:
        return sorted({m.seq for m in self.measurements})

    def get(self, backend: str, batch: int, seq: int) -> Optional[Measurement]:
        return find(list(self.measurements), backend, batch, seq)

    def ratio(self, backend: str, batch: int, seq: int, baseline: Optional[str] = None) -> Optional[float]:
        """median(backend) / median(baseline) at (batch, seq); < 1 means faster than the baseline."""
        base_name = baseline or self.baseline
        if base_name is None or base_name == backend:
            return None
        m, b = self.get(backend, batch, seq), self.get(base_name, batch, seq)
        if m is None or b is None or not b.median > 0:
            return None
        return m.median / b.median

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.kind,
            "result_version": RESULT_VERSION,
            "model": dict(self.model),
            "baseline": self.baseline,
            "settings": dict(self.settings),
            "measurements": [m.to_dict() for m in self.measurements],
            "warnings": list(self.warnings),
            "machine": dict(self.machine),
            "command": self.command,
            "created": self.created,
        }

    @property
    def status(self) -> str:
        """"measured", or "invalid" when it holds no measurement."""
        return "measured" if self.measurements else "invalid"

    def invalid_reason(self) -> Optional[str]:
        return None if self.measurements else "it holds no measurements: nothing was measured"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "bench result") -> BenchResult:
        """Read a result back, every field checked (UsageError naming ``where`` and the field)."""
        from rnndeploy.validation import Fields

        f = Fields(d, where)
        return cls(
            model=f.mapping("model", required=False, default={}),
            measurements=tuple(Measurement.from_dict(m.data, m.where) for m in f.records("measurements")),
            baseline=f.str("baseline", required=False),
            settings=f.mapping("settings", required=False, default={}),
            **f.stamps(),
        )
