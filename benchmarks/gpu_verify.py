"""GPU verification of every zoo model: the Python entry points of benchmarks/gpu_verify.sh.

A thin driver over ``rnndeploy.campaign`` (see that package for what each step does). Runs on
the GPU machine under two interpreters: ``--side trt`` under the trt86 kit's Python 3.9 (no
torch), ``--side torch`` under the device's Python with torch; and on the CPU box for the plan,
the dry run and the rehearsal.

    python benchmarks/gpu_verify.py plan --prep .gpuprep                 list the units, plan every engine
    python benchmarks/gpu_verify.py run --side trt --prep P --state S    pending units of one side, until --deadline
    python benchmarks/gpu_verify.py report --prep P --state S --out DIR  merge, check targets, write the report
    python benchmarks/gpu_verify.py dry-run --prep P --state S --out DIR both sides with CPU stand-ins
    python benchmarks/gpu_verify.py rehearse                             the device calls of .gpuship/plan.json, here
    python benchmarks/gpu_verify.py publish FILES_AT                     copy a GPU run into benchmarks/results/gpu/
    (stash, assemble, locked, verify-prep, status: used by gpu_verify.sh on the machine)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Optional

from rnndeploy.campaign import plan as cp
from rnndeploy.campaign import shipping
from rnndeploy.campaign.schedule import GpuLock, State, run_units
from rnndeploy.campaign.steps import Context, Settings, run_unit, say
from rnndeploy.campaign.summary import publish, record_environment, report_mode, write_report
from rnndeploy.errors import RnnDeployError

REPO = Path(__file__).resolve().parents[1]


def _settings(args: Any) -> Settings:
    return Settings(min_time=args.min_time, max_samples=args.max_samples, build_timeout=args.build_timeout,
                    models=tuple(args.models.split(",")) if args.models else None,
                    variants=tuple(args.variants.split(",")) if args.variants else None)


def cmd_plan(args: Any) -> int:
    from rnndeploy.engine.builder import BuildOptions, ShapeOptions, plan_build

    ctx = Context(Path(args.prep), None, "plan", False, settings=_settings(args))
    units = ctx.units(None if args.side == "all" else args.side)
    planned = []
    if args.side in ("trt", "all"):
        for u in units:
            if u.kind != "build":
                continue
            info = cp.ENGINE_VARIANTS[u.variant]
            opts = BuildOptions(fp16=info["precision"] == "fp16", policy=info["policy"], hoist=bool(info.get("hoist")),
                                shapes=ShapeOptions(profiles=cp.PROFILES))
            plan = plan_build(ctx.path(ctx.graphs[u.graph_key].onnx), opts)
            planned.append({"unit": u.id, "profiles": [p.render() for p in plan.profiles], "fp16": plan.fp16,
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


def cmd_run(args: Any) -> int:
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM (the call's time limit)")

    signal.signal(signal.SIGTERM, stop)
    state = State(Path(args.state))
    ctx = Context(Path(args.prep), state, args.side, args.dry_run, args.deadline, _settings(args))
    record_environment(state, args.side, args.dry_run)
    lock = GpuLock(Path(args.lock), args.side) if args.lock else None
    if lock and args.prefer:
        lock.prefer(True)
    try:
        counts = run_units(state, ctx.units(args.side, args.max_tier), lambda u: run_unit(ctx, u), args.deadline,
                           args.retry_failed, lock, say)
    finally:
        if lock and args.prefer:
            lock.prefer(False)
    say(f"{args.side} side, tiers <= {args.max_tier}: {counts}")
    return 0


def cmd_report(args: Any) -> int:
    ctx = Context(Path(args.prep), State(Path(args.state)), "report", args.dry_run, settings=_settings(args))
    write_report(ctx, Path(args.out), report_mode(args.dry_run), args.title)
    return 0


def cmd_dry_run(args: Any) -> int:
    """Both sides in this process with CPU stand-ins, then the report (tests and development)."""
    state = State(Path(args.state))
    for side in ("trt", "torch"):
        ctx = Context(Path(args.prep), state, side, True, settings=_settings(args))
        record_environment(state, side, True)
        say(f"{side}: {run_units(state, ctx.units(side), lambda u, c=ctx: run_unit(c, u), say=say)}")
    write_report(Context(Path(args.prep), state, "report", True, settings=_settings(args)), Path(args.out), "dry-run",
                 args.title)
    return 0


def cmd_verify_prep(args: Any) -> int:
    problems = cp.verify_manifest(Path(args.prep))
    print("\n".join(problems[:20]) or f"prepared folder {args.prep} intact")
    return 1 if problems else 0


def cmd_stash(args: Any) -> int:
    got = shipping.stash(Path(args.src), Path(args.dest))
    print(f"stashed {len(got['stashed'])} part(s) ({', '.join(got['stashed']) or 'none new'}); "
          f"{args.dest} has {got['have']}/{got['total']}" + (f"; missing {' '.join(got['missing'])}" if got["missing"] else ""))
    return 0


def cmd_assemble(args: Any) -> int:
    out = shipping.assemble(Path(args.parts), Path(args.dest), timeout_s=args.timeout)
    print(json.dumps(out))
    return 0 if out.get("state") == "done" else 1


def cmd_locked(args: Any) -> int:
    """Run a command while holding the GPU lock (waiting for a preferred side first)."""
    lock = GpuLock(Path(args.lock), args.side)
    with lock.held(args.deadline) as got:
        if not got:
            say(f"{' '.join(args.cmd)}: not run, the GPU lock was not free before the deadline")
            return 124
        return subprocess.call(args.cmd)


def cmd_rehearse(args: Any) -> int:
    """Run the plan's device calls here, in a copy of the tree, the kit unpacked exactly as on the machine."""
    plan = json.loads((Path(args.ship) / shipping.PLAN_FILE).read_text())
    result = shipping.rehearse(plan, REPO, Path(args.root), torch_python=args.torch_python, say=say,
                               keep=args.keep)
    print(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


def cmd_publish(args: Any) -> int:
    dest = publish(Path(args.files), Path(args.results), args.date, args.gpu)
    print(dest)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: Any) -> None:
        p.add_argument("--prep", default=str(REPO / ".gpuprep"), help="the prepared folder (gpu_prepare.py)")
        p.add_argument("--state", default="/tmp/gpuverify/state", help="state folder (resumable)")
        p.add_argument("--models", help="comma-separated model names (default: all)")
        p.add_argument("--variants", help="engine variants (default all: fp16,fp32,fp16-keep,fp16-hoist)")
        p.add_argument("--title", default=None)
        p.add_argument("--min-time", type=float, default=0.3, help="seconds of timed calls per bench configuration")
        p.add_argument("--max-samples", type=int, default=200, help="timed calls at most per configuration")
        p.add_argument("--build-timeout", type=float, default=240.0, help="seconds before a build counts as failed")

    p = sub.add_parser("plan", help="list the units; plan every engine (no GPU needed)")
    common(p)
    p.add_argument("--side", choices=["trt", "torch", "all"], default="all")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("run", help="run pending units of one side until the deadline")
    common(p)
    p.add_argument("--side", choices=["trt", "torch"], required=True)
    p.add_argument("--deadline", type=float, help="epoch seconds: start no unit that would not finish by then")
    p.add_argument("--max-tier", type=int, default=99)
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="CPU stand-ins (rnndeploy.campaign.steps)")
    p.add_argument("--lock", help="GPU lock file shared with the other side")
    p.add_argument("--prefer", action="store_true", help="the other side starts no unit while this one runs")
    p = sub.add_parser("report", help="merge results, check targets, write the report files")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true")
    p = sub.add_parser("dry-run", help="both sides with CPU stand-ins in this process, then the report")
    common(p)
    p.add_argument("--out", required=True)
    p = sub.add_parser("verify-prep", help="check the prepared folder's sha256")
    p.add_argument("--prep", required=True)
    p = sub.add_parser("stash", help="check carried kit parts and move them into the stash")
    p.add_argument("--src", required=True)
    p.add_argument("--dest", required=True)
    p = sub.add_parser("assemble", help="unpack the kit while its parts arrive (background)")
    p.add_argument("--parts", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--timeout", type=float, default=1500.0, help="seconds to wait for the next part")
    p = sub.add_parser("locked", help="run CMD holding the GPU lock")
    p.add_argument("--lock", required=True)
    p.add_argument("--side", required=True)
    p.add_argument("--deadline", type=float)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("rehearse", help="CPU box: run the device calls of the plan here (every GPU step must fail "
                                        "with 'no CUDA GPU')")
    p.add_argument("--ship", default=str(REPO / ".gpuship"))
    p.add_argument("--root", default=f"/tmp/gpuverify-rehearsal-{os.getpid()}", help="stands for the machine's /tmp")
    p.add_argument("--torch-python", default=str(REPO / ".venv" / "bin" / "python"))
    p.add_argument("--keep", action="store_true", help="keep ROOT (2 GB with the real kit)")
    p = sub.add_parser("publish", help="copy a GPU run's files into benchmarks/results/gpu/<date>-<gpu>/")
    p.add_argument("files", help="files_at of the last device call")
    p.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "gpu"))
    p.add_argument("--date")
    p.add_argument("--gpu")
    args = ap.parse_args(argv)
    if getattr(args, "cmd", None) and args.cmd[:1] == ["--"]:
        args.cmd = args.cmd[1:]
    handlers = {"plan": cmd_plan, "run": cmd_run, "report": cmd_report, "dry-run": cmd_dry_run,
                "verify-prep": cmd_verify_prep, "stash": cmd_stash, "assemble": cmd_assemble, "locked": cmd_locked,
                "rehearse": cmd_rehearse, "publish": cmd_publish}
    try:
        return handlers[args.command](args)
    except RnnDeployError as exc:
        print(f"gpu_verify.py: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
