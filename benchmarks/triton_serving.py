"""Serving on Triton: throughput and latency versus concurrency, dynamic batching on and off.

Two models with random weights, built from the recipes' [model] sections and exported by
rnndeploy (validated against torch):

- batch-friendly: the sine recipe's LSTM regressor (stateless; each request a window of
  ``--seq`` steps), served with Triton's dynamic batcher or without it;
- streaming: the charlm recipe's GRU language model exported with its state, served with
  the state kept per sequence on the server (sequence batcher, "oldest" strategy, batching
  requests of different sequences, or max batch 1 when batching is off); clients send
  sequences of ``--chunks`` requests of ``--seq`` characters.

For each (model, batching) pair the script starts ``rnndeploy serve`` (PyTriton's tritonserver,
Python backend, the ort-cpu runner, one instance) in the serve environment, sweeps
``rnndeploy loadtest`` over the concurrency levels over HTTP, with every answer checked
against the local ONNX Runtime reference, and stops the server. Figures are client-side
wall times per request (network, queueing, batching and the model), answered requests per
second, and time steps per second.

The committed results are meant to come from a quiet machine, with exactly:

    .venv/bin/python benchmarks/triton_serving.py --out benchmarks/results

(about 10 minutes on 2 cores). On a busy machine, check the script at small sizes:

    .venv/bin/python benchmarks/triton_serving.py --smoke --out /tmp/triton-serving

Writes OUT/triton_serving.json (an rnndeploy results document; ``rnndeploy report`` draws it)
and OUT/triton_serving.md. Needs the main environment (torch for the export, tritonclient)
and the serve environment (``make serve-env``: nvidia-pytriton, numpy < 2).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]  # rnndeploy itself is installed (make install: pip install -e)

from rnndeploy.report import fmt  # noqa: E402

MODELS = (("sine", None, False), ("charlm", None, True))  # (recipe, variant, with_state)


def export(recipe_name: str, variant: Optional[str], with_state: bool, workdir: Path) -> Tuple[str, str]:
    """(ONNX path, served model name) of a recipe's model with random weights."""
    import torch

    from rnndeploy.data import load_dataset
    from rnndeploy.export import ExportOptions, export_zoo_model
    from rnndeploy.models import build_model
    from rnndeploy.recipe import load_recipe

    recipe = load_recipe(recipe_name, variant)
    info = load_dataset(recipe.data).data_info
    torch.manual_seed(0)
    model = build_model(recipe.model, info, seed=0).eval()
    name = model.config.get("name", recipe.name)
    out = workdir / f"{name}.onnx"
    res = export_zoo_model(model, str(out), ExportOptions(opset=int(recipe.export.get("opset") or 17), with_state=with_state))
    return res.paths["model"], name


