"""Prepare everything the GPU verification (benchmarks/gpu_verify.py) needs, on the CPU box.

For every zoo model (every recipe in recipes/ and each of its variants):

1. train it with the recipe's own budget into PREP/models/NAME/ckpt (an intact checkpoint
   already there is reused; ``--retrain`` forces training);
2. export the validated FP32 ONNX (a seq2seq model: encoder + decoder_step), plus the
   streaming form (``--with-state``) of models whose recipe exports without state;
3. write the FP16 ONNX files of both precision policies (``fp16``, ``fp16-keep-recurrence``)
   with ``rnndeploy build-engine --write-fp16-onnx``'s library call, and check each against
   the FP32 file on ONNX Runtime CPU. TensorRT 8.6 does not need them (it builds FP16 from
   the FP32 file with the builder flag); they serve ort-cuda FP16 rows, TensorRT >= 10's
   strongly typed path, and the CPU dry run;
4. torch FP32 goldens in rnndeploy's golden format (``parity --save-golden``) at batch
   1/32/256 x seq 16/128/512 plus long sequences (1024, 2048) for error versus timestep,
   within a byte budget per graph (the cases cut are listed in the manifest);
5. for classifiers and the char-LM, a second golden holding the real test split (chunks of at
   most 256 rows), for argmax agreement; the char-LM's sampled tokens and the seq2seq model's
   greedy decodes of the whole test split, made by torch, for sampling / decoding agreement;
6. PREP/manifest.json: what was made, the cuts, and the sha256 of every file.

The folder travels to the GPU machine beside the source tree (keep it well under ~56 MiB):

    .venv/bin/python benchmarks/gpu_prepare.py --out .gpuprep        (~3 minutes on 2 cores)

``--models sine,sine:gru`` restricts the models; ``--quick`` makes a tiny folder for tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_common as gc  # noqa: E402

# Tier of each model in the GPU run: the first LSTM gives fast feedback; the other LSTM/GRU models
# carry the targets; SimpleRNN, the sequence-output variant and seq2seq come after.
TIER_1 = {"sine-lstm"}
TIER_3_CELLS = {"rnn_tanh", "rnn_relu"}
DTYPE_BYTES = {"float32": 4, "float16": 2, "int64": 8, "int32": 4, "bool": 1}


def log(msg: str) -> None:
    print(f"[gpu_prepare] {msg}", file=sys.stderr, flush=True)


def zoo_models(only: Optional[Sequence[str]]) -> List[Tuple[str, Optional[str]]]:
    """(recipe, variant) for every recipe and variant; ``only`` holds "recipe" or "recipe:variant"."""
    from rnndeploy.recipe import list_recipes

    out: List[Tuple[str, Optional[str]]] = []
    for r in list_recipes():
        for v in [None] + list(r.variants):
            label = r.name if v is None else f"{r.name}:{v}"
            if only and label not in only and not (v is None and r.name in only):
                continue
            out.append((r.name, v))
    return out


def case_bytes(graph: Any, batch: int, seq: int) -> int:
    """Bytes of one golden case (inputs + outputs) of ``graph`` (a GraphSpec) at (batch, seq)."""
    from rnndeploy.inputs import sizes_for

    sizes = sizes_for(graph, batch, seq)
    total = 0
    for t in graph.inputs + graph.outputs:
        total += int(np.prod(t.shape_for(sizes))) * DTYPE_BYTES[t.dtype]
    return total


def choose_cases(graph: Any, cases: Sequence[Tuple[int, int]], budget: int) -> Tuple[List[Tuple[int, int]], List[str]]:
    """Cases in priority order while they fit in ``budget`` bytes; the rest are reported as cut."""
    kept: List[Tuple[int, int]] = []
    cut: List[str] = []
    used = 0
    for b, s in cases:
        n = case_bytes(graph, b, s)
        if used + n <= budget:
            kept.append((b, s))
            used += n
        else:
            cut.append(f"b{b}-s{s} ({n / 2**20:.2f} MiB)")
    return kept, cut


# -- steps ------------------------------------------------------------------------------------------
def train_or_reuse(recipe: Any, ckpt: Path, retrain: bool) -> Dict[str, Any]:
    from rnndeploy.checkpoint import verify_checkpoint
    from rnndeploy.train import train_recipe

    if ckpt.is_dir() and not retrain:
        try:
            verify_checkpoint(ckpt)
            saved = json.loads((ckpt / "recipe.json").read_text()) if (ckpt / "recipe.json").is_file() else {}
            if saved.get("model") == recipe.model and saved.get("train") == recipe.train:
                metrics = json.loads((ckpt / "metrics.json").read_text()) if (ckpt / "metrics.json").is_file() else {}
                q = metrics.get("quality") or {}
                text = (f"quality {'PASSED' if q.get('passed') else 'MISSED'}: {q.get('split')} {q.get('metric')} = "
                        f"{q.get('value'):.6g} (bar {q.get('bound')})") if q.get("metric") else "quality unknown"
                return {"reused": True, "quality": text, "passed": q.get("passed")}
            log(f"{ckpt}: recipe changed since it was trained; retraining")
        except Exception as exc:  # an altered or partial checkpoint is simply retrained
            log(f"{ckpt}: not reusable ({type(exc).__name__}: {exc}); retraining")
    t0 = time.perf_counter()
    result = train_recipe(recipe, str(ckpt), show_progress=False)
    return {"reused": False, "seconds": round(time.perf_counter() - t0, 1), "quality": result.quality.describe(),
            "passed": bool(result.quality.passed)}


def export_graphs(ckpt: Path, mdir: Path, name: str, with_state: Optional[bool]) -> Dict[str, str]:
    """{graph: onnx path} of a validated export (``with_state`` None: the recipe's form)."""
    from rnndeploy.export import export_checkpoint

    suffix = ".stream" if with_state else ""
    out = mdir / f"{name}{suffix}.onnx"
    result = export_checkpoint(str(ckpt), str(out), with_state=with_state)
    return dict(result.paths)


def write_fp16(onnx_path: str, out_dir: Path, graph_key: str) -> Tuple[Dict[str, str], Dict[str, Any]]:
    """FP16 ONNX of both policies (what `build-engine --fp16 --policy P --write-fp16-onnx F` writes)."""
    from rnndeploy.engine.builder import BuildOptions, check_fp16_onnx, plan_build, write_fp16_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, str] = {}
    checks: Dict[str, Any] = {}
    for policy in ("fp16", "fp16-keep-recurrence"):
        plan = plan_build(onnx_path, BuildOptions(fp16=True, policy=policy))
        path = out_dir / f"{graph_key}.{policy}.onnx"
        report = write_fp16_onnx(plan, str(path))
        rows = check_fp16_onnx(plan, str(path))
        paths[policy] = str(path)
        checks[policy] = {"summary": report.summary(), "vs_fp32_on_ort_cpu": rows}
    hoisted = plan_build(onnx_path, BuildOptions(fp16=True, policy="fp16", hoist=True)).rewrite
    checks["hoist_input_projection"] = hoisted
    return paths, checks


