"""What else was tried to make the zoo's small recurrent models faster than ONNX Runtime's
defaults on the CPU, side by side, and why ``rnndeploy tune`` times candidates the way it does.

Per model (trained and exported as in cpu_tune.py) and shape, every configuration below runs
on the same inputs, in ``--turns`` turns whose order rotates, each turn a block of 30 ms of
calls after a pause of ``--settle`` seconds (medians of the blocks, ms):

- ``ort default``: ``onnxruntime.InferenceSession(path)``; ``ort t1``: one intra-op thread;
- ``ort batch split``: two one-thread sessions, each on half of the batch, at the same time
  (a second Python thread; ONNX Runtime releases the GIL while it runs);
- ``ort parallel graph``: every LSTM/GRU node split into two independent nodes — its two
  directions when bidirectional, else the two halves of the batch — run by ONNX Runtime's
  parallel executor (two inter-op threads, one intra-op thread), so neither core waits for the
  other at every timestep;
- ``ort unrolled``, ``openvino unrolled``: a forward LSTM unrolled into per-step MatMul and
  element-wise ops for the one sequence length (fixed-length deployments only);
- ``openvino``: dynamic shapes, LATENCY hint (rnndeploy's openvino runner); ``openvino static``:
  the model reshaped to the shape first; ``openvino 2 streams``: the half-batch static model on
  two streams, both halves in flight at once; the same in bf16 (``openvino bf16 2 streams``).
  Every other OpenVINO column is FP32 (asked for: OpenVINO picks bf16 by itself on a CPU with
  native bf16).

Every rewritten graph's outputs are compared with the original's (max abs error column).

Then the settle experiment: three ONNX Runtime sessions on one model (default, 2 threads,
1 thread) timed in turn, with pauses of 0 to 200 ms before each block.

    .venv/bin/python benchmarks/cpu_explore.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_tune import train_and_export  # noqa: E402

MODELS = [("sine", "lstm"), ("sunspots", None), ("sentiment", None), ("charlm", None)]
# OpenVINO computes in bf16 by default on a CPU with native bf16: every OpenVINO configuration here
# asks for FP32 explicitly, except the one bf16 column (not the same function: it is left out of
# the max-abs-error column).
FP32 = {"INFERENCE_PRECISION_HINT": "f32"}
BF16_STREAMS = "openvino bf16 2 streams"
SHAPES = [(32, 16), (128, 16), (32, 128), (128, 128)]
RECURRENT = ("LSTM", "GRU", "RNN")


# -- graph rewrites (numerically the same function) ------------------------------------------------
class _Builder:
    """Fresh names and constant initializers for a graph rewrite."""

    def __init__(self) -> None:
        self.count = 0
        self.inits: List[Any] = []
        self.nodes: List[Any] = []

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}__x{self.count}"

    def const(self, value: Any, base: str = "c") -> str:
        from onnx import numpy_helper

        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def node(self, op: str, inputs: List[str], **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op)
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def _attrs(node: Any) -> Dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rewrite_recurrent(model: Any, rewrite: Callable[[Any, Dict[str, Any], _Builder], bool]) -> Optional[Any]:
    """``model`` with every LSTM/GRU/RNN node replaced by what ``rewrite(node, attrs, builder)``
    appends to the builder; None when ``rewrite`` returns False (a node it cannot handle)."""
    g = model.graph
    b = _Builder()
    for node in g.node:
        if node.op_type not in RECURRENT:
            b.nodes.append(node)
        elif not rewrite(node, _attrs(node), b):
            return None
    del g.node[:]
    g.node.extend(b.nodes)
    g.initializer.extend(b.inits)
    return model


def parallel_graph(model: Any) -> Any:
    """Each recurrent node as two independent nodes: its directions, or the halves of its batch."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}

    def split(node: Any, attrs: Dict[str, Any], b: _Builder) -> bool:
        ins = list(node.input) + [""] * (8 - len(node.input))
        outs = list(node.output)
        parts = []
        if attrs.get("direction", b"forward") == b"bidirectional":
            for d, direction in ((0, "forward"), (1, "reverse")):
                pin = []
                for i, name in enumerate(ins):
                    if not name:
                        pin.append("")
                    elif i in (1, 2, 3, 7):  # W, R, B, P: one direction's slice
                        pin.append(b.const(numpy_helper.to_array(inits[name])[d:d + 1], name))
                    elif i in (5, 6):  # initial states [dirs, batch, H]
                        pin.append(b.node("Slice", [name, b.const([d]), b.const([d + 1]), b.const([0])]))
                    else:
                        pin.append(name)
                parts.append((pin, {**attrs, "direction": direction}))
            axes = (1, 0, 0)  # Y [seq, dirs, batch, H]; Y_h, Y_c [dirs, batch, H]
        else:
            width = b.node("Shape", [ins[0]], start=1, end=2)
            half = b.node("Div", [b.node("Add", [width, b.const(np.array([1], np.int64))]),
                                  b.const(np.array([2], np.int64))])
            for lo, hi in ((b.const(np.array([0], np.int64)), half), (half, b.const(np.array([2**62], np.int64)))):
                pin = []
                for i, name in enumerate(ins):
                    if not name or i in (1, 2, 3, 7):
                        pin.append(name)
                    else:  # X [seq, batch, I], sequence_lens [batch], initial states [dirs, batch, H]
                        pin.append(b.node("Slice", [name, lo, hi, b.const(np.array([0 if i == 4 else 1], np.int64))]))
                parts.append((pin, attrs))
            axes = (2, 1, 1)
        made = []
        for pin, a in parts:
            while pin and not pin[-1]:
                pin.pop()
            pout = [b.name(o) if o else "" for o in outs]
            b.nodes.append(helper.make_node(node.op_type, pin, pout, name=b.name(node.name or "rnn"), **a))
            made.append(pout)
        for j, (o, axis) in enumerate(zip(outs, axes)):
            if o:
                b.nodes.append(helper.make_node("Concat", [made[0][j], made[1][j]], [o], axis=axis))
        return True

    return _rewrite_recurrent(model, split)


