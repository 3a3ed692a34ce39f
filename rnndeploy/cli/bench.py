"""``rnndeploy bench``."""

from __future__ import annotations

from typing import Any, Optional

import click

from rnndeploy.cli.harness_options import DIMS, MODEL, OUTPUT, RUNNERS
from rnndeploy.cli.types import CALLS, POSITIVE_SECONDS, SEED, WARMUP_CALLS


@click.command()
@MODEL
@RUNNERS
@click.option("--batch", "batches", default="1", show_default=True, metavar="B,...", help="Batch sizes to sweep.")
@click.option("--seq", "seqs", default="16,128", show_default=True, metavar="S,...", help="Sequence lengths to sweep.")
@click.option("--iters", type=CALLS, help="Timed calls per configuration (instead of --min-time).")
@click.option("--min-time", type=POSITIVE_SECONDS, default=1.0, show_default=True,
              help="Seconds of timed calls per configuration (when --iters is not given).")
@click.option("--warmup", type=WARMUP_CALLS, default=10, show_default=True, help="Untimed calls first.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for generated inputs.")
@click.option("--no-torch-row", is_flag=True, help="Do not add torch beside the other backends.")
@click.option("--baseline", metavar="LABEL", help="Row that ratios are taken against (default torch).")
@DIMS
@OUTPUT
def bench(batches: str, seqs: str, iters: Optional[int], min_time: float, warmup: int, seed: int, no_torch_row: bool,
          baseline: Optional[str], **params: Any) -> Any:
    """Measure latency of every --backend (default: every runtime available here) over a
    --batch x --seq sweep, side by side.

    Torch is added as a row whenever a checkpoint or module is known, so every ratio
    is measured in the same run. Each figure states what it includes (device,
    precision, threads, host<->device copies, CUDA graph, timer).

    \b
    Examples:
      rnndeploy bench model.onnx --checkpoint runs/sine --backend ort-cpu --batch 1,32 --seq 16,128
      rnndeploy bench model.onnx --module my.py:build --backend ort-cpu --threads 2 --json bench.json
      rnndeploy bench m.onnx --checkpoint ck --engine m.plan --device cuda --backend torch --backend torch:fp16 \
          --backend torch:fp16:graph --backend trt:fp16 --baseline torch:fp16 --batch 1,32,256 --seq 16,128,512
    """
    from rnndeploy.backends import BackendLabel
    from rnndeploy.bench.sweep import BenchConfig, run_bench
    from rnndeploy.cli.harness_options import (
        backends_or_defaults,
        command_line,
        parse_int_list,
        refuse_ignored_runner_options,
    )
    from rnndeploy.cli.types import distinct_outputs, refuse_ignored

    source = MODEL.take(params)
    runners = RUNNERS.take(params)
    ctx = click.get_current_context()
    ort_trt = any(label is not None and label.name == "ort-trt" for label in map(BackendLabel.lookup, runners.backends))
    refuse_ignored(ctx, [("min_time", iters is None, "applies when --iters is not given"),
                         ("trt_profile", ort_trt, "applies to the ort-trt backend"),
                         ("trt_cache_dir", ort_trt, "applies to the ort-trt backend")])
    distinct_outputs(ctx, ["json_path", "markdown_path"])
    out = OUTPUT.take(params)
    backends = tuple(backends_or_defaults(runners.backends, source))
    torch_row = ("torch",) if not no_torch_row and (source.checkpoint or source.module) else ()
    refuse_ignored_runner_options(ctx, backends + torch_row)
    config = BenchConfig(
        backends=backends,
        batches=tuple(parse_int_list(batches, "--batch")),
        seqs=tuple(parse_int_list(seqs, "--seq")),
        warmup=warmup,
        iters=iters,
        min_time=None if iters else min_time,
        options=runners.options,
        seed=seed,
        torch_row=not no_torch_row,
        baseline=baseline,
        extra_dims=DIMS.take(params),
        show_progress=out.show_progress,
    )
    out.emit(run_bench(source, config, command=command_line()))
