"""A campaign's report: environment, headline table, checks, units, each target's verdict, the
commands as run, then ``rnndeploy report``'s own tables; plus a machine-readable summary and a
tarball of every log.

Three kinds of run, said in the first line of every page:
* ``gpu``: real results (the only kind whose numbers may be quoted);
* ``dry-run``: CPU stand-ins for every GPU row (plumbing only);
* ``rehearsal``: the real procedure on a machine without a GPU, so every GPU step fails;
  the page lists those failures and, apart, any failure that is NOT for want of a GPU (a
  bug found before spending device time).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from rnndeploy.campaign import plan as cp
from rnndeploy.campaign.schedule import State, error_line, now_iso, unit_counts
from rnndeploy.campaign.steps import DRY_LABEL, Context, child_env, failed_for_want_of_gpu, say
from rnndeploy.campaign.targets import combined_results, target_checks, verdict
from rnndeploy.report import fmt

REHEARSAL_LABEL = ("REHEARSAL on a machine without a CUDA GPU: the real procedure, every GPU step expected to fail "
                   "with \"no CUDA GPU\" — NOT GPU results")
# Checks the device driver runs besides the units: STATE/checks/NAME.exit holds the exit status,
# STATE/logs/NAME.log the output, STATE/logs/NAME.xml pytest's JUnit XML.
CHECKS = {
    "nvidia-smi": "nvidia-smi (GPU, driver, clocks)",
    "kit-smoke": "the kit's smoke test (FP16 LSTM engine vs numpy; exit 0 pass, 2 no GPU, 1 fail)",
    "pytest-kit": "pytest -m gpu under the kit's Python 3.9 (TensorRT side, no torch)",
    "pytest-torch": "pytest -m gpu under the device's Python with torch (torch-CUDA side, cuda.py on the real libcudart)",
}
MAX_RETURNED_FILE = 15 * 2**20  # the device returns files of at most 16 MiB


def side_environment(side: str, dry: bool) -> Dict[str, Any]:
    """What a side ran on: Python, machine (GPUs, driver), nvidia-smi, and TensorRT + cudart (trt
    side) or torch + cuDNN + onnxruntime + cudart (torch side). Every probe that fails says why."""
    from rnndeploy.report.machine import describe_machine

    env: Dict[str, Any] = {"side": side, "python": sys.version.split()[0], "executable": sys.executable,
                           "dry_run": dry, "date": now_iso(), "machine": describe_machine()}
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
            env["tensorrt"] = f"not importable: {error_line(exc)}"
    else:
        try:
            import torch

            env["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                            "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available(),
                            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
        except Exception as exc:
            env["torch"] = f"not importable: {error_line(exc)}"
        try:
            import onnxruntime as ort

            env["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers(),
                                  "path": os.path.dirname(ort.__file__)}
        except Exception as exc:
            env["onnxruntime"] = f"not importable: {error_line(exc)}"
    try:
        from rnndeploy import cuda

        rt = cuda.runtime()
        env["cudart"] = {"path": rt.path, "runtime": rt.runtime_version(), "driver": rt.driver_version(),
                         "devices": rt.device_count()}
    except Exception as exc:
        env["cudart"] = f"not usable: {error_line(exc)}"
    return env


def record_environment(state: State, side: str, dry: bool) -> None:
    """Write STATE/env-SIDE.json once per state folder."""
    p = state.root / f"env-{side}.json"
    if not p.is_file():
        p.write_text(json.dumps(side_environment(side, dry), indent=1, sort_keys=True, default=str))


def checks_summary(state: State) -> Dict[str, Any]:
    """The checks the driver ran (exit status, last lines, pytest counts and failures)."""
    import xml.etree.ElementTree as ET

    out: Dict[str, Any] = {}
    for name in CHECKS:
        p = state.root / "checks" / f"{name}.exit"
        if not p.is_file():
            out[name] = {"ran": False}
            continue
        info: Dict[str, Any] = {"ran": True, "exit": p.read_text().strip()}
        log = state.root / "logs" / f"{name}.log"
        if log.is_file():
            lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
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


def _f(x: Optional[float], spec: str = ".2e") -> str:
    return "—" if x is None else format(x, spec)


def _environment_lines(envs: Mapping[str, Any]) -> List[str]:
    lines = ["## Environment", ""]
    for side in ("trt", "torch"):
        e = envs.get(side)
        if not e:
            lines.append(f"- {side} side: not run")
            continue
        gpus = e.get("machine", {}).get("gpus") or []
        bits = [f"Python {e.get('python')} ({e.get('executable')})", f"date {e.get('date')}"]
        if gpus:
            bits.append(f"GPU {gpus[0].get('name')} (sm {gpus[0].get('compute_capability')})")
        bits += [f"nvidia-smi: {e.get('nvidia_smi')}", f"CUDA driver {e.get('machine', {}).get('cuda_driver')}"]
        bits += ([f"TensorRT {e.get('tensorrt')}"] if side == "trt"
                 else [f"torch {e.get('torch')}", f"onnxruntime {e.get('onnxruntime')}"])
        bits.append(f"cudart {e.get('cudart')}")
        lines.append(f"- **{side} side**: " + "; ".join(str(b) for b in bits))
    return lines


def _rehearsal_lines(units: Mapping[str, Mapping[str, Any]], checks: Mapping[str, Any]) -> List[str]:
    failed = {uid: r for uid, r in units.items() if r.get("status") == "failed"}
    no_gpu = sorted(uid for uid, r in failed.items() if failed_for_want_of_gpu(r))
    other = sorted(uid for uid in failed if uid not in no_gpu)
    lines = ["## Rehearsal verdict", "",
             f"- {len(no_gpu)} units failed for want of a GPU, as expected (first: "
             f"`{(failed[no_gpu[0]].get('error') or '')[:160]}`)" if no_gpu else "- no unit failed for want of a GPU"]
    smoke = checks.get("kit-smoke", {})
    if smoke.get("ran"):
        lines.append(f"- kit smoke test: exit {smoke.get('exit')} "
                     + ("(its CPU part passed, then \"no CUDA GPU\": as expected)" if smoke.get("exit") == "2"
                        else "(UNEXPECTED: 2 means CPU part passed, no GPU)"))
    if other:
        lines.append(f"- **{len(other)} units failed for another reason: fix these before spending device time**")
        lines += [f"  - `{uid}`: {failed[uid].get('error')}" for uid in other[:30]]
    else:
        lines.append("- no unit failed for any other reason")
    return lines + [""]


def summary_markdown(ctx: Context, checks: Mapping[str, Any], envs: Mapping[str, Any], counts: Mapping[str, Any],
                     index: Mapping[str, Any], title: str, tests: Mapping[str, Any], mode: str) -> str:
    """The report's own sections (before the commands and ``rnndeploy report``'s tables)."""
    dry = mode == "dry-run"
    lines = [f"# {title}", ""]
    if dry:
        lines += [f"> **{DRY_LABEL}.** This page proves the plumbing only; its numbers say nothing about a GPU.", ""]
    elif mode == "rehearsal":
        lines += [f"> **{REHEARSAL_LABEL}.**", ""]
        lines += _rehearsal_lines(ctx.state.records(), tests)
    lines += _environment_lines(envs)
    if checks["headline"]:
        cols = [c for c in ("torch", "torch:graph", "torch:fp16", "torch:fp16:graph", "ort-cuda", "ort-cuda:fp16",
                            "trt:fp32", "trt:fp16", "trt:fp16:graph", "trt:fp16-keep", "trt:fp16-hoist")
                if any(c in h["ms"] for h in checks["headline"])]
        cols += sorted({c for h in checks["headline"] for c in h["ms"]} - set(cols))
        lines += ["", "## Headline: median latency in ms (see 'What the latency figures include')", ""]
        rows = [[h["graph"], h["cell"], str(h["batch"]), str(h["seq"])] + [_f(h["ms"].get(c), ".3f") for c in cols]
                for h in checks["headline"]]
        lines.append(fmt.md_table(["graph", "cell", "batch", "seq"] + cols, rows, "llrr" + "r" * len(cols)))
    lines += ["", "## Checks", ""]
    for name, info in tests.items():
        if not info.get("ran"):
            lines.append(f"- {CHECKS[name]}: not run")
            continue
        counts_s = ""
        if "tests" in info:
            counts_s = (f"; {info['tests']} tests, {info['failures']} failed, {info['errors']} errors, "
                        f"{info['skipped']} skipped in {info.get('seconds', 0):.0f} s")
        lines.append(f"- {CHECKS[name]}: exit {info['exit']}{counts_s}")
        lines += [f"  - {p}" for p in info.get("problems", [])[:15]]
        if not info.get("problems") and info.get("last_lines"):
            lines.append(f"  - last line: `{info['last_lines'][-1][:200]}`")
    lines += ["", "## Work units", "",
              f"{counts.get('done', 0)} done, {counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped, "
              f"{counts.get('pending', 0)} not run (device budget) of {counts.get('total', 0)}.", ""]
    lines += [f"- `{uid}`: {err}" for uid, err in counts.get("problems", [])[:40]]
    if counts.get("pending_ids"):
        lines.append("- not run: " + ", ".join(f"`{p}`" for p in counts["pending_ids"][:60])
                     + (" …" if len(counts["pending_ids"]) > 60 else ""))
    lines += ["", f"## Engine builds (target < {cp.BUILD_TARGET_S:.0f} s per model, cold timing cache): "
              + verdict([b["met"] for b in checks["builds"] if b["cold_cache"]], dry), ""]
    rows = [[b["graph"], b["variant"], b["status"], _f(b["build_seconds"], ".1f"),
             "— (dry run: planned only)" if dry else ("cold" if b["cold_cache"] else "warm"),
             _f(b["engine_mib"], ".2f"), b["precision_path"] or "—", (b["error"] or "")[:120]] for b in checks["builds"]]
    lines.append(fmt.md_table(["graph", "engine", "status", "build s", "timing cache", "MiB", "precision path", "error"],
                              rows, "lllrlrll"))
    lines += ["", f"## FP16 parity vs torch FP32 golden (target rel L2 <= {cp.FP16_REL_L2_TARGET:g} for seq <= "
              f"{cp.FP16_TARGET_MAX_SEQ}): " + verdict([r["met"] for r in checks["fp16_parity"]], dry), ""]
    rows = [[r["graph"], r["golden"], r["backend"], r["output"], _f(r["rel_l2_seq_le_512"]),
             f"{r['worst_case']} ({r['worst_case_values']} values)" if r.get("worst_case") else "—",
             _f(r["rel_l2_seq_gt_512"]), "—" if r["met"] is None else ("met" if r["met"] else "MISSED")]
            for r in checks["fp16_parity"]]
    lines.append(fmt.md_table(["graph", "golden", "backend", "output", "worst rel L2 (seq <= 512)", "at case",
                               "worst rel L2 (seq > 512)", "target"], rows, "llllrlrl"))
    lines += ["", "(A last-step regressor's output at batch 1 is one value: its relative L2 is that value's relative "
              "error, the harshest form of the target.)"]
    lines += ["", f"## Argmax agreement on the test split (target >= {cp.ARGMAX_TARGET:.1%}): "
              + verdict([r["met"] for r in checks["argmax"]], dry), ""]
    rows = [[r["graph"], r["backend"], r["output"], f"{r['agreement']:.4%}", str(r["n"]), "met" if r["met"] else "MISSED"]
            for r in checks["argmax"]]
    lines.append(fmt.md_table(["graph", "backend", "output", "agreement", "positions", "target"], rows, "lllrrl"))
    tasks = [t for rs in index["tasks"].values() for r in rs for t in r.tasks]
    if tasks:
        lines += ["", "## Sampling (char-LM) and greedy decoding (seq2seq) agreement with torch FP32 (test split)", ""]
        lines.append(fmt.md_table(["backend", "check", "agreement", "tokens", "details"],
                                  [[t.backend, t.kind, f"{t.agreement:.4%}", str(t.total),
                                    json.dumps(dict(t.details), default=str)[:160]] for t in tasks], "llrrl"))
    lines += ["", f"## Latency stretch target: TRT FP16 <= {cp.LATENCY_TARGET} x torch-cuDNN FP16 (autocast, eager) at "
              "batch 1 and 32, LSTM/GRU models: " + verdict([r["met"] for r in checks["latency"]], dry), ""]
    rows = [[r["graph"], r["backend"], str(r["batch"]), str(r["seq"]), _f(r["ms"], ".3f"), _f(r["torch_fp16_ms"], ".3f"),
             _f(r["torch_fp16_graph_ms"], ".3f"), _f(r["ratio"], ".2f"), "met" if r["met"] else "missed"]
            for r in checks["latency"]]
    lines.append(fmt.md_table(["graph", "TRT row", "batch", "seq", "TRT ms", "torch fp16 ms", "torch fp16 graph ms",
                               "ratio", "target"], rows, "llrrrrrrl"))
    prof = [(uid, rec) for uid, rec in sorted(ctx.state.records().items())
            if rec.get("kind") == "profile" and rec.get("layer_timing")]
    if prof:
        lines += ["", "## Where the TRT FP16 time goes (IProfiler, synchronous runs, mean of 10; top layers)", ""]
        rows = []
        for uid, rec in prof:
            for case, t in rec["layer_timing"].items():
                if isinstance(t, dict) and "top" in t:
                    top = "; ".join(f"{n[:48]} {ms:.3f} ms ({(share or 0):.0%})" for n, ms, share in t["top"][:4])
                    rows.append([rec.get("graph") or uid, case, _f(t["sum_of_layers_ms"], ".3f"), str(t["layers"]), top])
        lines.append(fmt.md_table(["graph", "case", "sum of layers ms", "layers", "top layers"], rows, "llrrl"))
    lines += ["", "## Error versus timestep (worst relative L2 per timestep over the sweep golden's cases, up to 2048)", ""]
    rows = [[r["graph"], r["backend"], r["output"], str(r["steps"]),
             ", ".join(f"t={k}: {_f(v)}" for k, v in r["rel_l2_at"].items())] for r in checks["timestep"]]
    lines.append(fmt.md_table(["graph", "backend", "output", "steps", "rel L2 at timestep"], rows, "lllrl"))
    lines += ["", "## What the latency figures include", "",
              "- trt rows: `TensorRTRunner.run_prepared` = `execute_async_v3` on device-resident inputs/outputs (no "
              "host<->device copies), timed with CUDA events around the enqueued calls; `:graph` rows replay a CUDA "
              "graph of it. The profile whose opt shape is nearest is selected (profile 0 at batch 1).",
              "- torch rows: the checkpoint's module on CUDA, inputs already on the device, CUDA events on the current "
              "stream around the calls (eager rows therefore include Python launch gaps); `:fp16` = autocast FP16, "
              "TF32 off for FP32; `:graph` = one CUDA graph per input shape, replayed.",
              "- ort-cuda rows (when onnxruntime-gpu was carried): IOBinding with device buffers, host clock around "
              "`run_with_iobinding` + synchronisation; `:fp16` runs the FP16 ONNX (policy fp16).",
              "- Rows of one table come from two processes that took turns on the GPU (a lock lets one of them run "
              "at a time): torch/ort rows from Python with torch, trt rows from the kit's Python 3.9; each ratio "
              "compares medians across them. Torch rows may have run while the kit was still arriving and being "
              "unpacked on other CPU cores.", ""]
    return "\n".join(lines) + "\n"


def write_report(ctx: Context, out: Path, mode: str = "gpu", title: Optional[str] = None) -> Dict[str, Any]:
    """Merge everything; write gpu_report.{json,md,html}, gpu_summary.json and gpu_logs.tar.xz into ``out``.
    ``mode``: "gpu", "dry-run" or "rehearsal" (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    title = title or {"dry-run": "rnndeploy GPU verification — DRY RUN (CPU stand-ins, not GPU results)",
                      "rehearsal": "rnndeploy GPU verification — REHEARSAL without a GPU (not GPU results)"}.get(
        mode, "rnndeploy GPU verification — TensorRT vs torch-cuDNN vs ONNX Runtime")
    results, index = combined_results(ctx.state, list(ctx.graphs), list(ctx.models))
    envs = {}
    for side in ("trt", "torch"):
        p = ctx.state.root / f"env-{side}.json"
        if p.is_file():
            envs[side] = json.loads(p.read_text())
    checks = target_checks(ctx.state, index, ctx.graphs, ctx.models)
    counts = unit_counts(ctx.state, ctx.units())
    md_rnndeploy = ctx.state.root / "report" / "rnndeploy.md"
    md_rnndeploy.parent.mkdir(parents=True, exist_ok=True)
    if results:
        from rnndeploy.report.schema import write_results

        merged_in = ctx.state.root / "report" / "combined.json"
        write_results(str(merged_in), results)
        cmd = [sys.executable, "-m", "rnndeploy", "report", str(merged_in), "-o", str(out / "gpu_report.html"),
               "--markdown", str(md_rnndeploy), "--json", str(out / "gpu_report.json"), "--title", title]
        ctx.state.command(" ".join(shlex.quote(c) for c in cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
        (ctx.state.root / "logs" / "report.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            say(f"rnndeploy report failed: {proc.stderr.strip()[-500:]}")
    tests = checks_summary(ctx.state)
    summary = summary_markdown(ctx, checks, envs, counts, index, title, tests, mode)
    commands = ctx.state.commands()
    body = md_rnndeploy.read_text() if md_rnndeploy.is_file() else "(no results yet)\n"
    text = summary + "\n## Commands (as run, in order)\n\n```\n" + commands + "```\n\n" + body
    if mode == "dry-run":
        text = text.replace("# rnndeploy report", f"# rnndeploy report — {DRY_LABEL}", 1)
    (out / "gpu_report.md").write_text(text)
    doc = {"mode": mode, "dry_run": mode == "dry-run", "title": title, "environment": envs,
           "prep": {k: ctx.doc.get(k) for k in ("created", "command", "versions", "sweep", "bytes")},
           "units": ctx.state.records(), "counts": {k: v for k, v in counts.items() if k != "problems"},
           "targets": checks, "tests": tests, "commands": commands.splitlines()}
    (out / "gpu_summary.json").write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
    write_logs(ctx.state, out / "gpu_logs.tar.xz")
    say(f"report: {out} ({counts['done']} of {counts['total']} units done)")
    return doc


def write_logs(state: State, path: Path, limit: int = MAX_RETURNED_FILE) -> None:
    """Logs, unit records, per-unit results, checks, commands and engine sidecars as one tar.xz;
    without the per-unit results (the merged gpu_report.json holds them) when that would pass
    ``limit`` bytes, since larger files do not come back from the device."""
    for subs in (("logs", "units", "results", "checks"), ("logs", "units", "checks")):
        with tarfile.open(path, "w:xz") as tar:
            for sub in subs + ("commands.txt", "env-trt.json", "env-torch.json"):
                p = state.root / sub
                if p.exists():
                    tar.add(str(p), arcname=sub)
            for p in sorted((state.root / "engines").rglob("*.json")):
                tar.add(str(p), arcname=str(p.relative_to(state.root)))
        if path.stat().st_size <= limit:
            return
    say(f"{path} is {path.stat().st_size / 2**20:.1f} MiB, over what comes back from the device")


def publish(files: Path, results_root: Path, date: Optional[str] = None, gpu: Optional[str] = None,
            max_logs_bytes: int = 1 << 20) -> Path:
    """Copy a GPU run's report files into ``results_root/<date>-<gpu>/`` (e.g. benchmarks/results/gpu/
    2026-12-01-h200/): the Markdown page, the summary, the results JSON compressed with xz, and the
    logs when they are small. Refuses dry runs and rehearsals (their numbers are not results)."""
    import lzma
    import shutil

    from rnndeploy.errors import UsageError

    summary = json.loads((files / "gpu_summary.json").read_text())
    if summary.get("mode", "dry-run" if summary.get("dry_run") else "gpu") != "gpu":
        raise UsageError(f"{files} holds a {summary.get('mode', 'dry-run')} report, not GPU results",
                         "publish only the files of a run on the GPU machine")
    if gpu is None:
        env = summary.get("environment", {})
        gpus = [g for side in ("torch", "trt") for g in (env.get(side, {}).get("machine", {}).get("gpus") or [])]
        gpu = gpus[0]["name"].split()[-1].lower() if gpus else "gpu"
    date = date or (summary.get("environment", {}).get("torch", {}) or {}).get("date", now_iso())[:10]
    dest = results_root / f"{date}-{gpu}"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("gpu_report.md", "gpu_summary.json"):
        shutil.copyfile(files / name, dest / name)
    if (files / "gpu_report.json").is_file():
        with open(files / "gpu_report.json", "rb") as src, lzma.open(dest / "gpu_report.json.xz", "wb", preset=9) as dst:
            shutil.copyfileobj(src, dst)
    logs = files / "gpu_logs.tar.xz"
    if logs.is_file() and logs.stat().st_size <= max_logs_bytes:
        shutil.copyfile(logs, dest / logs.name)
    return dest


def report_mode(dry: bool) -> str:
    """"dry-run", "rehearsal" (CAMPAIGN_REHEARSAL=1 in the environment) or "gpu"."""
    if dry:
        return "dry-run"
    return "rehearsal" if os.environ.get("CAMPAIGN_REHEARSAL") == "1" else "gpu"