def unrolled_lstm(model: Any, seq: int) -> Optional[Any]:
    """A forward LSTM (layout 0, default activations) unrolled for ``seq`` steps; None otherwise."""
    from onnx import helper, numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def unroll(node: Any, attrs: Dict[str, Any], b: _Builder) -> bool:
        ins = list(node.input) + [""] * 8
        if (node.op_type != "LSTM" or attrs.get("direction", b"forward") != b"forward" or attrs.get("layout", 0)
                or ins[4] or "activations" in attrs):
            return False
        hidden = int(attrs["hidden_size"])
        w, r = inits[ins[1]][0], inits[ins[2]][0]
        bias = inits[ins[3]][0] if ins[3] else np.zeros(8 * hidden, np.float32)
        xw = b.node("Add", [b.node("MatMul", [ins[0], b.const(w.T.copy())]),
                            b.const((bias[:4 * hidden] + bias[4 * hidden:]).astype(np.float32))])
        h = b.node("Squeeze", [ins[5], b.const(np.array([0], np.int64))]) if ins[5] else ""
        c = b.node("Squeeze", [ins[6], b.const(np.array([0], np.int64))]) if ins[6] else ""
        rt = b.const(r.T.copy())
        hs = []
        for t in range(seq):
            gates = b.node("Gather", [xw, b.const(np.array(t, np.int64))], axis=0)
            if h:
                gates = b.node("Add", [gates, b.node("MatMul", [h, rt])])
            i, o, f, cand = (b.name("gate") for _ in range(4))
            b.nodes.append(helper.make_node("Split", [gates, b.const(np.array([hidden] * 4, np.int64))],
                                            [i, o, f, cand], axis=1))
            ig = b.node("Mul", [b.node("Sigmoid", [i]), b.node("Tanh", [cand])])
            c = b.node("Add", [b.node("Mul", [b.node("Sigmoid", [f]), c]), ig]) if c else ig
            h = b.node("Mul", [b.node("Sigmoid", [o]), b.node("Tanh", [c])])
            hs.append(h)
        outs = list(node.output) + ["", "", ""]
        if outs[0]:
            b.nodes.append(helper.make_node("Concat", [b.node("Unsqueeze", [x, b.const(np.array([0, 1], np.int64))])
                                                       for x in hs], [outs[0]], axis=0))
        for name, value in ((outs[1], h), (outs[2], c)):
            if name:
                b.nodes.append(helper.make_node("Unsqueeze", [value, b.const(np.array([0], np.int64))], [name]))
        return True

    return _rewrite_recurrent(model, unroll)


