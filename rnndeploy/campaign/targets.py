"""A campaign's results merged across processes, and each target checked on what ran.

Rows of one graph come from two processes (torch side, TensorRT side) that wrote separate
result files; ``combined_results`` merges them into one parity result per (graph, golden) and
one bench result per graph, saying so in each result's warnings. ``target_checks`` then reads
the merged results and the build records; every row says what it compares, and a target with
no row is "not measured", never met.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rnndeploy.campaign import plan as cp
from rnndeploy.campaign.schedule import State

VARIANT_ORDER = tuple(cp.ENGINE_VARIANTS)


def _load_results(path: str) -> List[Any]:
    from rnndeploy.report.schema import load_results, read_document

    return load_results(read_document(path))


def _done_results(recs: Mapping[str, Mapping[str, Any]], unit_ids: Sequence[str]) -> List[Any]:
    out: List[Any] = []
    for uid in unit_ids:
        rec = recs.get(uid)
        if rec and rec.get("status") == "done" and rec.get("result"):
            out += _load_results(rec["result"])
    return out


def combined_results(state: State, graphs: Sequence[str], models: Sequence[str]) -> Tuple[List[Any], Dict[str, Any]]:
    """One parity result per (graph, golden) and one bench result per graph, holding the rows of
    both processes (torch side first); plus the task results. Returns (results, index) where
    index = {"parity": {"graph:golden": result}, "bench": {graph: result}, "tasks": {model: [...]}}."""
    from rnndeploy.bench.results import BenchResult

    recs = state.records()
    out: List[Any] = []
    index: Dict[str, Any] = {"parity": {}, "bench": {}, "tasks": {}}
    for key in graphs:
        by_golden: Dict[str, List[Any]] = {}
        for r in _done_results(recs, [f"torch.parity.{key}"] + [f"trt.parity.{key}.{v}" for v in VARIANT_ORDER]):
            by_golden.setdefault(r.model.get("golden", "sweep"), []).append(r)
        for which, parts in by_golden.items():
            merged = replace(
                parts[0],
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
        parts = _done_results(recs, [f"torch.bench.{key}"] + [f"trt.bench.{key}.{v}" for v in VARIANT_ORDER])
        if parts:
            first = parts[0]
            ms = tuple(m for p in parts for m in p.measurements)
            machine = dict(first.machine)
            trt_versions = [p.machine.get("versions", {}).get("tensorrt") for p in parts
                            if p.machine.get("versions", {}).get("tensorrt")]
            if trt_versions:
                machine["versions"] = {**machine.get("versions", {}), "tensorrt": trt_versions[0]}
            merged_b = BenchResult(
                model=dict(first.model), measurements=ms,
                baseline="torch:fp16" if any(m.backend == "torch:fp16" for m in ms) else None,
                settings=dict(first.settings),
                warnings=tuple(dict.fromkeys(w for p in parts for w in p.warnings))
                + ((f"rows from {len(parts)} processes run one after the other on the same machine (torch and ort "
                    "rows: Python with torch; trt rows: the trt86 kit's Python 3.9); ratios compare medians across them",)
                   if len(parts) > 1 else ()),
                machine=machine, command=" ;\n".join(dict.fromkeys(p.command for p in parts)), created=first.created)
            out.append(merged_b)
            index["bench"][key] = merged_b
    for name in models:
        for r in _done_results(recs, [f"torch.tasks.{name}", f"trt.tasks.{name}"]):
            out.append(r)
            index["tasks"].setdefault(name, []).append(r)
    return out, index


def _values(shape: Sequence[Any]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def build_rows(state: State, graphs: Sequence[str]) -> List[Dict[str, Any]]:
    """One row per build unit that ran: time, cold/warm timing cache, engine size, precision path."""
    recs = state.records()
    rows = []
    for key in graphs:
        for v in VARIANT_ORDER:
            rec = recs.get(f"trt.build.{key}.{v}")
            if rec is None:
                continue
            secs = rec.get("build_seconds")
            rows.append({"graph": key, "variant": v, "status": rec.get("status"), "build_seconds": secs,
                         "cold_cache": rec.get("cold_timing_cache"),
                         "engine_mib": (rec.get("engine_bytes") or 0) / 2**20 or None,
                         "precision_path": rec.get("precision_path"), "error": rec.get("error"),
                         "met": None if secs is None else secs < cp.BUILD_TARGET_S})
    return rows


def fp16_parity_rows(index: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Worst relative L2 per (graph, golden, FP16 backend, output) for seq <= 512 (the target) and above."""
    rows = []
    for name, res in index["parity"].items():
        key, which = name.rsplit(":", 1)
        for backend in res.backend_names():
            if res.backends.get(backend, {}).get("precision") != "fp16":
                continue
            for out in res.output_names():
                worst: Optional[float] = None
                worst_case, worst_size, worst_long = None, None, None
                for c in res.cases:
                    if c.backend != backend:
                        continue
                    seq = c.sizes.get("seq", c.sizes.get("src_seq"))
                    for o in c.outputs:
                        if o.output != out or o.stats is None:
                            continue
                        if seq is None or seq <= cp.FP16_TARGET_MAX_SEQ:
                            if worst is None or o.stats.rel_l2 > worst:
                                worst, worst_case, worst_size = o.stats.rel_l2, c.case, _values(o.shape)
                        else:
                            worst_long = o.stats.rel_l2 if worst_long is None else max(worst_long, o.stats.rel_l2)
                errors = [c.error for c in res.cases if c.backend == backend and c.error]
                rows.append({"graph": key, "golden": which, "backend": backend, "output": out,
                             "rel_l2_seq_le_512": worst, "worst_case": worst_case, "worst_case_values": worst_size,
                             "rel_l2_seq_gt_512": worst_long, "errors": errors[:2],
                             "met": None if worst is None else bool(worst <= cp.FP16_REL_L2_TARGET and not errors)})
    return rows


