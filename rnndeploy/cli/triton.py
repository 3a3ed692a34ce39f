"""``rnndeploy triton`` (model repositories), ``rnndeploy serve`` (a local Triton server) and
``rnndeploy loadtest`` (a checked concurrency sweep)."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import click

from rnndeploy.cli.harness_options import DIMS, ArgGroup
from rnndeploy.cli.types import (
    CALLS,
    PORT,
    POSITIVE_INT,
    POSITIVE_SECONDS,
    SEED,
    THREADS,
    WARMUP_CALLS,
    Number,
    OutputPath,
)

# Each loadtest client is a thread and each Triton instance a copy of the model: bounded
# like intra-op threads (10^5 threads end in "can't start new thread", not a load test).
MAX_CLIENTS = 1024
MAX_INSTANCES = 1024
# Triton reads batch sizes and queue delays into 32-bit fields of its model config
INT32_MAX = 2**31 - 1

# Batching and instance options shared by `triton` and `serve` (one ConfigOptions each, with
# the command's own settings: see _config_options).
batching_options = ArgGroup(
    click.option("--max-batch-size", type=Number(integer=True, minimum=0, maximum=INT32_MAX), default=None,
                 help="Largest batch Triton forms (0: no batching). Default: the engine's profiles, else the model's "
                      "[engine] batch range, else 32; 0 when some tensor's batch axis is not first."),
    click.option("--dynamic-batching/--no-dynamic-batching", default=True, show_default=True,
                 help="Let Triton combine requests (streaming models: the sequence batcher's oldest strategy). "
                      "Off: one request per execution."),
    click.option("--preferred-batch", metavar="B,...", default=None,
                 help="Preferred batch sizes (default: the profiles' opt batch sizes)."),
    click.option("--max-queue-delay-us", type=Number(integer=True, minimum=0, maximum=INT32_MAX), default=100, show_default=True,
                 help="Microseconds the batcher waits to fill a batch."),
    click.option("--instances", type=Number(integer=True, minimum=1, maximum=MAX_INSTANCES), default=1, show_default=True,
                 help="Model instances (instance_group count)."),
    click.option("--sequence-idle", type=POSITIVE_SECONDS, default=10.0, show_default=True, metavar="SECONDS",
                 help="Streaming models: a sequence idle this long is freed (a client that vanished mid-sequence)."),
    build=dict,
)


def _config_options(max_batch_size: Optional[int], dynamic_batching: bool, preferred_batch: Optional[str],
                    max_queue_delay_us: int, instances: int, sequence_idle: float, **extra: Any) -> Any:
    from rnndeploy.cli.harness_options import parse_int_list
    from rnndeploy.triton.config import ConfigOptions

    preferred = tuple(parse_int_list(preferred_batch, "--preferred-batch")) if preferred_batch else None
    return ConfigOptions(max_batch_size=max_batch_size, dynamic_batching=dynamic_batching,
                         preferred_batch_sizes=preferred, max_queue_delay_us=max_queue_delay_us, instances=instances,
                         sequence_idle_s=sequence_idle, **extra)


@click.command("triton")
@click.argument("model", required=False, metavar="MODEL.onnx|MODEL.plan")
@click.option("-o", "--output", "repo", metavar="REPO/", help="Model repository to write into (created if missing).")
@click.option("--name", help="Triton model name (default: the model's name; + graph for seq2seq).")
@batching_options
@click.option("--kind", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True,
              help="Where instances run (TensorRT engines: gpu).")
@click.option("--accelerator", type=click.Choice(["tensorrt", "openvino"]), default=None,
              help="ONNX Runtime execution accelerator (TensorRT EP on GPU, OpenVINO on CPU).")
@click.option("--fp16", is_flag=True, help="With --accelerator tensorrt: allow FP16 kernels.")
@click.option("--streaming/--no-streaming", default=None,
              help="Keep the recurrent state on the server (implicit state, sequence batcher). Default: when the "
                   "model file takes its optional state inputs.")
@click.option("--keep-state-layout", is_flag=True,
              help="Serve explicit state tensors ([layers, batch, hidden]) as exported, without batching. Default: "
                   "make them batch-first (a Transpose inside) so Triton batches the model.")
@click.option("--overwrite", is_flag=True, help="Replace REPO/<name> if it exists.")
@click.option("--check", "check_repo", metavar="REPO/", default=None,
              help="Check every model of an existing repository against Triton's schema and load rules, and exit.")
def triton(model: Optional[str], repo: Optional[str], name: Optional[str], kind: str, accelerator: Optional[str],
           fp16: bool, streaming: Optional[bool], keep_state_layout: bool, overwrite: bool, check_repo: Optional[str],
           **batching: Any) -> None:
    """Write a Triton model repository entry for an rnndeploy ONNX file (onnxruntime backend)
    or TensorRT engine (tensorrt backend): REPO/<name>/config.pbtxt and REPO/<name>/1/model.*.

    The config is built from the file's own inputs and outputs, parsed with Triton's schema
    (tritonclient's model_config_pb2) and checked against the rules the server applies at load
    time before anything is written. A streaming model (char-LM exported --with-state) gets
    batch-first state, START/END/READY/CORRID control inputs and sequence_batching with implicit
    state (zero initial state), so clients send only the new tokens.

    Checked offline only: no repository has been loaded by the official Triton container yet
    (no Docker or GPU where this was built); the README ("Serving on Triton") has the docker run
    line and the client calls to try one.

    \b
      rnndeploy triton charlm.onnx -o repo/
      rnndeploy build-engine repo/charlm-gru/1/model.onnx -o charlm.plan     (GPU box)
      rnndeploy triton charlm.plan -o repo-trt/
      rnndeploy triton --check repo/
    """
    from rnndeploy.errors import RnnDeployError, UsageError

    if check_repo:
        if model or repo:
            raise UsageError("--check takes the repository alone", "rnndeploy triton --check REPO/")
        from rnndeploy.triton.repository import check_repository

        checks = check_repository(check_repo)
        bad = 0
        for c in checks:
            click.echo(f"{c.name} ({c.platform}): {'ok' if not c.problems else 'FAILED'}")
            for p in c.problems:
                click.echo(f"  - {p}")
            bad += bool(c.problems)
        if bad:
            raise RnnDeployError(f"{bad} of {len(checks)} model(s) in {check_repo} would not load as written")
        return
    if not model or not repo:
        raise UsageError("give MODEL and -o REPO/", "e.g. rnndeploy triton model.onnx -o repo/")
    import os

    from rnndeploy.fileio import check_output_path
    from rnndeploy.triton.repository import write_repository

    if not os.path.isfile(repo):  # before any work: REPO/ (or its parent) must take new files
        check_output_path(repo, "-o", kind="file_or_dir" if os.path.isdir(repo) else "dir")
    options = _config_options(kind=kind, accelerator=accelerator, fp16=fp16, **batching)
    written = write_repository(model, repo, name=name, options=options, streaming=streaming,
                               keep_state_layout=keep_state_layout, overwrite=overwrite)
    click.echo(f"wrote {written.render()}")
    for note in written.notes:
        click.echo(f"note: {note}")


@click.command("serve")
@click.argument("models", nargs=-1, metavar="MODEL...")
@click.option("--backend", default="ort-cpu", show_default=True, metavar="NAME[:MOD...]",
              help="rnndeploy runner the models run on (ort-cpu, openvino, trt with an engine, ...); "
                   "ort-cpu and openvino have run under serve, trt not yet (no GPU).")
@click.option("--threads", type=THREADS, default=None, help="Intra-op threads per model instance.")
@click.option("--device", default=None, help="Runner device (cuda:N for GPU runners).")
@click.option("--name", "names", multiple=True, help="Served name of each MODEL, in order (default: the model's name).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every endpoint listens on.")
@click.option("--http-port", type=PORT, default=8000, show_default=True)
@click.option("--grpc-port", type=PORT, default=8001, show_default=True)
@click.option("--metrics-port", type=PORT, default=8002, show_default=True)
@batching_options
@click.option("--timeout", "timeout_s", type=POSITIVE_SECONDS, default=None, metavar="SECONDS", help="Stop after this long.")
@click.option("--startup-timeout", type=POSITIVE_SECONDS, default=120.0, show_default=True, metavar="SECONDS",
              help="Give up when the models are not ready after this long.")
@click.option("--exit-timeout", type=Number(integer=True, minimum=0, maximum=86400), default=30, show_default=True, metavar="SECONDS",
              help="On stop, how long tritonserver may finish in-flight work (it answers while its models are busy).")
@click.option("--quiet", is_flag=True, help="Do not print tritonserver's log.")
def serve(models: Tuple[str, ...], backend: str, threads: Optional[int], device: Optional[str],
          names: Tuple[str, ...], host: str, http_port: int, grpc_port: int, metrics_port: int,
          timeout_s: Optional[float], startup_timeout: float, exit_timeout: int, quiet: bool, **batching: Any) -> None:
    """Serve MODELs on a real Triton server on this machine (PyTriton's tritonserver with its
    Python backend), running each through rnndeploy's runner --backend, with Triton's dynamic
    batching. A streaming model keeps its state per sequence id (sequence_start / sequence_end,
    as the repositories `rnndeploy triton` writes); an idle sequence is freed after
    --sequence-idle seconds. Needs the serve extra (nvidia-pytriton, numpy < 2).

    \b
      rnndeploy serve sine.onnx charlm.onnx --http-port 8000
      rnndeploy loadtest 127.0.0.1:8000 --model charlm-gru --reference charlm.onnx
    """
    from rnndeploy.cli.harness_options import check_device
    from rnndeploy.triton.serve import ServeOptions
    from rnndeploy.triton.serve import serve as run_serve

    check_device(device)

    options = ServeOptions(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                           backend=backend, threads=threads, device=device, config=_config_options(**batching),
                           timeout_s=timeout_s, startup_timeout_s=startup_timeout, exit_timeout_s=exit_timeout,
                           server_log=not quiet)
    run_serve(list(models), options, names, announce=lambda line: click.echo(line))


@click.command("loadtest")
@click.argument("url")
@click.option("--model", "model_name", required=True, help="Served model name.")
@click.option("--reference", required=True, metavar="MODEL",
              help="The model file the server was made from (the local reference every answer is checked against).")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default=None, help="Default: from the URL, else http.")
@click.option("--concurrency", default="1,4,16,64", show_default=True, metavar="C,...", help="Client counts to sweep.")
@click.option("--requests", type=CALLS, default=200, show_default=True,
              help="Requests per level (streaming: chunk requests).")
@click.option("--max-seconds", type=POSITIVE_SECONDS, default=60.0, show_default=True, help="Time limit per level.")
@click.option("--batch", type=POSITIVE_INT, default=1, show_default=True, help="Rows per request.")
@click.option("--seq", type=POSITIVE_INT, default=16, show_default=True, help="Time steps per request.")
@click.option("--chunks", type=CALLS, default=4, show_default=True,
              help="Streaming models: requests per sequence.")
@click.option("--warmup", type=WARMUP_CALLS, default=1, show_default=True,
              help="Untimed (still checked) requests per client.")
@click.option("--timeout", "timeout_s", type=POSITIVE_SECONDS, default=30.0, show_default=True, help="Per-request timeout, seconds.")
@click.option("--connect-timeout", type=POSITIVE_SECONDS, default=30.0, show_default=True,
              help="Seconds to wait for the server to be ready before giving up.")
@click.option("--reference-backend", default="ort-cpu", show_default=True, help="Runner computing the expected answers.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@DIMS
@click.option("--json", "json_path", metavar="FILE", type=OutputPath(), help="Write the result as an rnndeploy results JSON file.")
@click.option("--markdown", "markdown_path", metavar="FILE", type=OutputPath(), help="Write the result as Markdown.")
def loadtest(url: str, model_name: str, reference: str, protocol: Optional[str], concurrency: str, requests: int,
             max_seconds: float, batch: int, seq: int, chunks: int, warmup: int, timeout_s: float,
             connect_timeout: float, reference_backend: str, seed: int, dims: Sequence[str], json_path: Optional[str],
             markdown_path: Optional[str]) -> None:
    """Sweep concurrency against a Triton server (HTTP or gRPC) and check EVERY answer against
    the local reference: each request has inputs of its own and a request id, so a lost,
    duplicated, reordered or wrong answer fails. Streaming models are driven as interleaved
    sequences whose answers must equal running each sequence alone. Failed requests are
    reported and the sweep goes on (a restarting server); exit 1 when any answer was missing
    or wrong.

    \b
      rnndeploy loadtest 127.0.0.1:8000 --model sine-lstm --reference sine.onnx --concurrency 1,16
      rnndeploy loadtest grpc://127.0.0.1:8001 --model charlm-gru --reference charlm.onnx --json load.json
    """
    from rnndeploy.cli.harness_options import command_line, emit_result, parse_dims, parse_int_list
    from rnndeploy.errors import RnnDeployError
    from rnndeploy.triton.loadtest import LoadTestConfig, run_loadtest

    config = LoadTestConfig(url=url, model=model_name, protocol=protocol, concurrency=tuple(parse_int_list(concurrency, "--concurrency", MAX_CLIENTS)),
                            requests=requests, max_seconds=max_seconds, batch=batch, seq=seq, chunks=chunks,
                            warmup=warmup, timeout_s=timeout_s, seed=seed, extra_dims=parse_dims(dims),
                            connect_timeout_s=connect_timeout)

    def progress(event: str, value: Any) -> None:
        if event == "start":
            click.echo(f"concurrency {value[0]}: sending {value[1]} requests (at most {max_seconds:g} s)", err=True)
        else:
            click.echo(f"concurrency {value.concurrency}: {value.verified}/{value.sent} verified, {value.errors} errors, "
                       f"{value.wrong} wrong, {value.abandoned} abandoned", err=True)

    result = run_loadtest(reference, config, reference_backend, command_line(), progress)
    emit_result(result, json_path, markdown_path)
    if not result.passed:
        raise RnnDeployError(f"load test of {model_name}: not every answer was verified "
                             f"({sum(lv.sent - lv.verified for lv in result.levels)} failed requests, "
                             f"{sum(lv.abandoned for lv in result.levels)} abandoned)")