# -- timing -----------------------------------------------------------------------------------------
def timed_turns(configs: Dict[str, Callable[[], Any]], turns: int, settle: float, block: float = 0.03) -> Dict[str, float]:
    """Median seconds per call of each configuration over ``turns`` rotated turns."""
    names = list(configs)
    samples: Dict[str, List[float]] = {n: [] for n in names}
    for turn in range(turns):
        k = turn % len(names)
        for n in names[k:] + names[:k]:
            time.sleep(settle)
            f = configs[n]
            f()
            f()
            start, calls = time.perf_counter(), 0
            while time.perf_counter() - start < block:
                f()
                calls += 1
            samples[n].append((time.perf_counter() - start) / calls)
    return {n: statistics.median(v) for n, v in samples.items()}


def batch_axis(graph: Any, name: str) -> int:
    t = next(t for t in list(graph.inputs) + list(graph.outputs) if t.name == name)
    return list(t.dims).index("batch")


def explore_model(onnx_path: str, work: Path, turns: int, settle: float) -> List[Dict[str, Any]]:
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from rnndeploy.backends.source import resolve_source
    from rnndeploy.graph.normalize import NormalizeOptions, normalize
    from rnndeploy.inputs import generate_inputs, sizes_for

    source = resolve_source(onnx_path)
    graph = source.graph_spec
    pad = source.spec.attrs.get("pad_id")
    outs = [t.name for t in graph.outputs]
    par_path = str(work / (Path(onnx_path).stem + ".parallel.onnx"))
    onnx.save(parallel_graph(onnx.load(onnx_path)), par_path)
    # OpenVINO reads the graph after the rewrites rnndeploy's openvino runner makes (without them it
    # ignores sequence_lens: the sentiment model's outputs were off by up to 0.8)
    ov_path = str(work / (Path(onnx_path).stem + ".openvino.onnx"))
    onnx.save(normalize(onnx.load(onnx_path), NormalizeOptions(layout=True, fold=False, openvino=True)).model, ov_path)
    core = ov.Core()
    pool = ThreadPoolExecutor(1)

    def session(path: str, intra: Optional[int] = None, parallel: bool = False) -> Any:
        so = ort.SessionOptions()
        if intra:
            so.intra_op_num_threads = intra
        if parallel:
            so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            so.inter_op_num_threads = 2
        return ort.InferenceSession(path, so)

    default, t1a, t1b = ort.InferenceSession(onnx_path), session(onnx_path, 1), session(onnx_path, 1)
    par = session(par_path, 1, parallel=True)
    def ov_model(path: str, shapes: Optional[Dict[str, np.ndarray]]) -> Any:
        m = core.read_model(path)
        if shapes is not None:
            m.reshape({p.get_any_name(): list(shapes[p.get_any_name()].shape) for p in m.inputs})
        return m

    def ov_call(model: Any, feed: Dict[str, np.ndarray]) -> Callable[[], Any]:
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", **FP32})
        req = compiled.create_infer_request()
        ports = [compiled.output(n) for n in outs]
        return lambda: [req.infer(feed, share_inputs=True)[p] for p in ports]

    def configs_for(feed: Dict[str, np.ndarray], seq: int) -> Dict[str, Callable[[], Any]]:
        halves = [{n: np.ascontiguousarray(np.array_split(v, 2, axis=batch_axis(graph, n))[k]) for n, v in feed.items()}
                  for k in range(2)]

        def split_run() -> List[np.ndarray]:
            other = pool.submit(t1b.run, outs, halves[1])
            first = t1a.run(outs, halves[0])
            return [np.concatenate([a, b], axis=batch_axis(graph, n)) for n, a, b in zip(outs, first, other.result())]

        def two_streams(precision: str) -> Callable[[], List[np.ndarray]]:
            streams = core.compile_model(ov_model(ov_path, halves[0]), "CPU", {
                "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2, "INFERENCE_NUM_THREADS": 2,
                "INFERENCE_PRECISION_HINT": precision})
            reqs = [streams.create_infer_request() for _ in range(2)]
            ports = [streams.output(n) for n in outs]

            def run() -> List[np.ndarray]:
                for r, h in zip(reqs, halves):
                    r.start_async(h, share_inputs=True)
                for r in reqs:
                    r.wait()
                return [np.concatenate([r.get_tensor(p).data for r in reqs], axis=batch_axis(graph, n))
                        for n, p in zip(outs, ports)]
            return run

        configs: Dict[str, Callable[[], Any]] = {
            "ort default": lambda: default.run(outs, feed), "ort t1": lambda: t1a.run(outs, feed),
            "ort batch split": split_run, "ort parallel graph": lambda: par.run(outs, feed),
            "openvino": ov_call(ov_model(ov_path, None), feed),
            "openvino static": ov_call(ov_model(ov_path, feed), feed), "openvino 2 streams": two_streams("f32"),
            BF16_STREAMS: two_streams("bf16")}
        unrolled = unrolled_lstm(onnx.load(onnx_path), seq)  # only where there are no lengths to honour
        if unrolled is not None:
            un_path = str(work / f"{Path(onnx_path).stem}.unrolled{seq}.onnx")
            onnx.save(unrolled, un_path)
            un = ort.InferenceSession(un_path)
            configs["ort unrolled"] = lambda: un.run(outs, feed)
            configs["openvino unrolled"] = ov_call(ov_model(un_path, feed), feed)
        return configs

    rows = []
    for batch, seq in SHAPES:
        feed = generate_inputs(graph, sizes_for(graph, batch, seq), 0, pad if isinstance(pad, int) else None)
        configs = configs_for(feed, seq)
        reference = default.run(outs, feed)
        errors = {n: max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                         for a, b in zip(reference, f())) for n, f in configs.items()}
        medians = timed_turns(configs, turns, settle)
        rows.append({"model": source.spec.name, "batch": batch, "seq": seq,
                     "median_ms": {n: m * 1e3 for n, m in medians.items()}, "max_abs_error": errors})
        print(f"{source.spec.name} {batch}x{seq}: " + ", ".join(
            f"{n} {m * 1e3:.3f}" for n, m in medians.items()), flush=True)
    pool.shutdown()
    return rows


