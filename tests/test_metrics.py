"""Comparison metrics on hand-made arrays (no runner, no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnndeploy.errors import UsageError
from rnndeploy.metrics import (
    argmax_agreement,
    compare_output,
    cosine,
    error_by_length,
    error_stats,
    first_nonfinite,
    rel_l2,
    time_profile,
    within_tolerance,
)
from rnndeploy.parity.tolerances import ToleranceOverrides, resolve_tolerance
from rnndeploy.spec import GraphSpec, TensorSpec, Tolerance

TIGHT = Tolerance(atol=1e-4, rtol=1e-3)


def test_error_stats_by_hand():
    ref = np.array([1.0, -2.0, 4.0, 0.5])
    act = np.array([1.1, -2.0, 3.0, 0.5])  # diffs 0.1, 0, 1, 0
    s = error_stats(act, ref, TIGHT)
    assert s.max_abs == pytest.approx(1.0)
    assert s.mean_abs == pytest.approx(1.1 / 4)
    assert s.median_abs == pytest.approx(0.05)
    assert s.max_rel == pytest.approx(0.25)  # 1 / 4
    assert s.rel_l2 == pytest.approx(math.sqrt(0.01 + 1.0) / math.sqrt(1 + 4 + 16 + 0.25))
    expected_cos = float(np.dot(act, ref) / (np.linalg.norm(act) * np.linalg.norm(ref)))
    assert s.cosine == pytest.approx(expected_cos)
    # the smallest atol with rtol=1e-3: max(d - 1e-3*|ref|) = 1 - 0.004
    assert s.atol_needed == pytest.approx(1.0 - 4e-3)
    # the smallest rtol with atol=1e-4: max((d - atol)/|ref|) over d > atol = (1 - 1e-4)/4
    assert s.rtol_needed == pytest.approx((1.0 - 1e-4) / 4)


def test_needed_tolerances_are_tight():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 7))
    act = ref + rng.normal(scale=1e-3, size=ref.shape)
    s = error_stats(act, ref, TIGHT)
    assert np.allclose(act, ref, atol=s.atol_needed * (1 + 1e-9), rtol=TIGHT.rtol)
    assert not np.allclose(act, ref, atol=s.atol_needed * 0.99, rtol=TIGHT.rtol)
    assert np.allclose(act, ref, atol=TIGHT.atol, rtol=s.rtol_needed * (1 + 1e-9))
    assert not np.allclose(act, ref, atol=TIGHT.atol, rtol=s.rtol_needed * 0.99)


def test_rtol_needed_is_none_when_reference_is_zero_where_it_errs():
    s = error_stats(np.array([0.5, 1.0]), np.array([0.0, 1.0]), TIGHT)
    assert s.rtol_needed is None
    assert s.max_rel > 1e6  # floored denominator, finite


def test_rel_l2_and_cosine_edge_cases():
    z = np.zeros(4)
    assert rel_l2(z, z) == 0.0
    assert cosine(z, z) == 1.0
    assert cosine(np.ones(3), z) == 0.0
    assert cosine(np.array([1.0, 0]), np.array([-1.0, 0])) == pytest.approx(-1.0)


def test_within_tolerance_elementwise_and_l2():
    ref = np.array([1.0, 2.0, 3.0])
    ok, why = within_tolerance(ref + 5e-5, ref, TIGHT)
    assert ok and why is None
    ok, why = within_tolerance(ref + np.array([0, 0, 0.01]), ref, TIGHT)
    assert not ok and "1 of 3 elements" in why and "[2]" in why
    # elementwise fine, relative L2 too large
    ok, why = within_tolerance(ref * (1 + 5e-4), ref, Tolerance(atol=1e-2, rtol=1e-2, rel_l2=1e-5))
    assert not ok and "relative L2" in why


def test_first_nonfinite_reports_index_and_kind():
    a = np.zeros((2, 3, 4), dtype=np.float32)
    assert first_nonfinite(a) is None
    a[1, 2, 0] = np.inf
    a[1, 2, 3] = np.nan
    assert first_nonfinite(a) == ((1, 2, 0), "Inf")
    a[0, 1, 1] = np.nan
    assert first_nonfinite(a) == ((0, 1, 1), "NaN")
    assert first_nonfinite(np.arange(3)) is None  # integers are always finite


def test_compare_output_nan_fails_naming_backend_output_shape_index():
    ref = np.ones((2, 3), dtype=np.float32)
    act = ref.copy()
    act[1, 2] = np.nan
    c = compare_output("logits", act, ref, TIGHT, backend="ort-cpu", reference="torch")
    assert not c.passed and c.stats is None
    assert "ort-cpu" in c.failure and "'logits'" in c.failure and "[2, 3]" in c.failure and "[1, 2]" in c.failure
    c = compare_output("logits", ref, act, TIGHT, backend="ort-cpu", reference="torch")
    assert not c.passed and "reference (torch)" in c.failure


def test_compare_output_shape_mismatch_and_integers():
    c = compare_output("y", np.zeros((2, 3)), np.zeros((2, 4)), TIGHT)
    assert not c.passed and "[2, 3]" in c.failure and "[2, 4]" in c.failure
    c = compare_output("ids", np.array([1, 2, 3]), np.array([1, 2, 4]), TIGHT)
    assert not c.passed and "integer" in c.failure
    assert compare_output("ids", np.array([1, 2]), np.array([1, 2]), TIGHT).passed


def test_time_profile_shows_growth_along_the_time_axis():
    ref = np.ones((2, 5, 3))
    drift = np.arange(5, dtype=np.float64)[None, :, None] * 1e-3
    prof = time_profile(ref + drift, ref, time_axis=1)
    assert len(prof.max_abs) == 5
    assert prof.max_abs == pytest.approx(tuple(t * 1e-3 for t in range(5)))
    assert list(prof.rel_l2) == sorted(prof.rel_l2)
    # same data, time on axis 0
    prof0 = time_profile(np.moveaxis(ref + drift, 1, 0), np.moveaxis(ref, 1, 0), time_axis=0)
    assert prof0.max_abs == pytest.approx(prof.max_abs)


def test_error_by_length_groups_rows():
    ref = np.ones((4, 3))
    act = ref.copy()
    act[1] += 0.1  # row with length 2
    e = error_by_length(act, ref, [5, 2, 5, 3])
    assert set(e) == {2, 3, 5}
    assert e[5] == 0.0 and e[3] == 0.0 and e[2] == pytest.approx(0.1)


def test_argmax_agreement():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    act = np.array([[0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    assert argmax_agreement(act, ref) == 0.75
    c = compare_output("probs", act, ref, Tolerance(1, 1), role="probs")
    assert c.argmax_agreement == 0.75 and c.passed


def test_comparison_round_trips_through_json():
    import json

    from rnndeploy.metrics import OutputComparison

    ref = np.random.default_rng(1).normal(size=(2, 6, 3))
    c = compare_output("y", ref + 1e-6, ref, TIGHT, time_axis=1, lengths=[6, 3], role="logits")
    back = OutputComparison.from_dict(json.loads(json.dumps(c.to_dict(), allow_nan=False)))
    assert back.to_dict() == c.to_dict()  # stable after one round trip (curves are kept to 4 digits)
    assert back.stats == c.stats and back.by_length == c.by_length and back.passed == c.passed
    assert back.time_profile.rel_l2 == pytest.approx(c.time_profile.rel_l2, rel=1e-3)


def _graph() -> GraphSpec:
    return GraphSpec(
        "model",
        (TensorSpec("x", "float32", ("batch", "seq", 2), "features"),),
        (TensorSpec("y", "float32", ("batch", 2), "logits"), TensorSpec("h", "float32", (1, "batch", 4), "state")),
        output_tolerances={"h": {"fp16": Tolerance(0.05, 0.05)}},
    )


def test_tolerance_resolution_order():
    g = _graph()
    assert resolve_tolerance(g, "y", "fp32") == g.tolerances["fp32"]
    assert resolve_tolerance(g, "y", "fp16").atol > resolve_tolerance(g, "y", "fp32").atol  # FP16 looser
    assert resolve_tolerance(g, "h", "fp16") == Tolerance(0.05, 0.05)  # spec per-output override
    ov = ToleranceOverrides.parse(atol=1e-2, rtol=None, tol=["h:1e-3:2e-3:1e-4"])
    assert resolve_tolerance(g, "y", "fp32", ov).atol == 1e-2
    assert resolve_tolerance(g, "y", "fp32", ov).rtol == g.tolerances["fp32"].rtol
    assert resolve_tolerance(g, "h", "fp32", ov) == Tolerance(1e-3, 2e-3, 1e-4)


@pytest.mark.parametrize("bad", ["y", "y:1", "y:a:b", ":1:1", "y:-1:0"])
def test_tolerance_override_parse_errors(bad):
    with pytest.raises(UsageError):
        ToleranceOverrides.parse(tol=[bad])


def test_tolerance_override_unknown_output():
    with pytest.raises(UsageError, match="nope"):
        ToleranceOverrides.parse(tol=["nope:1:1"]).check_outputs(_graph())


def test_export_validation_and_fp16_check_print_the_numbers_parity_prints():
    """One name, one number: export validation's table and the FP16 check measure through
    rnndeploy.metrics, including the cases the old copies defined differently (zero
    reference, zero norm)."""
    pytest.importorskip("onnx")
    from rnndeploy.export.validate import output_check

    ref = np.array([[0.0, 1.0, -2.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    act = ref + np.array([[1e-3, 0.0, 0.5], [0.0, 0.0, 0.0]], dtype=np.float32)
    stats = error_stats(act, ref, TIGHT)
    check = output_check({"batch": 2}, "y", act, ref, TIGHT)
    assert not check.ok and check.error == ""
    assert (check.max_abs, check.max_rel, check.rel_l2, check.atol_needed, check.rtol_needed) == (
        stats.max_abs, stats.max_rel, stats.rel_l2, stats.atol_needed, stats.rtol_needed)
    assert check.rtol_needed is None  # an error where the reference is 0: no rtol helps (not inf)
    zero = np.zeros(3, np.float32)
    assert output_check({}, "y", zero + 1, zero, TIGHT).rel_l2 == rel_l2(zero + 1, zero)  # floored, finite
    shape = output_check({}, "y", np.zeros(2, np.float32), zero, TIGHT)
    assert not shape.ok and "shape" in shape.error and shape.max_abs is None
    nan = output_check({}, "y", np.array([0.0, np.nan, 0.0], np.float32), zero, TIGHT)
    assert not nan.ok and "NaN" in nan.error
