"""The GPU verification procedure (rnndeploy.campaign, benchmarks/gpu_prepare.py, gpu_verify.py/.sh)
on one tiny model, on the CPU: the prepared folder, unit planning, the resumable unit loop, the
dry run with CPU stand-ins, and the device calls rehearsed end to end with a stand-in kit. No
test here builds or runs a TensorRT engine: real GPU numbers come only from the device
(benchmarks/GPU_RUNBOOK.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from rnndeploy.campaign import plan as cp
from rnndeploy.campaign.schedule import State, run_units
from tests.helpers import REPO, needs_py39, py39_env, py39_python

BENCH = REPO / "benchmarks"


def _script(name: str, *args, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """A benchmark script as users run it (from the repo root, the package importable)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, str(BENCH / name), *[str(a) for a in args]], capture_output=True, text=True,
                          env=full, cwd=str(REPO), timeout=timeout)


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    pytest.importorskip("torch")
    from rnndeploy.campaign.prepare import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("gpuprep")
    prepare(root, PrepareOptions(models=("sine",), quick=True, epochs=1), "test", lambda m: None)
    return root


def test_prepared_folder_manifest_is_complete_and_checked(prep):
    doc = cp.read_manifest(prep)
    assert cp.verify_manifest(prep, doc) == []
    (m,) = cp.models_of(doc)
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
        assert cp.verify_manifest(prep, doc) == [f"altered {g.onnx}"]
    finally:
        victim.write_bytes(data)


