"""The torch runner (user modules and checkpoints) against onnxruntime, and torch-made goldens
checked without torch in another process and under Python 3.9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from rnndeploy.cli import cli
from tests.helpers import REPO, py39_env, py39_missing, py39_python, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

MODULE = textwrap.dedent(
    """
    import torch

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.rnn = torch.nn.LSTM(4, 16, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(16, 3)

        def forward(self, x):
            y, (h, c) = self.rnn(x)
            return self.head(y), h

    def build():
        return Tagger()

    def broken():
        raise ValueError("no weights here")
    """
)


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """(module ref, onnx path) for a 2-layer LSTM tagger exported with rnndeploy metadata."""
    from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec, write_onnx_metadata

    d = tmp_path_factory.mktemp("user")
    (d / "tagger.py").write_text(MODULE)
    sys.path.insert(0, str(d))
    try:
        import tagger
    finally:
        sys.path.remove(str(d))
    m = tagger.build().eval()
    path = d / "tagger.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer chatter
        torch.onnx.export(m, (torch.randn(2, 7, 4),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y", "h"], opset_version=17,
                          dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}, "h": {1: "batch"}})
    import onnx

    model = onnx.load(path)
    g = GraphSpec("model", (TensorSpec("x", "float32", ("batch", "seq", 4), "features", time_axis=1),),
                  (TensorSpec("y", "float32", ("batch", "seq", 3), "logits", time_axis=1),
                   TensorSpec("h", "float32", (2, "batch", 16), "state")))
    write_onnx_metadata(model, ModelSpec("tagger", "classifier", {"model": g}), "model", {"exporter": "torchscript"})
    onnx.save(model, path)
    return f"{d / 'tagger.py'}:build", str(path)


def test_torch_reference_vs_ort_cpu(user_model, tmp_path):
    ref, onnx_path = user_model
    res = CliRunner().invoke(cli, ["parity", onnx_path, "--module", ref, "--backend", "ort-cpu", "--shapes", "1x1,3x20",
                                   "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "p.json").read_text())["results"][0]
    assert r["reference"]["backend"] == "torch" and r["reference"]["description"]["details"]["source"] == "module"
    assert {t["kind"] for t in r["tasks"]} == {"argmax"} and r["tasks"][0]["agreement"] == 1.0
    y = [o for c in r["cases"] for o in c["outputs"] if o["output"] == "y" and c["case"] == "b3-s20"][0]
    assert len(y["time_profile"]["rel_l2"]) == 20 and y["stats"]["rel_l2"] < 1e-5


def test_a_user_module_that_imports_its_neighbour_runs_in_the_torch_runner(user_model, tmp_path):
    """The torch runner loads user modules as export does: the file's folder is on sys.path."""
    from rnndeploy.backends import create_runner
    from rnndeploy.backends.source import resolve_source

    _, onnx_path = user_model
    (tmp_path / "tagger_parts.py").write_text(MODULE)
    (tmp_path / "model_file.py").write_text("from tagger_parts import build as make\n\ndef build():\n    return make()\n")
    src = resolve_source(onnx_path, module=f"{tmp_path / 'model_file.py'}:build")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 5, 4)).astype(np.float32)
    with create_runner("torch", src) as r:
        assert r.infer({"x": x})["y"].shape == (2, 5, 3)
    assert str(tmp_path) not in sys.path  # only while it loads


def test_torch_runner_threads_fp16_and_errors(user_model):
    from rnndeploy.backends import RunnerOptions, create_runner
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.errors import ShapeError, UsageError

    ref, onnx_path = user_model
    src = resolve_source(onnx_path, module=ref)
    before = torch.get_num_threads()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 9, 4)).astype(np.float32)
    with create_runner("torch", src, RunnerOptions(threads=1)) as r:
        assert torch.get_num_threads() == 1 and r.describe().threads == 1
        full = r.infer({"x": x})
        with pytest.raises(ShapeError, match="expected x float32"):
            r.infer({"x": x.astype(np.float64)})
    assert torch.get_num_threads() == before  # restored
    with create_runner("torch", src, RunnerOptions(precision="fp16")) as r:
        assert r.describe().details["fp16_mode"] == "half"
        half = r.infer({"x": x})
        assert half["y"].dtype == np.float32
        err = np.abs(half["y"] - full["y"]).max()
        assert 0 < err < 1e-2  # really computed in FP16, and close
    bad = resolve_source(onnx_path, module=ref.replace(":build", ":broken"))
    with pytest.raises(UsageError, match="no weights here"):
        create_runner("torch", bad).activate()
    with pytest.raises(UsageError, match="CUDA"):
        create_runner("torch", src, RunnerOptions(cuda_graph=True)).activate()


