"""What each campaign unit does: engine builds, parity, latency, task agreement, layer timing.

Two sides, one per interpreter:

* ``trt``: the trt86 kit's Python 3.9 (TensorRT 8.6, numpy 1.26, no torch): engines built with
  ``rnndeploy build-engine`` in a subprocess (so a crash of the builder costs one unit), parity
  of each engine against the torch FP32 goldens, latency with CUDA events on device-resident
  I/O (FP16 also replayed as a CUDA graph), char-LM sampling and seq2seq decoding agreement
  with the prepared torch references, per-layer times from TensorRT's IProfiler.
* ``torch``: a Python with torch on CUDA: torch-cuDNN FP32 and FP16 (autocast) parity against
  the same goldens; latency eager and as CUDA graphs; ort-cuda rows when onnxruntime-gpu is
  there.

``dry`` runs the same steps on a CPU box with stand-ins (ONNX Runtime CPU for TensorRT, torch
CPU for CUDA); every row is labelled as a stand-in and every page says DRY RUN. Without
``dry`` and without a GPU, every GPU step fails with its "no CUDA GPU" error line: that is the
rehearsal of the real procedure.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rnndeploy.campaign import plan as cp
from rnndeploy.campaign.schedule import DeadlineReached, State, error_line

DRY_LABEL = "DRY RUN on a CPU box (stand-ins: ONNX Runtime CPU for TensorRT, torch CPU for CUDA) — NOT GPU results"
# Error lines that say "this machine has no GPU" (a rehearsal expects exactly these failures).
NO_GPU_MARKERS = ("no CUDA GPU", "cannot see a CUDA device", "needs a CUDA GPU", "CUDA driver version is insufficient",
                  "no CUDA-capable device", "cannot load the CUDA runtime", "no usable GPU")


def package_root() -> Path:
    """The folder holding the ``rnndeploy`` package (put on PYTHONPATH of child processes)."""
    return Path(__file__).resolve().parents[2]


def child_env() -> Dict[str, str]:
    """This process's environment with the rnndeploy package first on PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(package_root()), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def say(msg: str) -> None:
    print(f"[campaign] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    """Knobs of a campaign run. ``min_time``: seconds of timed calls per bench configuration;
    ``max_samples``: timed calls at most per configuration; ``build_timeout``: seconds before a
    build counts as failed; ``models`` / ``variants``: restrict the units (None: all)."""

    min_time: float = 0.3
    max_samples: int = 200
    build_timeout: float = 240.0
    models: Optional[Tuple[str, ...]] = None
    variants: Optional[Tuple[str, ...]] = None


class Context:
    """What every unit needs: the prepared folder, the state, the side, dry-run or not."""

    def __init__(self, prep: Path, state: Optional[State], side: str, dry: bool, deadline: Optional[float] = None,
                 settings: Settings = Settings(), command: Optional[str] = None):
        self.prep = Path(prep).resolve()
        self.doc = cp.read_manifest(self.prep)
        self.models = {m.name: m for m in cp.models_of(self.doc)}
        self.graphs = {g.key: g for m in self.models.values() for g in m.graphs}
        self.state = state
        self.side = side
        self.dry = dry
        self.deadline = deadline
        self.settings = settings
        self.driver_command = command or " ".join([shlex.quote(sys.executable)] + [shlex.quote(a) for a in sys.argv])

    def path(self, rel: Optional[str]) -> Optional[str]:
        return None if rel is None else str(self.prep / rel)

    def units(self, side: Optional[str] = None, max_tier: int = 99) -> List[cp.Unit]:
        """This run's units (restricted by the settings), of ``side`` when given, up to ``max_tier``."""
        units = cp.plan_units(list(self.models.values()), self.settings.variants, self.settings.models)
        return [u for u in units if (side is None or u.side == side) and u.tier <= max_tier]

    def source(self, g: cp.GraphPrep, onnx: Optional[str] = None, engine: Optional[str] = None,
               checkpoint: bool = False) -> Any:
        from rnndeploy.backends.source import resolve_source

        m = self.models[g.model]
        src = resolve_source(onnx=self.path(g.onnx), auto_checkpoint=False,
                             checkpoint=self.path(m.checkpoint) if checkpoint else None)
        return replace(src, onnx=onnx or src.onnx, engine=engine)

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.time()

    @property
    def bench_settings(self) -> Dict[str, Any]:
        if self.dry:
            return {"batches": (1, 2), "seqs": (4, 16), "warmup": 2, "iters": 5, "min_time": None, "max_samples": 5}
        return {"batches": cp.BENCH_BATCHES, "seqs": cp.BENCH_SEQS, "warmup": 10, "iters": None,
                "min_time": self.settings.min_time, "max_samples": self.settings.max_samples}

    def bench_config(self, labels: Sequence[str], baseline: Optional[str] = None) -> Any:
        from rnndeploy.bench.sweep import BenchConfig

        s = self.bench_settings
        return BenchConfig(backends=tuple(labels), batches=tuple(s["batches"]), seqs=tuple(s["seqs"]),
                           warmup=s["warmup"], iters=s["iters"], min_time=s["min_time"], max_samples=s["max_samples"],
                           torch_row=False, baseline=baseline, show_progress=False)


def _labelled(runner: Any, label: str) -> Any:
    """The runner, reporting itself as ``label`` in rows and cases (e.g. "trt:fp16-keep")."""
    runner.label = label
    return runner


# -- runner factories ------------------------------------------------------------------------------
def trt_label(variant: str, dry: bool, graph: bool = False) -> str:
    base = f"trt:{variant}" + (":graph" if graph else "")
    return f"ort-cpu(dry-run stand-in for {base})" if dry else base


def engine_runner(ctx: Context, g: cp.GraphPrep, variant: str, label: str, cuda_graph: bool = False) -> Callable[..., Any]:
    """A runner factory for one engine variant, reporting itself as ``label``. Dry run: ONNX
    Runtime CPU on the FP32 ONNX or the FP16 ONNX the build step wrote (a stand-in)."""
    precision = cp.ENGINE_VARIANTS[variant]["precision"]

    def make(name: str, source: Any, options: Any) -> Any:
        from rnndeploy.backends import RunnerOptions

        if ctx.dry:
            from rnndeploy.backends.onnxrt import OrtCpuRunner, onnx_file_precision

            stand_in = str(ctx.state.engine(g.key, variant, True))
            path = stand_in if os.path.exists(stand_in) else ctx.path(g.onnx)
            runner = OrtCpuRunner(replace(source, onnx=path), RunnerOptions(precision=onnx_file_precision(path), threads=1))
        else:
            from rnndeploy.backends.tensorrt import TensorRTRunner

            plan = str(ctx.state.engine(g.key, variant, False))
            runner = TensorRTRunner(replace(source, engine=plan),
                                    RunnerOptions(precision=precision, device="cuda", cuda_graph=cuda_graph))
        return _labelled(runner, label)

    return make


def torch_labels(ctx: Context) -> List[str]:
    return ["torch", "torch:fp16"] if ctx.dry else ["torch", "torch:graph", "torch:fp16", "torch:fp16:graph"]


def torch_factory(ctx: Context, g: cp.GraphPrep) -> Callable[..., Any]:
    """Torch rows on CUDA (dry run: CPU) plus ort-cuda rows; labels name what runs."""
    from rnndeploy.backends import RunnerOptions, create_runner

    def make(name: str, source: Any, options: Any) -> Any:
        base = name.split("(")[0]
        if base.startswith("ort-"):
            fp16 = ":fp16" in base
            path = ctx.path(g.fp16_onnx.get("fp16")) if fp16 else source.onnx
            opts = RunnerOptions(precision="fp16" if fp16 else "fp32", device="cpu" if ctx.dry else "cuda",
                                 cuda_graph=":graph" in base, threads=1 if ctx.dry else None)
            return _labelled(create_runner("ort-cpu" if ctx.dry else "ort-cuda", replace(source, onnx=path), opts), name)
        opts = RunnerOptions(device="cpu" if ctx.dry else "cuda", threads=1 if ctx.dry else None)
        return _labelled(create_runner(base, source, opts), name)

    return make


def ort_labels(ctx: Any, g: cp.GraphPrep) -> Tuple[List[str], Optional[str]]:
    """ort-cuda rows when onnxruntime has the CUDA provider (dry run: none), and why not otherwise."""
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
def run_unit(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    """Do one unit; returns its record (``status`` and details)."""
    fn = {"build": do_build, "parity": do_parity, "bench": do_bench, "tasks": do_tasks, "profile": do_profile,
          "parity-torch": do_parity_torch, "bench-torch": do_bench_torch, "tasks-torch": do_tasks_torch}[u.kind]
    return fn(ctx, u)


def build_command(ctx: Context, g: cp.GraphPrep, variant: str, out: Path, cache: Path) -> List[str]:
    """The ``rnndeploy build-engine`` command line of one engine variant (dry run: plan it and
    write its FP16 ONNX instead)."""
    info = cp.ENGINE_VARIANTS[variant]
    cmd = [sys.executable, "-m", "rnndeploy", "build-engine", ctx.path(g.onnx)] + list(info["args"]) \
        + cp.profile_args() + ["--timing-cache", str(cache), "--no-progress", "--json"]
    if os.environ.get("TRTKIT_ROOT"):
        # the kit's cuBLAS/cuDNN are stubs: say so rather than rely on build-engine's detection of them
        # (that detection is what the kit's pytest run checks; here a wrong guess would waste a build)
        cmd.append("--no-stub-tactics")
    if ctx.dry:
        return cmd + (["--write-fp16-onnx", str(out)] if info["precision"] == "fp16" else ["--dry-run"])
    return cmd + ["-o", str(out)]


def do_build(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    g = ctx.graphs[u.graph_key]
    out = ctx.state.engine(g.key, u.variant, ctx.dry)
    cache = ctx.state.root / "timing-cache" / f"{g.model}.cache"
    cold = not cache.exists()
    cmd = build_command(ctx, g, u.variant, out, cache)
    limit = min(ctx.settings.build_timeout, max(ctx.remaining(), 1.0))
    line = " ".join(shlex.quote(c) for c in cmd)
    ctx.state.command(line)
    log = ctx.state.root / "logs" / f"{cp.slug(u.id)}.log"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=child_env())
    except subprocess.TimeoutExpired as exc:
        log.write_text(f"$ {line}\n(killed after {limit:.0f} s)\n{exc.stdout or ''}\n{exc.stderr or ''}")
        if limit < ctx.settings.build_timeout:
            raise DeadlineReached(f"{u.id} cut by the deadline after {limit:.0f} s") from None
        return {"status": "failed", "error": f"build exceeded {ctx.settings.build_timeout:.0f} s (killed)"}
    wall = time.perf_counter() - t0
    log.write_text(f"$ {line}\nexit {proc.returncode} after {wall:.1f} s\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    rec: Dict[str, Any] = {"command": line, "wall_s": round(wall, 2), "exit": proc.returncode,
                           "cold_timing_cache": cold, "variant": u.variant}
    if proc.returncode != 0:
        tail = [x for x in proc.stderr.strip().splitlines() if x.strip()][-3:]
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


def _write(ctx: Context, u: cp.Unit, results: Sequence[Any]) -> str:
    from rnndeploy.report.schema import write_results

    path = ctx.state.result_path(u.id)
    write_results(str(path), list(results))
    return str(path)


def _parity_runs(ctx: Context, u: cp.Unit, g: cp.GraphPrep, source: Any, labels: Sequence[str],
                 factory: Callable[..., Any]) -> Dict[str, Any]:
    """Parity of ``labels`` against the sweep golden and (classifiers) the test-split golden."""
    from rnndeploy.parity.harness import ParityConfig, run_parity

    results = []
    summary: Dict[str, Any] = {}
    for which, rel, threshold in (("sweep", g.golden, None), ("test", g.golden_test, cp.ARGMAX_TARGET)):
        if not rel:
            continue
        cfg = ParityConfig(backends=tuple(labels), golden=ctx.path(rel), min_agreement=threshold, show_progress=False)
        res = run_parity(source, cfg, command=f"{ctx.driver_command}  # unit {u.id}: {which} golden", runner_factory=factory)
        res = replace(res, model={**res.model, "golden": which,
                                  "name": f"{res.model.get('name')}" + (" [test split]" if which == "test" else "")})
        results.append(res)
        summary[which] = {"passed": res.passed, "failures": res.failures()[:5]}
    return {"status": "done", "result": _write(ctx, u, results), "parity": summary}


def do_parity(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    g = ctx.graphs[u.graph_key]
    label = trt_label(u.variant, ctx.dry)
    return _parity_runs(ctx, u, g, ctx.source(g), [label], engine_runner(ctx, g, u.variant, label))


def do_bench(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    from rnndeploy.bench.sweep import run_bench

    g = ctx.graphs[u.graph_key]
    factories = {trt_label(u.variant, ctx.dry): engine_runner(ctx, g, u.variant, trt_label(u.variant, ctx.dry))}
    if u.variant == "fp16" and not ctx.dry:
        graph_label = trt_label(u.variant, ctx.dry, graph=True)
        factories[graph_label] = engine_runner(ctx, g, u.variant, graph_label, cuda_graph=True)
    res = run_bench(ctx.source(g), ctx.bench_config(list(factories)), command=f"{ctx.driver_command}  # unit {u.id}",
                    runner_factory=lambda name, src, opts: factories[name](name, src, opts))
    return {"status": "done", "result": _write(ctx, u, [res])}


def _task_result(ctx: Context, m: cp.ModelPrep, task: Mapping[str, Any], agreements: List[Any], backends: Dict[str, Any],
                 warnings: List[str], u: cp.Unit) -> Any:
    from rnndeploy.parity.results import ParityResult
    from rnndeploy.report.machine import describe_machine

    return ParityResult(
        model={"name": f"{m.name} [{task['kind']} agreement, test split]", "family": m.family,
               "graph": ",".join(task.get("graphs") or [task.get("graph", "model")])},
        reference={"backend": "torch", "source": "prepared reference (torch FP32, CPU, rnndeploy.campaign.prepare)",
                   "path": ctx.path(task["file"])},
        backends=backends, seed=task.get("seed"), cases=(), tasks=tuple(agreements), warnings=tuple(warnings),
        machine=describe_machine(), command=f"{ctx.driver_command}  # unit {u.id}",
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _agreements(ctx: Context, m: cp.ModelPrep, runners_for: Callable[[List[cp.GraphPrep], str], Any],
                labels: Sequence[str], u: cp.Unit) -> Dict[str, Any]:
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
            warnings.append(f"{label}: not run ({error_line(exc, 300)})")
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
                for start in range(0, n, cp.MAX_BATCH):
                    part = {k: v[start:start + cp.MAX_BATCH] for k, v in feed.items()}
                    got_seqs += greedy_tokens(runners[0], runners[1], part, int(task["bos_id"]), int(task["eos_id"]),
                                              int(task["max_len"]))
                ref = [tuple(int(t) for t in row if t >= 0) for row in data["tokens"]]
                agree, exact, total = sequence_agreement(ref, got_seqs)
                agreements.append(TaskAgreement("decoding", label, "", agree, total,
                                                {"sequences": n, "exact_sequences": exact, "max_len": task["max_len"]}))
        except Exception as exc:  # a runtime failing the loop is a finding, not a crash of the whole run
            agreements.append(TaskAgreement(task["kind"], label, "", 0.0, 0, {"error": error_line(exc, 300)}, 1.0))
        finally:
            for r in runners:
                r.deactivate()
    res = _task_result(ctx, m, task, agreements, backends, warnings, u)
    return {"status": "done", "result": _write(ctx, u, [res]),
            "agreements": {a.backend: a.agreement for a in agreements}}


def do_tasks(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    m = ctx.models[u.model]
    default = [g for g in m.graphs if g.form == "default"]
    variants = [v for v in cp.FIRST_VARIANTS if all(ctx.state.status(f"trt.build.{g.key}.{v}") == "done" for g in default)]

    def runners_for(graphs: List[cp.GraphPrep], label: str) -> List[Any]:
        variant = next(v for v in variants if trt_label(v, ctx.dry) == label)
        return [engine_runner(ctx, g, variant, label)(label, ctx.source(g), None) for g in graphs]

    return _agreements(ctx, m, runners_for, [trt_label(v, ctx.dry) for v in variants], u)


def do_profile(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
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
            (ctx.state.root / "logs" / f"{cp.slug(u.id)}.inspector.json").write_text(info)
        except Exception as exc:
            out["inspector_error"] = error_line(exc)
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


def _probe(factory: Callable[..., Any], label: str, source: Any) -> Optional[str]:
    """None when ``label`` can prepare a run at batch 1, seq 16 (e.g. a CUDA graph captures), else why not."""
    from rnndeploy.inputs import generate_inputs, sizes_for

    runner = factory(label, source, None)
    try:
        runner.activate()
        runner.prepare(generate_inputs(source.graph_spec, sizes_for(source.graph_spec, 1, 16), 0))
        return None
    except Exception as exc:
        return error_line(exc, 300)
    finally:
        runner.deactivate()


def _require_torch_device(ctx: Context) -> None:
    """Fail a torch unit at once when torch sees no CUDA device (a rehearsal on a CPU box then
    records "no CUDA GPU" for it, instead of a result full of per-backend errors)."""
    if ctx.dry:
        return
    import torch

    from rnndeploy.errors import DeviceError

    if not torch.cuda.is_available():
        raise DeviceError(f"no CUDA GPU: torch {torch.__version__} sees no CUDA device",
                          "run the torch side on the GPU machine")


def _torch_side_rows(ctx: Context, g: cp.GraphPrep, labels: Sequence[str]) -> Tuple[Any, Any, List[str], List[str]]:
    """(source, factory, rows that can run, notes on the rows dropped): ``labels`` plus the ort-cuda
    rows when onnxruntime-gpu is there; a CUDA-graph or ort row that cannot prepare a run at batch 1,
    seq 16 (e.g. a capture error) is dropped with its error line, the others are kept."""
    _require_torch_device(ctx)
    source = ctx.source(g, checkpoint=True)
    factory = torch_factory(ctx, g)
    ort, why = ort_labels(ctx, g)
    kept, notes = [], ([why] if why else [])
    for label in list(labels) + ort:
        problem = _probe(factory, label, source) if ("graph" in label or label.startswith("ort-")) else None
        if problem:
            notes.append(f"{label}: " + (f"CUDA graph does not apply: {problem}" if "graph" in label
                                          else f"not run: {problem}"))
        else:
            kept.append(label)
    return source, factory, kept, notes


def do_parity_torch(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    g = ctx.graphs[u.graph_key]
    source, factory, labels, notes = _torch_side_rows(ctx, g, ["torch", "torch:fp16"])
    rec = _parity_runs(ctx, u, g, source, labels, factory)
    if notes:
        rec["note"] = "; ".join(notes)
    return rec


def do_bench_torch(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    from rnndeploy.bench.sweep import run_bench

    g = ctx.graphs[u.graph_key]
    stand_in = ["ort-cpu(dry-run stand-in for ort-cuda)"] if ctx.dry else []
    source, factory, labels, notes = _torch_side_rows(ctx, g, torch_labels(ctx) + stand_in)
    cfg = ctx.bench_config(labels, baseline="torch:fp16" if "torch:fp16" in labels else None)
    res = run_bench(source, cfg, command=f"{ctx.driver_command}  # unit {u.id}", runner_factory=factory)
    if notes:
        res = replace(res, warnings=tuple(res.warnings) + tuple(notes))
    return {"status": "done", "result": _write(ctx, u, [res]), "notes": notes}


def do_tasks_torch(ctx: Context, u: cp.Unit) -> Dict[str, Any]:
    from rnndeploy.backends import RunnerOptions, create_runner

    _require_torch_device(ctx)
    m = ctx.models[u.model]

    def runners_for(graphs: List[cp.GraphPrep], label: str) -> List[Any]:
        opts = RunnerOptions(device="cpu" if ctx.dry else "cuda", threads=1 if ctx.dry else None)
        return [create_runner(label, ctx.source(g, checkpoint=True), opts) for g in graphs]

    return _agreements(ctx, m, runners_for, ["torch"] if ctx.dry else ["torch", "torch:fp16"], u)


def failed_for_want_of_gpu(rec: Mapping[str, Any]) -> bool:
    """True when a failed unit's error line says this machine has no (usable) GPU."""
    error = str(rec.get("error") or "").lower()
    return any(m.lower() in error for m in NO_GPU_MARKERS)
