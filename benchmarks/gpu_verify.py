"""GPU verification of every zoo model (issue 6, step 3), resumable in slices that fit device calls.

Runs on the GPU machine under two interpreters (benchmarks/gpu_verify.sh drives both):

* ``--side trt``: the trt86 kit's Python 3.9 (TensorRT 8.6, numpy 1.26, no torch, no
  onnxruntime): for every prepared graph, engines built with ``rnndeploy build-engine`` in a
  subprocess (FP16 policy ``fp16``, FP32, FP16 policy ``fp16-keep-recurrence``, and the
  hoisted-input-projection rewrite), two optimization profiles covering batch 1-256 and seq
  1-2048; parity of each engine against the torch FP32 goldens (per-output errors, error vs
  timestep up to 2048, argmax agreement on the classifiers' test splits); latency with CUDA
  events at batch 1/32/256 x seq 16/128/512 (device-resident I/O; FP16 also replayed as a CUDA
  graph); char-LM sampling and seq2seq greedy-decoding agreement with the torch references.
* ``--side torch``: the device's Python 3.12 with torch (CUDA): torch-cuDNN FP32 and FP16
  (autocast) parity against the same goldens; latency of torch eager and CUDA-graph, FP32 and
  FP16, from the checkpoints, plus ort-cuda (FP32 and FP16 ONNX) when onnxruntime-gpu is there.

Work is split into units (gpu_common.plan_units) kept in a state folder: a unit that finished is
never redone, so each device call runs the next slice until ``--deadline``. A unit whose process
died (a crash) is marked failed on the next start; a unit cut by the deadline is retried.
``report`` merges everything with ``rnndeploy report`` (JSON + Markdown + HTML) and writes the
target checks, the environment and the exact commands.

``--dry-run`` runs the same pipeline on a CPU box: engines are only planned (``build-engine
--dry-run``) and their FP16 ONNX written (``--write-fp16-onnx``); ONNX Runtime CPU runs those
files in place of TensorRT, torch runs on the CPU in place of CUDA. Every row is labelled as a
stand-in and every page says DRY RUN: these are never GPU results.

    python benchmarks/gpu_verify.py plan --prep .gpuprep
    python benchmarks/gpu_verify.py run --side trt --prep P --state S --deadline EPOCH
    python benchmarks/gpu_verify.py report --prep P --state S --out DIR
    python benchmarks/gpu_verify.py dry-run --prep P --state S --out DIR    (both sides, in this process)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_common as gc  # noqa: E402

DRY_LABEL = "DRY RUN on a CPU box (stand-ins: ONNX Runtime CPU for TensorRT, torch CPU for CUDA) — NOT GPU results"


def say(msg: str) -> None:
    print(f"[gpu_verify] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# -- state -------------------------------------------------------------------------------------------
class State:
    """The state folder: unit records, engines, results, logs (survives between back-to-back calls)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for d in ("units", "engines", "results", "logs", "timing-cache"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def record_path(self, unit_id: str) -> Path:
        return self.root / "units" / f"{gc.slug(unit_id)}.json"

    def marker(self, unit_id: str) -> Path:
        return self.root / "units" / f"{gc.slug(unit_id)}.started"

    def record(self, unit_id: str) -> Optional[Dict[str, Any]]:
        p = self.record_path(unit_id)
        return json.loads(p.read_text()) if p.is_file() else None

    def save(self, unit_id: str, rec: Mapping[str, Any]) -> None:
        p = self.record_path(unit_id)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=1, sort_keys=True, default=str) + "\n")
        os.replace(tmp, p)

    def records(self) -> Dict[str, Dict[str, Any]]:
        out = {}
        for p in sorted((self.root / "units").glob("*.json")):
            rec = json.loads(p.read_text())
            out[rec["id"]] = rec
        return out

    def engine(self, graph_key: str, variant: str, dry: bool) -> Path:
        d = self.root / "engines" / graph_key
        d.mkdir(parents=True, exist_ok=True)
        return d / (f"{variant}.onnx" if dry else f"{variant}.plan")

    def result_path(self, unit_id: str) -> Path:
        return self.root / "results" / f"{gc.slug(unit_id)}.json"

    def command(self, line: str) -> None:
        with open(self.root / "commands.txt", "a") as f:
            f.write(f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}  {line}\n")


class Context:
    """What every unit needs: the prepared folder, the state, the side, dry-run or not."""

    def __init__(self, prep: Path, state: State, side: str, dry: bool, deadline: Optional[float], args: Any):
        self.prep = Path(prep).resolve()
        self.doc = gc.read_manifest(self.prep)
        self.models = {m.name: m for m in gc.models_of(self.doc)}
        self.graphs = {g.key: g for m in self.models.values() for g in m.graphs}
        self.state = state
        self.side = side
        self.dry = dry
        self.deadline = deadline
        self.args = args
        self.driver_command = " ".join([shlex.quote(sys.executable)] + [shlex.quote(a) for a in sys.argv])

    def path(self, rel: Optional[str]) -> Optional[str]:
        return None if rel is None else str(self.prep / rel)

    def source(self, g: gc.GraphPrep, onnx: Optional[str] = None, engine: Optional[str] = None,
               checkpoint: bool = False) -> Any:
        from rnndeploy.backends import ModelSource
        from rnndeploy.backends.source import _spec_from_onnx

        spec, graph, with_state = _spec_from_onnx(self.path(g.onnx))
        m = self.models[g.model]
        return ModelSource(spec, graph, with_state, onnx=onnx or self.path(g.onnx), engine=engine,
                           checkpoint=self.path(m.checkpoint) if checkpoint else None)

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.time()

    @property
    def bench_settings(self) -> Dict[str, Any]:
        if self.dry:
            return {"batches": (1, 2), "seqs": (4, 16), "warmup": 2, "iters": 5, "min_time": None, "max_samples": 5}
        return {"batches": gc.BENCH_BATCHES, "seqs": gc.BENCH_SEQS, "warmup": 10, "iters": None,
                "min_time": self.args.min_time, "max_samples": self.args.max_samples}


class DeadlineReached(Exception):
    pass


# -- runner factories ------------------------------------------------------------------------------
def engine_runner(ctx: Context, g: gc.GraphPrep, variant: str, label: str, cuda_graph: bool = False) -> Callable[..., Any]:
    """A runner factory for one engine variant, reporting itself as ``label``. Dry run: ONNX
    Runtime CPU on the FP32 ONNX or the FP16 ONNX the build step wrote (a stand-in)."""
    info = gc.ENGINE_VARIANTS[variant]
    precision = info["precision"]

    def make(name: str, source: Any, options: Any) -> Any:
        from rnndeploy.backends import RunnerOptions

        if ctx.dry:
            from rnndeploy.backends.onnxrt import OrtCpuRunner

            stand_in = str(ctx.state.engine(g.key, variant, True))
            path = stand_in if os.path.exists(stand_in) else ctx.path(g.onnx)
            from rnndeploy.backends.onnxrt import onnx_file_precision

            runner = OrtCpuRunner(replace(source, onnx=path), RunnerOptions(precision=onnx_file_precision(path),
                                                                             threads=1))
        else:
            from rnndeploy.backends.tensorrt import TensorRTRunner

            plan = str(ctx.state.engine(g.key, variant, False))
            runner = TensorRTRunner(replace(source, engine=plan),
                                    RunnerOptions(precision=precision, device="cuda", cuda_graph=cuda_graph))
        runner.backend = label
        return runner

    return make


def trt_label(variant: str, dry: bool, graph: bool = False) -> str:
    base = f"trt:{variant}" + (":graph" if graph else "")
    return f"ort-cpu(dry-run stand-in for {base})" if dry else base


