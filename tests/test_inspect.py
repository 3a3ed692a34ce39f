"""`rnndeploy inspect` on ONNX files and on engines (sidecar only, and live through the
recording stand-in of test_engine_fake_trt — a plumbing check, not a TensorRT run)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rnndeploy.cli import cli
from tests.fakes.tensorrt import build_with_stand_in, fake_engine_file
from tests.helpers import convert_onnx_file, run_cli
from tests.onnx_models import make_rnn_model, save


def test_inspect_onnx_fp32_and_fp16(tmp_path):
    path = save(make_rnn_model("GRU", bidirectional=True), tmp_path / "g.onnx")
    r = CliRunner().invoke(cli, ["inspect", path])
    assert r.exit_code == 0, r.output
    assert " ".join(r.output.split()).count("x float32 [batch, seq, 4] (features)") == 1
    assert "GRU(bidirectional) x1" in r.output and "precision: FP32 graph" in r.output
    convert_onnx_file(path, tmp_path / "g16.onnx", "fp16-keep-recurrence")
    r = CliRunner().invoke(cli, ["inspect", str(tmp_path / "g16.onnx")])
    assert "precision: FP16 graph (policy fp16-keep-recurrence)" in r.output
    r = CliRunner().invoke(cli, ["inspect", str(tmp_path / "g16.onnx"), "--json"])
    d = json.loads(r.output)
    assert d["precision"]["fp16_graph"] and d["precision"]["conversion"]["kept"][0]["name"] == "gru0"
    proc = run_cli("inspect", path)
    assert proc.returncode == 0 and "precision: FP32 graph" in proc.stdout


def test_inspect_engine_sidecar_only_and_refusals(tmp_path):
    path = fake_engine_file(tmp_path, created="2026-11-30T10:00:00+00:00", rnndeploy_version="0.1.0",
                        onnx={"file": "/x/m.onnx", "sha256": "ab" * 32},
                        precision={"requested": "fp16", "policy": "fp16-keep-recurrence", "path": "fp16-flag+constraints",
                                   "why": "TensorRT 8.6.0: FP16 flag, kept layers pinned", "kept_fp32": {"lstm0": "policy"}},
                        build={"seconds": 12.5, "tactic_sources": ["EDGE_MASK_CONVOLUTIONS"], "memory": {"peak_host_rss_mib": 900.0}},
                        io=[{"name": "x", "mode": "input", "dtype": "float32", "shape": [-1, -1, 4]}],
                        profiles=[{"x": {"min": [1, 1, 4], "opt": [8, 128, 4], "max": [32, 1024, 4]}}])
    r = CliRunner().invoke(cli, ["inspect", path, "--no-live"])
    assert r.exit_code == 0, r.output
    for text in ("TensorRT 8.6.0, NVIDIA H100 80GB HBM3 (sm 9.0)", "fp16, policy fp16-keep-recurrence via fp16-flag+constraints",
                 "kept FP32    lstm0", "profile 0    x [1..32, 1..1024, 4] (opt [8, 128, 4])", "input        x float32[-1, -1, 4]",
                 "live         skipped: not asked"):
        assert text in r.output, (text, r.output)
    r = CliRunner().invoke(cli, ["inspect", path])  # no TensorRT / no GPU here: the sidecar is still shown
    assert r.exit_code == 0 and "live         skipped: " in r.output
    with open(path, "r+b") as f:
        f.truncate(20)
    r = CliRunner().invoke(cli, ["inspect", path])
    assert r.exit_code == 2 and "truncated" in r.output and r.output.count("\n") == 1


def test_inspect_engine_live_through_the_stand_in(tmp_path, fake_env):  # noqa: F811
    fake_env("8.6.0")
    _, out = build_with_stand_in(tmp_path, "8.6.0", fp16=True)
    r = CliRunner().invoke(cli, ["inspect", out, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["live"]["tensorrt"] == "8.6.0" and [t["name"] for t in d["live"]["io"]] == ["x", "lengths", "y"]
    assert d["live"]["profiles"][1]["x"]["max"] == [8, 32, 4] and d["sidecar"]["precision"]["path"] == "fp16-flag"
    r = CliRunner().invoke(cli, ["inspect", out])
    assert "live         TensorRT 8.6.0 on Fake GPU" in r.output


def test_inspect_refuses_a_file_that_nothing_vouches_for(tmp_path):
    stray = tmp_path / "notes.txt"
    stray.write_text("not an engine, not an onnx file\n")
    r = CliRunner().invoke(cli, ["inspect", str(stray)])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("rnndeploy: error: ") and r.output.count("\n") == 1
