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
from rnndeploy.validation import check_number


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
            if parts[0] in per:
                raise UsageError(f"--tol {parts[0]} is given twice", "give one --tol per output")
            nums = [check_number(v, f"--tol {item!r} {key}", minimum=0.0, allow_inf=True,
                                 hint="tolerances are numbers >= 0 (inf: not checked), e.g. logits:1e-3:1e-2")
                     for key, v in zip(("atol", "rtol", "rel_l2"), parts[1:])]
            per[parts[0]] = Tolerance(nums[0], nums[1], nums[2] if len(nums) == 3 else None)
        checked = [None if v is None else check_number(v, name, minimum=0.0, allow_inf=True)
                   for name, v in (("--atol", atol), ("--rtol", rtol))]
        return cls(checked[0], checked[1], per)

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

    Specs declare fp32 and fp16 tolerances; bf16 has its own default
    (rnndeploy.spec.DEFAULT_TOLERANCES) unless the spec declares one; other reduced
    precisions (int8) are held to the fp16 ones, the loosest the model declares.
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


def check_something_checked(graph: GraphSpec, precisions: Sequence[str],
                            overrides: Optional[ToleranceOverrides] = None) -> None:
    """Refuse a comparison in which no output would be checked (fail closed).

    Integer outputs are always compared exactly; float outputs are checked unless their
    tolerance is ``inf`` (see ``Tolerance.checks_nothing``).

    Raises:
        UsageError: every float output's tolerance is inf at every precision under test.
    """
    if any(not t.dtype.startswith("float") for t in graph.outputs):
        return
    if all(resolve_tolerance(graph, t.name, p, overrides).checks_nothing for t in graph.outputs for p in precisions):
        raise UsageError("nothing would be checked: every output's tolerance is inf (inf means 'not checked')",
                         "give a finite --atol/--rtol, or --tol OUTPUT:ATOL:RTOL for at least one output")