def torch_labels(ctx: Context) -> List[str]:
    if ctx.dry:
        return ["torch", "torch:fp16"]
    return ["torch", "torch:graph", "torch:fp16", "torch:fp16:graph"]


def torch_factory(ctx: Context, g: gc.GraphPrep) -> Callable[..., Any]:
    """Torch rows on CUDA (dry run: CPU) plus ort-cuda rows; labels name what runs."""
    from rnndeploy.backends import RunnerOptions, create_runner

    def make(name: str, source: Any, options: Any) -> Any:
        base = name.split("(")[0]
        if base.startswith("ort-"):
            fp16 = ":fp16" in base
            path = ctx.path(g.fp16_onnx.get("fp16")) if fp16 else source.onnx
            kind = "ort-cpu" if ctx.dry else "ort-cuda"
            mods = [m for m in base.split(":")[1:] if m in ("graph",)]
            opts = RunnerOptions(precision="fp16" if fp16 else "fp32", device="cpu" if ctx.dry else "cuda",
                                 cuda_graph="graph" in mods, threads=1 if ctx.dry else None)
            r = create_runner(kind, replace(source, onnx=path), opts)
        else:
            device = "cpu" if ctx.dry else "cuda"
            r = create_runner(base, source, RunnerOptions(device=device, threads=1 if ctx.dry else None))
        r.backend = name
        return r

    return make


def ort_labels(ctx: Context, g: gc.GraphPrep) -> Tuple[List[str], Optional[str]]:
    """ort-cuda rows when onnxruntime has the CUDA provider (dry run: ort-cpu stand-ins)."""
    if not ctx.dry:
        # onnxruntime-gpu finds CUDA/cuDNN when torch (same CUDA major) was imported first, as its
        # preload_dlls docstring says; preload_dlls alone looks beside the onnxruntime package,
        # and the carried wheel lives in its own --target folder, away from torch's nvidia wheels
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
    try:
        import onnxruntime as ort
    except ImportError:
        return [], "onnxruntime is not installed"
    if ctx.dry:
        return [], None
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return [], f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (carry onnxruntime-gpu for ort-cuda rows)"
    if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels torch brought (onnxruntime >= 1.21)
        try:
            ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
        except Exception as exc:  # the session's own error says more; keep going
            say(f"onnxruntime.preload_dlls failed: {exc}")
    labels = ["ort-cuda"]
    if g.fp16_onnx.get("fp16"):
        labels.append("ort-cuda:fp16")
    return labels, None


