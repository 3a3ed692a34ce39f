"""Export + validation time of every zoo model (every recipe and variant), one fresh process each.

Each model is built at its recipe's full size with random weights (the recipe's dataset
is loaded only for its sizes and vocabularies, outside the timed region), then exported
with ``rnndeploy.export.export_zoo_model`` — the library call behind ``rnndeploy export``:
TorchScript export (+ the second trace that checks the forward does not depend on input
sizes), onnx.checker + strict shape inference, and ONNX Runtime vs torch at four shapes
including batch 1, seq 1 and twice the longest training sequence. A fresh process per model
so the first-export warm-up is counted, as a user pays it.

Target (issue 3): export + validation of each zoo model under 20 s on 2 CPU cores.

    .venv/bin/python benchmarks/export_bench.py --out benchmarks/results

writes OUT/export_bench.json and OUT/export_bench.md (command line and machine included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]

TARGET_S = 20.0


def cases(only: Optional[List[str]]) -> List[str]:
    """ "RECIPE" or "RECIPE:VARIANT" for every recipe (``only``: these recipes) and variant."""
    from rnndeploy.recipe import zoo_models

    wanted = [n for r in only for n in (r, f"{r}:*")] if only else None
    return [r if v is None else f"{r}:{v}" for r, v in zoo_models(wanted)]


def run_one(case: str, workdir: str) -> Dict[str, Any]:
    """Build and export one model in this process; the timings of the export call."""
    t_start = time.perf_counter()
    import torch

    from rnndeploy.data import load_dataset
    from rnndeploy.export import ExportOptions, export_zoo_model
    from rnndeploy.export.checkpoints import longest_train_seq
    from rnndeploy.models import build_model
    from rnndeploy.recipe import load_recipe

    t_import = time.perf_counter() - t_start
    name, _, variant = case.partition(":")
    recipe = load_recipe(name, variant or None)
    t0 = time.perf_counter()
    data_info = load_dataset(recipe.data).data_info
    t_data = time.perf_counter() - t0
    model = build_model(recipe.model, data_info, seed=0).eval()
    params = sum(p.numel() for p in model.parameters())
    section = recipe.export
    longest = longest_train_seq(section, data_info, recipe.data)  # what `rnndeploy export CKPT` uses
    opts = ExportOptions(
        exporter="auto",
        opset=int(section.get("opset") or 17),
        with_state=bool(section.get("with_state")) and "model" in model.spec().graphs and model.supports_state("model"),
        longest_train_seq=longest,
    )
    t0 = time.perf_counter()
    result = export_zoo_model(model, os.path.join(workdir, f"{model.config['name']}.onnx"), opts)
    t_export_total = time.perf_counter() - t0
    return {
        "case": case,
        "model": result.model,
        "family": result.family,
        "cell": model.config.get("cell"),
        "parameters": int(params),
        "with_state": opts.with_state,
        "longest_train_seq": longest,
        "graphs": [
            {
                "graph": g.graph,
                "exporter": g.exporter,
                "recurrence": g.recurrence,
                "export_s": g.seconds_export,
                "validate_s": g.seconds_validate,
                "validation_sizes": g.validation.sizes if g.validation else [],
                "worst_max_abs_err": max(g.validation.max_errors().values()) if g.validation else None,
                "file_bytes": g.info.file_size,
            }
            for g in result.graphs
        ],
        "export_and_validate_s": t_export_total,
        "import_s": t_import,
        "data_info_s": t_data,
        "torch": torch.__version__,
    }


def machine() -> Dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnx
    import onnxruntime
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "load_average_at_start": list(os.getloadavg()),
    }


def markdown(rows: List[Dict[str, Any]], mach: Dict[str, Any], command: str) -> str:
    lines = [
        "# Export + validation time per zoo model",
        "",
        f"Command: `{command}`  ",
        f"Machine: {mach['cpu']} ({mach['cores']} cores), Python {mach['python']}, torch {mach['torch']}, "
        f"onnx {mach['onnx']}, onnxruntime {mach['onnxruntime']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in mach['load_average_at_start'])}.",
        "",
        "One fresh process per model. *export+validate* is the library call behind `rnndeploy export` "
        "(TorchScript export and its shape-dependence re-trace, checker + strict shape inference, ONNX Runtime "
        "vs torch at 4 shapes incl. batch 1, seq 1 and 2 × the longest training sequence); *process* adds Python "
        f"start, torch import, dataset facts and model build. Target: export+validate < {TARGET_S:.0f} s.",
        "",
        "| recipe[:variant] | model | family | params | graphs (exporter, recurrence) | export s | validate s | export+validate s | process s | long seq | worst abs err | < 20 s |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | | | | FAILED: {r['error']} | | | | | | | ✗ |")
            continue
        graphs = ", ".join(f"{g['graph']} ({g['exporter']}, {g['recurrence']})" for g in r["graphs"])
        exp = sum(g["export_s"] for g in r["graphs"])
        val = sum(g["validate_s"] for g in r["graphs"])
        longs = max((max(s.values()) for g in r["graphs"] for s in g["validation_sizes"]), default=0)
        err = max((g["worst_max_abs_err"] or 0.0) for g in r["graphs"])
        ok = "✓" if r["export_and_validate_s"] < TARGET_S else "✗"
        lines.append(
            f"| {r['case']} | {r['model']} | {r['family']} | {r['parameters']:,} | {graphs} | {exp:.2f} | {val:.2f} | "
            f"{r['export_and_validate_s']:.2f} | {r['process_s']:.1f} | {longs} | {err:.1e} | {ok} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="directory for the JSON and Markdown")
    ap.add_argument("--only", action="append", help="recipe name (repeatable)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # worker mode: one case, JSON on stdout
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.workdir)))
        return 0

    command = "python benchmarks/export_bench.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    mach = machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        for case in cases(args.only):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--one", case, "--workdir", tmp],
                capture_output=True,
                text=True,
                cwd=str(REPO),
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"case": case, "error": err})
                print(f"{case}: FAILED {err}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["process_s"] = wall
            rows.append(row)
            print(
                f"{case}: export+validate {row['export_and_validate_s']:.2f} s (process {wall:.1f} s)", file=sys.stderr
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": "export", "command": command, "machine": mach, "target_s": TARGET_S, "rows": rows}
    (out / "export_bench.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    (out / "export_bench.md").write_text(markdown(rows, mach, command))
    print((out / "export_bench.md").read_text())
    return 0 if rows and all("error" not in r and r["export_and_validate_s"] < TARGET_S for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
