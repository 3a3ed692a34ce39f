"""Make a campaign's prepared folder on a CPU box with torch (everything the GPU side cannot make).

For every zoo model (every recipe and each of its variants):

1. train it with the recipe's own budget into PREP/models/NAME/ckpt (an intact checkpoint of the
   same recipe already there is reused; ``retrain`` forces training);
2. export the validated FP32 ONNX (a seq2seq model: encoder + decoder_step), plus the streaming
   form (``--with-state``) of models whose recipe exports without state;
3. write the FP16 ONNX files of both precision policies (``fp16``, ``fp16-keep-recurrence``) with
   build-engine's ``--write-fp16-onnx`` library call and check each against the FP32 file on ONNX
   Runtime CPU (TensorRT 8.6 builds FP16 from the FP32 file; these serve ort-cuda FP16 rows,
   TensorRT >= 10's strongly typed path, and the dry run);
4. torch FP32 goldens in rnndeploy's golden format at the sweep's cases plus long sequences for
   error versus timestep, within a byte budget per graph (the cases cut are listed);
5. for classifiers and the char-LM, a second golden holding the real test split (chunks of at
   most 256 rows) for argmax agreement; the char-LM's sampled tokens and the seq2seq model's
   greedy decodes of the test split, made by torch, for sampling / decoding agreement;
6. PREP/manifest.json: what was made, the cuts, the sha256 of every file.

Imports torch (training, export, goldens): the torch side only.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.campaign import plan as cp
from rnndeploy.errors import UsageError
from rnndeploy.fileio import sha256_file
from rnndeploy.memory import graph_bytes

QUICK_CASES: Tuple[Tuple[int, int], ...] = ((1, 4), (2, 8), (1, 32))


@dataclass(frozen=True)
class PrepareOptions:
    """What to prepare. Budgets are MiB per graph: ``golden_mib`` for the sweep golden,
    ``stream_golden_mib`` for a streaming form's, ``test_golden_mib`` for the test split;
    ``max_mib``: the whole folder (it must travel beside the source tree and the kit)."""

    models: Optional[Tuple[str, ...]] = None  # "recipe", "recipe:variant" or "recipe:*" (default: all)
    retrain: bool = False
    epochs: Optional[int] = None
    golden_mib: float = 2.5
    stream_golden_mib: float = 0.5
    test_golden_mib: float = 3.0
    max_mib: float = 45.0
    quick: bool = False
    cases: Tuple[Tuple[int, int], ...] = field(default=cp.GOLDEN_CASES)

    def effective(self) -> PrepareOptions:
        """``quick``: tiny shapes and budgets, no streaming forms (tests, development)."""
        from dataclasses import replace

        if not self.quick:
            return self
        return replace(self, cases=QUICK_CASES, golden_mib=0.5, test_golden_mib=0.1)


def case_bytes(graph: Any, batch: int, seq: int) -> int:
    """Bytes of one golden case (inputs + outputs) of ``graph`` (a GraphSpec) at (batch, seq)."""
    from rnndeploy.inputs import sizes_for

    return graph_bytes(graph, sizes_for(graph, batch, seq))


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
def train_or_reuse(recipe: Any, ckpt: Path, retrain: bool, log: Callable[[str], None]) -> Dict[str, Any]:
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
    return {"reused": False, "seconds": round(time.perf_counter() - t0, 1), "quality": result.quality.render(),
            "passed": bool(result.quality.passed)}


def export_graphs(ckpt: Path, mdir: Path, name: str, with_state: Optional[bool]) -> Dict[str, str]:
    """{graph: onnx path} of a validated export (``with_state`` None: the recipe's form)."""
    from rnndeploy.export import export_checkpoint

    out = mdir / f"{name}{'.stream' if with_state else ''}.onnx"
    return dict(export_checkpoint(str(ckpt), str(out), with_state=with_state).paths)


def write_fp16(onnx_path: str, out_dir: Path, graph_key: str) -> Tuple[Dict[str, str], Dict[str, Any]]:
    """FP16 ONNX of both policies (what `build-engine --fp16 --policy P --write-fp16-onnx F` writes),
    each checked against the FP32 file; plus what --hoist-input-projection would rewrite."""
    from rnndeploy.engine.builder import BuildOptions, check_fp16_onnx, plan_build, write_fp16_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, str] = {}
    checks: Dict[str, Any] = {}
    for policy in ("fp16", "fp16-keep-recurrence"):
        plan = plan_build(onnx_path, BuildOptions(fp16=True, policy=policy))
        path = out_dir / f"{graph_key}.{policy}.onnx"
        report = write_fp16_onnx(plan, str(path))
        paths[policy] = str(path)
        checks[policy] = {"summary": report.render(), "vs_fp32_on_ort_cpu": check_fp16_onnx(plan, str(path))}
    checks["hoist_input_projection"] = plan_build(onnx_path, BuildOptions(fp16=True, policy="fp16", hoist=True)).rewrite
    return paths, checks