# -- units -----------------------------------------------------------------------------------------
def run_unit(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    fn = {"build": do_build, "parity": do_parity, "bench": do_bench, "tasks": do_tasks, "profile": do_profile,
          "parity-torch": do_parity_torch, "bench-torch": do_bench_torch, "tasks-torch": do_tasks_torch}[u.kind]
    return fn(ctx, u)


def do_build(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    g = ctx.graphs[u.graph_key]
    info = gc.ENGINE_VARIANTS[u.variant]
    out = ctx.state.engine(g.key, u.variant, ctx.dry)
    cache = ctx.state.root / "timing-cache" / f"{g.model}.cache"
    cold = not cache.exists()
    cmd = [sys.executable, "-m", "rnndeploy", "build-engine", ctx.path(g.onnx)] + list(info["args"]) \
        + gc.profile_args() + ["--timing-cache", str(cache), "--no-progress", "--json"]
    if os.environ.get("TRTKIT_ROOT"):
        # the kit's cuBLAS/cuDNN are stubs: say so rather than rely on build-engine's detection of them
        # (that detection is what the kit's pytest run checks; here a wrong guess would waste a build)
        cmd.append("--no-stub-tactics")
    if ctx.dry:
        cmd += (["--write-fp16-onnx", str(out)] if info["precision"] == "fp16" else ["--dry-run"])
    else:
        cmd += ["-o", str(out)]
    limit = min(ctx.args.build_timeout, max(ctx.remaining(), 1.0))
    ctx.state.command(" ".join(shlex.quote(c) for c in cmd))
    log = ctx.state.root / "logs" / f"{gc.slug(u.id)}.log"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=str(REPO),
                              env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    except subprocess.TimeoutExpired as exc:
        log.write_text(f"$ {' '.join(cmd)}\n(killed after {limit:.0f} s)\n{exc.stdout or ''}\n{exc.stderr or ''}")
        if limit < ctx.args.build_timeout:
            raise DeadlineReached(f"{u.id} cut by the deadline after {limit:.0f} s") from None
        return {"status": "failed", "error": f"build exceeded {ctx.args.build_timeout:.0f} s (killed)"}
    wall = time.perf_counter() - t0
    log.write_text(f"$ {' '.join(cmd)}\nexit {proc.returncode} after {wall:.1f} s\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    rec: Dict[str, Any] = {"command": " ".join(shlex.quote(c) for c in cmd), "wall_s": round(wall, 2),
                           "exit": proc.returncode, "cold_timing_cache": cold, "variant": u.variant}
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
        rec.update(status="failed", error=" | ".join(tail)[:800] or f"exit {proc.returncode}")
        return rec
    try:  # the JSON document, whatever a library printed around it
        doc, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        doc = {}
    if ctx.dry:
        rec.update(status="done", dry_run=True, plan=doc, stand_in=str(out) if out.exists() else ctx.path(g.onnx),
                   note="dry run: profiles and precision planned, FP16 ONNX written; no engine was built")
        return rec
    build = doc.get("build", {})
    prec = doc.get("precision", {})
    rec.update(status="done", engine=str(out), engine_bytes=doc.get("engine", {}).get("bytes"),
               build_seconds=build.get("seconds"), precision_path=prec.get("path"), why=prec.get("why"),
               failed_attempts=prec.get("failed_attempts"), layer_precisions=prec.get("layer_precisions"),
               pinned_fp32_layers=prec.get("pinned_fp32_layers"), tactic_sources=build.get("tactic_sources"),
               external_tactics=build.get("external_tactics"), memory=build.get("memory"),
               timing_cache=build.get("timing_cache"), warnings=(build.get("warnings") or [])[:5],
               tensorrt=doc.get("tensorrt", {}).get("version"), gpu=doc.get("gpu"), cuda=doc.get("cuda"),
               rewrite=doc.get("rewrite"), profiles=doc.get("profiles"))
    return rec


def _parity_config(golden: str, min_agreement: Optional[float] = None) -> Any:
    from rnndeploy.parity.harness import ParityConfig

    return ParityConfig(backends=(), golden=golden, min_agreement=min_agreement, show_progress=False)


def _write(ctx: Context, u: gc.Unit, results: Sequence[Any]) -> str:
    from rnndeploy.report.schema import write_results

    path = ctx.state.result_path(u.id)
    write_results(str(path), list(results))
    return str(path)


def _parity_runs(ctx: Context, u: gc.Unit, g: gc.GraphPrep, source: Any, labels: Sequence[str],
                 factory: Callable[..., Any]) -> Dict[str, Any]:
    """Parity of ``labels`` against the sweep golden and (classifiers) the test-split golden."""
    from rnndeploy.parity.harness import run_parity

    results = []
    summary: Dict[str, Any] = {}
    for which, rel, threshold in (("sweep", g.golden, None), ("test", g.golden_test, gc.ARGMAX_TARGET)):
        if not rel:
            continue
        cfg = replace(_parity_config(ctx.path(rel), threshold), backends=tuple(labels))
        res = run_parity(source, cfg, command=f"{ctx.driver_command}  # unit {u.id}: {which} golden", runner_factory=factory)
        res = replace(res, model={**res.model, "name": f"{res.model.get('name')}" + (" [test split]" if which == "test" else ""),
                                  "golden": which})
        results.append(res)
        summary[which] = {"passed": res.passed, "failures": res.failures()[:5]}
    path = _write(ctx, u, results)
    return {"status": "done", "result": path, "parity": summary}


def do_parity(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    g = ctx.graphs[u.graph_key]
    label = trt_label(u.variant, ctx.dry)
    return _parity_runs(ctx, u, g, ctx.source(g), [label], engine_runner(ctx, g, u.variant, label))


def do_bench(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    from rnndeploy.bench.sweep import BenchConfig, run_bench

    g = ctx.graphs[u.graph_key]
    labels = [trt_label(u.variant, ctx.dry)]
    graph_rows = u.variant == "fp16" and not ctx.dry
    if graph_rows:
        labels.append(trt_label(u.variant, ctx.dry, graph=True))
    factories = {labels[0]: engine_runner(ctx, g, u.variant, labels[0])}
    if graph_rows:
        factories[labels[1]] = engine_runner(ctx, g, u.variant, labels[1], cuda_graph=True)
    s = ctx.bench_settings
    cfg = BenchConfig(backends=tuple(labels), batches=tuple(s["batches"]), seqs=tuple(s["seqs"]), warmup=s["warmup"],
                      iters=s["iters"], min_time=s["min_time"], max_samples=s["max_samples"], torch_row=False,
                      show_progress=False)
    res = run_bench(ctx.source(g), cfg, command=f"{ctx.driver_command}  # unit {u.id}",
                    runner_factory=lambda name, src, opts: factories[name](name, src, opts))
    return {"status": "done", "result": _write(ctx, u, [res])}


def _task_result(ctx: Context, m: gc.ModelPrep, task: Mapping[str, Any], agreements: List[Any], backends: Dict[str, Any],
                 warnings: List[str], u: gc.Unit) -> Any:
    from rnndeploy.parity.results import ParityResult
    from rnndeploy.report.machine import describe_machine

    return ParityResult(
        model={"name": f"{m.name} [{task['kind']} agreement, test split]", "family": m.family,
               "graph": ",".join(task.get("graphs") or [task.get("graph", "model")])},
        reference={"backend": "torch", "source": "prepared reference (torch FP32, CPU, benchmarks/gpu_prepare.py)",
                   "path": ctx.path(task["file"])},
        backends=backends, seed=task.get("seed"), cases=(), tasks=tuple(agreements), warnings=tuple(warnings),
        machine=describe_machine(), command=f"{ctx.driver_command}  # unit {u.id}",
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _agreements(ctx: Context, m: gc.ModelPrep, runners_for: Callable[[List[gc.GraphPrep], str], Any],
                labels: Sequence[str], u: gc.Unit) -> Dict[str, Any]:
    """Sampling (char-LM) or greedy decoding (seq2seq) agreement of each label with the torch reference."""
    import numpy as np

    from rnndeploy.parity.results import TaskAgreement
    from rnndeploy.parity.task import greedy_tokens, sample_tokens, sequence_agreement, token_agreement

    task = json.loads(Path(ctx.path(m.tasks)).read_text())
    data = dict(np.load(ctx.path(task["file"]), allow_pickle=False))
    graphs = [g for g in m.graphs if g.form == "default"]
    agreements, backends, warnings = [], {}, []
    for label in labels:
        try:
            runners = runners_for(graphs, label)
        except Exception as exc:
            warnings.append(f"{label}: not run ({type(exc).__name__}: {str(exc)[:300]})")
            continue
        try:
            for r in runners:
                r.activate()
            backends[label] = runners[0].describe().to_dict()
            if task["kind"] == "sampling":
                got = sample_tokens(runners[0], data["prompt"], int(task["steps"]), int(task["seed"]),
                                    float(task["temperature"]))
                agree, first = token_agreement(data["tokens"], got)
                agreements.append(TaskAgreement("sampling", label, "logits", agree, int(data["tokens"].size),
                                                {"steps": task["steps"], "rows": task["rows"], "seed": task["seed"],
                                                 "first_divergence": first}))
            else:
                feed = {k: v for k, v in data.items() if k != "tokens"}
                n = len(data["tokens"])
                got_seqs: List[Tuple[int, ...]] = []
                for start in range(0, n, gc.MAX_BATCH):
                    part = {k: v[start:start + gc.MAX_BATCH] for k, v in feed.items()}
                    got_seqs += greedy_tokens(runners[0], runners[1], part, int(task["bos_id"]), int(task["eos_id"]),
                                              int(task["max_len"]))
                ref = [tuple(int(t) for t in row if t >= 0) for row in data["tokens"]]
                agree, exact, total = sequence_agreement(ref, got_seqs)
                agreements.append(TaskAgreement("decoding", label, "", agree, total,
                                                {"sequences": n, "exact_sequences": exact, "max_len": task["max_len"]}))
        except Exception as exc:  # a runtime failing the loop is a finding, not a crash of the whole run
            agreements.append(TaskAgreement(task["kind"], label, "", 0.0, 0,
                                            {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}, 1.0))
        finally:
            for r in runners:
                r.deactivate()
    res = _task_result(ctx, m, task, agreements, backends, warnings, u)
    return {"status": "done", "result": _write(ctx, u, [res]),
            "agreements": {a.backend: a.agreement for a in agreements}}


def do_tasks(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    m = ctx.models[u.model]

    def runners_for(graphs: List[gc.GraphPrep], label: str) -> List[Any]:
        variant = label.split("(")[-1].split(":")[1].rstrip(")") if ctx.dry else label.split(":")[1]
        return [engine_runner(ctx, g, variant, label)(label, ctx.source(g), None) for g in graphs]

    variants = [v for v in ("fp16", "fp32") if all((ctx.state.record(f"trt.build.{g.key}.{v}") or {}).get("status") == "done"
                                                    for g in m.graphs if g.form == "default")]
    return _agreements(ctx, m, runners_for, [trt_label(v, ctx.dry) for v in variants], u)


def do_profile(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    """Where the FP16 engine's time goes: per-layer times from TensorRT's IProfiler (synchronous
    runs, so the sum exceeds the pipelined latency) at batch 1 and 32, seq 128, and the engine
    inspector's layer list (into the logs)."""
    g = ctx.graphs[u.graph_key]
    if ctx.dry:
        return {"status": "done", "note": "dry run: no engine to profile"}
    import tensorrt as trt

    from rnndeploy.inputs import generate_inputs, sizes_for

    class LayerTimes(trt.IProfiler):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.ms: Dict[str, float] = {}

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.ms[layer_name] = self.ms.get(layer_name, 0.0) + ms

    label = trt_label(u.variant, False)
    runner = engine_runner(ctx, g, u.variant, label)(label, ctx.source(g), None)
    out: Dict[str, Any] = {}
    with runner:
        engine = runner._loaded.engine  # the runner's own engine and context: this is a diagnostic
        try:
            info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
            (ctx.state.root / "logs" / f"{gc.slug(u.id)}.inspector.json").write_text(info)
        except Exception as exc:
            out["inspector_error"] = f"{type(exc).__name__}: {exc}"
        runs = 10
        for b, seq in ((1, 128), (32, 128)):
            feed = generate_inputs(runner.graph_spec, sizes_for(runner.graph_spec, b, seq), 0)
            runner.infer(feed)
            prof = LayerTimes()
            runner._context.profiler = prof
            for _ in range(runs):
                runner.infer(feed)
            total = sum(prof.ms.values()) / runs
            top = sorted(prof.ms.items(), key=lambda kv: -kv[1])[:12]
            out[f"b{b}-s{seq}"] = {"sum_of_layers_ms": round(total, 4), "layers": len(prof.ms),
                                   "top": [[n, round(v / runs, 4), round(v / runs / total, 3) if total else None]
                                           for n, v in top]}
    return {"status": "done", "layer_timing": out}


def do_parity_torch(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    g = ctx.graphs[u.graph_key]
    source = ctx.source(g, checkpoint=True)
    factory = torch_factory(ctx, g)
    ort, why = ort_labels(ctx, g)
    dropped = {}
    for label in list(ort):
        problem = _probe(factory, label, source)
        if problem:
            dropped[label] = problem
            ort.remove(label)
    rec = _parity_runs(ctx, u, g, source, ["torch", "torch:fp16"] + ort, factory)
    notes = [why] if why else []
    notes += [f"{k} not run: {v}" for k, v in dropped.items()]
    if notes:
        rec["note"] = "; ".join(notes)
    return rec


def _probe(factory: Callable[..., Any], label: str, source: Any) -> Optional[str]:
    """None when ``label`` can prepare a run at batch 1, seq 16 (e.g. a CUDA graph captures), else why not."""
    from rnndeploy.inputs import generate_inputs, sizes_for

    runner = factory(label, source, None)
    try:
        runner.activate()
        runner.prepare(generate_inputs(source.graph_spec, sizes_for(source.graph_spec, 1, 16), 0))
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
    finally:
        runner.deactivate()


def do_bench_torch(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    from rnndeploy.bench.sweep import BenchConfig, run_bench

    g = ctx.graphs[u.graph_key]
    source = ctx.source(g, checkpoint=True)
    factory = torch_factory(ctx, g)
    ort, why = ort_labels(ctx, g)
    labels = torch_labels(ctx) + ort + (["ort-cpu(dry-run stand-in for ort-cuda)"] if ctx.dry else [])
    dropped: Dict[str, str] = {}
    for label in list(labels):
        if "graph" in label or label.startswith("ort-"):
            problem = _probe(factory, label, source)
            if problem:
                dropped[label] = (f"CUDA graph does not apply: {problem}" if "graph" in label else f"not run: {problem}")
                labels.remove(label)
    s = ctx.bench_settings
    cfg = BenchConfig(backends=tuple(labels), batches=tuple(s["batches"]), seqs=tuple(s["seqs"]), warmup=s["warmup"],
                      iters=s["iters"], min_time=s["min_time"], max_samples=s["max_samples"], torch_row=False,
                      baseline="torch:fp16" if "torch:fp16" in labels else None, show_progress=False)
    res = run_bench(source, cfg, command=f"{ctx.driver_command}  # unit {u.id}", runner_factory=factory)
    notes = [f"{k}: {v}" for k, v in dropped.items()] + ([why] if why else [])
    if notes:
        res = replace(res, warnings=tuple(res.warnings) + tuple(notes))
    return {"status": "done", "result": _write(ctx, u, [res]), "dropped": dropped, "note": why}


def do_tasks_torch(ctx: Context, u: gc.Unit) -> Dict[str, Any]:
    from rnndeploy.backends import RunnerOptions, create_runner

    m = ctx.models[u.model]

    def runners_for(graphs: List[gc.GraphPrep], label: str) -> List[Any]:
        out = []
        for g in graphs:
            r = create_runner(label, ctx.source(g, checkpoint=True),
                              RunnerOptions(device="cpu" if ctx.dry else "cuda", threads=1 if ctx.dry else None))
            r.backend = label
            out.append(r)
        return out

    return _agreements(ctx, m, runners_for, ["torch"] if ctx.dry else ["torch", "torch:fp16"], u)


# -- the run loop ------------------------------------------------------------------------------------
def run_side(ctx: Context, max_tier: int, models: Optional[Sequence[str]] = None, variants: Optional[Sequence[str]] = None,
             retry_failed: bool = False) -> Dict[str, int]:
    """Run the pending units of ``ctx.side`` up to ``max_tier`` until the deadline; returns counts."""
    units = [u for u in gc.plan_units(list(ctx.models.values()), variants, models)
             if u.side == ctx.side and u.tier <= max_tier]
    counts = {"done": 0, "failed": 0, "skipped": 0, "pending": 0, "ran": 0}
    observed: Dict[str, List[float]] = {}
    for rec in ctx.state.records().values():
        if rec.get("status") == "done" and rec.get("seconds"):
            observed.setdefault(rec.get("kind", ""), []).append(float(rec["seconds"]))
    stop = False
    for u in units:
        rec = ctx.state.record(u.id)
        if rec and rec.get("status") in ("done", "skipped") or (rec and rec.get("status") == "failed" and not retry_failed):
            counts[rec["status"]] += 1
            continue
        marker = ctx.state.marker(u.id)
        if marker.exists():  # the process running it died last time (a crash, not the deadline: that clears the marker)
            attempts = int(marker.read_text().strip() or 1)
            if attempts >= 2 and not retry_failed:
                ctx.state.save(u.id, {**u.to_dict(), "status": "failed",
                                      "error": f"the process died during this unit {attempts} times (crash?)"})
                marker.unlink()
                counts["failed"] += 1
                continue
        missing = [n for n in u.needs if (ctx.state.record(n) or {}).get("status") != "done"]
        if missing:
            bad = [n for n in missing if (ctx.state.record(n) or {}).get("status") in ("failed", "skipped")]
            if bad:
                ctx.state.save(u.id, {**u.to_dict(), "status": "skipped", "error": f"needs {', '.join(bad)}, which did not finish"})
                counts["skipped"] += 1
            else:
                counts["pending"] += 1
            continue
        est = max(observed.get(u.kind, [u.est_s])) if observed.get(u.kind) else u.est_s
        if stop or ctx.remaining() < est:
            stop = True
            counts["pending"] += 1
            continue
        attempts = int(marker.read_text().strip() or 0) + 1 if marker.exists() else 1
        marker.write_text(str(attempts))
        say(f"{u.id} (tier {u.tier}, ~{est:.0f} s; {ctx.remaining():.0f} s left)")
        t0 = time.perf_counter()
        try:
            out = run_unit(ctx, u)
        except DeadlineReached as exc:
            say(f"{u.id}: {exc}; left for the next call")
            marker.unlink()
            counts["pending"] += 1
            stop = True
            continue
        except KeyboardInterrupt:
            marker.unlink()
            raise
        except Exception as exc:
            import traceback

            tb = traceback.format_exc()
            (ctx.state.root / "logs" / f"{gc.slug(u.id)}.traceback.txt").write_text(tb)
            out = {"status": "failed", "error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:600]}"}
        seconds = round(time.perf_counter() - t0, 2)
        ctx.state.save(u.id, {**u.to_dict(), **out, "seconds": seconds,
                              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        marker.unlink()
        counts["ran"] += 1
        counts[out["status"]] = counts.get(out["status"], 0) + 1
        observed.setdefault(u.kind, []).append(seconds)
        say(f"{u.id}: {out['status']} in {seconds:.1f} s" + (f" — {out.get('error')}" if out.get("error") else ""))
    return counts


# -- environment ----------------------------------------------------------------------------------------
def capture_env(side: str, dry: bool) -> Dict[str, Any]:
    from rnndeploy.report.machine import describe_machine

    env: Dict[str, Any] = {"side": side, "python": sys.version.split()[0], "executable": sys.executable,
                           "dry_run": dry, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                           "machine": describe_machine()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,pstate",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        env["nvidia_smi"] = f"not available: {exc}"
    if side == "trt":
        try:
            import tensorrt as trt

            from rnndeploy.engine import trt_compat

            env["tensorrt"] = trt.__version__
            env["tensorrt_features"] = trt_compat.detect(trt).to_dict()
        except Exception as exc:
            env["tensorrt"] = f"not importable: {type(exc).__name__}: {exc}"
        try:
            from rnndeploy import cuda

            rt = cuda.runtime()
            env["cudart"] = {"path": rt.path, "runtime": rt.runtime_version(), "driver": rt.driver_version(),
                             "devices": rt.device_count()}
        except Exception as exc:
            env["cudart"] = f"not usable: {type(exc).__name__}: {exc}"
    else:
        try:
            import torch

            env["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available(),
                            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
        except Exception as exc:
            env["torch"] = f"not importable: {type(exc).__name__}: {exc}"
        try:
            import onnxruntime as ort

            env["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers(),
                                  "path": os.path.dirname(ort.__file__)}
        except Exception as exc:
            env["onnxruntime"] = f"not importable: {type(exc).__name__}: {exc}"
    return env


# -- report --------------------------------------------------------------------------------------------
def _load_results(path: str) -> List[Any]:
    from rnndeploy.report.schema import load_results, read_document

    return load_results(read_document(path))


def combined_results(ctx: Context) -> Tuple[List[Any], Dict[str, Any]]:
    """One parity result per (graph, golden) and one bench result per graph, holding the rows of
    both processes (torch side and TensorRT side), in that order; plus the task results."""
    from rnndeploy.bench.results import BenchResult

    recs = ctx.state.records()
    out: List[Any] = []
    index: Dict[str, Any] = {"parity": {}, "bench": {}, "tasks": {}}
    order = ["fp16", "fp32", "fp16-keep", "fp16-hoist"]
    for key in ctx.graphs:
        parity_ids = [f"torch.parity.{key}"] + [f"trt.parity.{key}.{v}" for v in order]
        by_golden: Dict[str, List[Any]] = {}
        for uid in parity_ids:
            rec = recs.get(uid)
            if rec and rec.get("status") == "done" and rec.get("result"):
                for r in _load_results(rec["result"]):
                    by_golden.setdefault(r.model.get("golden", "sweep"), []).append(r)
        for which, parts in by_golden.items():
            first = parts[0]
            merged = replace(
                first,
                backends={k: v for p in parts for k, v in p.backends.items()},
                cases=tuple(c for p in parts for c in p.cases),
                tasks=tuple(t for p in parts for t in p.tasks),
                warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings))
                + ((f"rows measured in {len(parts)} processes (torch side: Python with torch; TensorRT side: the "
                    "trt86 kit's Python 3.9), against the same golden files",) if len(parts) > 1 else ()),
                command=" ;\n".join(dict.fromkeys(p.command for p in parts)),
            )
            out.append(merged)
            index["parity"][f"{key}:{which}"] = merged
        bench_ids = [f"torch.bench.{key}"] + [f"trt.bench.{key}.{v}" for v in order]
        parts = []
        for uid in bench_ids:
            rec = recs.get(uid)
            if rec and rec.get("status") == "done" and rec.get("result"):
                parts += _load_results(rec["result"])
        if parts:
            first = parts[0]
            ms = tuple(m for p in parts for m in p.measurements)
            baseline = "torch:fp16" if any(m.backend == "torch:fp16" for m in ms) else None
            machine = dict(first.machine)
            trt_versions = [p.machine.get("versions", {}).get("tensorrt") for p in parts if p.machine.get("versions", {}).get("tensorrt")]
            if trt_versions:
                machine["versions"] = {**machine.get("versions", {}), "tensorrt": trt_versions[0]}
            merged_b = BenchResult(
                model=dict(first.model), measurements=ms, baseline=baseline, settings=dict(first.settings),
                warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings))
                + ((f"rows from {len(parts)} processes run back to back on the same machine (torch and ort rows: Python "
                    "with torch; trt rows: the trt86 kit's Python 3.9); ratios compare medians across them",)
                   if len(parts) > 1 else ()),
                machine=machine, command=" ;\n".join(dict.fromkeys(p.command for p in parts)), created=first.created)
            out.append(merged_b)
            index["bench"][key] = merged_b
    for m in ctx.models.values():
        for uid in (f"torch.tasks.{m.name}", f"trt.tasks.{m.name}"):
            rec = recs.get(uid)
            if rec and rec.get("status") == "done" and rec.get("result"):
                for r in _load_results(rec["result"]):
                    out.append(r)
                    index["tasks"].setdefault(m.name, []).append(r)
    return out, index


def _fmt(x: Optional[float], spec: str = ".2e") -> str:
    return "—" if x is None else format(x, spec)


def target_checks(ctx: Context, index: Mapping[str, Any]) -> Dict[str, Any]:
    """The issue's targets, checked on what ran (each row says what it compares)."""
    recs = ctx.state.records()
    builds = []
    for key in ctx.graphs:
        for v in gc.ENGINE_VARIANTS:
            rec = recs.get(f"trt.build.{key}.{v}")
            if rec is None:
                continue
            secs = rec.get("build_seconds")
            builds.append({"graph": key, "variant": v, "status": rec.get("status"), "build_seconds": secs,
                           "cold_cache": rec.get("cold_timing_cache"), "engine_mib": (rec.get("engine_bytes") or 0) / 2**20 or None,
                           "precision_path": rec.get("precision_path"), "error": rec.get("error"),
                           "met": None if secs is None else secs < gc.BUILD_TARGET_S})
    fp16 = []
    for name, res in index["parity"].items():
        key, which = name.rsplit(":", 1)
        for backend in res.backend_names():
            prec = res.backends.get(backend, {}).get("precision")
            if prec != "fp16":
                continue
            for out in res.output_names():
                worst = None
                worst_case = None
                worst_size = None
                worst_long = None
                for c in res.cases:
                    if c.backend != backend:
                        continue
                    seq = c.sizes.get("seq", c.sizes.get("src_seq"))
                    for o in c.outputs:
                        if o.output != out or o.stats is None:
                            continue
                        if seq is None or seq <= gc.FP16_TARGET_MAX_SEQ:
                            if worst is None or o.stats.rel_l2 > worst:
                                worst, worst_case = o.stats.rel_l2, c.case
                                n = 1
                                for d in o.shape:
                                    n *= int(d)
                                worst_size = n
                        else:
                            worst_long = o.stats.rel_l2 if worst_long is None else max(worst_long, o.stats.rel_l2)
                errors = [c.error for c in res.cases if c.backend == backend and c.error]
                fp16.append({"graph": key, "golden": which, "backend": backend, "output": out, "rel_l2_seq_le_512": worst,
                             "worst_case": worst_case, "worst_case_values": worst_size,
                             "rel_l2_seq_gt_512": worst_long, "errors": errors[:2],
                             "met": None if worst is None else bool(worst <= gc.FP16_REL_L2_TARGET and not errors)})
    argmax = []
    for name, res in index["parity"].items():
        if not name.endswith(":test"):
            continue
        for t in res.tasks:
            if t.kind == "argmax":
                argmax.append({"graph": name.rsplit(":", 1)[0], "backend": t.backend, "output": t.output,
                               "agreement": t.agreement, "n": t.total, "met": t.agreement >= gc.ARGMAX_TARGET})
    latency = []
    for key, res in index["bench"].items():
        g = ctx.graphs[key]
        m = ctx.models[g.model]
        if m.cell not in ("lstm", "gru") or g.form != "default":
            continue
        base_label = "torch:fp16"
        for b in (1, 32):
            for s in sorted({x.seq for x in res.measurements}):
                base = res.get(base_label, b, s)
                base_graph = res.get("torch:fp16:graph", b, s)
                for label in [x for x in res.backends() if x.startswith("trt:fp16") or "stand-in for trt:fp16" in x]:
                    mm = res.get(label, b, s)
                    if mm is None or base is None:
                        continue
                    r = mm.median / base.median
                    latency.append({"graph": key, "backend": label, "batch": b, "seq": s, "ms": mm.median * 1e3,
                                    "torch_fp16_ms": base.median * 1e3,
                                    "torch_fp16_graph_ms": base_graph.median * 1e3 if base_graph else None,
                                    "ratio": r, "met": r <= gc.LATENCY_TARGET})
    timestep = []
    for name, res in index["parity"].items():
        if not name.endswith(":sweep"):
            continue
        for backend in res.backend_names():
            for out in res.output_names():
                prof = res.time_profile(backend, out)
                if prof is None or not prof.rel_l2:
                    continue
                n = len(prof.rel_l2)
                picks = sorted({0, 15, 127, 511, 1023, n - 1} & set(range(n)))
                timestep.append({"graph": name.rsplit(":", 1)[0], "backend": backend, "output": out, "steps": n,
                                 "rel_l2_at": {str(t + 1): prof.rel_l2[t] for t in picks}})
    headline = []
    for key, res in index["bench"].items():
        if ctx.graphs[key].form != "default":
            continue
        seq = 128 if any(x.seq == 128 for x in res.measurements) else max(x.seq for x in res.measurements)
        for b in res.batches():
            row = {m.backend: m.median * 1e3 for m in res.measurements if m.batch == b and m.seq == seq}
            headline.append({"graph": key, "cell": ctx.models[ctx.graphs[key].model].cell, "batch": b, "seq": seq,
                             "ms": row})
    return {"builds": builds, "fp16_parity": fp16, "argmax": argmax, "latency": latency, "timestep": timestep,
            "headline": headline}


def checks_summary(state: State) -> Dict[str, Any]:
    """The kit's smoke test and the two ``pytest -m gpu`` runs, as gpu_verify.sh left them
    (exit codes in STATE/../done, JUnit XML and logs in STATE/logs)."""
    import xml.etree.ElementTree as ET

    done = state.root.parent / "done"
    out: Dict[str, Any] = {}
    for name in ("kit-smoke", "pytest-kit", "pytest-torch"):
        p = done / name
        if not p.is_file():
            out[name] = {"ran": False}
            continue
        info: Dict[str, Any] = {"ran": True, "exit": p.read_text().strip()}
        log = state.root / "logs" / f"{name}.log"
        if log.is_file():
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            info["last_lines"] = lines[-3:]
        xml = state.root / "logs" / f"{name}.xml"
        if xml.is_file():
            try:
                root = ET.parse(str(xml)).getroot()
                suite = root if root.tag == "testsuite" else root.find("testsuite")
                info.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
                info["seconds"] = float(suite.get("time", 0))
                bad = []
                for case in suite.iter("testcase"):
                    for tag in ("failure", "error"):
                        el = case.find(tag)
                        if el is not None:
                            msg = (el.get("message") or el.text or "").strip().splitlines()
                            bad.append(f"{case.get('classname')}::{case.get('name')}: {tag}: {(msg or [''])[0][:200]}")
                info["problems"] = bad[:30]
            except (ET.ParseError, AttributeError, ValueError) as exc:
                info["xml_error"] = str(exc)
        out[name] = info
    return out


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _verdict(flags: Sequence[Optional[bool]], dry: bool = False) -> str:
    known = [f for f in flags if f is not None]
    if not known:
        return "not measured"
    text = "MET" if all(known) else f"MISSED ({sum(1 for f in known if not f)} of {len(known)} rows)"
    return f"(dry run, meaningless: {text.lower()})" if dry else text


def summary_markdown(ctx: Context, checks: Mapping[str, Any], envs: Mapping[str, Any], counts: Mapping[str, Any],
                     index: Mapping[str, Any], title: str, tests: Optional[Mapping[str, Any]] = None) -> str:
    lines = [f"# {title}", ""]
    if ctx.dry:
        lines += [f"> **{DRY_LABEL}.** This page proves the plumbing only; its numbers say nothing about a GPU.", ""]
    lines += ["## Environment", ""]
    for side in ("trt", "torch"):
        e = envs.get(side)
        if not e:
            lines.append(f"- {side} side: not run")
            continue
        gpus = e.get("machine", {}).get("gpus") or []
        bits = [f"Python {e.get('python')} ({e.get('executable')})", f"date {e.get('date')}"]
        if gpus:
            bits.append(f"GPU {gpus[0].get('name')} (sm {gpus[0].get('compute_capability')})")
        bits.append(f"nvidia-smi: {e.get('nvidia_smi')}")
        bits.append(f"CUDA driver {e.get('machine', {}).get('cuda_driver')}")
        if side == "trt":
            bits.append(f"TensorRT {e.get('tensorrt')}")
            bits.append(f"cudart {e.get('cudart')}")
        else:
            bits.append(f"torch {e.get('torch')}")
            bits.append(f"onnxruntime {e.get('onnxruntime')}")
        lines.append(f"- **{side} side**: " + "; ".join(str(b) for b in bits))
    if checks["headline"]:
        cols = [c for c in ("torch", "torch:graph", "torch:fp16", "torch:fp16:graph", "ort-cuda", "ort-cuda:fp16",
                            "trt:fp32", "trt:fp16", "trt:fp16:graph", "trt:fp16-keep", "trt:fp16-hoist")
                if any(c in h["ms"] for h in checks["headline"])]
        cols += sorted({c for h in checks["headline"] for c in h["ms"]} - set(cols))
        lines += ["", "## Headline: median latency in ms (see 'What the latency figures include')", ""]
        rows = [[h["graph"], h["cell"], str(h["batch"]), str(h["seq"])] + [_fmt(h["ms"].get(c), ".3f") for c in cols]
                for h in checks["headline"]]
        lines.append(_md_table(["graph", "cell", "batch", "seq"] + cols, rows))
    if tests:
        meaning = {"kit-smoke": "the kit's smoke test (FP16 LSTM engine vs numpy; exit 0 pass, 2 no GPU, 1 fail)",
                   "pytest-kit": "pytest -m gpu under the kit's Python 3.9 (TensorRT side, no torch)",
                   "pytest-torch": "pytest -m gpu under the device's Python 3.12 (torch-CUDA side)"}
        lines += ["", "## Smoke test and gpu-marked tests", ""]
        for name, info in tests.items():
            if not info.get("ran"):
                lines.append(f"- {meaning[name]}: not run")
                continue
            counts_s = ""
            if "tests" in info:
                counts_s = (f"; {info['tests']} tests, {info['failures']} failed, {info['errors']} errors, "
                            f"{info['skipped']} skipped in {info.get('seconds', 0):.0f} s")
            lines.append(f"- {meaning[name]}: exit {info['exit']}{counts_s}")
            for problem in info.get("problems", [])[:15]:
                lines.append(f"  - {problem}")
            if not info.get("problems") and info.get("last_lines"):
                lines.append(f"  - last line: `{info['last_lines'][-1][:200]}`")
    lines += ["", "## Work units", "",
              f"{counts.get('done', 0)} done, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped, "
              f"{counts.get('pending', 0)} not run (device budget) of {counts.get('total', 0)}.", ""]
    for uid, err in counts.get("problems", [])[:40]:
        lines.append(f"- `{uid}`: {err}")
    if counts.get("pending_ids"):
        lines.append("- not run: " + ", ".join(f"`{p}`" for p in counts["pending_ids"][:60])
                     + (" …" if len(counts["pending_ids"]) > 60 else ""))
    lines += ["", f"## Engine builds (target < {gc.BUILD_TARGET_S:.0f} s per model, cold timing cache): "
              + _verdict([b["met"] for b in checks["builds"] if b["cold_cache"]], ctx.dry), ""]
    rows = [[b["graph"], b["variant"], b["status"], _fmt(b["build_seconds"], ".1f"),
             "— (dry run: planned only)" if ctx.dry else ("cold" if b["cold_cache"] else "warm"),
             _fmt(b["engine_mib"], ".2f"), b["precision_path"] or "—", (b["error"] or "")[:120]] for b in checks["builds"]]
    lines.append(_md_table(["graph", "engine", "status", "build s", "timing cache", "MiB", "precision path", "error"], rows))
    lines += ["", f"## FP16 parity vs torch FP32 golden (target rel L2 <= {gc.FP16_REL_L2_TARGET:g} for seq <= "
              f"{gc.FP16_TARGET_MAX_SEQ}): " + _verdict([r["met"] for r in checks["fp16_parity"]], ctx.dry), ""]
    rows = [[r["graph"], r["golden"], r["backend"], r["output"], _fmt(r["rel_l2_seq_le_512"]),
             f"{r['worst_case']} ({r['worst_case_values']} values)" if r.get("worst_case") else "—",
             _fmt(r["rel_l2_seq_gt_512"]), "—" if r["met"] is None else ("met" if r["met"] else "MISSED")]
            for r in checks["fp16_parity"]]
    lines.append(_md_table(["graph", "golden", "backend", "output", "worst rel L2 (seq <= 512)", "at case",
                            "worst rel L2 (seq > 512)", "target"], rows))
    lines += ["", "(A last-step regressor's output at batch 1 is one value: its relative L2 is that value's relative "
              "error, the harshest form of the target.)"]
    lines += ["", f"## Argmax agreement on the test split (target >= {gc.ARGMAX_TARGET:.1%}): "
              + _verdict([r["met"] for r in checks["argmax"]], ctx.dry), ""]
    rows = [[r["graph"], r["backend"], r["output"], f"{r['agreement']:.4%}", str(r["n"]), "met" if r["met"] else "MISSED"]
            for r in checks["argmax"]]
    lines.append(_md_table(["graph", "backend", "output", "agreement", "positions", "target"], rows))
    tasks = [t for rs in index["tasks"].values() for r in rs for t in r.tasks]
    if tasks:
        lines += ["", "## Sampling (char-LM) and greedy decoding (seq2seq) agreement with torch FP32 (test split)", ""]
        lines.append(_md_table(["backend", "check", "agreement", "tokens", "details"],
                               [[t.backend, t.kind, f"{t.agreement:.4%}", str(t.total),
                                 json.dumps(dict(t.details), default=str)[:160]] for t in tasks]))
    lines += ["", f"## Latency stretch target: TRT FP16 <= {gc.LATENCY_TARGET} x torch-cuDNN FP16 (autocast, eager) at "
              "batch 1 and 32, LSTM/GRU models: " + _verdict([r["met"] for r in checks["latency"]], ctx.dry), ""]
    rows = [[r["graph"], r["backend"], str(r["batch"]), str(r["seq"]), _fmt(r["ms"], ".3f"), _fmt(r["torch_fp16_ms"], ".3f"),
             _fmt(r["torch_fp16_graph_ms"], ".3f"), _fmt(r["ratio"], ".2f"), "met" if r["met"] else "missed"]
            for r in checks["latency"]]
    lines.append(_md_table(["graph", "TRT row", "batch", "seq", "TRT ms", "torch fp16 ms", "torch fp16 graph ms", "ratio",
                            "target"], rows))
    prof = [(uid, rec) for uid, rec in sorted(ctx.state.records().items())
            if rec.get("kind") == "profile" and rec.get("layer_timing")]
    if prof:
        lines += ["", "## Where the TRT FP16 time goes (IProfiler, synchronous runs, mean of 10; top layers)", ""]
        rows = []
        for uid, rec in prof:
            for case, t in rec["layer_timing"].items():
                if not isinstance(t, dict) or "top" not in t:
                    continue
                top = "; ".join(f"{n[:48]} {ms:.3f} ms ({(share or 0):.0%})" for n, ms, share in t["top"][:4])
                rows.append([rec.get("graph") or uid, case, _fmt(t["sum_of_layers_ms"], ".3f"), str(t["layers"]), top])
        lines.append(_md_table(["graph", "case", "sum of layers ms", "layers", "top layers"], rows))
    lines += ["", "## Error versus timestep (worst relative L2 per timestep over the sweep golden's cases, up to 2048)", ""]
    rows = [[r["graph"], r["backend"], r["output"], str(r["steps"]),
             ", ".join(f"t={k}: {_fmt(v)}" for k, v in r["rel_l2_at"].items())] for r in checks["timestep"]]
    lines.append(_md_table(["graph", "backend", "output", "steps", "rel L2 at timestep"], rows))
    lines += ["", "## What the latency figures include", "",
              "- trt rows: `TensorRTRunner.run_prepared` = `execute_async_v3` on device-resident inputs/outputs (no "
              "host<->device copies), timed with CUDA events around the enqueued calls; `:graph` rows replay a CUDA "
              "graph of it. The profile whose opt shape is nearest is selected (profile 0 at batch 1).",
              "- torch rows: the checkpoint's module on CUDA, inputs already on the device, CUDA events on the current "
              "stream around the calls (eager rows therefore include Python launch gaps); `:fp16` = autocast FP16, "
              "TF32 off for FP32; `:graph` = one CUDA graph per input shape, replayed.",
              "- ort-cuda rows (when onnxruntime-gpu was carried): IOBinding with device buffers, host clock around "
              "`run_with_iobinding` + synchronisation; `:fp16` runs the FP16 ONNX (policy fp16).",
              "- Rows of one table come from two processes run back to back on the same GPU (torch/ort: Python 3.12; "
              "trt: the kit's Python 3.9): each ratio compares medians across them.", ""]
    return "\n".join(lines) + "\n"


def unit_counts(ctx: Context) -> Dict[str, Any]:
    only = ctx.args.models.split(",") if getattr(ctx.args, "models", None) else None
    variants = ctx.args.variants.split(",") if getattr(ctx.args, "variants", None) else None
    units = gc.plan_units(list(ctx.models.values()), variants, only)
    recs = ctx.state.records()
    counts: Dict[str, Any] = {"total": len(units), "done": 0, "failed": 0, "skipped": 0, "pending": 0,
                              "problems": [], "pending_ids": []}
    for u in units:
        rec = recs.get(u.id)
        status = rec.get("status") if rec else "pending"
        counts[status] = counts.get(status, 0) + 1
        if status in ("failed", "skipped"):
            counts["problems"].append((u.id, f"{status}: {rec.get('error')}"))
        elif status == "pending":
            counts["pending_ids"].append(u.id)
    return counts


def write_report(ctx: Context, out: Path, title: Optional[str] = None) -> Dict[str, Any]:
    """Merge everything; write gpu_report.{json,md,html}, gpu_summary.json and gpu_logs.tar.xz into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    title = title or ("rnndeploy GPU verification — " + ("DRY RUN (CPU stand-ins, not GPU results)" if ctx.dry
                                                           else "TensorRT vs torch-cuDNN vs ONNX Runtime"))
    results, index = combined_results(ctx)
    envs = {}
    for side in ("trt", "torch"):
        p = ctx.state.root / f"env-{side}.json"
        if p.is_file():
            envs[side] = json.loads(p.read_text())
    checks = target_checks(ctx, index)
    counts = unit_counts(ctx)
    md_rnndeploy = ctx.state.root / "report" / "rnndeploy.md"
    md_rnndeploy.parent.mkdir(parents=True, exist_ok=True)
    if results:
        from rnndeploy.report.schema import write_results

        merged_in = ctx.state.root / "report" / "combined.json"
        write_results(str(merged_in), results)
        cmd = [sys.executable, "-m", "rnndeploy", "report", str(merged_in), "-o", str(out / "gpu_report.html"),
               "--markdown", str(md_rnndeploy), "--json", str(out / "gpu_report.json"), "--title", title]
        ctx.state.command(" ".join(shlex.quote(c) for c in cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO),
                              env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
        (ctx.state.root / "logs" / "report.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            say(f"rnndeploy report failed: {proc.stderr.strip()[-500:]}")
    tests = checks_summary(ctx.state)
    summary = summary_markdown(ctx, checks, envs, counts, index, title, tests)
    commands = (ctx.state.root / "commands.txt").read_text() if (ctx.state.root / "commands.txt").is_file() else ""
    body = md_rnndeploy.read_text() if md_rnndeploy.is_file() else "(no results yet)\n"
    text = summary + "\n## Commands (as run, in order)\n\n```\n" + commands + "```\n\n" + body
    if ctx.dry:
        text = text.replace("# rnndeploy report", f"# rnndeploy report — {DRY_LABEL}", 1)
    (out / "gpu_report.md").write_text(text)
    doc = {"dry_run": ctx.dry, "title": title, "environment": envs, "prep": {k: ctx.doc.get(k) for k in
                                                                            ("created", "command", "versions", "sweep", "bytes")},
           "units": ctx.state.records(), "counts": {k: v for k, v in counts.items() if k != "problems"},
           "targets": checks, "tests": tests, "commands": commands.splitlines()}
    (out / "gpu_summary.json").write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    with tarfile.open(out / "gpu_logs.tar.xz", "w:xz") as tar:
        for sub in ("logs", "units", "results", "commands.txt", "env-trt.json", "env-torch.json"):
            p = ctx.state.root / sub
            if p.exists():
                tar.add(str(p), arcname=sub)
        for p in sorted((ctx.state.root / "engines").rglob("*.json")):
            tar.add(str(p), arcname=str(p.relative_to(ctx.state.root)))
    say(f"report: {out} ({counts['done']} of {counts['total']} units done)")
    return doc


# -- CLI -------------------------------------------------------------------------------------------------
def _context(args: Any, side: str) -> Context:
    deadline = args.deadline if getattr(args, "deadline", None) else None
    return Context(Path(args.prep), State(Path(args.state)), side, bool(getattr(args, "dry_run", False)), deadline, args)


def cmd_plan(args: Any) -> int:
    doc = gc.read_manifest(Path(args.prep))
    models = gc.models_of(doc)
    only = args.models.split(",") if args.models else None
    units = [u for u in gc.plan_units(models, None, only) if args.side in (None, "all", u.side)]
    planned: List[Dict[str, Any]] = []
    if args.side in ("trt", "all", None):
        from rnndeploy.engine.builder import BuildOptions, ShapeOptions, plan_build

        graphs = {g.key: g for m in models for g in m.graphs}
        for u in units:
            if u.kind != "build":
                continue
            info = gc.ENGINE_VARIANTS[u.variant]
            g = graphs[u.graph_key]
            opts = BuildOptions(fp16=info["precision"] == "fp16", policy=info["policy"], hoist=bool(info.get("hoist")),
                                shapes=ShapeOptions(profiles=gc.PROFILES))
            plan = plan_build(str(Path(args.prep) / g.onnx), opts)
            planned.append({"unit": u.id, "profiles": [p.describe() for p in plan.profiles], "fp16": plan.fp16,
                            "policy": plan.policy, "kept_fp32": len(plan.kept_fp32),
                            "hoisted": len((plan.rewrite or {}).get("rewritten", {})) if plan.rewrite else None})
    if args.json:
        print(json.dumps({"units": [u.to_dict() for u in units], "engines": planned}, indent=1))
        return 0
    for u in units:
        print(f"tier {u.tier}  {u.side:5s}  {u.id}")
    for p in planned:
        print(f"planned {p['unit']}: {p['profiles'][0]} (+{len(p['profiles']) - 1} more); fp16={p['fp16']} "
              f"policy={p['policy']} kept_fp32={p['kept_fp32']} hoisted={p['hoisted']}")
    print(f"{len(units)} units; {len(planned)} engines planned", file=sys.stderr)
    return 0


def _install_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM (the call's time limit)")

    signal.signal(signal.SIGTERM, handler)


def cmd_run(args: Any) -> int:
    _install_sigterm()
    ctx = _context(args, args.side)
    if not ctx.dry:
        problems = gc.verify_manifest(ctx.prep, ctx.doc) if args.verify_prep else []
        if problems:
            say(f"prepared folder {ctx.prep} is not intact: {problems[:5]}")
            return 2
    env_path = ctx.state.root / f"env-{args.side}.json"
    if not env_path.is_file():
        env_path.write_text(json.dumps(capture_env(args.side, ctx.dry), indent=1, sort_keys=True, default=str))
    counts = run_side(ctx, args.max_tier, args.models.split(",") if args.models else None,
                      args.variants.split(",") if args.variants else None, args.retry_failed)
    say(f"{args.side} side, tiers <= {args.max_tier}: {counts}")
    return 0


def cmd_report(args: Any) -> int:
    ctx = _context(args, "report")
    write_report(ctx, Path(args.out), args.title)
    return 0


def cmd_dry_run(args: Any) -> int:
    """Both sides in this process with CPU stand-ins, then the report (tests and development)."""
    args.dry_run = True
    state = State(Path(args.state))
    for side in ("trt", "torch"):
        ctx = Context(Path(args.prep), state, side, True, None, args)
        env_path = state.root / f"env-{side}.json"
        if not env_path.is_file():
            env_path.write_text(json.dumps(capture_env(side, True), indent=1, sort_keys=True, default=str))
        say(f"{side}: {run_side(ctx, 99, args.models.split(',') if args.models else None, args.variants.split(',') if args.variants else None)}")
    write_report(Context(Path(args.prep), state, "report", True, None, args), Path(args.out), args.title)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: Any, state: bool = True) -> None:
        p.add_argument("--prep", default=str(REPO / ".gpuprep"), help="folder made by gpu_prepare.py")
        if state:
            p.add_argument("--state", default="/tmp/gpuverify/state", help="state folder (resumable)")
        p.add_argument("--models", help="comma-separated model names (default: all)")
        p.add_argument("--title", default=None)
        p.add_argument("--min-time", type=float, default=0.3, help="seconds of timed calls per bench configuration")
        p.add_argument("--max-samples", type=int, default=200, help="at most this many timed calls per configuration")
        p.add_argument("--build-timeout", type=float, default=240.0, help="seconds before a build counts as failed")
        p.add_argument("--variants", help="engine variants to run (default all: fp16,fp32,fp16-keep,fp16-hoist)")

    p = sub.add_parser("plan", help="list the units; plan every engine (no GPU needed)")
    common(p, state=False)
    p.add_argument("--side", choices=["trt", "torch", "all"], default="all")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("run", help="run pending units of one side until the deadline")
    common(p)
    p.add_argument("--side", choices=["trt", "torch"], required=True)
    p.add_argument("--deadline", type=float, help="epoch seconds: start no unit that would not finish by then")
    p.add_argument("--max-tier", type=int, default=99)
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="CPU stand-ins (see the module docstring)")
    p.add_argument("--verify-prep", action="store_true", help="check the prepared folder's sha256 first")
    p = sub.add_parser("report", help="merge results, check targets, write the report files")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("dry-run", help="both sides with CPU stand-ins in this process, then the report")
    common(p)
    p.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    return {"plan": cmd_plan, "run": cmd_run, "report": cmd_report, "dry-run": cmd_dry_run}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
