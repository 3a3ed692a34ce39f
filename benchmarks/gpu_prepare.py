"""Prepare everything the GPU verification needs, on the CPU box, in one command.

    .venv/bin/python benchmarks/gpu_prepare.py

1. the prepared folder ``.gpuprep`` (rnndeploy.campaign.prepare: checkpoints, FP32 + streaming
   ONNX, FP16 ONNX of both policies, torch FP32 goldens, test-split goldens, sampling/decoding
   references, manifest with the sha256 of every file);
2. the kit archive ``.gpuship/kit.tar.xz``: the trt86 kit staged by
   ``../shared/device/trt86/make-kit.sh .devkit`` (``.devkit/stage/trt86``), less what the device
   never loads (TRT86_PRUNE, each with its proof), compressed with xz -6 (reused while the staged
   kit, the prune list and the preset are unchanged; -6 takes about 20 min on 2 cores, -9e
   (``--xz 9e``) hours on a busy box and saves a call only if it gets the kit under ~466 MiB);
3. the call plan: the archive cut into parts that fill each device call beside the tree
   (``.gpuship/part-NNN``, SHA256SUMS, KIT-PARTS.txt), and ``.gpuship/plan.json`` + ``PLAN.md``:
   each call's carry list, command, timeout and when it should end within the device budget.

Then rehearse it here (every GPU step fails with "no CUDA GPU"):
``.venv/bin/python benchmarks/gpu_verify.py rehearse``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from rnndeploy.campaign import shipping
from rnndeploy.campaign.plan import read_manifest
from rnndeploy.campaign.prepare import PrepareOptions, prepare
from rnndeploy.errors import RnnDeployError, UsageError

REPO = Path(__file__).resolve().parents[1]

# What the device never loads from the trt86 kit, with the proof (checked by the rehearsal, which
# runs the device scripts on the pruned kit, and by tests/test_gpu_kit.py's import check).
TRT86_PRUNE = (
    shipping.Pruned("site/pip", "the device installs nothing into the kit (onnxruntime-gpu goes to the device's "
                                "own Python); the CPU box keeps pip in .devkit/stage"),
    shipping.Pruned("site/onnx/backend/test", "ONNX's operator test data: rnndeploy and its tests import onnx, "
                                               "onnx.helper, onnx.numpy_helper and onnx.reference, never onnx.backend"),
    shipping.Pruned("site/numpy/core/tests", "numpy's own test suite (never collected: pytest runs tests/ only)"),
    shipping.Pruned("site/numpy/lib/tests", "numpy's own test suite"),
    shipping.Pruned("site/numpy/typing/tests", "numpy's own test suite"),
)


def _log(msg: str) -> None:
    print(f"[gpu_prepare] {msg}", file=sys.stderr, flush=True)


def kit_fingerprint(stage: Path, preset: str) -> str:
    """Changes when the staged kit, the prune list or the xz preset change (then the archive is rebuilt)."""
    h = hashlib.sha256()
    info = stage / "KIT-INFO.txt"
    h.update(info.read_bytes() if info.is_file() else b"")
    for p in sorted(stage.rglob("*")):
        if p.is_file():
            h.update(f"{p.relative_to(stage)}:{p.stat().st_size}\n".encode())
    h.update(json.dumps([(p.path, p.why) for p in TRT86_PRUNE]).encode() + preset.encode())
    return h.hexdigest()


def build_kit(stage: Path, ship: Path, preset: str) -> dict:
    """The pruned, compressed kit archive in ``ship`` (reused when its fingerprint matches)."""
    if not (stage / "bin" / "python3.9").exists():
        raise UsageError(f"no staged trt86 kit at {stage}",
                         "build it first: bash ../shared/device/trt86/make-kit.sh .devkit (10-30 min)")
    archive = ship / "kit.tar.xz"
    meta_path = ship / "kit.json"
    fp = kit_fingerprint(stage, preset)
    if archive.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fp and meta.get("sha256") == shipping.sha256_file(archive):
            _log(f"kit archive reused: {archive} ({meta['bytes'] / 2**20:.1f} MiB, xz {meta['xz']})")
            return meta
    level = int(preset.rstrip("e"))
    _log(f"packing {stage} with xz -{preset} (-6: about 20 min on 2 cores; -9e: hours on a busy box)")
    meta = shipping.pack_kit(stage, archive, TRT86_PRUNE,
                             preset=level | (shipping.lzma.PRESET_EXTREME if preset.endswith("e") else 0))
    meta["fingerprint"] = fp
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    _log(f"kit archive: {meta['bytes'] / 2**20:.1f} MiB ({meta['unpacked_bytes'] / 2**20:.0f} MiB unpacked) "
         f"in {meta['compress_seconds']} s")
    return meta


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / ".gpuprep"), help="the prepared folder (default .gpuprep, git-ignored)")
    ap.add_argument("--ship", default=str(REPO / ".gpuship"), help="kit parts and call plan (default .gpuship)")
    ap.add_argument("--kit-stage", default=str(REPO / ".devkit" / "stage" / "trt86"), help="the staged trt86 kit")
    ap.add_argument("--models", help="comma-separated: recipe (its default model), recipe:variant, recipe:* "
                                     "(default: every zoo model)")
    ap.add_argument("--retrain", action="store_true", help="train even where an intact checkpoint exists")
    ap.add_argument("--epochs", type=int, help="override every recipe's epochs (tests; default: the recipe's)")
    ap.add_argument("--golden-mib", type=float, default=2.0, help="sweep golden budget per graph, MiB (default 2)")
    ap.add_argument("--stream-golden-mib", type=float, default=0.5, help="per streaming graph (default 0.5)")
    ap.add_argument("--test-golden-mib", type=float, default=2.0, help="test-split golden per graph (default 2)")
    ap.add_argument("--max-mib", type=float, default=30.0, help="fail when the folder exceeds this (default 30)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, no streaming forms (tests, development)")
    ap.add_argument("--no-kit", action="store_true", help="the prepared folder only (no kit, no plan)")
    ap.add_argument("--replan", action="store_true",
                    help="keep the prepared folder and the kit archive as they are; cut the parts and plan the calls "
                         "again (e.g. with other --mib-per-s / --call-s assumptions)")
    ap.add_argument("--xz", default="6", help="xz preset of the kit archive, e.g. 6 or 9e (default 6)")
    ap.add_argument("--budget", type=float, default=900.0, help="device seconds for all calls (default 900)")
    ap.add_argument("--start-s", type=float, default=120.0, help="assumed machine start, s (default 120)")
    ap.add_argument("--call-s", type=float, default=10.0, help="assumed fixed cost per call, s (default 10)")
    ap.add_argument("--mib-per-s", type=float, default=8.0, help="assumed transfer rate, MiB/s (default 8)")
    ap.add_argument("--back-s", type=float, default=120.0, help="kept for the last transfer back, s (default 120)")
    ap.add_argument("--limit-mib", type=float, default=64.0, help="what one call may carry, tree included (64)")
    ap.add_argument("--extra-args", default="", help="appended to every device command (e.g. ' --models sine-lstm')")
    args = ap.parse_args(argv)
    command = " ".join([".venv/bin/python", "benchmarks/gpu_prepare.py"] + [shlex.quote(a) for a in (argv or sys.argv[1:])])
    try:
        opts = PrepareOptions(models=tuple(m.strip() for m in args.models.split(",")) if args.models else None,
                              retrain=args.retrain, epochs=args.epochs, golden_mib=args.golden_mib,
                              stream_golden_mib=args.stream_golden_mib, test_golden_mib=args.test_golden_mib,
                              max_mib=args.max_mib, quick=args.quick)
        prep = Path(args.out).resolve()
        doc = read_manifest(prep) if args.replan else prepare(prep, opts, command, _log)
        if args.no_kit:
            return 0
        ship = Path(args.ship).resolve()
        ship.mkdir(parents=True, exist_ok=True)
        kit = build_kit(Path(args.kit_stage), ship, args.xz)
        timing = shipping.Timing(budget_s=args.budget, start_s=args.start_s, call_s=args.call_s,
                                 mib_per_s=args.mib_per_s, back_s=args.back_s)
        meta_bytes = 4096  # SHA256SUMS + KIT-PARTS.txt
        plan = shipping.plan_calls(shipping.tree_bytes(REPO), doc["bytes"], kit["bytes"],
                                   meta_bytes, prep.relative_to(REPO).as_posix() if prep.is_relative_to(REPO) else str(prep),
                                   ship.relative_to(REPO).as_posix() if ship.is_relative_to(REPO) else str(ship),
                                   timing, int(args.limit_mib * 2**20), args.extra_args)
        shipping.split_archive(ship / "kit.tar.xz", ship, plan.part_sizes, unpacked_bytes=kit["unpacked_bytes"])
        shipping.write_plan(plan, ship)
        print((ship / "PLAN.md").read_text())
    except RnnDeployError as exc:
        print(f"gpu_prepare.py: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