def test_cuda_graph_with_copies_replays_the_graph(user_model):
    """--cuda-graph --include-copies must time graph replays (with the copies around them),
    not eager runs. CPU stand-in for the graph: replay() recomputes into the static outputs
    from the static inputs, so only the plumbing is checked (the real capture is gpu-marked)."""
    from rnndeploy.backends import RunnerOptions
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.backends.torch_runner import TorchRunner, _Static

    ref, onnx_path = user_model
    runner = TorchRunner(resolve_source(onnx_path, module=ref), RunnerOptions(cuda_graph=True, include_copies=True))
    runner.torch, runner.device = torch, torch.device("cpu")
    runner.module = runner._load()
    replays = []

    def fake_capture(feed):
        static_in = runner._to_tensors(feed)
        static_out = tuple(o.clone() for o in runner._forward(static_in))

        class Graph:
            def replay(self):
                replays.append(1)
                for dst, src in zip(static_out, runner._forward(static_in)):
                    dst.copy_(src)

        return _Static(static_in, static_out, Graph())

    runner._capture = fake_capture
    x = np.random.default_rng(1).uniform(-1, 1, (2, 5, 4)).astype(np.float32)
    p = runner._prepare_impl({"x": x})
    assert isinstance(p, _Static) and p.host_feed is not None
    p.inputs[0].zero_()  # the run must copy the host input in again
    out = runner._run_prepared_impl(p)
    assert replays == [1] and all(o.device.type == "cpu" for o in out)
    want = runner._forward(runner._to_tensors({"x": x}))
    np.testing.assert_allclose(out[0].numpy(), want[0].numpy(), rtol=1e-6, atol=1e-6)