def save_sweep_golden(source: Any, path: Path, cases: List[Tuple[int, int]]) -> None:
    from rnndeploy.backends import RunnerOptions
    from rnndeploy.parity.harness import ParityConfig, run_parity

    cfg = ParityConfig(backends=(), reference="torch", shapes=tuple(cases), seed=0,
                       reference_options=RunnerOptions(device="cpu"), save_golden=str(path), show_progress=False)
    run_parity(source, cfg, command="benchmarks/gpu_prepare.py (torch FP32 golden)")


def save_test_golden(source: Any, path: Path, limit_bytes: int) -> Dict[str, Any]:
    """The test split as golden cases of <= MAX_BATCH rows each, torch FP32 outputs."""
    from rnndeploy.backends import RunnerOptions, create_runner
    from rnndeploy.backends.source import model_hashes
    from rnndeploy.data.feeds import dataset_for_spec, spec_feeds
    from rnndeploy.inputs import Case, infer_sizes
    from rnndeploy.parity.golden import save_golden
    from rnndeploy.report.machine import package_versions

    graph = source.graph_spec
    ds = dataset_for_spec(source.spec)
    feed = spec_feeds(ds, graph, "test")
    n = len(next(iter(feed.values())))
    row_bytes = 0
    for t in graph.inputs + graph.outputs:
        sizes = {"batch": 1, **{d: int(feed[t2.name].shape[i]) for t2 in graph.inputs if t2.name in feed
                                for i, d in enumerate(t2.dims) if isinstance(d, str) and d != "batch"}}
        row_bytes += int(np.prod(t.shape_for(sizes))) * DTYPE_BYTES[t.dtype]
    rows = min(n, max(1, limit_bytes // max(row_bytes, 1)))
    cases: List[Any] = []
    for i, start in enumerate(range(0, rows, gc.MAX_BATCH)):
        stop = min(rows, start + gc.MAX_BATCH)
        part = {k: np.ascontiguousarray(v[start:stop]) for k, v in feed.items()}
        for t in graph.inputs:  # streaming form: states start at zero, as runtimes do without them
            if t.name not in part:
                sizes = infer_sizes(graph, part)
                part[t.name] = np.zeros(t.shape_for(sizes), dtype=t.dtype)
        cases.append(Case(f"test-{i}", infer_sizes(graph, part), {t.name: part[t.name] for t in graph.inputs}))
    outputs = []
    with create_runner("torch", source, RunnerOptions(device="cpu")) as runner:
        for c in cases:
            outputs.append(runner.infer(c.inputs))
        desc = runner.describe().to_dict()
    save_golden(str(path), source.spec, source.graph, source.with_state, cases, outputs,
                {"backend": "torch", "description": desc}, -1, model_hashes(source), package_versions())
    return {"rows": rows, "of": n, "cases": len(cases)}


def task_references(model_name: str, family: str, sources: Dict[str, Any], out: Path, quick: bool) -> Optional[Dict[str, Any]]:
    """torch FP32 sampling (char-LM) or greedy decoding (seq2seq) of the test split, as references."""
    from rnndeploy.backends import RunnerOptions, create_runner
    from rnndeploy.data.feeds import dataset_for_spec, spec_feeds
    from rnndeploy.parity.task import greedy_tokens, sample_tokens

    if family == "charlm":
        src = sources["model"]
        feed = spec_feeds(dataset_for_spec(src.spec), src.graph_spec, "test")
        tokens = feed[next(t.name for t in src.graph_spec.inputs if t.role == "tokens")]
        prompt = np.ascontiguousarray(tokens[: 4 if quick else 16, :8]).astype(np.int64)
        steps, seed = (8 if quick else 32), 0
        with create_runner("torch", src, RunnerOptions(device="cpu")) as r:
            ref = sample_tokens(r, prompt, steps, seed, 1.0)
        np.savez(out / "sampling.npz", prompt=prompt, tokens=ref)
        return {"kind": "sampling", "file": "sampling.npz", "graph": "model", "with_state": src.with_state,
                "steps": steps, "seed": seed, "temperature": 1.0, "rows": int(prompt.shape[0])}
    if family == "seq2seq":
        enc, dec = sources["encoder"], sources["decoder_step"]
        feed = spec_feeds(dataset_for_spec(enc.spec), enc.graph_spec, "test", limit=32 if quick else None)
        bos, eos = int(enc.spec.attrs["bos_id"]), int(enc.spec.attrs["eos_id"])
        max_len = int(enc.spec.attrs.get("max_decode_len") or 32)
        seqs: List[Tuple[int, ...]] = []
        n = len(next(iter(feed.values())))
        with create_runner("torch", enc, RunnerOptions(device="cpu")) as e, \
                create_runner("torch", dec, RunnerOptions(device="cpu")) as d:
            for start in range(0, n, gc.MAX_BATCH):
                part = {k: v[start:start + gc.MAX_BATCH] for k, v in feed.items()}
                seqs += greedy_tokens(e, d, part, bos, eos, max_len)
        width = max([len(s) for s in seqs] + [1])
        padded = np.full((len(seqs), width), -1, dtype=np.int64)
        for i, s in enumerate(seqs):
            padded[i, : len(s)] = s
        np.savez(out / "decoding.npz", tokens=padded, **{k: np.ascontiguousarray(v) for k, v in feed.items()})
        return {"kind": "decoding", "file": "decoding.npz", "graphs": ["encoder", "decoder_step"], "bos_id": bos,
                "eos_id": eos, "max_len": max_len, "rows": len(seqs)}
    return None


# -- one model --------------------------------------------------------------------------------------
def prepare_model(recipe_name: str, variant: Optional[str], root: Path, args: Any, seen: Dict[str, str]) -> Optional[gc.ModelPrep]:
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.recipe import load_recipe

    overrides = [f"train.epochs={args.epochs}"] if args.epochs else []
    recipe = load_recipe(recipe_name, variant, overrides=overrides)
    name = str(recipe.model.get("name") or recipe.name)
    label = recipe_name + (f"[{variant}]" if variant else "")
    if name in seen:  # e.g. sine[lstm] is the default sine model
        log(f"{label}: same model as {seen[name]} ({name}); skipped")
        return None
    seen[name] = label
    mdir = root / "models" / name
    mdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = train_or_reuse(recipe, mdir / "ckpt", args.retrain)
    how = "reused" if train["reused"] else f"trained in {train['seconds']:.1f} s"
    log(f"{label}: checkpoint {how} — {train['quality']}")

    from rnndeploy.export.checkpoints import load_checkpoint

    loaded = load_checkpoint(str(mdir / "ckpt"))
    model = loaded.model
    family = str(model.spec().family)
    cell = str(model.config.get("cell", ""))
    tier = 1 if name in TIER_1 else (3 if (cell in TIER_3_CELLS or family == "seq2seq" or
                                           model.config.get("output") == "sequence") else 2)
    forms: List[Tuple[str, Optional[bool]]] = [("default", None)]
    default_state = bool(recipe.export.get("with_state"))
    if not default_state and "model" in model.spec().graphs and model.supports_state("model") and not args.quick:
        forms.append(("stream", True))
    graphs: List[gc.GraphPrep] = []
    sources: Dict[str, Any] = {}
    for form, with_state in forms:
        paths = export_graphs(mdir / "ckpt", mdir, name, with_state)
        for graph, onnx_path in paths.items():
            # the spec, graph and state form exactly as the deploy side will read them from the file
            source = resolve_source(onnx=onnx_path, checkpoint=str(mdir / "ckpt"))
            key = f"{name}.{graph}" + (".stream" if form == "stream" else "")
            fp16_paths, fp16_checks = ({}, {}) if form == "stream" else write_fp16(onnx_path, mdir / "fp16", key)
            budget = int((args.stream_golden_mib if form == "stream" else args.golden_mib) * 2**20)
            cases, cut = choose_cases(source.graph_spec, args.cases, budget)
            gdir = mdir / ("golden-stream" if form == "stream" else "golden") / graph
            gdir.parent.mkdir(parents=True, exist_ok=True)
            save_sweep_golden(source, gdir, cases)
            test_dir = None
            test_info = None
            roles = {t.role for t in source.graph_spec.outputs}
            if form == "default" and roles & {"logits", "probs"} and family in ("classifier", "charlm"):
                test_dir = mdir / "golden-test" / graph
                test_dir.parent.mkdir(parents=True, exist_ok=True)
                test_info = save_test_golden(source, test_dir, int(args.test_golden_mib * 2**20))
            if form == "default":
                sources[graph] = source
            graphs.append(gc.GraphPrep(name, graph, form, rel(onnx_path, root), source.with_state, rel(gdir, root),
                                       rel(test_dir, root) if test_dir else None,
                                       {p: rel(v, root) for p, v in fp16_paths.items()},
                                       fp16_checks.get("hoist_input_projection")))
            CUTS[key] = {"golden_cases": [f"b{b}-s{s}" for b, s in cases], "cut": cut, "test": test_info,
                         "fp16_checks": fp16_checks}
            log(f"{label}: {key}: golden {len(cases)} cases" + (f" (cut {', '.join(cut)})" if cut else "")
                + (f"; test golden {test_info['rows']}/{test_info['of']} rows" if test_info else ""))
    tasks = task_references(name, family, sources, mdir, args.quick)
    task_file = None
    if tasks is not None:
        task_file = rel(mdir / "tasks.json", root)
        (mdir / "tasks.json").write_text(json.dumps({**tasks, "file": rel(mdir / tasks["file"], root)}, indent=1))
    train["seconds_total"] = round(time.perf_counter() - t0, 1)
    return gc.ModelPrep(name, recipe_name, variant, family, cell, tier, rel(mdir / "ckpt", root), tuple(graphs),
                        task_file, train)


CUTS: Dict[str, Any] = {}


def rel(path: Any, root: Path) -> str:
    return os.path.relpath(str(path), str(root))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / ".gpuprep"), help="prepared folder (default .gpuprep, git-excluded)")
    ap.add_argument("--models", help="comma-separated recipe or recipe:variant names (default: every zoo model)")
    ap.add_argument("--retrain", action="store_true", help="train even where an intact checkpoint exists")
    ap.add_argument("--epochs", type=int, help="override every recipe's epochs (tests; default: the recipe's)")
    ap.add_argument("--golden-mib", type=float, default=2.5, help="golden budget per graph in MiB (default 2.5)")
    ap.add_argument("--stream-golden-mib", type=float, default=0.5, help="golden budget per streaming graph (0.5)")
    ap.add_argument("--test-golden-mib", type=float, default=3.0, help="test-split golden budget per graph (3.0)")
    ap.add_argument("--max-mib", type=float, default=45.0, help="fail when the folder exceeds this (default 45)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, no streaming forms (tests, development)")
    args = ap.parse_args(argv)
    args.cases = [(1, 4), (2, 8), (1, 32)] if args.quick else list(gc.GOLDEN_CASES)
    if args.quick:
        args.golden_mib, args.test_golden_mib = 0.5, 0.1
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # no manifest while files are being replaced: a half-refreshed folder must not look complete
    (root / gc.MANIFEST).unlink(missing_ok=True)
    only = [m.strip() for m in args.models.split(",")] if args.models else None
    import torch

    torch.set_num_threads(max(1, min(2, len(os.sched_getaffinity(0)))))
    t0 = time.perf_counter()
    models: List[gc.ModelPrep] = []
    seen: Dict[str, str] = {}
    CUTS.clear()
    for recipe_name, variant in zoo_models(only):
        m = prepare_model(recipe_name, variant, root, args, seen)
        if m is not None:
            models.append(m)
    if not models:
        raise SystemExit(f"no model matches --models {args.models!r}")
    keep = {m.name for m in models}
    for d in (root / "models").iterdir():  # models of an earlier, wider run would travel for nothing
        if d.is_dir() and d.name not in keep and only is None:
            import shutil

            shutil.rmtree(d)
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != gc.MANIFEST:
            files[rel(p, root)] = gc.sha256_file(p)
    total = sum((root / f).stat().st_size for f in files)
    from rnndeploy.report.machine import package_versions

    doc = {
        "format": gc.PREP_FORMAT,
        "version": gc.PREP_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/gpu_prepare.py"] + [shlex.quote(a) for a in (argv or sys.argv[1:])]),
        "quick": bool(args.quick),
        "versions": package_versions(),
        "sweep": {"bench_batches": list(gc.BENCH_BATCHES), "bench_seqs": list(gc.BENCH_SEQS),
                  "golden_cases_wanted": [f"b{b}-s{s}" for b, s in args.cases], "profiles": list(gc.PROFILES),
                  "golden_mib_per_graph": args.golden_mib, "test_golden_mib_per_graph": args.test_golden_mib},
        "models": [m.to_dict() for m in models],
        "graphs": CUTS,
        "bytes": total,
        "files": files,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (root / gc.MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    log(f"{len(models)} models, {len(files)} files, {total / 2**20:.1f} MiB in {root} ({doc['seconds']} s)")
    if total > args.max_mib * 2**20:
        log(f"ERROR: {total / 2**20:.1f} MiB exceeds --max-mib {args.max_mib}: lower --golden-mib")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
