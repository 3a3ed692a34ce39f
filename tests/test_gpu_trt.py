"""Real TensorRT builds and runs (gpu-marked: skipped without a CUDA GPU; skipped without
tensorrt). Run on the GPU machine with the trt86 kit:

    PYTHONPATH=$PWD /tmp/trt86/bin/python3.9 -m pytest -m gpu tests/test_gpu_trt.py -q

Models are the onnx.helper graphs of test_engine_models (the same node structure torch's
TorchScript exporter writes); the reference is its float64 numpy implementation of the
ONNX recurrent ops, so neither torch nor onnxruntime is needed. A torch-exported case runs
too where torch and tensorrt share an interpreter.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rnndeploy.backends.base import RunnerOptions
from rnndeploy.backends.source import resolve_source
from rnndeploy.backends.tensorrt import TensorRTRunner
from rnndeploy.engine.builder import BuildOptions, ShapeOptions, build_engine
from rnndeploy.errors import EngineFileError, ShapeError
from tests.onnx_models import feeds, make_rnn_model, numpy_reference, save

pytestmark = pytest.mark.gpu

PROFILES = ("batch=1:1:1,seq=1:64:256", "batch=2:8:16,seq=1:32:128")
SHAPES = [(1, 1), (1, 200), (3, 50), (16, 128)]
# FP32 engines (TF32 off) sit at ~1e-6 of the float64 reference; FP16 at a few 1e-4 for these sizes.
REL_L2 = {"fp32": 1e-5, "fp16": 3e-3}


def _rel_l2(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(a - ref) / max(np.linalg.norm(ref), 1e-30))


@pytest.fixture(scope="module")
def trt():
    return pytest.importorskip("tensorrt")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu_trt")


def _build(workdir, name, model, **options):
    onnx_path = save(model, workdir / f"{name}.onnx")
    plan = str(workdir / f"{name}.plan")
    opts = BuildOptions(**{"progress": False, "shapes": ShapeOptions(profiles=PROFILES), **options})
    return build_engine(onnx_path, plan, opts), plan


CASES = [
    ("lstm", dict(cell="LSTM", layers=2)),
    ("gru", dict(cell="GRU", layers=1)),
    ("bilstm", dict(cell="LSTM", bidirectional=True, layers=2)),
    ("rnn", dict(cell="RNN", layers=1)),
]
PRECISIONS = [("fp32", {"fp16": False}), ("fp16", {"fp16": True, "policy": "fp16"}),
              ("fp16-keep", {"fp16": True, "policy": "fp16-keep-recurrence"})]


@pytest.mark.parametrize("case,kwargs", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("prec,options", PRECISIONS, ids=[p[0] for p in PRECISIONS])
def test_build_and_run_matches_reference(trt, workdir, case, kwargs, prec, options):
    model = make_rnn_model(hidden=32, input_size=8, **kwargs)
    result, plan = _build(workdir, f"{case}-{prec}", model, **options)
    assert result.build_seconds < 60, result.render()
    side = json.loads(open(plan + ".json").read())
    precision = "fp16" if options["fp16"] else "fp32"
    assert side["precision"]["requested"] == precision
    with TensorRTRunner(resolve_source(engine=plan), RunnerOptions(precision=precision)) as runner:
        for batch, seq in SHAPES:
            f = feeds(batch=batch, seq=seq, input_size=8, seed=batch * 1000 + seq)
            got = runner.infer(f)["y"]
            ref = numpy_reference(model, f)["y"]
            assert got.shape == ref.shape and np.isfinite(got).all()
            err = _rel_l2(got, ref)
            assert err <= REL_L2[precision], (case, prec, batch, seq, err, side["precision"])
    if prec == "fp16-keep" and side["precision"]["path"].startswith("fp16-flag"):
        assert side["precision"]["pinned_fp32_layers"] > 0, side["precision"]


def test_lengths_input_int64_to_int32_and_masking(trt, workdir):
    model = make_rnn_model("GRU", bidirectional=True, with_lengths=True, hidden=16)
    _, plan = _build(workdir, "gru-lengths", model, fp16=False)
    with TensorRTRunner(resolve_source(engine=plan), RunnerOptions()) as runner:
        f = feeds(batch=4, seq=30, lengths=True)
        got = runner.infer(f)["y"]
        ref = numpy_reference(model, f)["y"]
        assert _rel_l2(got, ref) <= 1e-5


def test_profiles_selection_and_out_of_profile_error(trt, workdir):
    model = make_rnn_model("LSTM")
    _, plan = _build(workdir, "lstm-profiles", model, fp16=False)
    with TensorRTRunner(resolve_source(engine=plan), RunnerOptions()) as runner:
        runner.infer(feeds(batch=1, seq=250))
        assert runner._profile == 0
        runner.infer(feeds(batch=8, seq=20))
        assert runner._profile == 1
        with pytest.raises(ShapeError, match="lie outside every optimization profile"):
            runner.infer(feeds(batch=4, seq=250))


def test_timing_and_cuda_graph_replay(trt, workdir):
    model = make_rnn_model("LSTM", hidden=32, input_size=8)
    _, plan = _build(workdir, "lstm-timing", model, fp16=True)
    f = feeds(batch=8, seq=64, input_size=8)
    with TensorRTRunner(resolve_source(engine=plan), RunnerOptions(precision="fp16")) as plain:
        expected = plain.infer(f)["y"]
        p = plain.prepare(f)
        t = plain.timer().measure(lambda: plain.run_prepared(p), 20)
        assert 0 < t < 5
    with TensorRTRunner(resolve_source(engine=plan), RunnerOptions(precision="fp16", cuda_graph=True, include_copies=True)) as g:
        p = g.prepare(f)
        t = g.timer().measure(lambda: g.run_prepared(p), 20)
        desc = g.describe()
        if desc.cuda_graph:
            np.testing.assert_allclose(p.outputs["y"], expected, rtol=1e-3, atol=1e-3)
        else:  # capture is allowed to fail (e.g. a loop TensorRT cannot capture); it must say why
            assert "cuda_graph_note" in desc.details


def test_detailed_engine_information_and_inspect(trt, workdir):
    from click.testing import CliRunner

    from rnndeploy.cli import cli

    model = make_rnn_model("LSTM", bidirectional=True, hidden=32, input_size=8)
    result, plan = _build(workdir, "bilstm-inspect", model, fp16=True, timing_cache=str(workdir / "cache.bin"))
    side = result.sidecar
    assert side["gpu"]["compute_capability"] and side["build"]["memory"]["peak_host_rss_mib"]
    assert os.path.getsize(workdir / "cache.bin") > 0
    r = CliRunner().invoke(cli, ["inspect", plan, "--json"])
    assert r.exit_code == 0, r.output
    live = json.loads(r.output)["live"]
    assert [t["name"] for t in live["io"]] == ["x", "y"] and len(live["profiles"]) == 2
    again, _ = _build(workdir, "bilstm-inspect2", model, fp16=True, timing_cache=str(workdir / "cache.bin"))
    assert again.sidecar["build"]["timing_cache"]["loaded_bytes"] > 0


def test_corrupt_engine_without_sidecar_is_refused(trt, workdir):
    model = make_rnn_model("RNN")
    _, plan = _build(workdir, "rnn-corrupt", model, fp16=False)
    blob = bytearray(open(plan, "rb").read())
    bad = workdir / "corrupt.plan"
    bad.write_bytes(bytes(blob[: len(blob) // 2]))  # no sidecar next to it
    from rnndeploy.engine.inspect_engine import load_engine

    with pytest.raises(EngineFileError, match="cannot deserialize"):
        load_engine(str(bad))


def test_torch_exported_models_where_torch_is_present(trt, workdir):
    torch = pytest.importorskip("torch")
    import io

    import onnx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(8, 32, num_layers=2, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(64, 3)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    net = Net().eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(2, 5, 8),), buf, dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}})
    model = onnx.load_from_string(buf.getvalue())
    for fp16 in (False, True):
        _, plan = _build(workdir, f"torch-bilstm-{fp16}", model, fp16=fp16)
        with TensorRTRunner(resolve_source(engine=plan), RunnerOptions(precision="fp16" if fp16 else "fp32")) as runner:
            f = feeds(batch=3, seq=100, input_size=8)
            with torch.no_grad():
                ref = net(torch.from_numpy(f["x"])).numpy()
            assert _rel_l2(runner.infer(f)["y"], ref) <= (3e-3 if fp16 else 1e-5)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_hoisted_input_projection_engine(trt, workdir, fp16):
    """The rewrite must build and match; its speed is measured by the benchmark, not here."""
    model = make_rnn_model("LSTM", bidirectional=True, layers=2, hidden=32, input_size=8)
    result, plan = _build(workdir, f"bilstm-hoisted-{fp16}", model, fp16=fp16, hoist=True)
    assert result.sidecar["rewrite"]["hoist_input_projection"]["rewritten"]
    precision = "fp16" if fp16 else "fp32"
    with TensorRTRunner(resolve_source(engine=plan), RunnerOptions(precision=precision)) as runner:
        for batch, seq in SHAPES:
            f = feeds(batch=batch, seq=seq, input_size=8, seed=seq)
            assert _rel_l2(runner.infer(f)["y"], numpy_reference(model, f)["y"]) <= REL_L2[precision]