def test_torch_golden_checked_without_torch_and_under_python39(user_model, tmp_path):
    ref, onnx_path = user_model
    golden = tmp_path / "golden"
    res = CliRunner().invoke(cli, ["parity", onnx_path, "--module", ref, "--backend", "torch",
                                   "--save-golden", str(golden), "--shapes", "2x5,1x33"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((golden / "manifest.json").read_text())
    assert manifest["reference"]["backend"] == "torch" and manifest["versions"]["torch"]

    block = ("import sys\nclass B:\n    def find_spec(self, n, p=None, t=None):\n"
             "        if n == 'torch' or n.startswith('torch.'):\n            raise ImportError('blocked')\n"
             "sys.meta_path.insert(0, B())\n")
    code = block + (f"from rnndeploy.cli import main; sys.argv = ['rnndeploy', 'parity', {onnx_path!r}, '--backend', "
                    f"'ort-cpu', '--golden', {str(golden)!r}]; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "golden" in proc.stdout and "PASSED" in proc.stdout

    why = py39_missing("onnxruntime")
    if why:
        pytest.skip(why)
    proc = subprocess.run([py39_python(), "-m", "rnndeploy", "parity", onnx_path, "--backend", "ort-cpu", "--golden",
                           str(golden)], capture_output=True, text=True, cwd=tmp_path, env=py39_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_torch_fp16_checked_against_fp32_golden(user_model, tmp_path):
    """FP16 drift is measured against the FP32 golden with the spec's looser FP16 tolerance."""
    ref, onnx_path = user_model
    golden = tmp_path / "g"
    assert CliRunner().invoke(cli, ["parity", onnx_path, "--module", ref, "--backend", "torch", "--save-golden",
                                    str(golden), "--shapes", "2x64"]).exit_code == 0
    res = CliRunner().invoke(cli, ["parity", onnx_path, "--module", ref, "--backend", "torch", "--precision", "fp16",
                                   "--golden", str(golden), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "r.json").read_text())["results"][0]
    y = r["cases"][0]["outputs"][0]
    assert y["tolerance"]["atol"] == 1e-2  # FP16 default tolerance
    assert 1e-6 < y["stats"]["rel_l2"] < 1e-2


def test_parity_and_bench_through_a_real_subprocess(user_model, tmp_path):
    ref, onnx_path = user_model
    proc = run_cli("parity", onnx_path, "--module", ref, "--backend", "ort-cpu", "--shapes", "2x8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("bench", onnx_path, "--module", ref, "--backend", "ort-cpu", "--batch", "1", "--seq", "8",
                   "--iters", "3", "--warmup", "1", "--json", str(tmp_path / "b.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert [m["backend"] for m in doc["measurements"]] == ["torch", "ort-cpu"]  # torch row added, measured first
    assert doc["baseline"] == "torch" and all(len(m["times"]) == 3 for m in doc["measurements"])


# -- GPU ------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision,cuda_graph", [("fp32", False), ("fp32", True), ("fp16", False), ("fp16", True)])
def test_torch_cuda_vs_ort_cpu(user_model, tmp_path, precision, cuda_graph):
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    from rnndeploy.backends import RunnerOptions, create_runner
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.bench.timing import measure

    ref, onnx_path = user_model
    src = resolve_source(onnx_path, module=ref)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 4)).astype(np.float32)
    with create_runner("ort-cpu", src) as cpu:
        want = cpu.infer({"x": x})
    opts = RunnerOptions(precision=precision, device="cuda", cuda_graph=cuda_graph)
    with create_runner("torch", src, opts) as r:
        got = r.infer({"x": x})
        tol = 1e-4 if precision == "fp32" else 2e-2
        np.testing.assert_allclose(got["y"], want["y"], atol=tol, rtol=tol)
        m = measure(r, {"x": x}, warmup=3, iters=10)
        assert m.description["timer"] == "cuda-event" and m.description["cuda_graph"] is cuda_graph
        assert m.median > 0 and "cuda:" in m.description["device"]


@pytest.mark.slow
def test_checkpoint_train_export_parity_bench_in_subprocesses(tmp_path):
    """What a user runs: train a (tiny) recipe, export it, then parity and bench against the checkpoint."""
    ck, onnx_path = tmp_path / "ck", tmp_path / "sine.onnx"
    proc = run_cli("train", "sine", "-o", str(ck), "--epochs", "1", "-q", "--set", "data.n_series=64", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("export", str(ck), "-o", str(onnx_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("parity", str(ck), "--onnx", str(onnx_path), "--backend", "ort-cpu", "--shapes", "1x5,4x60",
                   "--save-golden", str(tmp_path / "golden"), "--json", str(tmp_path / "p.json"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads((tmp_path / "p.json").read_text())["results"][0]
    assert r["reference"]["backend"] == "torch" and r["reference"]["description"]["details"]["source"] == "checkpoint"
    assert r["model"]["checkpoint_sha256"] and r["model"]["onnx_sha256"] and r["passed"]
    # the golden names the checkpoint the ONNX file was exported from: no "different model" warning
    from rnndeploy.backends.source import model_hashes, resolve_source
    from rnndeploy.parity.golden import check_golden_matches, load_golden

    src = resolve_source(str(onnx_path))
    assert src.checkpoint == str(ck)  # found through the export metadata (hash-checked): torch can be the reference
    assert resolve_source(str(onnx_path), auto_checkpoint=False).checkpoint is None
    golden = load_golden(str(tmp_path / "golden"))
    assert golden.manifest["model"]["checkpoint_sha256"] == model_hashes(src)["checkpoint_sha256"]
    assert check_golden_matches(golden, src.graph_spec, **{k: v for k, v in model_hashes(src).items()}) == []
    proc = run_cli("bench", str(onnx_path), "--checkpoint", str(ck), "--backend", "ort-cpu", "--seq", "16",
                   "--iters", "3", "--warmup", "1", cwd=tmp_path)
    assert proc.returncode == 0 and "torch" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.gpu
def test_gpu_cli_rows_side_by_side(user_model, tmp_path):
    """On the GPU machine: torch FP32 / FP16 / FP16+CUDA graph rows in one bench, FP16 parity vs an FP32 golden."""
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    ref, onnx_path = user_model
    res = CliRunner().invoke(cli, ["bench", onnx_path, "--module", ref, "--device", "cuda", "--backend", "torch",
                                   "--backend", "torch:fp16", "--backend", "torch:fp16:graph", "--baseline", "torch:fp16",
                                   "--batch", "1,8", "--seq", "16,64", "--iters", "20", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b.json").read_text())["results"][0]
    rows = {m["backend"]: m["description"] for m in doc["measurements"]}
    assert set(rows) == {"torch", "torch:fp16", "torch:fp16:graph"} and doc["baseline"] == "torch:fp16"
    assert rows["torch:fp16:graph"]["cuda_graph"] and rows["torch"]["timer"] == "cuda-event"
    assert rows["torch"]["details"]["tf32"] is False
    golden = tmp_path / "g"
    assert CliRunner().invoke(cli, ["parity", onnx_path, "--module", ref, "--backend", "torch", "--save-golden",
                                    str(golden), "--shapes", "4x256"]).exit_code == 0
    res = CliRunner().invoke(cli, ["parity", onnx_path, "--module", ref, "--device", "cuda", "--backend", "torch",
                                   "--backend", "torch:fp16", "--golden", str(golden)])
    assert res.exit_code == 0, res.output
