"""``rnndeploy tune`` and ``rnndeploy quantize``."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import click

from rnndeploy.cli.harness_options import OUTPUT
from rnndeploy.cli.types import NON_NEGATIVE_FLOAT, POSITIVE_INT, POSITIVE_SECONDS, OutputPath, distinct_outputs

VARIANTS = ("fp32", "int8", "int8-keep-recurrence", "int8-keep-head", "bf16", "fp16")


@click.command()
@click.argument("model", metavar="MODEL.onnx")
@click.option("--batch", "batches", default="1,32", show_default=True, metavar="B,...", help="Batch sizes of the grid.")
@click.option("--seq", "seqs", default="16,128", show_default=True, metavar="S,...", help="Sequence lengths of the grid.")
@click.option("--runtime", "runtimes", multiple=True, metavar="NAME",
              help="Runtime to try (repeatable): ort-cpu, openvino, trt. Default: every one installed; trt "
                   "only where a CUDA device is visible (not run by this project yet: no GPU).")
@click.option("--variant", "variants", multiple=True, type=click.Choice(VARIANTS),
              help="Precision variant to try (repeatable; fp32 is always tried): INT8 (ONNX Runtime), bf16 "
                   "(OpenVINO), fp16 (TensorRT). Default: all that apply to the runtimes tried.")
@click.option("--threads", "threads", metavar="N,...", help="Intra-op thread counts to try (default: 1 and all cores).")
@click.option("--max-accuracy-drop", type=NON_NEGATIVE_FLOAT, metavar="PCT",
              help="Reduced precision passes when the task metric is at most PCT percent worse than FP32's "
                   "(default: it must meet the model's tolerances).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["test", "val", "train"]),
              help="Data split for the accuracy check (rebuilt from the model's metadata).")
@click.option("--rows", type=POSITIVE_INT, default=512, show_default=True, help="Rows of the split used.")
@click.option("--budget", type=POSITIVE_SECONDS, metavar="SECONDS", help="Seconds for the run: no accuracy check or measurement starts after them (skips are listed).")
@click.option("--min-time", type=POSITIVE_SECONDS, default=0.3, show_default=True, help="Seconds of timed calls per candidate and shape.")
@click.option("--decoder", "decoder_path", metavar="FILE", help="seq2seq: the decoder-step ONNX (for the task metric).")
@click.option("--out", "out_dir", metavar="DIR", type=OutputPath(kind="dir"),
              help="Write the chosen artefact(s) and deploy.json (runner settings) here: a new or empty "
                   "directory, or an earlier tune output, replaced as a whole only when the run succeeds.")
@OUTPUT
def tune(model: str, batches: str, seqs: str, runtimes: Sequence[str], variants: Sequence[str], threads: Optional[str],
         max_accuracy_drop: Optional[float], split: str, rows: int, budget: Optional[float], min_time: float,
         decoder_path: Optional[str], out_dir: Optional[str], json_path: Optional[str], markdown_path: Optional[str],
         show_progress: Optional[bool]) -> Any:
    """Find the fastest correct CPU deployment of MODEL for every batch x seq of the grid.

    Tries every CPU runtime x precision variant (FP32, INT8 policies, OpenVINO bf16) x
    thread count, and TensorRT FP32/FP16 engines where a CUDA device is visible (timed
    with the host-device copies), checks each against FP32 ONNX Runtime on the model's real test split
    (task metric, tensor errors, error versus timestep), times the passing ones side by
    side with ONNX Runtime's defaults, and reports the fastest per shape with its
    distance to the floor (README, "The floor").

    \b
    Examples:
      rnndeploy tune sine.onnx --batch 1,32,128 --seq 16,128 --out deploy/
      rnndeploy tune charlm.onnx --max-accuracy-drop 0.5 --budget 120 --json tune.json
    """
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.cli.harness_options import command_line, emit_result, parse_int_list
    from rnndeploy.errors import UsageError
    from rnndeploy.fileio import check_parent_dir
    from rnndeploy.tune import TuneConfig, run_tune
    from rnndeploy.validation import MAX_THREADS

    distinct_outputs(click.get_current_context(), ["json_path", "markdown_path", "out_dir"], inputs=["model"])
    source = resolve_source(model)
    if not source.onnx:
        raise UsageError(f"tune needs an ONNX file, got {model}", "export one: rnndeploy export CHECKPOINT -o m.onnx")
    for p in (json_path, markdown_path):
        if p:
            check_parent_dir(p)
    chosen = tuple(dict.fromkeys(("fp32",) + tuple(variants))) if variants else None
    config = TuneConfig(
        batches=tuple(parse_int_list(batches, "--batch")), seqs=tuple(parse_int_list(seqs, "--seq")),
        runtimes=tuple(runtimes) or None, variants=chosen,
        threads=tuple(parse_int_list(threads, "--threads", MAX_THREADS)) if threads else None,
        max_accuracy_drop=max_accuracy_drop, split=split, rows=rows, budget=budget, min_time=min_time,
        out_dir=out_dir, decoder=decoder_path, show_progress=show_progress,
    )
    result = run_tune(source, config, command=command_line())
    emit_result(result, json_path, markdown_path)


@click.command()
@click.argument("model", metavar="MODEL.onnx")
@click.option("-o", "--output", "out", required=True, metavar="OUT.onnx", type=OutputPath(), help="Where to write the INT8 model.")
@click.option("--policy", type=click.Choice(["int8", "int8-keep-recurrence", "int8-keep-head"]), default="int8",
              show_default=True, help="What stays FP32: nothing, the LSTM recurrence, or the output head.")
@click.option("--per-channel", is_flag=True, help="One weight scale per output channel (default: per tensor).")
@click.option("--reduce-range", is_flag=True, help="7-bit weights (CPUs without VNNI).")
def quantize(model: str, out: str, policy: str, per_channel: bool, reduce_range: bool) -> Any:
    """INT8 dynamic quantization with ONNX Runtime (LSTM, MatMul, Gemm, embeddings).

    ONNX Runtime has no quantized GRU or RNN kernel: those nodes stay FP32 and the
    summary says so. The recipe (tool, versions, policy, source hash) is stored in the
    file's metadata (rnndeploy.variant); check the result on the real test split with
    rnndeploy parity OUT.onnx --backend ort-cpu --inputs-from-recipe.
    """
    from rnndeploy.quantize import quantize_int8

    distinct_outputs(click.get_current_context(), ["out"], inputs=["model"])
    report = quantize_int8(model, out, policy, per_channel=per_channel, reduce_range=reduce_range)
    click.echo(report.render())
    for w in report.warnings:
        click.echo(f"warning: {w}")
    click.echo(f"wrote {out}")
