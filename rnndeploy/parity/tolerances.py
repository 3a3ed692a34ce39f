"""Tolerance resolution: the spec's per-precision defaults, then user overrides.

Order (later wins): the GraphSpec's tolerance for the output at the precision under
test (FP16 looser than FP32, see rnndeploy.spec.DEFAULT_TOLERANCES) → global
``--atol`` / ``--rtol`` → per-output ``--tol OUTPUT:ATOL:RTOL[:REL_L2]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Mapping, Optional, Sequence

from rnndeploy.errors import UsageError
from rnndeploy.spec import PRECISIONS, GraphSpec, Tolerance


@dataclass(frozen=True)
class ToleranceOverrides:
    """User overrides. ``atol``/``rtol`` apply to every output; ``per_output`` wins over them."""

    atol: Optional[float] = None
    rtol: Optional[float] = None
    per_output: Mapping[str, Tolerance] = field(default_factory=dict)

    @classmethod
    def parse(cls, atol: Optional[float] = None, rtol: Optional[float] = None, tol: Sequence[str] = ()) -> ToleranceOverrides:
        """From CLI values; ``tol`` items look like "logits:1e-3:1e-2" or "h:1e-3:1e-2:1e-4"."""
        per: Dict[str, Tolerance] = {}
        for item in tol:
            parts = item.split(":")
            if len(parts) not in (3, 4) or not parts[0]:
                raise UsageError(f"--tol {item!r} is malformed", "write OUTPUT:ATOL:RTOL or OUTPUT:ATOL:RTOL:REL_L2")
            try:
                nums = [float(p) for p in parts[1:]]
            except ValueError as exc:
                raise UsageError(f"--tol {item!r}: {exc}", "tolerances are numbers, e.g. logits:1e-3:1e-2") from exc
            if any(n < 0 for n in nums):
                raise UsageError(f"--tol {item!r}: tolerances must not be negative")
            per[parts[0]] = Tolerance(nums[0], nums[1], nums[2] if len(nums) == 3 else None)
        for name, value in (("--atol", atol), ("--rtol", rtol)):
            if value is not None and value < 0:
                raise UsageError(f"{name} must not be negative, got {value}")
        return cls(atol, rtol, per)

    def check_outputs(self, graph: GraphSpec) -> None:
        unknown = sorted(set(self.per_output) - {t.name for t in graph.outputs})
        if unknown:
            raise UsageError(f"--tol names unknown output(s) {', '.join(unknown)}",
                             f"outputs of graph {graph.name!r}: {', '.join(t.name for t in graph.outputs)}")

    def to_dict(self) -> Dict[str, object]:
        return {"atol": self.atol, "rtol": self.rtol, "per_output": {k: v.to_dict() for k, v in self.per_output.items()}}


def resolve_tolerance(graph: GraphSpec, output: str, precision: str,
                      overrides: Optional[ToleranceOverrides] = None) -> Tolerance:
    """The tolerance for ``output`` when the runtime under test runs at ``precision``.

    Specs declare fp32 and fp16 tolerances; other reduced precisions (int8, bf16) are
    held to the fp16 ones, the loosest the model declares.
    """
    tol = graph.tolerance(output, precision if precision in PRECISIONS else "fp16")
    if overrides is None:
        return tol
    if output in overrides.per_output:
        return overrides.per_output[output]
    if overrides.atol is not None:
        tol = replace(tol, atol=overrides.atol)
    if overrides.rtol is not None:
        tol = replace(tol, rtol=overrides.rtol)
    return tol