def free_ports(n: int) -> List[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Server:
    """``rnndeploy serve`` in the serve environment, bounded in start and stop time."""

    def __init__(self, serve_python: str, model: str, batching: bool, log: Path, extra: Sequence[str] = ()):
        self.ports = free_ports(3)
        self.log = log
        self.cmd = [serve_python, "-m", "rnndeploy", "serve", model, "--http-port", str(self.ports[0]),
                    "--grpc-port", str(self.ports[1]), "--metrics-port", str(self.ports[2]), "--quiet",
                    "--timeout", "3600", *([] if batching else ["--no-dynamic-batching"]), *extra]

    def __enter__(self) -> Server:
        self.out = open(self.log, "wb")
        # SIGINT back to its default in the server: a driver started in the background inherits it
        # ignored, and the server would then never see the Ctrl-C that __exit__ sends
        self.proc = subprocess.Popen(self.cmd, stdout=self.out, stderr=subprocess.STDOUT, cwd=str(REPO),
                                     env=dict(os.environ, PYTHONPATH=str(REPO)),
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 300
        while b"rnndeploy: ready" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"serve did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.out.close()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output directory")
    ap.add_argument("--serve-python", default=os.environ.get("RNNDEPLOY_SERVE_PYTHON", str(REPO / ".venv-serve/bin/python")),
                    help="python of the serve environment (make serve-env)")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="client counts to sweep")
    ap.add_argument("--requests", type=int, default=2000, help="requests per level (streaming: chunk requests)")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="time limit per level")
    ap.add_argument("--seq", type=int, default=50, help="time steps per request (sine: its window; charlm: characters)")
    ap.add_argument("--chunks", type=int, default=8, help="requests per charlm sequence")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check the script, not the machine")
    args = ap.parse_args(argv)
    if args.smoke:
        args.concurrency, args.requests, args.max_seconds, args.chunks = "1,4", 40, 10.0, 4
    if not Path(args.serve_python).exists():
        raise SystemExit(f"no serve environment at {args.serve_python}: run make serve-env")

    from rnndeploy.cli.harness_options import parse_int_list
    from rnndeploy.report import write_markdown
    from rnndeploy.report.schema import write_results
    from rnndeploy.triton.loadtest import LoadTestConfig, run_loadtest

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/triton_serving.py", *(argv or sys.argv[1:])])
    load_start = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="triton-serving-") as tmp:
        work = Path(tmp)
        for recipe, variant, with_state in MODELS:
            onnx_path, name = export(recipe, variant, with_state, work)
            for batching in (True, False):
                label = f"{name} batching {'on' if batching else 'off'}"
                print(f"== {label}", flush=True)
                with Server(args.serve_python, onnx_path, batching, work / f"{name}-{batching}.log") as srv:
                    cfg = LoadTestConfig(url=f"127.0.0.1:{srv.ports[0]}", model=name, protocol="http",
                                         concurrency=tuple(parse_int_list(args.concurrency, "--concurrency")),
                                         requests=args.requests, max_seconds=args.max_seconds, seq=args.seq,
                                         chunks=args.chunks, warmup=2)

                    def progress(event: str, value: Any) -> None:
                        if event == "done":
                            print(f"   c{value.concurrency}: {fmt.rate(value.throughput)} req/s, p50 {fmt.ms(value.p50)} ms, "
                                  f"p99 {fmt.ms(value.p99)} ms, {value.verified}/{value.sent} verified", flush=True)

                    res = run_loadtest(onnx_path, cfg, command=command, progress=progress)
                model = dict(res.model, batching=batching, onnx=f"{name}.onnx (random weights, recipe {recipe})",
                             url="127.0.0.1 (a fresh port per server)")
                results.append(type(res)(model=model, levels=res.levels, settings=res.settings, warnings=res.warnings,
                                         machine=res.machine, command=command, created=res.created))
    load_end = os.getloadavg()
    write_results(str(out / "triton_serving.json"), results)
    write_markdown(str(out / "triton_serving.md.tmp"), results)
    body = (out / "triton_serving.md.tmp").read_text()
    (out / "triton_serving.md.tmp").unlink()
    summary = summarize(results, load_start, load_end, command)
    (out / "triton_serving.md").write_text(summary + "\n" + body.split("\n", 2)[2])
    print(summary)
    return 0 if all(r.passed for r in results) else 1


def summarize(results: Sequence[Any], load_start: Tuple[float, ...], load_end: Tuple[float, ...], command: str) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = load_start[0] > 0.5 * cores
    lines = ["# Serving on Triton (rnndeploy serve + loadtest)", "",
             f"Command: `{command}`", "",
             f"Load average (1 min) at start / end: {load_start[0]:.2f} / {load_end[0]:.2f} on {cores} cores"
             + (" — **the machine was busy: rerun on a quiet machine before quoting these figures.**" if busy else "."),
             "", "Server and clients share this machine; latency is client-side wall time per request. "
             "Every answer was checked against ONNX Runtime run locally.", ""]
    rows: List[List[str]] = []
    by_key: Dict[Tuple[str, int], Dict[bool, Any]] = {}
    for r in results:
        for lv in r.levels:
            by_key.setdefault((str(r.model.get("served_as")), lv.concurrency), {})[bool(r.model.get("batching"))] = lv
    for (name, conc), pair in by_key.items():
        on, off = pair.get(True), pair.get(False)
        gain = on.throughput / off.throughput if on and off and off.throughput > 0 else None
        rows.append([name, str(conc),
                     fmt.rate(on.throughput) if on else "—", fmt.ms(on.p50) if on else "—", fmt.ms(on.p99) if on else "—",
                     fmt.rate(off.throughput) if off else "—", fmt.ms(off.p50) if off else "—",
                     fmt.ms(off.p99) if off else "—", fmt.ratio(gain) if gain else "—",
                     "ok" if all(lv.passed for lv in pair.values()) else "FAIL"])
    lines.append(fmt.md_table(["model", "clients", "req/s (batching)", "p50 ms", "p99 ms", "req/s (no batching)",
                               "p50 ms", "p99 ms", "batching gain", "all verified"], rows, "lrrrrrrrrl"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