def settle_experiment(onnx_path: str, turns: int) -> List[Dict[str, Any]]:
    """ORT default, 2-thread and 1-thread sessions of one model timed in turn after each pause."""
    import onnxruntime as ort

    from rnndeploy.backends.source import resolve_source
    from rnndeploy.inputs import generate_inputs, sizes_for

    graph = resolve_source(onnx_path).graph_spec
    feed = generate_inputs(graph, sizes_for(graph, 128, 16), 0, None)
    sessions = {"default": ort.InferenceSession(onnx_path)}
    for n in (2, 1):
        so = ort.SessionOptions()
        so.intra_op_num_threads = n
        sessions[f"{n} thread{'s' if n > 1 else ''}"] = ort.InferenceSession(onnx_path, so)
    out = []
    for pause in (0.0, 0.02, 0.05, 0.1, 0.2):
        # no rotation here: the point is what a session suffers from the one timed just before it
        medians = {}
        samples: Dict[str, List[float]] = {n: [] for n in sessions}
        for _ in range(turns):
            for n, s in sessions.items():
                time.sleep(pause)
                s.run(None, feed)
                start, calls = time.perf_counter(), 0
                while time.perf_counter() - start < 0.03:
                    s.run(None, feed)
                    calls += 1
                samples[n].append((time.perf_counter() - start) / calls)
        medians = {n: statistics.median(v) * 1e3 for n, v in samples.items()}
        out.append({"pause_s": pause, "median_ms": medians})
        print(f"settle {pause:.2f} s: " + ", ".join(f"{n} {m:.3f}" for n, m in medians.items()), flush=True)
    return out