def save_sweep_golden(source: Any, path: Path, cases: List[Tuple[int, int]]) -> None:
    from rnndeploy.backends import RunnerOptions
    from rnndeploy.parity.harness import ParityConfig, run_parity

    cfg = ParityConfig(backends=(), reference="torch", shapes=tuple(cases), seed=0,
                       reference_options=RunnerOptions(device="cpu"), save_golden=str(path), show_progress=False)
    run_parity(source, cfg, command="rnndeploy.campaign.prepare (torch FP32 golden)")


def save_test_golden(source: Any, path: Path, limit_bytes: int) -> Dict[str, Any]:
    """The test split as golden cases of <= MAX_BATCH rows each, torch FP32 outputs."""
    from rnndeploy.backends import RunnerOptions, create_runner
    from rnndeploy.backends.source import model_hashes
    from rnndeploy.data.feeds import dataset_for_spec, spec_feeds
    from rnndeploy.environment import package_versions
    from rnndeploy.inputs import Case, infer_sizes
    from rnndeploy.parity.golden import save_golden

    graph = source.graph_spec
    feed = spec_feeds(dataset_for_spec(source.spec), graph, "test")
    n = len(next(iter(feed.values())))
    sizes = {"batch": 1, **{d: int(feed[t.name].shape[i]) for t in graph.inputs if t.name in feed
                            for i, d in enumerate(t.dims) if isinstance(d, str) and d != "batch"}}
    row_bytes = graph_bytes(graph, sizes)
    rows = min(n, max(1, limit_bytes // max(row_bytes, 1)))
    cases: List[Any] = []
    for i, start in enumerate(range(0, rows, cp.MAX_BATCH)):
        stop = min(rows, start + cp.MAX_BATCH)
        part = {k: np.ascontiguousarray(v[start:stop]) for k, v in feed.items()}
        for t in graph.inputs:  # streaming form: states start at zero, as runtimes do without them
            if t.name not in part:
                part[t.name] = np.zeros(t.shape_for(infer_sizes(graph, part)), dtype=t.dtype)
        cases.append(Case(f"test-{i}", infer_sizes(graph, part), {t.name: part[t.name] for t in graph.inputs}))
    with create_runner("torch", source, RunnerOptions(device="cpu")) as runner:
        outputs = [runner.infer(c.inputs) for c in cases]
        desc = runner.describe().to_dict()
    save_golden(str(path), source.spec, source.graph, source.with_state, cases, outputs,
                {"backend": "torch", "description": desc}, -1, model_hashes(source), package_versions())
    return {"rows": rows, "of": n, "cases": len(cases)}


def task_references(family: str, sources: Dict[str, Any], out: Path, quick: bool) -> Optional[Dict[str, Any]]:
    """torch FP32 sampling (char-LM) or greedy decoding (seq2seq) of the test split, as references."""
    from rnndeploy.backends import RunnerOptions, create_runner
    from rnndeploy.data.feeds import dataset_for_spec, spec_feeds
    from rnndeploy.parity.task import greedy_tokens, sample_tokens

    cpu = RunnerOptions(device="cpu")
    if family == "charlm":
        src = sources["model"]
        feed = spec_feeds(dataset_for_spec(src.spec), src.graph_spec, "test")
        tokens = feed[next(t.name for t in src.graph_spec.inputs if t.role == "tokens")]
        prompt = np.ascontiguousarray(tokens[: 4 if quick else 16, :8]).astype(np.int64)
        steps, seed = (8 if quick else 32), 0
        with create_runner("torch", src, cpu) as r:
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
        with create_runner("torch", enc, cpu) as e, create_runner("torch", dec, cpu) as d:
            for start in range(0, n, cp.MAX_BATCH):
                seqs += greedy_tokens(e, d, {k: v[start:start + cp.MAX_BATCH] for k, v in feed.items()}, bos, eos, max_len)
        padded = np.full((len(seqs), max([len(s) for s in seqs] + [1])), -1, dtype=np.int64)
        for i, s in enumerate(seqs):
            padded[i, : len(s)] = s
        np.savez(out / "decoding.npz", tokens=padded, **{k: np.ascontiguousarray(v) for k, v in feed.items()})
        return {"kind": "decoding", "file": "decoding.npz", "graphs": ["encoder", "decoder_step"], "bos_id": bos,
                "eos_id": eos, "max_len": max_len, "rows": len(seqs)}
    return None


def _rel(path: Any, root: Path) -> str:
    return os.path.relpath(str(path), str(root))


def prepare_model(recipe_name: str, variant: Optional[str], root: Path, opts: PrepareOptions, seen: Dict[str, str],
                  cuts: Dict[str, Any], log: Callable[[str], None]) -> Optional[cp.ModelPrep]:
    """Train or reuse, export, FP16 files, goldens and task references of one zoo model (None when
    it is the same model as one already prepared, e.g. sine[lstm] is sine's default)."""
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.checkpoint import load_model
    from rnndeploy.recipe import load_recipe

    recipe = load_recipe(recipe_name, variant, overrides=[f"train.epochs={opts.epochs}"] if opts.epochs else [])
    name = str(recipe.model.get("name") or recipe.name)
    label = recipe_name + (f"[{variant}]" if variant else "")
    if name in seen:
        log(f"{label}: same model as {seen[name]} ({name}); skipped")
        return None
    seen[name] = label
    mdir = root / "models" / name
    mdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = train_or_reuse(recipe, mdir / "ckpt", opts.retrain, log)
    how = "reused" if train["reused"] else f"trained in {train['seconds']:.1f} s"
    log(f"{label}: checkpoint {how} — {train['quality']}")
    model = load_model(str(mdir / "ckpt")).model
    family = str(model.spec().family)
    forms: List[Tuple[str, Optional[bool]]] = [("default", None)]
    if (not recipe.export.get("with_state") and "model" in model.spec().graphs and model.supports_state("model")
            and not opts.quick):
        forms.append(("stream", True))
    graphs: List[cp.GraphPrep] = []
    sources: Dict[str, Any] = {}
    for form, with_state in forms:
        for graph, onnx_path in export_graphs(mdir / "ckpt", mdir, name, with_state).items():
            # the spec, graph and state form exactly as the deploy side will read them from the file
            source = resolve_source(onnx=onnx_path, checkpoint=str(mdir / "ckpt"))
            key = f"{name}.{graph}" + (".stream" if form == "stream" else "")
            fp16_paths, fp16_checks = ({}, {}) if form == "stream" else write_fp16(onnx_path, mdir / "fp16", key)
            budget = int((opts.stream_golden_mib if form == "stream" else opts.golden_mib) * 2**20)
            cases, cut = choose_cases(source.graph_spec, opts.cases, budget)
            gdir = mdir / ("golden-stream" if form == "stream" else "golden") / graph
            gdir.parent.mkdir(parents=True, exist_ok=True)
            save_sweep_golden(source, gdir, cases)
            test_dir, test_info = None, None
            roles = {t.role for t in source.graph_spec.outputs}
            if form == "default" and roles & {"logits", "probs"} and family in ("classifier", "charlm"):
                test_dir = mdir / "golden-test" / graph
                test_dir.parent.mkdir(parents=True, exist_ok=True)
                test_info = save_test_golden(source, test_dir, int(opts.test_golden_mib * 2**20))
            if form == "default":
                sources[graph] = source
            graphs.append(cp.GraphPrep(name, graph, form, _rel(onnx_path, root), source.with_state, _rel(gdir, root),
                                       _rel(test_dir, root) if test_dir else None,
                                       {p: _rel(v, root) for p, v in fp16_paths.items()},
                                       fp16_checks.get("hoist_input_projection")))
            cuts[key] = {"golden_cases": [f"b{b}-s{s}" for b, s in cases], "cut": cut, "test": test_info,
                         "fp16_checks": fp16_checks}
            log(f"{label}: {key}: golden {len(cases)} cases" + (f" (cut {', '.join(cut)})" if cut else "")
                + (f"; test golden {test_info['rows']}/{test_info['of']} rows" if test_info else ""))
    tasks = task_references(family, sources, mdir, opts.quick)
    task_file = None
    if tasks is not None:
        task_file = _rel(mdir / "tasks.json", root)
        (mdir / "tasks.json").write_text(json.dumps({**tasks, "file": _rel(mdir / tasks["file"], root)}, indent=1))
    train["seconds_total"] = round(time.perf_counter() - t0, 1)
    return cp.ModelPrep(name, recipe_name, variant, family, str(model.config.get("cell", "")),
                        cp.model_tier(recipe_name, variant), _rel(mdir / "ckpt", root), tuple(graphs), task_file, train)


def prepare(root: Path, opts: PrepareOptions, command: str, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Prepare every selected zoo model into ``root``; returns the manifest (also written as
    ``root/manifest.json``). Raises UsageError when nothing matches or the folder is over ``max_mib``."""
    import torch

    from rnndeploy.environment import package_versions
    from rnndeploy.recipe import zoo_models

    opts = opts.effective()
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # no manifest while files are being replaced: a half-refreshed folder must not look complete
    (root / cp.MANIFEST).unlink(missing_ok=True)
    torch.set_num_threads(max(1, min(2, len(os.sched_getaffinity(0)))))
    t0 = time.perf_counter()
    models: List[cp.ModelPrep] = []
    seen: Dict[str, str] = {}
    cuts: Dict[str, Any] = {}
    for recipe_name, variant in zoo_models(opts.models):
        m = prepare_model(recipe_name, variant, root, opts, seen, cuts, log)
        if m is not None:
            models.append(m)
    if not models:
        raise UsageError(f"no zoo model matches {','.join(opts.models or ())!r}",
                         "name recipes (sine), variants (sine:gru) or every variant (sine:*)")
    # tier first, then the order of MODEL_TIERS: the device works through models in this order
    rank = {k: i for i, k in enumerate(cp.MODEL_TIERS)}
    models.sort(key=lambda m: (m.tier, rank.get(m.recipe if m.variant is None else f"{m.recipe}:{m.variant}", 99),
                               m.name))
    keep = {m.name for m in models}
    if opts.models is None:  # models of an earlier, wider run would travel for nothing
        for d in (root / "models").iterdir():
            if d.is_dir() and d.name not in keep:
                shutil.rmtree(d)
    files = {_rel(p, root): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file() and p.name != cp.MANIFEST}
    total = sum((root / f).stat().st_size for f in files)
    doc = {
        "format": cp.PREP_FORMAT,
        "version": cp.PREP_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "quick": bool(opts.quick),
        "versions": package_versions(),
        "sweep": {"bench_batches": list(cp.BENCH_BATCHES), "bench_seqs": list(cp.BENCH_SEQS),
                  "golden_cases_wanted": [f"b{b}-s{s}" for b, s in opts.cases], "profiles": list(cp.PROFILES),
                  "golden_mib_per_graph": opts.golden_mib, "test_golden_mib_per_graph": opts.test_golden_mib},
        "models": [m.to_dict() for m in models],
        "graphs": cuts,
        "bytes": total,
        "files": files,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (root / cp.MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    log(f"{len(models)} models, {len(files)} files, {total / 2**20:.1f} MiB in {root} ({doc['seconds']} s)")
    if total > opts.max_mib * 2**20:
        raise UsageError(f"the prepared folder {root} holds {total / 2**20:.1f} MiB, over the {opts.max_mib} MiB allowed",
                         "lower the golden budgets")
    return doc
