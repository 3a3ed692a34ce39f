"""CPU tuning benchmark: torch eager, ONNX Runtime defaults, OpenVINO defaults and ``rnndeploy tune``'s
choice for every trained zoo model, side by side, with the distance to the floor.

Each recipe (sine lstm/gru, sunspots, sentiment, charlm, g2p) is trained (its own epochs; --quick:
1 epoch) and exported; then, per model, in one process:

1. ``run_bench``: torch eager (the checkpoint), ``ort-cpu`` and (when installed) ``openvino`` with
   their default options, interleaved per (batch, seq) on the same inputs;
2. ``run_tune`` over the same grid with ``--max-accuracy-drop`` (default 0.5 %), accuracy on the
   real test split, keeping each model's deploy.json (chosen files by sha256, runner settings) as
   OUT/deploy/MODEL.deploy.json. Its baseline row is ONNX Runtime's defaults — an
   ``InferenceSession`` on the file with a default ``SessionOptions`` (every thread, full graph
   optimization), i.e. ``onnxruntime.InferenceSession(path)`` — timed in the same rotated turns
   as every candidate: the figure the targets are stated against, measured under the same
   conditions as the choice it is compared with.

Targets checked and written to OUT/cpu_tune.md: tuned median ≤ 0.5 × ORT defaults at batch ≥ 32 for
every LSTM/GRU model, never slower than ORT defaults at any measured shape (beyond 5 % timing noise),
every chosen variant within its accuracy budget on the real test split. The HTML page (--html)
has the latency-versus-task-metric trade-off per model and shape.

The coordinator runs the committed figures on a quiet machine with exactly:

    .venv/bin/python benchmarks/cpu_tune.py --out benchmarks/results --html

and while developing, at tiny scale (about a minute):

    .venv/bin/python benchmarks/cpu_tune.py --quick --out /tmp/cpu-tune
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]  # rnndeploy itself is installed (make install: pip install -e)

from rnndeploy.report import fmt  # noqa: E402

TARGET_RATIO = 0.5
NOISE = 0.05  # two timings of the same session in one process differ by this much on a quiet 2-core box
MODELS = [("sine", "lstm"), ("sine", "gru"), ("sunspots", None), ("sentiment", None), ("charlm", None), ("g2p", None)]


def train_and_export(recipe: str, variant: Optional[str], work: Path, epochs: Optional[int]) -> Tuple[str, str]:
    """(checkpoint dir, ONNX path of the graph to tune: the model, or a seq2seq encoder)."""
    from rnndeploy.export import export_checkpoint
    from rnndeploy.recipe import load_recipe
    from rnndeploy.train import train_recipe

    name = recipe + (f"-{variant}" if variant else "")
    ck = work / name
    overrides = [f"train.epochs={epochs}"] if epochs else []
    train_recipe(load_recipe(recipe, variant, overrides), str(ck), log=lambda s: None, show_progress=False)
    res = export_checkpoint(str(ck), str(work / f"{name}.onnx"))
    paths = res.paths
    return str(ck), paths.get("model") or paths["encoder"]


def run_model(recipe: str, variant: Optional[str], args: argparse.Namespace, work: Path, out: Path) -> Dict[str, Any]:
    from rnndeploy.backends import BACKENDS
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.bench.sweep import BenchConfig, run_bench
    from rnndeploy.optional import available
    from rnndeploy.tune import TuneConfig, run_tune

    ck, onnx_path = train_and_export(recipe, variant, work, args.epochs)
    source = resolve_source(onnx_path, checkpoint=ck)
    name = source.spec.name
    backends = ["ort-cpu"] + (["openvino"] if "openvino" in BACKENDS and available(BACKENDS["openvino"].module) else [])
    bench = run_bench(source, BenchConfig(backends=tuple(backends), batches=args.batch, seqs=args.seq,
                                          min_time=args.min_time, warmup=5, show_progress=False))
    tune_src = resolve_source(onnx_path)
    # The chosen artefacts (ONNX files) stay in the work directory: the tracked tree keeps only
    # each model's deploy.json (which file, by sha256, with which runner settings per shape).
    deploy = work / "deploy" / name
    deploy.parent.mkdir(parents=True, exist_ok=True)
    tuned = run_tune(tune_src, TuneConfig(batches=args.batch, seqs=args.seq, max_accuracy_drop=args.max_accuracy_drop,
                                          budget=args.budget, min_time=args.min_time, rows=args.rows,
                                          out_dir=str(deploy), show_progress=False))
    (out / "deploy").mkdir(exist_ok=True)
    shutil.copyfile(deploy / "deploy.json", out / "deploy" / f"{name}.deploy.json")
    cell = str(source.spec.attrs.get("cell", ""))
    return {"name": name, "cell": cell, "bench": bench, "tune": tuned}


def table(results: List[Dict[str, Any]], args: argparse.Namespace) -> Tuple[List[str], List[str]]:
    """(Markdown lines, target failures)."""
    lines = ["| model | batch | seq | torch eager ms | ORT default ms | OpenVINO default ms | tuned ms | tuned choice "
             "| tuned / ORT default | tuned % of floor | task metric (tuned vs FP32) |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
    failures: List[str] = []
    for r in results:
        tuned = r["tune"]
        for ch in tuned.choices:
            raw = ch.baseline_median
            torch_m = r["bench"].get("torch", ch.batch, ch.seq)
            ov = r["bench"].get("openvino", ch.batch, ch.seq)
            ratio = ch.median / raw if ch.median else None
            pof = ch.floor / ch.median if ch.floor and ch.median else None
            cand = next((c for c in tuned.candidates if c.label == ch.label), None)
            check = tuned.check_for(cand) if cand else None
            metric = "—" if check is None or check.value is None else (
                f"{check.metric} {check.value:.4g} ({check.change_pct:+.2g}%)")
            lines.append(f"| {r['name']} | {ch.batch} | {ch.seq} | {fmt.ms(torch_m.median if torch_m else None)} | "
                         f"{fmt.ms(raw)} | {fmt.ms(ov.median if ov else None)} | {fmt.ms(ch.median)} | {ch.label} | "
                         f"{fmt.ratio(ratio)} | {fmt.pct(pof, 1)} | {metric} |")
            if ratio is None:
                failures.append(f"{r['name']} b{ch.batch} s{ch.seq}: nothing measured")
                continue
            if r["cell"] in ("lstm", "gru") and ch.batch >= 32 and ratio > TARGET_RATIO:
                failures.append(f"{r['name']} b{ch.batch} s{ch.seq}: tuned {ratio:.2f}× ORT defaults (target ≤ 0.5×)")
            if ratio > 1.0 + NOISE:  # ORT's defaults are themselves a candidate: more than noise is a miss
                failures.append(f"{r['name']} b{ch.batch} s{ch.seq}: tuned slower than ORT defaults ({ratio:.2f}×)")
            if check is not None and not check.passed:
                failures.append(f"{r['name']}: chosen {ch.label} failed its accuracy check")
    return lines, failures


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for cpu_tune.json / .md (/.html) and deploy/MODEL.deploy.json")
    p.add_argument("--quick", action="store_true", help="tiny scale: sine LSTM only, 1 epoch, batch 1,4 × seq 8")
    p.add_argument("--batch", default="1,32,128", help="batch sizes (default 1,32,128)")
    p.add_argument("--seq", default="16,128", help="sequence lengths (default 16,128)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timed calls per row and shape")
    p.add_argument("--max-accuracy-drop", type=float, default=0.5, help="percent; the task-metric budget")
    p.add_argument("--budget", type=float, default=None, help="seconds per model for tune's measurements")
    p.add_argument("--rows", type=int, default=512, help="test-split rows for the accuracy checks")
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    p.add_argument("--html", action="store_true", help="also write cpu_tune.html (trade-off curves)")
    args = p.parse_args(argv)
    models = MODELS
    if args.quick:
        models, args.batch, args.seq, args.min_time, args.epochs = [("sine", "lstm")], "1,4", "8", 0.05, 1
    args.batch = tuple(int(x) for x in str(args.batch).split(","))
    args.seq = tuple(int(x) for x in str(args.seq).split(","))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="cpu-tune-") as tmp:
        for recipe, variant in models:
            print(f"{time.strftime('%H:%M:%S')} {recipe} {variant or ''}: train, export, bench, tune", flush=True)
            results.append(run_model(recipe, variant, args, Path(tmp), out))
    from rnndeploy.environment import describe_machine
    from rnndeploy.report import write_html, write_markdown
    from rnndeploy.report.schema import write_results

    docs = [x for r in results for x in (r["bench"], r["tune"])]
    write_results(str(out / "cpu_tune.json"), docs)
    lines, failures = table(results, args)
    machine = describe_machine()
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/cpu_tune.py"] + (argv or sys.argv[1:]))
    head = ["# CPU tuning: torch eager, ORT defaults, OpenVINO defaults, rnndeploy tune", "",
            f"Command: `{command}` · machine: {machine.get('cpu')} ({machine.get('cpu_affinity')} cores), "
            f"load average {machine.get('load_average')} · accuracy budget {args.max_accuracy_drop:g} % of the FP32 "
            "task metric on the real test split. Medians; 'ORT default' = onnxruntime.InferenceSession(path).", ""]
    verdict = ["", "Targets: " + ("all met." if not failures else f"{len(failures)} missed:")] + [f"- {f}" for f in failures]
    (out / "cpu_tune.md").write_text("\n".join(head + lines + verdict) + "\n")
    write_markdown(str(out / "cpu_tune_details.md"), docs)
    if args.html:
        write_html(str(out / "cpu_tune.html"), docs, "rnndeploy CPU tuning")
    print("\n".join(lines + verdict))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
