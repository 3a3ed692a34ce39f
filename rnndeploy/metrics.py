"""Error metrics between a reference output and a runtime's output. Pure numpy, no runner.

The one definition of every error figure rnndeploy prints: export validation
(rnndeploy.export.validate), the FP16 conversion check (rnndeploy.precision), the
engine build's FP16 check and parity all compare through ``compare_output`` /
``rel_l2`` here, so one name always means one number.

All statistics are computed in float64 on the elementwise absolute difference
``d = |actual - ref|``:

- absolute error: max / mean / median / p99 of ``d``;
- relative error: ``d / max(|ref|, REL_FLOOR)`` — the floor keeps exact zeros in the
  reference from turning the ratio into infinity (JSON cannot carry inf);
- relative L2: ``||actual - ref||_2 / ||ref||_2`` (the figure FP16 targets use);
- cosine similarity of the flattened arrays;
- the tolerance that would have passed: the smallest ``atol`` given the spec's
  ``rtol``, and the smallest ``rtol`` given the spec's ``atol`` (None when no rtol
  can pass because the reference is exactly 0 where the error exceeds atol).

For outputs with a time axis, ``time_profile`` gives the error at every timestep
(the FP16 drift curve). With the model's ``lengths`` known, ``by_length`` gives the
relative L2 per distinct sequence length in the batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.spec import Tolerance
from rnndeploy.validation import Fields

REL_FLOOR = 1e-12
_ARGMAX_ROLES = ("logits", "probs")


@dataclass(frozen=True)
class ErrorStats:
    """Summary statistics of one output's error (see module docstring for definitions)."""

    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    median_rel: float
    p99_rel: float
    rel_l2: float
    cosine: float
    atol_needed: float
    rtol_needed: Optional[float]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "stats") -> ErrorStats:
        f = Fields(d, where)
        values: Dict[str, Any] = {k: f.number(k, minimum=0.0, allow_inf=True) for k in cls.__dataclass_fields__
                                  if k not in ("cosine", "rtol_needed")}
        values["cosine"] = f.number("cosine", minimum=-1.0 - 1e-9, maximum=1.0 + 1e-9)
        values["rtol_needed"] = f.number("rtol_needed", required=False, minimum=0.0, allow_inf=True)
        return cls(**values)


@dataclass(frozen=True)
class TimeProfile:
    """Error per timestep along an output's time axis: index t is timestep t."""

    max_abs: Tuple[float, ...]
    rel_l2: Tuple[float, ...]

    def to_dict(self) -> Dict[str, Any]:
        # 4 significant digits: curves up to seq 2048 for many outputs stay small in results files
        return {"max_abs": [_sig4(x) for x in self.max_abs], "rel_l2": [_sig4(x) for x in self.rel_l2]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "time_profile") -> TimeProfile:
        f = Fields(d, where)
        return cls(max_abs=tuple(f.numbers("max_abs", minimum=0.0, allow_inf=True)),
                   rel_l2=tuple(f.numbers("rel_l2", minimum=0.0, allow_inf=True)))