def render(rows: List[Dict[str, Any]], settle_rows: List[Dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    from rnndeploy.environment import describe_machine

    machine = describe_machine()
    names = list(dict.fromkeys(n for r in rows for n in r["median_ms"]))
    lines = ["# CPU: what else was tried against ONNX Runtime's defaults", "",
             f"Command: `{command}` · machine: {machine.get('cpu')} ({machine.get('cpu_affinity')} cores), load average "
             f"{machine.get('load_average')} · medians of {args.turns} rotated turns of 30 ms blocks, each after a "
             f"{args.settle:g} s pause; each cell: ms (× ORT default). Max abs error vs ORT default in the "
             "last column, over the FP32 columns (rewrites and splits compute the same function).", "",
             "| model | batch × seq | " + " | ".join(names) + " | worst max abs error (FP32 columns) |",
             "|---|---|" + "---:|" * len(names) + "---|"]
    for r in rows:
        base = r["median_ms"]["ort default"]
        cells = [f"{r['median_ms'][n]:.3f} ({r['median_ms'][n] / base:.2f}×)" if n in r["median_ms"] else "—"
                 for n in names]
        worst = max(((n, e) for n, e in r["max_abs_error"].items() if n != BF16_STREAMS), key=lambda kv: kv[1])
        lines.append(f"| {r['model']} | {r['batch']} × {r['seq']} | " + " | ".join(cells) +
                     f" | {worst[1]:.1e} ({worst[0]}) |")
    lines += ["", "Settle experiment (sine LSTM, batch 128 × seq 16; three sessions timed one after another, "
              "ms):", "", "| pause before each block | " + " | ".join(settle_rows[0]["median_ms"]) + " |",
              "|---:|" + "---:|" * len(settle_rows[0]["median_ms"])]
    for r in settle_rows:
        lines.append(f"| {r['pause_s'] * 1e3:g} ms | " + " | ".join(f"{v:.3f}" for v in r["median_ms"].values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for cpu_explore.md / .json")
    p.add_argument("--turns", type=int, default=8, help="rotated turns per shape (default 8)")
    p.add_argument("--settle", type=float, default=0.1, help="seconds of pause before each block (default 0.1)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cpu-explore-") as tmp:
        paths: List[Tuple[str, str]] = []
        for recipe, variant in MODELS:
            print(f"{time.strftime('%H:%M:%S')} {recipe} {variant or ''}: train, export", flush=True)
            paths.append(train_and_export(recipe, variant, Path(tmp), None))
        for _, onnx_path in paths:
            rows += explore_model(onnx_path, Path(tmp), args.turns, args.settle)
        settle_rows = settle_experiment(paths[0][1], args.turns)
    command = "python " + " ".join(["benchmarks/cpu_explore.py"] + (argv or sys.argv[1:]))
    (out / "cpu_explore.json").write_text(json.dumps({"command": command, "rows": rows, "settle": settle_rows},
                                                     indent=1) + "\n")
    (out / "cpu_explore.md").write_text(render(rows, settle_rows, args, command))
    print(f"wrote {out / 'cpu_explore.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
