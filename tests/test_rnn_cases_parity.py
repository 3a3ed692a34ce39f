"""Proof (issue 10): every recurrent kind, built with onnx.helper in layout=0 and layout=1,
expected outputs from onnx's reference evaluator (with spec-complete recurrent operators),
through ``rnndeploy parity --inputs --expected`` on ONNX Runtime and OpenVINO.

All pass — the layout=1 files after parity's automatic normalisation — except where a
runtime itself computes wrongly: OpenVINO's LSTM with peepholes, which parity fails
(exit 1) and ``rnndeploy normalize``'s compatibility table lists. A perturbed expectation
fails with exit 1.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from rnndeploy.cli import cli
from rnndeploy.graph.compat import check_compat
from rnndeploy.graph.reference import reference_run
from tests.onnx_rnn_cases import build, cases

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

CASES = cases()


def _files(tmp_path, case):
    model, feed = build(case, seed=7)
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "in.npz", **feed)
    expected = reference_run(model, feed)
    np.savez(tmp_path / "out.npz", **expected)
    return model, expected


def _parity(tmp_path, *backends):
    args = ["parity", str(tmp_path / "m.onnx"), "--inputs", str(tmp_path / "in.npz"),
            "--expected", str(tmp_path / "out.npz"), "--no-progress"]
    for b in backends:
        args += ["--backend", b]
    return CliRunner().invoke(cli, args)


def _ov_computes_it_right(case) -> bool:
    return not case.peepholes


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parity_on_onnxruntime_and_openvino(tmp_path, case):
    model, _ = _files(tmp_path, case)
    r = _parity(tmp_path, "ort-cpu")
    assert r.exit_code == 0, r.output
    assert ("normalised" in r.output) == (case.layout == 1)
    r = _parity(tmp_path, "openvino")
    if _ov_computes_it_right(case):
        assert r.exit_code == 0, r.output
        assert "PASSED" in r.output
    else:
        assert r.exit_code == 1, r.output
        assert "parity failed" in r.output and "FAILED" in r.output
        listed = [i for i in check_compat(model) if i.runtime == "openvino" and i.severity == "wrong"]
        assert any("peephole" in i.problem for i in listed)


@pytest.mark.parametrize("case", [c for c in CASES if c.seq_lens][:4] + [c for c in CASES if c.layout][:2],
                         ids=lambda c: c.id)
def test_a_perturbed_expectation_fails(tmp_path, case):
    _, expected = _files(tmp_path, case)
    bad = dict(expected)
    y = bad["Y_h"].copy()
    y.flat[0] += 1e-2
    bad["Y_h"] = y
    np.savez(tmp_path / "out.npz", **bad)
    for backend in ("ort-cpu", "openvino"):
        r = _parity(tmp_path, backend)
        assert r.exit_code == 1, r.output
        assert "Y_h" in r.output and "parity failed" in r.output
