"""The shared fail-closed mechanisms, tested on their own (the CLI table is tests/test_bad_inputs.py):
number checks, typed document reading, the JSON codec, memory estimates, output preflight,
all-or-nothing directories, input checks, and parity verdicts that never pass unchecked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from rnndeploy import jsonio, memory
from rnndeploy.cli.types import FRACTION, POSITIVE_SECONDS, SEED, TOLERANCE, OutputPath
from rnndeploy.errors import ShapeError, SpecError, UsageError
from rnndeploy.fileio import check_output_path, transaction_dir, write_json_atomic
from rnndeploy.input_checks import check_expected, check_input_values
from rnndeploy.metrics import OutputComparison, compare_output
from rnndeploy.parity.results import CaseResult, ParityResult
from rnndeploy.parity.tolerances import ToleranceOverrides, check_something_checked
from rnndeploy.report.schema import dumps_results, load_verified, to_document
from rnndeploy.spec import GraphSpec, TensorSpec, Tolerance
from rnndeploy.validation import Fields, check_number


# -- numbers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, kw, ok", [
    ("nan", {}, False), (float("nan"), {"allow_inf": True}, False), ("inf", {}, False),
    ("inf", {"allow_inf": True, "minimum": 0.0}, True), ("-inf", {"allow_inf": True}, False),
    ("1e-3", {"minimum": 0.0}, True), ("-1", {"minimum": 0.0}, False), ("0", {"above": 0.0}, False),
    ("1.5", {"maximum": 1.0}, False), ("3", {"integer": True}, True), ("3.5", {"integer": True}, False),
    ("x", {}, False), (True, {}, False),
])
def test_check_number(value, kw, ok):
    if ok:
        assert check_number(value, "--x", **kw) is not None
    else:
        with pytest.raises(UsageError, match="--x must be"):
            check_number(value, "--x", **kw)


@pytest.mark.parametrize("ptype, good, bad", [
    (TOLERANCE, ["0", "1e-4", "inf"], ["nan", "-1", "-inf", "x"]),
    (POSITIVE_SECONDS, ["0.5", "3"], ["0", "nan", "inf", "-1"]),
    (FRACTION, ["0", "0.5", "1"], ["1.01", "nan", "-0.1"]),
    (SEED, ["0", "7"], ["-1", "1.5", "nan"]),
])
def test_click_number_types_are_one_line_usage_errors(ptype, good, bad):
    @click.command()
    @click.option("--v", type=ptype)
    def cmd(v):
        click.echo(repr(v))

    for g in good:
        assert CliRunner().invoke(cmd, ["--v", g]).exit_code == 0
    for b in bad:
        res = CliRunner().invoke(cmd, ["--v", b])
        assert res.exit_code == 2 and "--v" in res.output and "must be" in res.output, res.output


def test_output_path_type_checks_before_the_command_runs(tmp_path):
    ran = []

    @click.command()
    @click.option("--out", type=OutputPath())
    def cmd(out):
        ran.append(out)

    (tmp_path / "d").mkdir()
    for bad in (tmp_path / "d", tmp_path / "missing" / "x.json", Path("/proc/x.json"), Path("/sys/x.json")):
        res = CliRunner().invoke(cmd, ["--out", str(bad)])
        assert res.exit_code == 2, res.output
    assert ran == []
    assert CliRunner().invoke(cmd, ["--out", str(tmp_path / "ok.json")]).exit_code == 0 and ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # the probe leaves nothing


# -- typed documents ------------------------------------------------------------------------------------
def test_fields_name_the_file_and_the_path():
    f = Fields({"cases": [{"tolerance": {"atol": "big"}}]}, "results file r.json: results[0]")
    case = f.records("cases")[0]
    with pytest.raises(UsageError) as err:
        case.record("tolerance").number("atol", minimum=0.0, allow_inf=True)
    assert str(err.value).startswith("results file r.json: results[0].cases[0].tolerance.atol must be a number >= 0")
    with pytest.raises(UsageError, match=r"results\[0\]\.missing is missing"):
        f.str("missing")
    with pytest.raises(UsageError, match="must be an object"):
        Fields([1], "x")
    assert f.number("absent", required=False) is None
    assert Fields({"t": "Infinity"}, "x").number("t", allow_inf=True) == math.inf


# -- JSON codec -----------------------------------------------------------------------------------------
def test_json_never_holds_nan_or_infinity_and_reads_back(tmp_path):
    obj = {"a": float("nan"), "b": [float("inf"), -math.inf, 1.5], "c": np.float32("inf"), "d": {"e": np.float64(2.0)}}
    text = jsonio.dumps(obj)
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text.replace('"Infinity"', "").replace(
        '"-Infinity"', "")
    json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} token"))
    back = json.loads(text)
    assert math.isnan(jsonio.to_float(back["a"])) and jsonio.to_float(back["b"][0]) == math.inf
    assert jsonio.to_float(back["b"][1]) == -math.inf and jsonio.to_float(back["c"]) == math.inf
    write_json_atomic(tmp_path / "x.json", obj)
    assert json.loads((tmp_path / "x.json").read_text())["b"][0] == "Infinity"


# -- memory -------------------------------------------------------------------------------------------
def test_check_fits_names_the_estimate_and_the_machine(monkeypatch):
    monkeypatch.setattr(memory, "machine_memory", lambda: (2 << 30, 4 << 30))
    memory.check_fits(1 << 30, "small")
    with pytest.raises(UsageError, match=r"big needs about 3 GiB of memory; this machine has 2 GiB available \(4 GiB total\)"):
        memory.check_fits(3 << 30, "big")
    g = GraphSpec("g", (TensorSpec("x", "float32", ("batch", "seq", 4), "features"),),
                  (TensorSpec("y", "float32", ("batch", 1), "prediction"),))
    assert memory.graph_bytes(g, {"batch": 2, "seq": 3}) == 4 * (2 * 3 * 4 + 2)
    assert memory.activation_bytes({"hidden_size": 8, "cell": "lstm"}, {"batch": 2, "seq": 3}) == 2 * 3 * 8 * 5 * 4
    assert memory.activation_bytes({}, {"batch": 2}) == 0
    with pytest.raises(UsageError, match="memory"):
        memory.check_graph_fits(g, {"batch": 10**6, "seq": 10**6}, "case")


def test_machine_memory_is_sane():
    avail, total = memory.machine_memory()
    assert 0 < avail <= total


# -- outputs -------------------------------------------------------------------------------------------
def test_check_output_path(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a directory"):
        check_output_path(tmp_path / "dir", "--json")
    with pytest.raises(UsageError, match="is a file"):
        check_output_path(tmp_path / "file", "--out", kind="dir")
    with pytest.raises(UsageError, match="does not exist"):
        check_output_path(tmp_path / "no" / "x", "--json")
    with pytest.raises(UsageError, match="cannot create files"):
        check_output_path("/proc/rnndeploy-x", "--json")
    check_output_path(tmp_path / "dir", "-o", kind="file_or_dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]


def test_transaction_dir_is_all_or_nothing(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError):
        with transaction_dir(out, parents=True) as d:
            (d / "x").write_text("new")
            raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []  # the parents it made are gone too

    prev = tmp_path / "prev"
    prev.mkdir()
    (prev / "keep.txt").write_text("old")
    with pytest.raises(click.exceptions.Exit):
        with transaction_dir(prev) as d:
            write_json_atomic(d / "keep.txt", {"replaced": True})  # an atomic replace, as every writer does
            (d / "new.txt").write_text("x")
            raise click.exceptions.Exit(2)
    assert sorted(p.name for p in prev.iterdir()) == ["keep.txt"] and (prev / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]
    with transaction_dir(prev) as d:
        (d / "new.txt").write_text("x")
    assert sorted(p.name for p in prev.iterdir()) == ["keep.txt", "new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev"]


def test_a_failed_transaction_in_the_current_directory_keeps_it_and_its_files(tmp_path, monkeypatch):
    """`demo --out .` (or an interrupt during it) once removed the whole current directory:
    a rollback restores entries one by one and never removes the directory itself."""
    work = tmp_path / "work"
    (work / "checkpoint").mkdir(parents=True)
    (work / "report.md").write_text("old report")
    (work / "checkpoint" / "w.bin").write_text("old weights")
    monkeypatch.chdir(work)
    for path in (".", str(work), "sub/.."):
        with pytest.raises(KeyboardInterrupt):
            with transaction_dir(path) as d:
                assert d == work
                write_json_atomic(d / "report.md", {"new": True})
                (d / "model.onnx").write_text("new")
                raise KeyboardInterrupt
        assert work.is_dir() and sorted(p.name for p in work.iterdir()) == ["checkpoint", "report.md"]
        assert (work / "report.md").read_text() == "old report"
        assert (work / "checkpoint" / "w.bin").read_text() == "old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no backup left beside it
    for bad in ("", "   ", "/"):
        with pytest.raises(UsageError):
            with transaction_dir(bad):
                pass


def test_atomic_dir_refuses_to_replace_the_current_directory(tmp_path, monkeypatch):
    from rnndeploy.fileio import atomic_dir

    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "keep").write_text("k")
    monkeypatch.chdir(tmp_path / "ck")
    for path in (".", str(tmp_path)):
        with pytest.raises(UsageError, match="current directory"):
            with atomic_dir(path):
                pass
    assert (tmp_path / "ck" / "keep").read_text() == "k"


# -- inputs ------------------------------------------------------------------------------------------
GRAPH = GraphSpec(
    "lm",
    (TensorSpec("tokens", "int64", ("batch", "seq"), "tokens", time_axis=1, low=0, high=10),
     TensorSpec("lengths", "int64", ("batch",), "lengths"),
     TensorSpec("h0", "float32", (1, "batch", 4), "state")),
    (TensorSpec("logits", "float32", ("batch", "seq", 10), "logits", time_axis=1),),
)


def _feed(**over):
    feed = {"tokens": np.zeros((2, 3), np.int64), "lengths": np.array([3, 1]), "h0": np.zeros((1, 2, 4), np.float32)}
    feed.update(over)
    return feed


@pytest.mark.parametrize("over, words", [
    ({"tokens": np.array([[1, 2, 10], [0, 0, 0]])}, ["'tokens'", "10", "[0, 2]", "0..9"]),
    ({"tokens": np.array([[1, -2, 0], [0, 0, 0]])}, ["-2", "[0, 1]"]),
    ({"lengths": np.array([4, 1])}, ["'lengths'", "1..3"]),
    ({"lengths": np.array([0, 1])}, ["'lengths'", "1..3"]),
    ({"h0": np.full((1, 2, 4), np.inf, np.float32)}, ["'h0'", "Inf", "[0, 0, 0]"]),
    ({"tokens": np.zeros((0, 3), np.int64)}, ["'tokens'", "empty axis 0 (batch)"]),
])
def test_input_values_are_checked(over, words):
    with pytest.raises(ShapeError) as err:
        check_input_values(GRAPH, _feed(**over), "--inputs in.npz")
    for w in words:
        assert w in str(err.value)
    check_input_values(GRAPH, _feed(), "ok")


@pytest.mark.parametrize("expected, words", [
    ({"logits": np.zeros((2, 3, 10), np.float64)}, ["float64", "float32"]),
    ({"logits": np.zeros((2, 4, 10), np.float32)}, ["axis 1 is 4", "seq = 3"]),
    ({"logits": np.zeros((2, 3, 9), np.float32)}, ["axis 2 is 9"]),
    ({"logits": np.zeros((2, 3, 10), np.float32), "x": np.zeros(1)}, ["unexpected 'x'"]),
    ({}, ["lacks 'logits'"]),
    ({"logits": np.full((2, 3, 10), np.nan, np.float32)}, ["NaN", "[0, 0, 0]"]),
])
def test_expected_outputs_are_checked(expected, words):
    with pytest.raises(ShapeError) as err:
        check_expected(GRAPH, expected, {"batch": 2, "seq": 3}, "--expected out.npz")
    for w in words:
        assert w in str(err.value)


# -- verdicts ------------------------------------------------------------------------------------------
def test_tolerances_refuse_nan_and_read_inf_as_not_checked():
    with pytest.raises(SpecError, match="nan"):
        Tolerance(float("nan"), 0.0)
    with pytest.raises(UsageError, match="--tol"):
        ToleranceOverrides.parse(tol=["y:nan:nan"])
    assert Tolerance(math.inf, 0.0).checks_nothing and not Tolerance(math.inf, 0.0, 1e-4).checks_nothing
    graph = GraphSpec("g", (TensorSpec("x", "float32", ("batch", 2), "features"),),
                      (TensorSpec("y", "float32", ("batch", 2), "prediction"),))
    with pytest.raises(UsageError, match="nothing would be checked"):
        check_something_checked(graph, ["fp32"], ToleranceOverrides.parse(tol=["y:inf:0"]))
    check_something_checked(graph, ["fp32"], ToleranceOverrides.parse(atol=math.inf, rtol=math.inf))  # rel_l2 left


def _result(*comparisons):
    return ParityResult(model={"name": "m"}, reference={"backend": "torch"}, backends={}, seed=0,
                        cases=tuple(CaseResult("b1-s1", {"batch": 1}, "ort-cpu", (c,)) for c in comparisons))


def test_a_result_that_checked_nothing_is_invalid_never_passed(tmp_path):
    a = np.ones((2, 2), np.float32)
    off = compare_output("y", a + 5, a, Tolerance(math.inf, 0.0))
    assert off.passed and not off.checked
    assert _result(off).status == "invalid" and not _result(off).passed
    ok = compare_output("y", a, a, Tolerance(1e-4, 1e-3))
    assert _result(ok, off).status == "passed"
    bad = compare_output("y", a + 5, a, Tolerance(1e-4, 1e-3))
    assert _result(ok, bad).status == "failed"
    assert ParityResult(model={}, reference={}, backends={}, seed=0, cases=()).status == "invalid"
    # inf survives the results file as a string and reads back as "not checked"
    path = tmp_path / "r.json"
    path.write_text(dumps_results(to_document([_result(ok, off)])))
    assert '"Infinity"' in path.read_text()
    _, (back,) = load_verified([str(path)])
    assert back.status == "passed" and [o.checked for c in back.cases for o in c.outputs] == [True, False]
    path.write_text(dumps_results(to_document([_result(off)])))
    with pytest.raises(UsageError, match="cannot be verified"):
        load_verified([str(path)])


def test_a_recorded_pass_must_follow_from_its_numbers():
    a = np.ones((2, 2), np.float32)
    d = compare_output("y", a, a, Tolerance(1e-4, 1e-3)).to_dict()
    OutputComparison.from_dict(d)
    for key, value in (("atol_needed", 1.0), ("rtol_needed", 1.0), ("rel_l2", 1.0), ("max_abs", "NaN")):
        tampered = json.loads(json.dumps(d))
        tampered["stats"][key] = value
        if key == "rel_l2":
            tampered["tolerance"]["rel_l2"] = 1e-4
        with pytest.raises(UsageError, match="records passed|must be"):
            OutputComparison.from_dict(tampered, "results[0].cases[0].outputs[0]")
    no_stats = dict(d, stats=None)
    with pytest.raises(UsageError, match="no stats"):
        OutputComparison.from_dict(no_stats)


def test_several_outputs_are_written_all_or_nothing(tmp_path):
    from rnndeploy.fileio import write_files_atomic

    (tmp_path / "a.html").write_text("old")
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        write_files_atomic({tmp_path / "a.html": "new", tmp_path / "dir": b"x"})
    assert (tmp_path / "a.html").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "dir"]
    write_files_atomic({tmp_path / "a.html": "new", tmp_path / "b.md": b"md"})
    assert (tmp_path / "a.html").read_text() == "new" and (tmp_path / "b.md").read_bytes() == b"md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.md", "dir"]


# -- a runtime that runs out of memory -----------------------------------------------------------------
@pytest.mark.parametrize("exc, oom", [
    (MemoryError(), True),
    (RuntimeError("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:360 Failed to allocate memory for requested buffer"), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 6400000000 bytes"), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("Required inputs (['h0']) are missing from input feed"), False),
    (ValueError("shape mismatch"), False),
])
def test_out_of_memory_is_recognised_and_refused_as_bad_input(exc, oom):
    assert memory.is_out_of_memory(exc) is oom
    with pytest.raises(UsageError if oom else type(exc)) as err:
        with memory.runtime_guard("bench ort-cpu b1000 s100000"):
            raise exc
    if oom:
        assert "bench ort-cpu b1000 s100000 ran out of memory" in str(err.value) and "available" in str(err.value)


def test_parity_reports_a_runtime_out_of_memory_as_exit_2_not_a_failed_check(tmp_path, monkeypatch):
    """A case that does not fit the machine is bad input (exit 2), not "parity failed" (exit 1)."""
    import onnx
    from onnx import TensorProto, helper

    from rnndeploy.backends.onnxrt import OrtCpuRunner
    from rnndeploy.cli import cli

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 2])
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "m.onnx"))
    arr = np.ones((1, 3, 2), np.float32)
    np.savez(tmp_path / "x.npz", x=arr)
    np.savez(tmp_path / "y.npz", y=arr)

    def oom(self, feed):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Failed to allocate memory for requested buffer of size 6400000000")

    monkeypatch.setattr(OrtCpuRunner, "_infer_impl", oom)
    res = CliRunner().invoke(cli, ["parity", str(tmp_path / "m.onnx"), "--backend", "ort-cpu", "--inputs",
                                   str(tmp_path / "x.npz"), "--expected", str(tmp_path / "y.npz")])
    assert res.exit_code == 2, res.output
    assert "ort-cpu on case inputs ran out of memory" in res.output and "Traceback" not in res.output


def test_repeated_sizes_are_one_case_and_devices_are_checked():
    from rnndeploy.cli.harness_options import parse_int_list, parse_shapes, runner_options_from

    assert parse_shapes("1x4, 1x4,1X4,2x3") == [(1, 4), (2, 3)]  # one case id per shape in results
    assert parse_int_list("1,32,1", "--batch") == [1, 32]
    kw = dict(precision="fp32", threads=None, cuda_graph=False, include_copies=False, fp16_mode=None,
              ort_opt_level=None, trt_cache_dir=None)
    for ok in ("cpu", "cuda", "cuda:1"):
        assert runner_options_from(device=ok, **kw).device == ok
    for bad in ("cuda:-1", "cuda:x", "gpu", "cpu:0", ""):
        with pytest.raises(UsageError, match="--device"):
            runner_options_from(device=bad, **kw)
