"""Keras' own ONNX export versus ``rnndeploy export`` on the seeds' Keras models.

For each tutorial model (``rnndeploy.keras.tutorials``: SimpleRNN / LSTM / GRU sine
forecasters, the IMDB-style Embedding(mask_zero) → LSTM classifier over pre-padded
sequences, a stacked Bidirectional(LSTM), a char-level LSTM), trained briefly on
rnndeploy's offline data with Keras 3 (torch backend), this script exports the same
saved model twice:

- Keras: ``model.export(path, format="onnx")`` (Keras' own exporter);
- rnndeploy: ``rnndeploy.keras.export.export_keras`` (the library call behind
  ``rnndeploy export model.keras``), its validation against Keras included;

then runs both files in ONNX Runtime (CPU) on held-out data at the training length and
at twice it (padded the way the model was trained: pre-padding for the text models) and
compares every output with Keras itself. Recorded per file: does ONNX Runtime load and
run it, max abs error at each length, the recurrent ONNX nodes it holds (LSTM/GRU/RNN),
loops (Loop/Scan), and the file size. These are correctness and size figures, not timings.

    .venv/bin/python benchmarks/keras_export_compare.py --out benchmarks/results

writes OUT/keras_export_compare.json and OUT/keras_export_compare.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]  # rnndeploy itself is installed (make install: pip install -e)
os.environ.setdefault("KERAS_BACKEND", "torch")

# (training samples, epochs): brief, but enough that the weights are trained ones
TRAINING = {"sine_simplernn": (2000, 3), "sine_lstm": (2000, 3), "sine_gru": (2000, 3), "imdb_lstm": (2000, 2),
            "stacked_bilstm": (600, 1), "char_lstm": (1000, 2)}
BATCH = 8


def eval_inputs(name: str, trained: Any, length: int) -> np.ndarray:
    """Held-out inputs of ``length`` steps: sine windows, pre-padded reviews, Shakespeare text."""
    from rnndeploy.data import load_dataset
    from rnndeploy.keras.tutorials import pre_pad

    if name.startswith("sine_"):
        ds = load_dataset({"source": "sine", "n_series": 200, "window": length, "seed": 7})
        return ds.test["x"][:BATCH].astype(np.float32)
    if name in ("imdb_lstm", "stacked_bilstm"):
        ds = load_dataset({"source": "rotten_tomatoes", "max_len": trained.longest_seq})
        tok, lens = ds.test["tokens"][:BATCH], ds.test["lengths"][:BATCH]
        if length > tok.shape[1]:  # twice the length: two reviews back to back, pre-padded to `length`
            both = [list(tok[i, :lens[i]]) + list(tok[(i + 1) % BATCH, :lens[(i + 1) % BATCH]]) for i in range(BATCH)]
            out = np.zeros((BATCH, length), dtype=np.int32)
            for i, row in enumerate(both):
                out[i, length - len(row):] = row
            return out
        return pre_pad(tok, lens).astype(np.int32)
    ds = load_dataset({"source": "shakespeare", "seq_len": length})
    return ds.test["inputs"][:BATCH].astype(np.int32)


def measure(onnx_path: Optional[str], keras_model: Any, inputs: Dict[int, np.ndarray]) -> Dict[str, Any]:
    """Load and run ``onnx_path`` at every length; max abs error against Keras per length."""
    import onnx
    import onnxruntime as ort

    out: Dict[str, Any] = {"file_size": None, "recurrent_nodes": {}, "loops": 0, "runs": {}, "max_abs_err": {}}
    if onnx_path is None or not Path(onnx_path).is_file():
        return out
    out["file_size"] = os.path.getsize(onnx_path)
    data = Path(onnx_path).with_suffix(".onnx.data")
    if data.is_file():
        out["file_size"] += os.path.getsize(data)
    model = onnx.load(onnx_path)
    ops = Counter(n.op_type for n in model.graph.node)
    out["recurrent_nodes"] = {k: ops[k] for k in ("LSTM", "GRU", "RNN") if ops.get(k)}
    out["loops"] = sum(ops.get(k, 0) for k in ("Loop", "Scan"))
    try:
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    except Exception as exc:
        for length in inputs:
            out["runs"][length] = f"load failed: {str(exc).splitlines()[0][:300]}"
        return out
    name = sess.get_inputs()[0].name
    for length, x in inputs.items():
        want = np.asarray(keras_model.predict(x, verbose=0))
        try:
            got = sess.run(None, {name: x.astype(_np_type(sess.get_inputs()[0].type))})[0]
        except Exception as exc:
            out["runs"][length] = f"run failed: {str(exc).splitlines()[0][:300]}"
            continue
        if got.shape != want.shape:
            out["runs"][length] = f"wrong shape {list(got.shape)} (Keras {list(want.shape)})"
            continue
        out["runs"][length] = "ok"
        out["max_abs_err"][length] = float(np.abs(got.astype(np.float64) - want).max())
    return out


def _np_type(onnx_type: str) -> Any:
    return {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64}.get(onnx_type, np.float32)


def run_model(name: str, workdir: Path, seed: int) -> Dict[str, Any]:
    from rnndeploy.keras.export import KerasExportOptions, export_keras
    from rnndeploy.keras.tutorials import train

    samples, epochs = TRAINING[name]
    t0 = time.perf_counter()
    trained = train(name, samples=samples, epochs=epochs, seed=seed)
    t_train = time.perf_counter() - t0
    model = trained.model
    path = workdir / f"{name}.keras"
    model.save(str(path))
    lengths = (trained.longest_seq, 2 * trained.longest_seq)
    inputs = {n: eval_inputs(name, trained, n) for n in lengths}

    keras_onnx = workdir / f"{name}.keras-export.onnx"
    keras_error = ""
    try:
        model.export(str(keras_onnx), format="onnx", verbose=False)
    except TypeError:  # older Keras 3 without the verbose argument
        model.export(str(keras_onnx), format="onnx")
    except Exception as exc:
        keras_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    ours = workdir / f"{name}.rnndeploy.onnx"
    ours_error = ""
    try:
        export_keras(str(path), str(ours), KerasExportOptions(longest_train_seq=trained.longest_seq))
    except Exception as exc:
        ours_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return {
        "model": name,
        "trained": {"samples": samples, "epochs": epochs, "seconds": round(t_train, 1),
                    trained.metric[0]: round(trained.metric[1], 4), "longest_seq": trained.longest_seq},
        "lengths": list(lengths),
        "keras_export": {"error": keras_error, **measure(None if keras_error else str(keras_onnx), model, inputs)},
        "rnndeploy": {"error": ours_error, **measure(None if ours_error else str(ours), model, inputs)},
    }


def render(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    lines = [
        "# Keras' own ONNX export vs `rnndeploy export` on the seeds' Keras models",
        "",
        f"Command: `{meta['command']}`  ",
        f"Keras {meta['keras']} ({meta['keras_backend']} backend), torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, "
        f"Python {meta['python']}, {meta['machine']}.",
        "",
        "Each model is trained briefly, saved as `.keras`, then exported by Keras (`model.export(path, format=\"onnx\")`) "
        f"and by rnndeploy; both files run in ONNX Runtime (CPU) on {BATCH} held-out rows at the training length and at "
        "twice it (text models pre-padded, as trained) and are compared with Keras' own output. "
        "Correctness and size only: no timings.",
        "",
        "| model | exporter | runs at train len / 2× | max abs err at train len | at 2× | recurrent ONNX nodes | Loop/Scan | file size |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    for r in results:
        n1, n2 = r["lengths"]
        for label, key in (("Keras `model.export`", "keras_export"), ("rnndeploy", "rnndeploy")):
            m = r[key]
            if m["error"]:
                lines.append(f"| {r['model']} | {label} | export failed: {m['error']} | – | – | – | – | – |")
                continue
            runs = _runs_text([m["runs"].get(n, m["runs"].get(str(n), "-")) for n in (n1, n2)])
            errs = [m["max_abs_err"].get(n, m["max_abs_err"].get(str(n))) for n in (n1, n2)]
            nodes = ", ".join(f"{k}×{v}" for k, v in m["recurrent_nodes"].items()) or "none"
            lines.append(
                f"| {r['model']} (len {n1}) | {label} | {runs} | {_err(errs[0])} | {_err(errs[1])} | {nodes} | "
                f"{m['loops']} | {_size(m['file_size'])} |"
            )
    lines += ["", "Trained: " + "; ".join(
        f"{r['model']} {r['trained']['samples']} samples × {r['trained']['epochs']} epochs "
        f"({', '.join(f'{k} {v}' for k, v in r['trained'].items() if k not in ('samples', 'epochs', 'seconds', 'longest_seq'))})"
        for r in results) + "."]
    lines += ["", "Failures are quoted from the tool's first line (ONNX Runtime or the exporter)."]
    return "\n".join(lines) + "\n"


def _runs_text(runs: List[str]) -> str:
    """"yes / yes", or "no / no: why" (the reason once when both lengths fail alike)."""
    short = ["yes" if r == "ok" else "no" for r in runs]
    reasons = list(dict.fromkeys(_clean(r) for r in runs if r != "ok"))
    text = " / ".join(short)
    return text + (": " + "; ".join(r[:110] for r in reasons) if reasons else "")


def _clean(msg: str) -> str:
    """onnxruntime's boilerplate dropped: "run failed: Split node '/Split': Cannot split using ..."."""
    import re

    msg = msg.replace("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running ", "")
    return re.sub(r"(\w+) node\. Name:'([^']*)' Status Message: ", r"\1 node '\2': ", msg)


def _err(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.1e}"


def _size(n: Optional[int]) -> str:
    if n is None:
        return "–"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="directory for the .json and .md results")
    ap.add_argument("--models", nargs="*", default=list(TRAINING), help="subset of the tutorial models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", metavar="JSON", help="only rewrite the .md from an earlier run's .json")
    args = ap.parse_args(argv)
    if args.render:
        doc = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(render(doc["results"], doc["meta"]))
        return 0
    import keras
    import onnxruntime
    import torch

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"[{name}] training and exporting ...", flush=True)
            results.append(run_model(name, Path(tmp), args.seed))
    meta = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable.rsplit('/', 1)[-1], *sys.argv]),
        "keras": keras.__version__, "keras_backend": keras.backend.backend(), "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "keras_export_compare.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (out / "keras_export_compare.md").write_text(render(results, meta))
    print(render(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