def test_plan_orders_units_by_value_and_plans_every_engine(prep):
    proc = _script("gpu_verify.py", "plan", "--prep", prep, "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    ids = [u["id"] for u in plan["units"]]
    key = "sine-lstm.model"
    for v in ("fp16", "fp32", "fp16-keep"):
        assert ids.index(f"trt.build.{key}.{v}") < ids.index(f"trt.parity.{key}.{v}") < ids.index(f"trt.bench.{key}.{v}")
    tiers = [u["tier"] for u in plan["units"]]
    assert tiers == sorted(tiers)
    tier = {u["id"]: u["tier"] for u in plan["units"]}
    # FP16/FP32 engines of a tier-1 model first; the second policy and the hoisted rewrite after tier 2
    assert tier[f"trt.build.{key}.fp16"] == tier[f"trt.build.{key}.fp32"] == 1
    assert tier[f"trt.build.{key}.fp16-keep"] == tier[f"trt.build.{key}.fp16-hoist"] == 3
    engines = {e["unit"]: e for e in plan["engines"]}
    fp16 = engines[f"trt.build.{key}.fp16"]
    assert len(fp16["profiles"]) == 2 and "1..2048" in fp16["profiles"][0] and "1..256" in fp16["profiles"][1]
    assert engines[f"trt.build.{key}.fp16-keep"]["kept_fp32"] >= 1
    # the hoisted rewrite is planned only where it rewrites something (sine-lstm's one LSTM)
    assert engines[f"trt.build.{key}.fp16-hoist"]["hoisted"] == 1


def test_model_tiers_follow_the_issue_order():
    assert [cp.model_tier(r, None) for r in ("sine", "charlm")] == [1, 1]
    assert [cp.model_tier(r, None) for r in ("sentiment", "sunspots", "g2p")] == [2, 2, 2]
    assert cp.model_tier("sine", "gru") == cp.OTHER_TIER > 3
    assert cp.extra_tier(1) == cp.extra_tier(2) == 3 and cp.extra_tier(cp.OTHER_TIER) == cp.OTHER_TIER + 1


def _unit(uid, kind="build", needs=(), est=1.0):
    return cp.Unit(uid, "trt", kind, 1, "m", "g", "fp16", est, tuple(needs))


def test_unit_loop_respects_deadline_dependencies_and_crashes(tmp_path):
    state = State(tmp_path / "state")
    ran = []

    def do(u):
        ran.append(u.id)
        if u.id == "boom":
            raise RuntimeError("first line of the error\nsecond line")
        return {"status": "done"}

    units = [_unit("a"), _unit("b", "parity", needs=("a",)), _unit("boom"), _unit("c", "parity", needs=("boom",))]
    counts = run_units(state, units, do, deadline=time.time() - 1, say=lambda m: None)  # deadline already passed
    assert counts["ran"] == 0 and counts["pending"] == 4 and state.records() == {} and ran == []
    counts = run_units(state, units, do, say=lambda m: None)
    recs = state.records()
    assert ran == ["a", "b", "boom"] and recs["a"]["status"] == recs["b"]["status"] == "done"
    assert recs["boom"] == {**recs["boom"], "status": "failed", "error": "RuntimeError: first line of the error"}
    assert recs["c"]["status"] == "skipped" and "boom" in recs["c"]["error"]
    assert (state.root / "logs" / "boom.traceback.txt").is_file()
    # finished units are never redone; a unit whose process died twice is failed without running
    ran.clear()
    state.marker("d").write_text("2")
    run_units(state, units + [_unit("d")], do, say=lambda m: None)
    assert ran == [] and state.record("d")["status"] == "failed" and "died" in state.record("d")["error"]
    assert not state.marker("d").exists()


def test_gpu_lock_lets_the_preferred_side_go_first_and_ignores_a_dead_one(tmp_path):
    from rnndeploy.campaign.schedule import GpuLock

    torch_side, trt_side = GpuLock(tmp_path / "gpu.lock", "torch", 0.01), GpuLock(tmp_path / "gpu.lock", "trt", 0.01)
    trt_side.prefer(True)
    try:
        with torch_side.held(deadline=time.time() + 0.2) as got:
            assert got is False  # the TensorRT side asked to go first
        with trt_side.held(deadline=time.time() + 0.2) as got:
            assert got is True
    finally:
        trt_side.prefer(False)
    # a preference left by a process that no longer exists does not block
    trt_side.want_file("trt").write_text("999999999")
    with torch_side.held(deadline=time.time() + 0.2) as got:
        assert got is True


def test_dry_run_end_to_end_writes_labelled_report(prep, tmp_path):
    out = tmp_path / "out"
    proc = _script("gpu_verify.py", "dry-run", "--prep", prep, "--state", tmp_path / "state", "--out", out,
                   "--variants", "fp16,fp32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["gpu_logs.tar.xz", "gpu_report.html", "gpu_report.json", "gpu_report.md",
                                       "gpu_summary.json"]
    md = (out / "gpu_report.md").read_text()
    assert "DRY RUN" in md.splitlines()[0] and "NOT GPU results" in md
    summary = json.loads((out / "gpu_summary.json").read_text())
    assert summary["dry_run"] is True and summary["mode"] == "dry-run"
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
    assert "DRY RUN" in (out / "gpu_report.html").read_text()
    # a dry run's files are not results: publishing them is refused
    pub = _script("gpu_verify.py", "publish", out, "--results", tmp_path / "results")
    assert pub.returncode == 2 and "dry-run report, not GPU results" in pub.stderr
    assert not (tmp_path / "results").exists()


@needs_py39()
def test_kit_python39_imports_and_plans_the_tensorrt_side(prep):
    proc = subprocess.run([py39_python(), str(BENCH / "gpu_verify.py"), "plan", "--prep", str(prep), "--side", "trt",
                           "--json"], capture_output=True, text=True, env=py39_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert all(u["side"] == "trt" for u in plan["units"]) and len(plan["engines"]) >= 3


@needs_py39("onnxruntime")
def test_kit_python39_runs_the_tensorrt_side_dry_run_and_resumes(prep, tmp_path):
    """The TensorRT side's unit loop under the kit's Python 3.9 (as on the device), with ONNX
    Runtime standing in for the engines (from py39extra: the kit has no onnxruntime); a second
    call finds every unit done and runs none again."""
    cmd = [py39_python(), str(BENCH / "gpu_verify.py"), "run", "--side", "trt", "--dry-run", "--prep", str(prep),
           "--state", str(tmp_path / "state"), "--variants", "fp16,fp32", "--max-tier", "1"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=py39_env(), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "'failed': 0" in first.stderr and "'pending': 0" in first.stderr, first.stderr[-3000:]
    results = tmp_path / "state" / "results"
    assert sorted(p.name for p in results.iterdir()) == [f"trt.{k}.sine-lstm.model.{v}.json"
                                                          for k in ("bench", "parity") for v in ("fp16", "fp32")]
    parity = json.loads((results / "trt.parity.sine-lstm.model.fp16.json").read_text())["results"][0]
    assert parity["machine"]["versions"]["python"].startswith("3.9") and parity["passed"]
    second = subprocess.run(cmd, capture_output=True, text=True, env=py39_env(), timeout=300)
    assert second.returncode == 0 and "'ran': 0" in second.stderr, second.stderr[-3000:]


def test_engine_rows_outside_a_dry_run_are_tensorrt_runners_on_the_state_engines(prep, tmp_path):
    """Outside a dry run the rows are TensorRT runners on the engines the build units write
    (constructed only: activating one needs a GPU, and no engine is built here)."""
    from rnndeploy.backends.tensorrt import TensorRTRunner
    from rnndeploy.campaign.steps import Context, engine_runner, trt_label

    ctx = Context(prep, State(tmp_path / "state"), "trt", False)
    g = next(iter(ctx.graphs.values()))
    runner = engine_runner(ctx, g, "fp16", "trt:fp16:graph", cuda_graph=True)("trt:fp16:graph", ctx.source(g), None)
    assert isinstance(runner, TensorRTRunner) and runner.label == "trt:fp16:graph"
    assert runner.source.engine == str(tmp_path / "state" / "engines" / g.key / "fp16.plan")
    assert runner.options.precision == "fp16" and runner.options.cuda_graph and runner.options.device == "cuda"
    assert trt_label("fp32", dry=False) == "trt:fp32" and "stand-in" in trt_label("fp32", dry=True)


def test_hoisted_variant_only_where_the_rewrite_applies():
    def model(hoist):
        g = cp.GraphPrep("m", "model", "default", "m.onnx", False, hoist=hoist)
        return cp.ModelPrep("m", "r", None, "classifier", "lstm", 2, "ckpt", (g,))

    skipped = {"rewritten": {}, "skipped": {"/rnn/LSTM": "bidirectional with sequence_lens"}}
    ids = [u.id for u in cp.plan_units([model(skipped)])]
    assert "trt.build.m.model.fp16-keep" in ids and not any("fp16-hoist" in i for i in ids)
    ids = [u.id for u in cp.plan_units([model({"rewritten": {"/rnn/LSTM": ["scan"]}, "skipped": {}})])]
    assert "trt.build.m.model.fp16-hoist" in ids


def test_preload_dlls_is_onnxruntimes_real_name_and_signature():
    """ort_labels calls onnxruntime.preload_dlls(cuda=, cudnn=, msvc=) (onnxruntime >= 1.21); checked
    against the installed package, since a misspelt name would silently skip the preload."""
    import inspect

    ort = pytest.importorskip("onnxruntime")
    assert {"cuda", "cudnn", "msvc"} <= set(inspect.signature(ort.preload_dlls).parameters)


def test_ort_labels_import_torch_before_preloading_cuda_libraries(monkeypatch):
    """onnxruntime-gpu finds CUDA/cuDNN when torch was imported first; a stand-in onnxruntime
    that lists the CUDA provider records the order of the two calls."""
    import importlib.abc
    import importlib.machinery
    import types

    from rnndeploy.campaign.steps import ort_labels

    calls = []

    class TorchFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """Records the moment ``import torch`` runs."""

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
    g = cp.GraphPrep("m", "model", "default", "m.onnx", False, fp16_onnx={"fp16": "m.fp16.onnx"})
    labels, why = ort_labels(types.SimpleNamespace(dry=False), g)
    assert labels == ["ort-cuda", "ort-cuda:fp16"] and why is None
    assert calls == ["import torch", {"cuda": True, "cudnn": True, "msvc": False}]
