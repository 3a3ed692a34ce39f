"""The GPU verification scripts (benchmarks/gpu_prepare.py, gpu_verify.py) on one tiny model,
on the CPU: planning, the resumable unit loop, and the dry run with CPU stand-ins end to end, so
the one-shot GPU procedure does not rot while no GPU is around. Real GPU numbers come only from
the device (benchmarks/GPU_RUNBOOK.md)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
KIT_PY = REPO / ".devkit" / "stage" / "trt86" / "bin" / "python3.9"
sys.path.insert(0, str(BENCH))


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    pytest.importorskip("torch")
    import gpu_prepare

    root = tmp_path_factory.mktemp("gpuprep")
    assert gpu_prepare.main(["--out", str(root), "--models", "sine", "--quick", "--epochs", "1"]) == 0
    return root


def _verify(*args):
    import gpu_verify

    return gpu_verify.main([str(a) for a in args])


def test_prepared_folder_manifest_is_complete_and_checked(prep):
    import gpu_common as gc

    doc = gc.read_manifest(prep)
    assert gc.verify_manifest(prep, doc) == []
    (m,) = gc.models_of(doc)
    assert m.name == "sine-lstm" and m.tier == 1 and m.cell == "lstm"
    (g,) = m.graphs
    assert set(g.fp16_onnx) == {"fp16", "fp16-keep-recurrence"}
    golden = json.loads((prep / g.golden / "manifest.json").read_text())
    assert golden["reference"]["backend"] == "torch" and [c["id"] for c in golden["cases"]] == ["b1-s4", "b2-s8", "b1-s32"]
    assert doc["bytes"] == sum((prep / f).stat().st_size for f in doc["files"])
    # an altered file is caught before any device time is spent on it
    victim = prep / g.onnx
    data = victim.read_bytes()
    try:
        victim.write_bytes(data + b"\0")
        assert gc.verify_manifest(prep, doc) == [f"altered {g.onnx}"]
    finally:
        victim.write_bytes(data)


def test_plan_orders_units_by_tier_and_plans_every_engine(prep, capsys):
    assert _verify("plan", "--prep", prep, "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    ids = [u["id"] for u in plan["units"]]
    key = "sine-lstm.model"
    for v in ("fp16", "fp32", "fp16-keep"):
        assert ids.index(f"trt.build.{key}.{v}") < ids.index(f"trt.parity.{key}.{v}") < ids.index(f"trt.bench.{key}.{v}")
    tiers = [u["tier"] for u in plan["units"]]
    assert tiers == sorted(tiers)
    assert {u["tier"] for u in plan["units"] if u["variant"] in ("fp16", "fp32") and u["kind"] == "build"} == {1}
    engines = {e["unit"]: e for e in plan["engines"]}
    fp16 = engines[f"trt.build.{key}.fp16"]
    assert len(fp16["profiles"]) == 2 and "1..2048" in fp16["profiles"][0] and "1..256" in fp16["profiles"][1]
    assert engines[f"trt.build.{key}.fp16-keep"]["kept_fp32"] >= 1
    # the hoisted rewrite is planned only where it rewrites something (sine-lstm's one LSTM)
    assert engines[f"trt.build.{key}.fp16-hoist"]["hoisted"] == 1


def test_unit_loop_respects_deadline_dependencies_and_crashes(prep, tmp_path):
    import gpu_verify as gv

    state = gv.State(tmp_path / "state")
    args = argparse.Namespace(min_time=0.1, max_samples=5, build_timeout=60.0, models=None, variants=None)
    ctx = gv.Context(prep, state, "trt", True, time.time() - 1, args)  # deadline already passed
    counts = gv.run_side(ctx, 99)
    assert counts["ran"] == 0 and counts["pending"] > 0 and state.records() == {}
    # a unit whose process died twice is failed, and what needs it is skipped, not run
    build = "trt.build.sine-lstm.model.fp16"
    state.marker(build).write_text("2")
    ctx = gv.Context(prep, state, "trt", True, None, args)
    gv.run_side(ctx, 1, variants=["fp16"])
    recs = state.records()
    assert recs[build]["status"] == "failed" and "died" in recs[build]["error"]
    assert recs["trt.parity.sine-lstm.model.fp16"]["status"] == "skipped"
    assert not state.marker(build).exists()


def test_dry_run_end_to_end_writes_labelled_report(prep, tmp_path):
    out = tmp_path / "out"
    assert _verify("dry-run", "--prep", prep, "--state", tmp_path / "state", "--out", out, "--variants", "fp16,fp32") == 0
    assert sorted(os.listdir(out)) == ["gpu_logs.tar.xz", "gpu_report.html", "gpu_report.json", "gpu_report.md",
                                       "gpu_summary.json"]
    md = (out / "gpu_report.md").read_text()
    assert "DRY RUN" in md.splitlines()[0] and "NOT GPU results" in md
    summary = json.loads((out / "gpu_summary.json").read_text())
    assert summary["dry_run"] is True
    statuses = {u["id"]: u["status"] for u in summary["units"].values()}
    assert statuses and set(statuses.values()) == {"done"}, statuses
    assert "rnndeploy build-engine" in "\n".join(summary["commands"])
    from rnndeploy.report.schema import load_results, read_document

    results = load_results(read_document(out / "gpu_report.json"))
    bench = [r for r in results if r.kind == "bench"]
    assert len(bench) == 1 and bench[0].baseline == "torch:fp16"
    rows = bench[0].backends()
    assert "torch" in rows and any("dry-run stand-in for trt:fp16" in b for b in rows)
    parity = [r for r in results if r.kind == "parity"]
    backends = {b for r in parity for b in r.backend_names()}
    assert {"torch:fp16", "ort-cpu(dry-run stand-in for trt:fp16)", "ort-cpu(dry-run stand-in for trt:fp32)"} <= backends
    fp16_rows = summary["targets"]["fp16_parity"]
    assert fp16_rows and all(r["rel_l2_seq_le_512"] is not None for r in fp16_rows)
    html = (out / "gpu_report.html").read_text()
    assert "DRY RUN" in html


@pytest.mark.skipif(not KIT_PY.exists(), reason="the staged trt86 kit (.devkit/stage) is not here")
def test_kit_python39_imports_and_plans_the_tensorrt_side(prep):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(KIT_PY), str(BENCH / "gpu_verify.py"), "plan", "--prep", str(prep), "--side", "trt", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert all(u["side"] == "trt" for u in plan["units"]) and len(plan["engines"]) >= 3


def test_shell_driver_dry_run_resumes_and_reports(prep, tmp_path):
    """benchmarks/gpu_verify.sh --dry-run: a call cut short by its budget leaves work pending, the
    next call finishes it; both write the report. The TensorRT side runs under the staged kit's
    Python 3.9 where it exists (else it is reported as skipped)."""
    env = {**os.environ, "GPU_VERIFY_STATE": str(tmp_path / "state"), "OUT": str(tmp_path / "out"),
           "TORCH_PY": sys.executable}
    cmd = ["bash", str(BENCH / "gpu_verify.sh"), "--dry-run", "--prep", str(prep), "--no-pytest", "--max-tier", "2"]
    first = subprocess.run(cmd + ["--budget", "20", "--reserve", "19"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "gpu_summary.json").read_text())
    assert summary["counts"]["pending"] > 0
    second = subprocess.run(cmd + ["--budget", "300"], capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "gpu_summary.json").read_text())
    done = {u["id"] for u in summary["units"].values() if u["status"] == "done"}
    assert any(u.startswith("torch.bench.") for u in done)
    assert any(u.startswith("trt.bench.") for u in done) == KIT_PY.exists()
    assert "DRY RUN" in (tmp_path / "out" / "gpu_report.md").read_text().splitlines()[0]


def test_gpu_rows_are_real_tensorrt_runners_on_the_built_engines(prep, tmp_path):
    """Outside a dry run the rows are TensorRT runners on the engines the build units wrote
    (constructed only: activating one needs a GPU)."""
    import gpu_verify as gv

    from rnndeploy.backends.tensorrt import TensorRTRunner

    args = argparse.Namespace(min_time=0.1, max_samples=5, build_timeout=60.0, models=None, variants=None)
    ctx = gv.Context(prep, gv.State(tmp_path / "state"), "trt", False, None, args)
    g = next(iter(ctx.graphs.values()))
    runner = gv.engine_runner(ctx, g, "fp16", "trt:fp16:graph", cuda_graph=True)("trt:fp16:graph", ctx.source(g), None)
    assert isinstance(runner, TensorRTRunner) and runner.label == "trt:fp16:graph"
    assert runner.source.engine == str(tmp_path / "state" / "engines" / g.key / "fp16.plan")
    assert runner.options.precision == "fp16" and runner.options.cuda_graph and runner.options.device == "cuda"
    assert gv.trt_label("fp32", dry=False) == "trt:fp32" and "stand-in" in gv.trt_label("fp32", dry=True)


def test_hoisted_variant_only_where_the_rewrite_applies():
    import gpu_common as gc

    def model(hoist):
        g = gc.GraphPrep("m", "model", "default", "m.onnx", False, hoist=hoist)
        return gc.ModelPrep("m", "r", None, "classifier", "lstm", 2, "ckpt", (g,))

    skipped = {"rewritten": {}, "skipped": {"/rnn/LSTM": "bidirectional with sequence_lens"}}
    ids = [u.id for u in gc.plan_units([model(skipped)])]
    assert "trt.build.m.model.fp16-keep" in ids and not any("fp16-hoist" in i for i in ids)
    ids = [u.id for u in gc.plan_units([model({"rewritten": {"/rnn/LSTM": ["scan"]}, "skipped": {}})])]
    assert "trt.build.m.model.fp16-hoist" in ids


def test_ort_labels_preload_cuda_libraries_with_the_real_function_name(monkeypatch):
    """onnxruntime-gpu's helper is preload_dlls(cuda, cudnn, msvc, directory) (onnxruntime
    >= 1.21, onnxruntime/__init__.py); a misspelt name would silently skip it."""
    import importlib.abc
    import importlib.machinery
    import types

    import gpu_common as gc
    import gpu_verify as gv

    calls = []

    class TorchFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """Records the moment ``import torch`` runs (torch loads CUDA/cuDNN before onnxruntime needs them)."""

        def find_spec(self, name, path=None, target=None):
            return importlib.machinery.ModuleSpec(name, self) if name == "torch" else None

        def create_module(self, spec):
            return types.ModuleType(spec.name)

        def exec_module(self, module):
            calls.append("import torch")

    fake = types.SimpleNamespace(__version__="1.31.1", get_available_providers=lambda: ["CUDAExecutionProvider"],
                                 preload_dlls=lambda **kw: calls.append(kw))
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [TorchFinder()] + sys.meta_path)
    g = gc.GraphPrep("m", "model", "default", "m.onnx", False, fp16_onnx={"fp16": "m.fp16.onnx"})
    labels, why = gv.ort_labels(types.SimpleNamespace(dry=False), g)
    assert labels == ["ort-cuda", "ort-cuda:fp16"] and why is None
    assert calls == ["import torch", {"cuda": True, "cudnn": True, "msvc": False}]