def argmax_rows(index: Mapping[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    for name, res in index["parity"].items():
        if not name.endswith(":test"):
            continue
        for t in res.tasks:
            if t.kind == "argmax":
                rows.append({"graph": name.rsplit(":", 1)[0], "backend": t.backend, "output": t.output,
                             "agreement": t.agreement, "n": t.total, "met": t.agreement >= cp.ARGMAX_TARGET})
    return rows


def latency_rows(index: Mapping[str, Any], graphs: Mapping[str, cp.GraphPrep],
                 models: Mapping[str, cp.ModelPrep]) -> List[Dict[str, Any]]:
    """TensorRT FP16 rows against torch-cuDNN FP16 (autocast, eager) at batch 1 and 32, LSTM/GRU graphs."""
    rows = []
    for key, res in index["bench"].items():
        g = graphs[key]
        if models[g.model].cell not in ("lstm", "gru") or g.form != "default":
            continue
        for b in (1, 32):
            for s in sorted({x.seq for x in res.measurements}):
                base = res.get("torch:fp16", b, s)
                base_graph = res.get("torch:fp16:graph", b, s)
                for label in [x for x in res.backends() if x.startswith("trt:fp16") or "stand-in for trt:fp16" in x]:
                    mm = res.get(label, b, s)
                    if mm is None or base is None:
                        continue
                    r = mm.median / base.median
                    rows.append({"graph": key, "backend": label, "batch": b, "seq": s, "ms": mm.median * 1e3,
                                 "torch_fp16_ms": base.median * 1e3,
                                 "torch_fp16_graph_ms": base_graph.median * 1e3 if base_graph else None,
                                 "ratio": r, "met": r <= cp.LATENCY_TARGET})
    return rows


def timestep_rows(index: Mapping[str, Any]) -> List[Dict[str, Any]]:
    rows = []
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
                rows.append({"graph": name.rsplit(":", 1)[0], "backend": backend, "output": out, "steps": n,
                             "rel_l2_at": {str(t + 1): prof.rel_l2[t] for t in picks}})
    return rows


def headline_rows(index: Mapping[str, Any], graphs: Mapping[str, cp.GraphPrep],
                  models: Mapping[str, cp.ModelPrep]) -> List[Dict[str, Any]]:
    """Median ms of every row at seq 128 (else the longest measured), per graph and batch."""
    rows = []
    for key, res in index["bench"].items():
        if graphs[key].form != "default":
            continue
        seq = 128 if any(x.seq == 128 for x in res.measurements) else max(x.seq for x in res.measurements)
        for b in res.batches():
            row = {m.backend: m.median * 1e3 for m in res.measurements if m.batch == b and m.seq == seq}
            rows.append({"graph": key, "cell": models[graphs[key].model].cell, "batch": b, "seq": seq, "ms": row})
    return rows


def target_checks(state: State, index: Mapping[str, Any], graphs: Mapping[str, cp.GraphPrep],
                  models: Mapping[str, cp.ModelPrep]) -> Dict[str, Any]:
    """Every target's rows: builds, FP16 parity, argmax agreement, latency, error vs timestep, headline."""
    return {"builds": build_rows(state, list(graphs)), "fp16_parity": fp16_parity_rows(index),
            "argmax": argmax_rows(index), "latency": latency_rows(index, graphs, models),
            "timestep": timestep_rows(index), "headline": headline_rows(index, graphs, models)}


def verdict(flags: Sequence[Optional[bool]], dry: bool = False) -> str:
    """MET / MISSED (n of m rows) / not measured; a dry run's verdict is marked meaningless."""
    known = [f for f in flags if f is not None]
    if not known:
        return "not measured"
    text = "MET" if all(known) else f"MISSED ({sum(1 for f in known if not f)} of {len(known)} rows)"
    return f"(dry run, meaningless: {text.lower()})" if dry else text
