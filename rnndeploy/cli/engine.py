"""``rnndeploy build-engine``: ONNX → TensorRT engine (+ JSON sidecar)."""

from __future__ import annotations

import os
from typing import Optional, Tuple

import click

from rnndeploy import jsonio
from rnndeploy.cli.types import DEVICE_INDEX, Number, OutputPath
from rnndeploy.errors import UsageError
from rnndeploy.validation import MAX_WORKSPACE_MIB


@click.command("build-engine")
@click.argument("onnx_file", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None, metavar="MODEL.plan", type=OutputPath(), help="Engine file to write (MODEL.plan.json is written beside it).")
@click.option("--fp16/--fp32", "fp16", default=None, help="Precision (default: the recipe's [engine] precision in the ONNX metadata, else FP32).")
@click.option("--policy", type=click.Choice(["fp16", "fp16-keep-recurrence"]), default=None,
              help="FP16 policy: fp16 = everything with an FP16 kernel (default); fp16-keep-recurrence = LSTM/GRU/RNN stay FP32.")
@click.option("--fp16-path", type=click.Choice(["auto", "strongly-typed", "flag"]), default="auto", show_default=True,
              help="How FP16 reaches TensorRT: auto = strongly typed from an FP16 ONNX where TensorRT has it (10, 11), "
              "else the FP16 builder flag (8.6); flag = the builder flag first (10).")
@click.option("--batch", default=None, metavar="MIN:OPT:MAX", help="Profile range of the batch axis, e.g. 1:8:32.")
@click.option("--seq", default=None, metavar="MIN:OPT:MAX", help="Profile range of the time axis, e.g. 1:128:1024.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=MIN:OPT:MAX", help="Range of any other named axis (e.g. src_seq=1:64:256).")
@click.option("--profile", "profiles", multiple=True, metavar="AXIS=MIN:OPT:MAX,...",
              help="One optimization profile per use, e.g. --profile batch=1:1:1,seq=1:64:2048 --profile batch=8:32:256,seq=1:128:512.")
@click.option("--min-shapes", multiple=True, metavar="NAME:DxD,...", help="trtexec syntax (x:1x1x8,lengths:1); repeat the three for more profiles.")
@click.option("--opt-shapes", multiple=True, metavar="NAME:DxD,...", help="trtexec syntax; opt = max when omitted.")
@click.option("--max-shapes", multiple=True, metavar="NAME:DxD,...", help="trtexec syntax.")
@click.option("--workspace", "workspace_mib", type=Number(integer=True, minimum=1, maximum=MAX_WORKSPACE_MIB), default=None, metavar="MiB", help="Builder workspace limit (default: TensorRT's).")
@click.option("--opt-level", type=Number(integer=True, minimum=0, maximum=5), default=None, metavar="N", help="Builder optimisation level 0-5 (default: TensorRT's, 3).")
@click.option("--timing-cache", default=None, metavar="FILE", type=OutputPath(), help="Load the timing cache from FILE if it exists; save it after the build.")
@click.option("--no-stub-tactics", is_flag=True,
              help="Disable the cuBLAS/cuBLASLt/cuDNN tactic sources (automatic when those libraries are the trt86 kit's stubs).")
@click.option("--keep-stub-tactics", is_flag=True, help="Keep those tactic sources even when the libraries look like stubs.")
@click.option("--tf32", is_flag=True, help="Allow TF32 in FP32 layers (off by default: FP32 parity with torch needs full FP32).")
@click.option("--keep-node", "keep_nodes", multiple=True, metavar="NAME", help="Keep this ONNX node in FP32 too (repeatable).")
@click.option("--hoist-input-projection", "hoist", is_flag=True,
              help="Rewrite LSTM/GRU/RNN nodes so the input projection of all timesteps is one MatMul ahead of the "
              "recurrence (a Scan then carries only the recurrent matmul). Outputs are unchanged; try it for speed.")
@click.option("--trt-version", default=None, metavar="X.Y",
              help="TensorRT the plan is for (checks the ONNX opset its parser reads). Default: the installed one.")
@click.option("--device", type=DEVICE_INDEX, default=0, show_default=True, help="CUDA device index.")
@click.option("--progress/--no-progress", default=None, help="Build progress on stderr (default: when stderr is a terminal).")
@click.option("--verbose", is_flag=True, help="TensorRT's verbose log on stderr.")
@click.option("--write-fp16-onnx", default=None, metavar="FILE.onnx", type=OutputPath(),
              help="Write the FP16 ONNX this policy produces (onnx only; no TensorRT or GPU needed). Without -o, stop there.")