@dataclass(frozen=True)
class OutputComparison:
    """One output of one runtime on one input case, against the reference.

    Attributes:
        output: output name.
        shape: shape of the runtime's output.
        tolerance: the criterion applied (after overrides).
        passed: within tolerance, finite, same shape.
        failure: why it did not pass (None when it passed).
        stats: error statistics (None when shapes differ or values are not finite).
        time_profile: error vs timestep, for outputs with a time axis.
        by_length: relative L2 per sequence length ({length: rel_l2}) when lengths are known.
        argmax_agreement: fraction of positions whose argmax over the last axis agrees
            (logits / probs outputs only).
    """

    output: str
    shape: Tuple[int, ...]
    tolerance: Tolerance
    passed: bool
    failure: Optional[str] = None
    stats: Optional[ErrorStats] = None
    time_profile: Optional[TimeProfile] = None
    by_length: Optional[Mapping[int, float]] = None
    argmax_agreement: Optional[float] = None

    @property
    def checked(self) -> bool:
        """False when the tolerance bounds nothing (``inf``): the output was not checked."""
        return not self.tolerance.checks_nothing

    def to_dict(self) -> Dict[str, Any]:
        return {
            "output": self.output,
            "shape": list(self.shape),
            "tolerance": self.tolerance.to_dict(),
            "passed": self.passed,
            "failure": self.failure,
            "stats": None if self.stats is None else self.stats.to_dict(),
            "time_profile": None if self.time_profile is None else self.time_profile.to_dict(),
            "by_length": None if self.by_length is None else {str(k): v for k, v in self.by_length.items()},
            "argmax_agreement": self.argmax_agreement,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "output comparison") -> OutputComparison:
        """Read one comparison back; its recorded verdict must follow from its numbers.

        Raises:
            UsageError: a field of the wrong type, or ``passed`` claimed for a comparison
                whose statistics are missing or exceed its tolerance (a result that cannot
                be verified is refused, never reported as passed).
        """
        f = Fields(d, where)
        tol = f.record("tolerance")
        stats = f.record("stats", required=False)
        profile = f.record("time_profile", required=False)
        by_length = f.mapping("by_length", required=False)
        lengths: Optional[Dict[int, float]] = None
        if by_length is not None:
            per_length = Fields(by_length, f.path("by_length"))
            lengths = {}
            for k in by_length:
                if not str(k).isdigit():
                    raise f.fail(f"by_length.{k}", "keyed by sequence length", k)
                lengths[int(k)] = per_length.number(k, minimum=0.0, allow_inf=True)
        out = cls(
            output=f.str("output"),
            shape=tuple(f.ints("shape", minimum=0)),
            tolerance=Tolerance.from_dict(tol.data, tol.where),  # type: ignore[union-attr]
            passed=f.bool("passed"),
            failure=f.str("failure", required=False),
            stats=None if stats is None else ErrorStats.from_dict(stats.data, stats.where),
            time_profile=None if profile is None else TimeProfile.from_dict(profile.data, profile.where),
            by_length=lengths,
            argmax_agreement=f.number("argmax_agreement", required=False, minimum=0.0, maximum=1.0),
        )
        problem = out.unverified_pass()
        if problem:
            raise f.error(f"{where} ({out.output!r}) records passed but {problem}",
                          "this result cannot be verified: run parity again")
        return out

    def unverified_pass(self) -> Optional[str]:
        """Why a recorded pass does not follow from the recorded numbers (None when it does, or did not pass)."""
        if not self.passed:
            return None
        s, tol = self.stats, self.tolerance
        if s is None:
            return "has no stats"
        for key in ("max_abs", "atol_needed", "rel_l2"):
            if not np.isfinite(getattr(s, key)):
                return f"its {key} is {getattr(s, key)}"
        slack = 1e-9
        if s.atol_needed > tol.atol * (1 + slack) + 1e-300:
            return f"atol needed {s.atol_needed:g} exceeds its tolerance atol {tol.atol:g}"
        if s.rtol_needed is None and not math.isinf(tol.rtol) and not math.isinf(tol.atol):
            return "no rtol could pass it (an error where the reference is 0)"
        if s.rtol_needed is not None and s.rtol_needed > tol.rtol * (1 + slack) + 1e-300:
            return f"rtol needed {s.rtol_needed:g} exceeds its tolerance rtol {tol.rtol:g}"
        if tol.rel_l2 is not None and s.rel_l2 > tol.rel_l2 * (1 + slack) + 1e-300:
            return f"relative L2 {s.rel_l2:g} exceeds its tolerance rel_l2 {tol.rel_l2:g}"
        if self.failure:
            return f"also records a failure ({self.failure[:80]})"
        return None


def _sig4(x: float) -> float:
    return float(f"{x:.4g}")


# -- building blocks -----------------------------------------------------------------------------
def first_nonfinite(a: np.ndarray) -> Optional[Tuple[Tuple[int, ...], str]]:
    """(index, "NaN" | "Inf" | "-Inf") of the first non-finite element in C order, or None."""
    a = np.asarray(a)
    if a.dtype.kind not in "fc":
        return None
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size == 0:
        return None
    idx = tuple(int(i) for i in np.unravel_index(int(bad[0]), a.shape))
    v = a[idx] if a.ndim else a[()]
    kind = "NaN" if np.isnan(v) else ("Inf" if v > 0 else "-Inf")
    return idx, kind


