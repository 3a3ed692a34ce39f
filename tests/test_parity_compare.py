"""The compare half of parity on hand-made runs (no runner at all), the verdict a failed
check exits with, and the command-line decisions that moved into the library."""

from __future__ import annotations

import numpy as np
import pytest

from rnndeploy.backends import ModelSource
from rnndeploy.inputs import Case
from rnndeploy.parity.cases import CaseSet
from rnndeploy.parity.compare import compare_runs
from rnndeploy.parity.harness import default_reference, default_sample_steps, find_decoder
from rnndeploy.parity.results import ParityResult
from rnndeploy.parity.run import RunnerRun, RunResults, TaskPlan
from rnndeploy.parity.tolerances import ToleranceOverrides
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec


def graph() -> GraphSpec:
    return GraphSpec("model", (TensorSpec("tokens", "int64", ("batch", "seq"), "tokens", time_axis=1, high=5),),
                     (TensorSpec("logits", "float32", ("batch", "seq", 5), "logits", time_axis=1),))


def cases():
    rng = np.random.default_rng(0)
    return tuple(Case(f"b2-s{s}", {"batch": 2, "seq": s}, {"tokens": rng.integers(0, 5, (2, s))}) for s in (3, 4))


def logits(seq: int, shift: float = 0.0) -> dict:
    base = np.arange(2 * seq * 5, dtype=np.float32).reshape(2, seq, 5) / 10
    return {"logits": base + np.float32(shift)}


def test_compare_runs_on_hand_made_outputs():
    cs = cases()
    ref = RunnerRun("ref", {"precision": "fp32"}, [logits(3), logits(4)], [None, None],
                    samples=np.array([[1, 2, 3], [4, 0, 1]]))
    good = RunnerRun("good", {"precision": "fp32"}, [logits(3, 1e-6), logits(4)], [None, None],
                     samples=np.array([[1, 2, 3], [4, 0, 1]]))
    bad = RunnerRun("bad", {"precision": "fp32"}, [logits(3, 0.5), None], [None, "bad raised RuntimeError: boom"],
                    samples=np.array([[1, 2, 0], [4, 0, 1]]))
    plan = TaskPlan(sample_steps=3, seed=0)
    case_set = CaseSet(cs, {"backend": "ref", "source": "run"})
    results, tasks, metrics = compare_runs(graph(), case_set, RunResults(ref, (good, bad)), plan,
                                           ToleranceOverrides(), None)
    by = {(c.backend, c.case): c for c in results}
    assert all(c.passed for (b, _), c in by.items() if b == "good")
    assert not by[("bad", "b2-s3")].passed and by[("bad", "b2-s3")].outputs[0].stats.max_abs == pytest.approx(0.5)
    assert by[("bad", "b2-s4")].error == "bad raised RuntimeError: boom" and by[("bad", "b2-s4")].outputs == ()
    sampling = {t.backend: t for t in tasks if t.kind == "sampling"}
    assert sampling["good"].agreement == 1.0 and sampling["bad"].agreement == pytest.approx(5 / 6)
    assert sampling["bad"].details["first_divergence"] == [0, 2] and sampling["bad"].details["prompt_len"] == 3
    assert {t.kind for t in tasks} == {"argmax", "sampling"} and metrics == {}


def _result(cases_, tasks=()):
    return ParityResult(model={}, reference={"backend": "ref"}, backends={}, seed=0, cases=tuple(cases_),
                        tasks=tuple(tasks))


def test_verdict_says_what_failed_and_what_to_do():
    cs = cases()
    ref = RunnerRun("ref", {}, [logits(3), logits(4)], [None, None])
    for run, hint in (
        (RunnerRun("x", {}, [logits(3, 0.5), logits(4)], [None, None]), "loosen with --tol"),
        (RunnerRun("x", {}, [{"logits": np.full((2, 3, 5), np.nan, np.float32)}, logits(4)], [None, None]),
         "no usable numbers"),
        (RunnerRun("x", {}, [None, logits(4)], ["x raised RuntimeError: boom", None]), "no usable numbers"),
    ):
        results, _, _ = compare_runs(graph(), CaseSet(cs, {"backend": "ref"}), RunResults(ref, (run,)), TaskPlan(),
                                     ToleranceOverrides(), None)
        verdict = _result(results).verdict()
        assert verdict is not None and verdict.exit_code == 1 and hint in str(verdict)
        assert str(verdict).startswith("parity failed: 1 problem; first: x @ b2-s3")
    results, _, _ = compare_runs(graph(), CaseSet(cs, {"backend": "ref"}), RunResults(ref, (ref,)), TaskPlan(),
                                 ToleranceOverrides(), None)
    assert _result(results).verdict() is None


def test_command_line_decisions_live_in_the_library(tmp_path):
    spec = ModelSpec("m", "charlm", {"model": graph()})
    assert default_sample_steps(spec) == 32
    assert default_sample_steps(ModelSpec("m", "regressor", {"model": graph()})) == 0
    assert default_reference(ModelSource(spec, checkpoint="ck")) == "torch"
    assert default_reference(ModelSource(spec, onnx="m.onnx")) == "ort-cpu"
    assert default_reference(ModelSource(spec, keras="m.keras")) == "keras"
    assert find_decoder(ModelSource(spec, onnx=str(tmp_path / "m.onnx"))) is None  # not an encoder: nothing to find


def test_the_decoder_of_an_export_is_found_by_the_one_naming_rule(tmp_path):
    from rnndeploy.artefacts.naming import graph_paths, seq2seq_paths, sibling_graph

    enc, dec = seq2seq_paths(tmp_path / "g2p.onnx")
    assert (enc.name, dec.name) == ("g2p.encoder.onnx", "g2p.decoder_step.onnx")
    assert graph_paths(tmp_path / "m.onnx", ["model"]) == {"model": tmp_path / "m.onnx"}
    assert sibling_graph(enc, "encoder", "decoder_step") is None  # not written yet
    dec.write_bytes(b"x")
    assert sibling_graph(enc, "encoder", "decoder_step") == dec
    sub = tmp_path / "out"
    sub.mkdir()
    enc2, dec2 = seq2seq_paths(sub)
    assert (enc2, dec2) == (sub / "encoder.onnx", sub / "decoder_step.onnx")
    dec2.write_bytes(b"x")
    assert sibling_graph(enc2, "encoder", "decoder_step") == dec2
    assert sibling_graph(tmp_path / "model.onnx", "encoder", "decoder_step") is None