@click.option("--dry-run", is_flag=True, help="Print the plan (profiles, precision, kept nodes) and stop; needs no TensorRT.")
@click.option("--json", "as_json", is_flag=True, help="Print the sidecar (or the plan) as JSON.")
def build_engine(onnx_file: str, output: Optional[str], fp16: Optional[bool], policy: Optional[str], fp16_path: str,
                 batch: Optional[str], seq: Optional[str], dims: Tuple[str, ...], profiles: Tuple[str, ...],
                 min_shapes: Tuple[str, ...], opt_shapes: Tuple[str, ...], max_shapes: Tuple[str, ...],
                 workspace_mib: Optional[int], opt_level: Optional[int], timing_cache: Optional[str],
                 no_stub_tactics: bool, keep_stub_tactics: bool, tf32: bool, keep_nodes: Tuple[str, ...], hoist: bool, trt_version: Optional[str], device: int,
                 progress: Optional[bool], verbose: bool, write_fp16_onnx: Optional[str], dry_run: bool, as_json: bool) -> None:
    """Build a TensorRT engine from an ONNX file, with optimization profiles from the
    model's metadata (or the options below) and FP16 chosen the way the installed
    TensorRT supports it (8.6: builder flag + FP32 constraints; 10: strongly typed from
    an FP16 ONNX, flag as fallback; 11: strongly typed). Needs TensorRT and a GPU
    (exit 3 otherwise), except with --dry-run or --write-fp16-onnx alone.

    Written to the TensorRT 8.6, 10 and 11 APIs but not yet run on a GPU with any of
    them: the plan, the FP16 ONNX and the CPU-side checks are tested, the build is not.

    \b
      rnndeploy build-engine sine.onnx --fp16 -o sine.plan
      rnndeploy build-engine clf.onnx --fp16 --policy fp16-keep-recurrence --batch 1:8:64 --seq 1:128:1024 -o clf.plan
      rnndeploy build-engine m.onnx --min-shapes x:1x1x8 --opt-shapes x:8x128x8 --max-shapes x:32x1024x8 -o m.plan
    """
    from rnndeploy.cli.types import distinct_outputs
    from rnndeploy.engine.builder import BuildOptions, ShapeOptions, build_from_plan, plan_build

    distinct_outputs(click.get_current_context(), ["output", "write_fp16_onnx", "timing_cache"], inputs=["onnx_file"])
    if output is not None and output + ".json" in (write_fp16_onnx, timing_cache):
        raise UsageError(f"{output}.json is the engine's sidecar", "write the other output elsewhere")

    if no_stub_tactics and keep_stub_tactics:
        raise UsageError("--no-stub-tactics and --keep-stub-tactics contradict each other", "give at most one")
    if output is None and write_fp16_onnx is None and not dry_run:
        raise UsageError("no output: give -o MODEL.plan (or --write-fp16-onnx FILE, or --dry-run)")
    options = BuildOptions(
        fp16=fp16, policy=policy, fp16_path=fp16_path,
        shapes=ShapeOptions(min_shapes=min_shapes, opt_shapes=opt_shapes, max_shapes=max_shapes, profiles=profiles,
                            batch=batch, seq=seq, dims=dims),
        workspace_mib=workspace_mib, opt_level=opt_level, timing_cache=timing_cache,
        stub_tactics="disable" if no_stub_tactics else ("keep" if keep_stub_tactics else "auto"),
        tf32=tf32, progress=progress, verbose=verbose, device=device, keep_nodes=keep_nodes, hoist=hoist,
        trt_version=trt_version,
    )
    from rnndeploy.graph.files import auto_normalize_path

    if os.path.isfile(onnx_file):
        onnx_file, line = auto_normalize_path(onnx_file, use="building from")
        if line:
            click.echo(f"rnndeploy: {line}", err=True)
    plan = plan_build(onnx_file, options)
    if dry_run:
        _print_plan(plan, as_json)
        return
    if write_fp16_onnx is not None:
        from rnndeploy.engine.builder import write_fp16_onnx as write_fp16

        if output is not None:  # the engine needs TensorRT: say so before writing anything
            from rnndeploy.optional import require

            require("tensorrt", "building TensorRT engines")

        report = write_fp16(plan, write_fp16_onnx)
        click.echo(f"wrote {write_fp16_onnx}: {report.render()}", err=as_json)
        _print_check(plan, write_fp16_onnx, as_json)
        if output is None:
            return
    result = build_from_plan(plan, output)
    click.echo(jsonio.dumps(result.sidecar, indent=2, sort_keys=True) if as_json else result.render())


def _print_check(plan, path: str, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    """FP16 file vs FP32 file on seeded inputs (onnxruntime CPU, or onnx's reference evaluator)."""
    from rnndeploy.engine.builder import check_fp16_onnx

    try:
        rows = check_fp16_onnx(plan, path)
    except (NotImplementedError, ImportError) as exc:  # e.g. onnx 1.19's evaluator has no bidirectional LSTM
        click.echo(f"numeric check skipped: {exc}", err=True)
        return
    for r in rows:
        flag = "" if r["rel_l2_target"] is None or r["rel_l2"] <= r["rel_l2_target"] else "  ABOVE the FP16 target"
        click.echo(f"  {r['name']}: rel L2 {r['rel_l2']:.2e}, max |err| {r['max_abs']:.2e} vs the FP32 graph "
                   f"(target {r['rel_l2_target']}){flag}", err=as_json)


def _print_plan(plan, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    from rnndeploy.engine.profiles import describe_profiles

    if as_json:
        click.echo(jsonio.dumps(plan.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"onnx       {plan.onnx_path} ({'FP16 graph' if plan.onnx_is_fp16 else 'FP32 graph'})")
    click.echo(f"precision  {'fp16, policy ' + str(plan.policy) if plan.fp16 else 'fp32'}")
    if plan.kept_fp32:
        click.echo("kept FP32  " + ", ".join(f"{k} ({v})" for k, v in sorted(plan.kept_fp32.items())))
    click.echo(f"profiles   from {plan.profiles_origin}: {describe_profiles(plan.profiles)}")
    if plan.rewrite:
        click.echo(f"rewrite    {len(plan.rewrite['rewritten'])} node(s) hoisted, left: {plan.rewrite['skipped'] or 'none'}")
    for note in plan.notes:
        click.echo(f"note       {note}")