def nonfinite_message(a: np.ndarray, who: str, output: str) -> Optional[str]:
    """A one-line description of the first NaN/Inf in ``a`` (None when all finite)."""
    found = first_nonfinite(a)
    if found is None:
        return None
    idx, kind = found
    count = int(np.count_nonzero(~np.isfinite(np.asarray(a))))
    return (f"{who} output {output!r} with shape {list(np.shape(a))} has {kind} at index {list(idx)} "
            f"({count} non-finite value{'s' if count != 1 else ''})")


def rel_l2(actual: np.ndarray, ref: np.ndarray) -> float:
    """||actual - ref||_2 / ||ref||_2 in float64 (denominator floored at REL_FLOOR)."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm((a - r).ravel()) / max(float(np.linalg.norm(r.ravel())), REL_FLOOR))


def cosine(actual: np.ndarray, ref: np.ndarray) -> float:
    """Cosine similarity of the flattened arrays; 1.0 when both are all zeros."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    na, nr = float(np.linalg.norm(a)), float(np.linalg.norm(r))
    if na == 0.0 and nr == 0.0:
        return 1.0
    if na == 0.0 or nr == 0.0:
        return 0.0
    return float(np.dot(a, r) / (na * nr))


def error_stats(actual: np.ndarray, ref: np.ndarray, tol: Tolerance) -> ErrorStats:
    """ErrorStats of ``actual`` against ``ref`` (same shape, finite)."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    d = np.abs(a - r).ravel()
    ar = np.abs(r).ravel()
    if d.size == 0:
        return ErrorStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    rel = d / np.maximum(ar, REL_FLOOR)
    atol_needed = float(max(0.0, np.max(d - tol.rtol * ar)))
    over = d > tol.atol
    if not np.any(over):
        rtol_needed: Optional[float] = 0.0
    elif np.any(ar[over] == 0.0):
        rtol_needed = None  # an error where the reference is exactly 0: no rtol helps
    else:
        rtol_needed = float(np.max((d[over] - tol.atol) / ar[over]))
    return ErrorStats(
        max_abs=float(d.max()),
        mean_abs=float(d.mean()),
        median_abs=float(np.median(d)),
        p99_abs=float(np.percentile(d, 99)),
        max_rel=float(rel.max()),
        mean_rel=float(rel.mean()),
        median_rel=float(np.median(rel)),
        p99_rel=float(np.percentile(rel, 99)),
        rel_l2=rel_l2(a, r),
        cosine=cosine(a, r),
        atol_needed=atol_needed,
        rtol_needed=rtol_needed,
    )


def within_tolerance(actual: np.ndarray, ref: np.ndarray, tol: Tolerance) -> Tuple[bool, Optional[str]]:
    """(passed, reason) for numpy.allclose semantics plus the optional relative-L2 bound."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    d = np.abs(a - r)
    bound = tol.atol + tol.rtol * np.abs(r)
    bad = d > bound
    if np.any(bad):
        n = int(np.count_nonzero(bad))
        worst = np.unravel_index(int(np.argmax(d - bound)), d.shape) if d.ndim else ()
        idx = [int(i) for i in worst]
        return False, (f"{n} of {d.size} elements exceed atol={tol.atol:g} + rtol={tol.rtol:g}*|ref| "
                       f"(worst at {idx}: |diff|={float(d[tuple(worst)]):.3g}, ref={float(r[tuple(worst)]):.3g})")
    if tol.rel_l2 is not None:
        e = rel_l2(a, r)
        if e > tol.rel_l2:
            return False, f"relative L2 error {e:.3g} exceeds {tol.rel_l2:g}"
    return True, None


def time_profile(actual: np.ndarray, ref: np.ndarray, time_axis: int) -> TimeProfile:
    """Max abs error and relative L2 at each index of ``time_axis``."""
    a = np.moveaxis(np.asarray(actual, dtype=np.float64), time_axis, 0)
    r = np.moveaxis(np.asarray(ref, dtype=np.float64), time_axis, 0)
    steps = a.shape[0]
    d = (a - r).reshape(steps, -1)
    rr = r.reshape(steps, -1)
    if d.shape[1] == 0:
        zeros = tuple(0.0 for _ in range(steps))
        return TimeProfile(zeros, zeros)
    max_abs = np.abs(d).max(axis=1)
    l2 = np.linalg.norm(d, axis=1) / np.maximum(np.linalg.norm(rr, axis=1), REL_FLOOR)
    return TimeProfile(tuple(float(x) for x in max_abs), tuple(float(x) for x in l2))


def error_by_length(actual: np.ndarray, ref: np.ndarray, lengths: Sequence[int], batch_axis: int = 0) -> Dict[int, float]:
    """Relative L2 over the batch rows of each distinct sequence length."""
    a = np.moveaxis(np.asarray(actual, dtype=np.float64), batch_axis, 0)
    r = np.moveaxis(np.asarray(ref, dtype=np.float64), batch_axis, 0)
    lens = np.asarray(lengths).astype(np.int64).ravel()
    if lens.shape[0] != a.shape[0]:
        return {}
    return {int(n): rel_l2(a[lens == n], r[lens == n]) for n in sorted(set(lens.tolist()))}


def argmax_agreement(actual: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of positions whose argmax over the last axis agrees."""
    a = np.asarray(actual)
    r = np.asarray(ref)
    if a.ndim == 0 or a.shape[-1] == 0:
        return 1.0
    same = np.argmax(a, axis=-1) == np.argmax(r, axis=-1)
    return float(np.mean(same)) if same.size else 1.0


# -- one output ------------------------------------------------------------------------------------
def compare_output(
    name: str,
    actual: np.ndarray,
    ref: np.ndarray,
    tol: Tolerance,
    *,
    backend: str = "runtime",
    reference: str = "reference",
    time_axis: Optional[int] = None,
    role: str = "other",
    lengths: Optional[Sequence[int]] = None,
    batch_axis: Optional[int] = 0,
) -> OutputComparison:
    """Compare one output; never raises on numerical problems (they become ``failure``)."""
    actual = np.asarray(actual)
    ref = np.asarray(ref)
    shape = tuple(int(s) for s in actual.shape)
    if actual.shape != ref.shape:
        return OutputComparison(name, shape, tol, False,
                                f"{backend} output {name!r} has shape {list(actual.shape)}, reference has {list(ref.shape)}")
    bad = nonfinite_message(ref, f"reference ({reference})", name) or nonfinite_message(actual, backend, name)
    if bad:
        return OutputComparison(name, shape, tol, False, bad)
    if actual.dtype.kind not in "fc" or ref.dtype.kind not in "fc":
        # integer outputs (token ids, lengths): exact equality is the only sensible criterion
        same = np.array_equal(actual, ref)
        exact = Tolerance(0.0, 0.0)  # the criterion applied, whatever the float tolerance says
        stats = error_stats(actual.astype(np.float64), ref.astype(np.float64), exact)
        failure = None if same else f"{backend} output {name!r}: integer values differ from the reference"
        return OutputComparison(name, shape, exact, same, failure, stats)
    stats = error_stats(actual, ref, tol)
    passed, reason = within_tolerance(actual, ref, tol)
    profile = None
    if time_axis is not None and time_axis < actual.ndim:
        profile = time_profile(actual, ref, time_axis)
    by_len = None
    if lengths is not None and batch_axis is not None and actual.ndim > batch_axis:
        by_len = error_by_length(actual, ref, lengths, batch_axis) or None
    agree = argmax_agreement(actual, ref) if role in _ARGMAX_ROLES else None
    failure = None if passed else f"{backend} output {name!r}: {reason}"
    return OutputComparison(name, shape, tol, passed, failure, stats, profile, by_len, agree)


def summarize_profiles(profiles: List[TimeProfile]) -> Optional[TimeProfile]:
    """Elementwise max over several profiles (e.g. all cases of one output), aligned at t=0."""
    if not profiles:
        return None
    steps = max(len(p.max_abs) for p in profiles)
    ma = [max((p.max_abs[t] for p in profiles if t < len(p.max_abs)), default=0.0) for t in range(steps)]
    l2 = [max((p.rel_l2[t] for p in profiles if t < len(p.rel_l2)), default=0.0) for t in range(steps)]
    return TimeProfile(tuple(ma), tuple(l2))
