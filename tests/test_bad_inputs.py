"""Bad inputs fail closed: every case below is one clear line, the documented exit status
(2 bad input, 1 a check that ran and failed, 3 missing package or GPU), no traceback,
and nothing left behind (no new file or directory, previous outputs intact).

The table is the point of this module: one row per bad input, across every command.
Rows run in-process through click's CliRunner (fast); ``test_real_subprocess`` runs a
few through ``python -m rnndeploy`` as users do. Artefacts (tiny seeded models, their
ONNX files, results, goldens) are made once per session by ``art``.

A row is ``Bad(id, argv, exit, words, files)``:
- ``argv`` is split like a shell line, then each word is formatted with the artefact
  paths (``{onnx}``, ``{ckpt}``, ...) and ``{d}``, the row's own scratch directory;
- ``words`` must all appear (case-insensitive) in the error line;
- ``files`` are written into ``{d}`` before the run: name -> bytes/str, or a callable
  ``(art) -> bytes/str``; ``{d}`` must hold exactly these files, unchanged, afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple, Union

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.cli import cli  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

Content = Union[bytes, str, Callable[[Mapping[str, Any]], Union[bytes, str]]]


@dataclass(frozen=True)
class Bad:
    id: str
    argv: str
    exit: int
    words: Tuple[str, ...]
    files: Mapping[str, Content] = field(default_factory=dict)


def B(id: str, argv: str, exit: int, *words: str, files: Mapping[str, Content] = None) -> Bad:  # noqa: A002
    return Bad(id, argv, exit, tuple(words), dict(files or {}))


def T(id: str, argv: str, exit: int, *words: str, files: Mapping[str, Content] = None) -> Bad:  # noqa: A002
    """A tune row, on a small grid (one thread, FP32, ONNX Runtime) unless the row sets those options
    itself, so that a check that lets a row through still ends in seconds."""
    small = {"--batch": "1", "--seq": "4", "--threads": "1", "--variant": "fp32", "--runtime": "ort-cpu",
             "--min-time": "0.01"}
    given = set(shlex.split(argv))
    extra = " ".join(f"{k} {v}" for k, v in small.items() if k not in given)
    return B(id, f"{argv} --no-progress {extra}", exit, *words, files=files)


# -- artefacts ---------------------------------------------------------------------------------------
def _npz(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _onnx_add(opset: int = 17, dims=("batch", "seq", 2), name: str = "add", shift: float = 1.0) -> bytes:
    """y = x + shift, a foreign ONNX file (no rnndeploy metadata)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(dims))
    c = helper.make_tensor("c", TensorProto.FLOAT, [], [shift])
    node = helper.make_node("Add", ["x", "c"], ["y"], name="add_node")
    g = helper.make_graph([node], name, [x], [y], [c])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    m.ir_version = 8 if opset <= 17 else 10
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _onnx_aten() -> bytes:
    """An exporter's ATen fallback node (domain org.pytorch.aten): no runtime implements it."""
    from onnx import TensorProto, helper

    node = helper.make_node("ATen", ["x"], ["y"], domain="org.pytorch.aten", name="aten_lstm", operator="lstm")
    g = helper.make_graph([node], "aten", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("org.pytorch.aten", 1)])
    m.ir_version = 8
    return m.SerializeToString()


def _onnx_dangling() -> bytes:
    """An Add reading a tensor nothing produces: onnx.load takes it, onnx.checker and every runtime refuse it."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 2])
    g = helper.make_graph([helper.make_node("Add", ["x", "nope"], ["y"], name="add_node")], "dangling", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString()


DEEP_JSON = "[" * 100000 + "]" * 100000


@contextlib.contextmanager
def memory_cap(extra: int = 6 << 30) -> Any:
    """Cap this process's address space near its current size while a case runs, so a case
    that allocates before refusing fails here (MemoryError) instead of starving the machine."""
    try:
        import resource
    except ImportError:  # not on Linux: no cap
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = vm + extra if hard == resource.RLIM_INFINITY else min(vm + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _cli(args: Sequence[str]) -> Any:
    try:
        runner = CliRunner(mix_stderr=False)  # click 8.1
    except TypeError:  # click >= 8.2 keeps stderr apart by itself
        runner = CliRunner()
    return runner.invoke(cli, list(args), catch_exceptions=True)


def _ok(args: Sequence[str]) -> Any:
    res = _cli(args)
    assert res.exit_code == 0, (args, res.stdout, res.stderr, res.exception)
    return res


@pytest.fixture(scope="session")
def art(tmp_path_factory) -> Dict[str, Any]:
    """Tiny models and every file made from them (read-only for the cases)."""
    d = tmp_path_factory.mktemp("art")
    a: Dict[str, Any] = {"root": str(d)}
    tiny = ["--epochs", "1", "-q"]
    _ok(["train", "sine", "--out", str(d / "ck"), *tiny, "--set", "data.n_series=64", "--set", "model.hidden_size=4"])
    _ok(["export", str(d / "ck"), "-o", str(d / "m.onnx")])
    _ok(["train", "charlm", "--out", str(d / "ckc"), *tiny, "--set", "model.hidden_size=4",
         "--set", "model.embedding_dim=4", "--set", 'data.plays=["macbeth"]'])
    _ok(["export", str(d / "ckc"), "-o", str(d / "c.onnx")])
    _ok(["parity", str(d / "m.onnx"), "--backend", "ort-cpu", "--shapes", "1x4,2x8", "--json", str(d / "p.json"),
         "--save-golden", str(d / "gold")])
    _ok(["bench", str(d / "m.onnx"), "--backend", "ort-cpu", "--batch", "1", "--seq", "4", "--iters", "3",
         "--warmup", "1", "--no-torch-row", "--json", str(d / "b.json")])
    (d / "add.onnx").write_bytes(_onnx_add())
    (d / "add21.onnx").write_bytes(_onnx_add(opset=21))
    (d / "addk.onnx").write_bytes(_onnx_add(dims=("batch", "seq", "K")))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 5, 2)).astype(np.float32)
    (d / "x.npz").write_bytes(_npz(x=x))
    (d / "y.npz").write_bytes(_npz(y=x + 1))
    (d / "y5.npz").write_bytes(_npz(y=x + 6))  # off by 5.0
    xs = np.random.default_rng(0).uniform(-1, 1, (2, 5, 1)).astype(np.float32)
    (d / "xs.npz").write_bytes(_npz(x=xs))
    a.update({k: str(d / v) for k, v in {
        "ckpt": "ck", "onnx": "m.onnx", "cckpt": "ckc", "connx": "c.onnx", "results": "p.json", "bench": "b.json",
        "golden": "gold", "add": "add.onnx", "add21": "add21.onnx", "addk": "addk.onnx", "x": "x.npz", "y": "y.npz",
        "y5": "y5.npz", "xs": "xs.npz"}.items()})
    a["parity_doc"] = json.loads((d / "p.json").read_text())
    a["bench_doc"] = json.loads((d / "b.json").read_text())
    a["vocab"] = int(json.loads((d / "ckc" / "spec.json").read_text())["attrs"].get("vocab_size", 0) or 0)
    return a


def _snapshot(root: Path) -> Dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = "dir"
        elif not p.is_file():  # a FIFO: reading it would block
            out[rel] = "special"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# -- file builders -----------------------------------------------------------------------------------
def _results(mutate: Callable[[Dict[str, Any]], Any], kind: str = "parity") -> Callable[[Mapping[str, Any]], str]:
    def build(a: Mapping[str, Any]) -> str:
        doc = json.loads(json.dumps(a["parity_doc" if kind == "parity" else "bench_doc"]))
        r = mutate(doc)
        return r if isinstance(r, str) else json.dumps(doc)
    return build


def _set(path: str, value: Any, kind: str = "parity") -> Callable[[Mapping[str, Any]], str]:
    """A results document with ``path`` (dot-separated, ints index lists) set to ``value`` ("<del>" deletes)."""
    def mutate(doc: Dict[str, Any]) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        obj: Any = doc
        for k in keys[:-1]:
            obj = obj[k]
        if value == "<del>":
            del obj[keys[-1]]
        else:
            obj[keys[-1]] = value
    return _results(mutate, kind)


def _golden_with(manifest_edit: Callable[[Dict[str, Any]], Any] = None,
                 files: Mapping[str, Any] = None) -> Dict[str, Content]:
    """Files of a golden directory copied from the session's, with edits (keys are relative to {d})."""
    def mf(a: Mapping[str, Any]) -> str:
        m = json.loads((Path(a["golden"]) / "manifest.json").read_text())
        if manifest_edit is not None:
            r = manifest_edit(m)
            if isinstance(r, str):
                return r
        return json.dumps(m)
    out: Dict[str, Content] = {"g/manifest.json": mf}
    for name in ("b1-s4.inputs.npz", "b1-s4.outputs.npz", "b2-s8.inputs.npz", "b2-s8.outputs.npz"):
        out[f"g/{name}"] = (lambda n: lambda a: (Path(a["golden"]) / n).read_bytes())(name)
    out.update(files or {})
    return out


def _onnx_meta(edit: Callable[[Dict[str, str]], None]) -> Callable[[Mapping[str, Any]], bytes]:
    """The sine ONNX file with its metadata_props edited."""
    def build(a: Mapping[str, Any]) -> bytes:
        import onnx

        m = onnx.load(a["onnx"])
        props = {p.key: p.value for p in m.metadata_props}
        edit(props)
        del m.metadata_props[:]
        for k, v in props.items():
            m.metadata_props.add(key=k, value=v)
        return m.SerializeToString()
    return build


def _spec_key(props: Mapping[str, str]) -> str:
    return next(k for k in props if "spec" in k)


def _sidecar(edit: Callable[[Dict[str, Any]], Any]) -> Dict[str, Content]:
    def side(a: Mapping[str, Any]) -> str:
        from rnndeploy.engine.sidecar import SIDECAR_SCHEMA

        data = {"schema": SIDECAR_SCHEMA, "tensorrt": {"version": "8.6.1"}, "gpu": {"name": "x", "compute_capability": "9.0"},
                "engine": {"bytes": 4, "sha256": hashlib.sha256(b"plan").hexdigest()}, "profiles": [],
                "precision": {}}
        r = edit(data)
        return r if isinstance(r, str) else json.dumps(data)
    return {"e.plan": b"plan", "e.plan.json": side}


def _ckpt_copy(edit: Callable[[Path], None]) -> Callable[[Mapping[str, Any], Path], None]:
    def make(a: Mapping[str, Any], d: Path) -> None:
        shutil.copytree(a["ckpt"], d / "ck")
        edit(d / "ck")
    return make


NAN_X = lambda a: _npz(x=np.where(np.arange(20).reshape(2, 5, 2) == 7, np.nan, 0.5).astype(np.float32))  # noqa: E731
INF_X = lambda a: _npz(x=np.where(np.arange(20).reshape(2, 5, 2) == 3, np.inf, 0.5).astype(np.float32))  # noqa: E731


# -- Keras files (made by Keras itself on its torch backend; rows skip without Keras) ---------------
@functools.cache
def _keras_model_bytes(fmt: str, kind: str = "lstm") -> bytes:
    """A tiny saved Keras model: "lstm" (LSTM(4) → Dense), "lambda", "conv", "gelu", "weights" (weights only)."""
    import os
    import tempfile

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    L = keras.layers
    body = {"lstm": [L.LSTM(4, name="lstm"), L.Dense(1, name="dense")],
            "lambda": [L.Lambda(lambda x: x * 2.0, name="double"), L.LSTM(2)],
            "conv": [L.Conv1D(4, 3, name="conv"), L.LSTM(2)],
            "gelu": [L.SimpleRNN(3, activation="gelu", name="rnn")],
            "weights": [L.LSTM(4)]}[kind]
    model = keras.Sequential([keras.Input((None, 3))] + body)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w.weights.h5" if kind == "weights" else f"m.{fmt}")
        model.save_weights(path) if kind == "weights" else model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _keras(fmt: str = "keras", kind: str = "lstm", cut: float = 1.0) -> Callable[[Mapping[str, Any]], bytes]:
    def make(a: Mapping[str, Any]) -> bytes:
        data = _keras_model_bytes(fmt, kind)
        return data[: int(len(data) * cut)]

    return make


def _keras_zip_edit(edit: Callable[[Dict[str, bytes]], None]) -> Callable[[Mapping[str, Any]], bytes]:
    """The tiny .keras archive with its members edited (config.json, metadata.json, ...)."""
    import io
    import zipfile

    def make(a: Mapping[str, Any]) -> bytes:
        with zipfile.ZipFile(io.BytesIO(_keras_model_bytes("keras"))) as z:
            members = {n: z.read(n) for n in z.namelist()}
        edit(members)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for n, data in members.items():
                z.writestr(n, data)
        return buf.getvalue()

    return make


def _keras_config(edit: Callable[[Dict[str, Any]], Any]) -> Callable[[Mapping[str, Any]], bytes]:
    def change(members: Dict[str, bytes]) -> None:
        cfg = json.loads(members["config.json"])
        edit(cfg)
        members["config.json"] = json.dumps(cfg).encode()

    return _keras_zip_edit(change)


def _keras_units(cfg: Dict[str, Any]) -> None:
    next(layer for layer in cfg["config"]["layers"] if layer["class_name"] == "LSTM")["config"]["units"] = 5


def _keras_custom(cfg: Dict[str, Any]) -> None:
    """What Keras writes for a registered custom layer (module and "package>Class" name)."""
    cfg["config"]["layers"].insert(1, {"module": "my_package.layers", "class_name": "Scale",
                                       "registered_name": "my_package>Scale",
                                       "config": {"name": "scale", "trainable": True, "dtype": "float32"}})


def _keras_h5_version(version: str) -> Callable[[Mapping[str, Any]], bytes]:
    def make(a: Mapping[str, Any]) -> bytes:
        import io

        h5py = pytest.importorskip("h5py")
        buf = io.BytesIO(_keras_model_bytes("h5"))
        with h5py.File(buf, "a") as f:
            f.attrs["keras_version"] = version
        return buf.getvalue()

    return make


def _keras2_weights_only(a: Mapping[str, Any]) -> bytes:
    """tf.keras 2's save_weights() layout: layer_names at the root and no model_config."""
    import io

    h5py = pytest.importorskip("h5py")
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["layer_names"] = [b"lstm"]
        f.attrs["keras_version"] = b"2.15.0"
        g = f.create_group("lstm")
        g.attrs["weight_names"] = [b"lstm/lstm_cell/kernel:0"]
        g.create_dataset("lstm/lstm_cell/kernel:0", data=np.zeros((3, 16), np.float32))
    return buf.getvalue()


def _tokens(values: np.ndarray, dtype=np.int64) -> Callable[[Mapping[str, Any]], bytes]:
    def build(a: Mapping[str, Any]) -> bytes:
        return _npz(tokens=np.asarray(values, dtype=dtype), h0=np.zeros((1, np.shape(values)[0], 4), np.float32))
    return build


IDENTITY = "import torch\ndef f():\n    return torch.nn.Identity()\n"
P = "parity {onnx} --backend ort-cpu"
PA = "parity {add} --backend ort-cpu"
BE = "bench {onnx} --backend ort-cpu --no-torch-row --iters 2 --warmup 0"
REPORT_PREV = {"prev.html": "old html", "prev.md": "old md"}

CASES = [
    # -- parity: tolerances fail closed --------------------------------------------------------------
    B("parity-tol-nan", f"{PA} --inputs {{x}} --expected {{y5}} --tol y:nan:nan", 2, "--tol", "nan"),
    B("parity-atol-nan", f"{PA} --inputs {{x}} --expected {{y5}} --atol nan --rtol nan", 2, "--atol", "nan"),
    B("parity-rtol-nan", f"{P} --rtol nan", 2, "--rtol", "nan"),
    B("parity-atol-neg", f"{P} --atol -1", 2, "--atol", "-1"),
    B("parity-rtol-neg", f"{P} --rtol -0.5", 2, "--rtol"),
    B("parity-atol-word", f"{P} --atol big", 2, "--atol", "big"),
    B("parity-tol-rel-l2-nan", f"{P} --tol y:1e-3:1e-3:nan", 2, "--tol", "nan"),
    B("parity-tol-neg-inf", f"{P} --tol y:-inf:0", 2, "--tol"),
    B("parity-tol-short", f"{P} --tol y:1", 2, "--tol", "output:atol:rtol"),
    B("parity-tol-unknown-output", f"{P} --tol q:1:1", 2, "--tol", "q", "y"),
    B("parity-tol-word", f"{P} --tol y:a:b", 2, "--tol"),
    B("parity-all-inf-nothing-checked", f"{PA} --inputs {{x}} --expected {{y5}} --tol y:inf:0", 2,
      "nothing", "checked"),
    B("parity-off-by-5-fails", f"{PA} --inputs {{x}} --expected {{y5}}", 1, "parity failed", "y"),
    B("parity-min-agreement-nan", f"{P} --min-agreement nan", 2, "--min-agreement", "nan"),
    B("parity-min-agreement-big", f"{P} --min-agreement 1.5", 2, "--min-agreement", "1.5"),
    B("parity-min-agreement-neg", f"{P} --min-agreement -0.1", 2, "--min-agreement"),
    # -- parity: shapes, dims, numbers -------------------------------------------------------------
    B("parity-shapes-zero-batch", f"{P} --shapes 0x4", 2, "shape", "0x4"),
    B("parity-shapes-zero-seq", f"{P} --shapes 1x0", 2, "shape", "1x0"),
    B("parity-shapes-huge", f"{P} --shapes 100000x100000", 2, "memory", "gib"),
    B("parity-shapes-huge-charlm", "parity {connx} --backend ort-cpu --shapes 10000x100000", 2, "memory", "gib"),
    B("parity-shapes-word", f"{P} --shapes abc", 2, "shape", "abc"),
    B("parity-shapes-neg", f"{P} --shapes 1x-3", 2, "shape"),
    B("parity-shapes-3d", f"{P} --shapes 1x4x5", 2, "shape", "1x4x5"),
    B("parity-shapes-empty", f"{P} --shapes ,", 2, "--shapes"),
    B("parity-seed-neg", f"{P} --seed -1", 2, "--seed", "-1"),
    B("parity-seed-word", f"{P} --seed x", 2, "--seed"),
    B("parity-threads-zero", f"{P} --threads 0", 2, "--threads"),
    B("parity-decode-max-len-zero", f"{P} --decode-max-len 0", 2, "--decode-max-len"),
    B("parity-sample-steps-neg", f"{P} --sample-steps -1", 2, "--sample-steps"),
    B("parity-sample-steps-regressor", f"{P} --sample-steps 4", 2, "sampl"),
    B("parity-dim-unknown-axis", f"{P} --dim N=4", 2, "--dim", "n", "batch"),
    B("parity-dim-malformed", f"{P} --dim N", 2, "--dim", "name=size"),
    B("parity-dim-zero", "parity {addk} --backend ort-cpu --dim K=0", 2, "--dim", "k=0"),
    B("parity-dim-missing", "parity {addk} --backend ort-cpu", 2, "k", "--dim"),
    B("parity-dim-huge", "parity {addk} --backend ort-cpu --dim K=100000000000 --shapes 1x1", 2, "memory"),
    B("parity-trt-profile-malformed", f"{P} --trt-profile seq=1:2", 2, "--trt-profile"),
    B("parity-trt-profile-order", f"{P} --trt-profile seq=4:2:1", 2, "--trt-profile"),
    # -- parity: models and backends ---------------------------------------------------------------
    # without --backend every available runtime runs; with only the reference available, nothing is compared
    B("parity-no-backend-only-reference", "parity {ckpt}", 2, "nothing to compare"),
    B("parity-backend-unknown", "parity {onnx} --backend ort-gpu", 2, "ort-gpu", "ort-cpu"),
    B("parity-backend-modifier-unknown", "parity {onnx} --backend ort-cpu:zz", 2, "zz"),
    B("parity-reference-unknown", f"{P} --reference bogus", 2, "bogus"),
    B("parity-reference-only", "parity {onnx} --backend ort-cpu --reference ort-cpu", 2, "reference"),
    B("parity-graph-unknown", f"{P} --graph nope", 2, "nope", "model"),
    B("parity-with-state-stateless", f"{P} --with-state", 2, "with-state"),
    B("parity-model-missing", "parity {d}/nope.onnx --backend ort-cpu", 2, "nope.onnx", "does not exist"),
    B("parity-model-unknown-kind", "parity {d}/m.txt --backend ort-cpu", 2, "m.txt", files={"m.txt": "x"}),
    B("parity-zero-byte-onnx", "parity {d}/z.onnx --backend ort-cpu", 2, "z.onnx", "empty", files={"z.onnx": b""}),
    B("parity-garbage-onnx", "parity {d}/g.onnx --backend ort-cpu", 2, "g.onnx", "onnx", files={"g.onnx": b"\xff\x00garbage" * 9}),
    B("parity-onnx-is-dir", "parity {d}/dir.onnx --backend ort-cpu", 2, "dir.onnx", files={"dir.onnx/x": "x"}),
    B("parity-spec-not-json", "parity {d}/s.onnx --backend ort-cpu", 2, "s.onnx", "spec",
      files={"s.onnx": _onnx_meta(lambda p: p.__setitem__(_spec_key(p), "{not json"))}),
    B("parity-spec-wrong-type", "parity {d}/s.onnx --backend ort-cpu", 2, "s.onnx", "spec",
      files={"s.onnx": _onnx_meta(lambda p: p.__setitem__(_spec_key(p), json.dumps({"name": 5, "graphs": "x"})))}),
    B("parity-spec-list", "parity {d}/s.onnx --backend ort-cpu", 2, "s.onnx",
      files={"s.onnx": _onnx_meta(lambda p: p.__setitem__(_spec_key(p), "[1, 2]"))}),
    B("parity-checkpoint-other-model", "parity {onnx} --checkpoint {cckpt} --backend ort-cpu", 2,
      "checkpoint", "not the model", "exported from"),
    B("parity-checkpoint-missing", "parity {onnx} --checkpoint {d}/nope --backend ort-cpu", 2, "nope", "does not exist"),
    B("parity-checkpoint-empty-dir", "parity {d}/ck --backend ort-cpu --onnx {onnx}", 2, "ck",
      files={"ck/.keep": ""}),
    B("parity-checkpoint-spec-bad", "parity {onnx} --checkpoint {d}/ck --backend ort-cpu", 2, "manifest.json",
      files={"ck/spec.json": '{"name": 3}', "ck/manifest.json": "{}"}),
    B("parity-module-missing", "parity {onnx} --module {d}/nope.py:build --backend ort-cpu", 2, "nope.py"),
    B("parity-engine-missing", "parity {onnx} --engine {d}/nope.plan --backend trt", 2, "nope.plan"),
    B("parity-decoder-not-seq2seq", "parity {onnx} --decoder {add} --backend ort-cpu", 2, "decoder_step"),
    B("parity-decoder-missing", "parity {onnx} --decoder {d}/nope.onnx --backend ort-cpu", 2, "nope.onnx"),
    B("parity-ort-cuda-missing", "parity {onnx} --backend ort-cuda", 3, "cuda"),
    B("parity-trt-missing", "parity {onnx} --backend trt", 3, "tensorrt", "install"),
    B("parity-device-cuda", "parity {onnx} --backend torch --reference ort-cpu --device cuda", 3, "cuda"),
    B("parity-device-bogus", "parity {onnx} --backend torch --reference ort-cpu --device tpu", 2, "tpu"),
    # -- parity: --inputs / --expected ------------------------------------------------------------
    B("inputs-missing-file", f"{PA} --inputs {{d}}/none.npz", 2, "--inputs", "none.npz"),
    B("inputs-not-npz", f"{PA} --inputs {{d}}/a.npz", 2, "--inputs", "a.npz", files={"a.npz": "text"}),
    B("inputs-empty-npz", f"{PA} --inputs {{d}}/a.npz", 2, "--inputs", "x", files={"a.npz": lambda a: _npz()}),
    B("inputs-pickled", f"{PA} --inputs {{d}}/a.npz", 2, "--inputs",
      files={"a.npz": lambda a: _npz(x=np.array([{"a": 1}], dtype=object))}),
    B("inputs-zero-batch", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "batch", "empty",
      files={"a.npz": lambda a: _npz(x=np.zeros((0, 5, 2), np.float32))}),
    B("inputs-zero-seq", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "seq", "empty",
      files={"a.npz": lambda a: _npz(x=np.zeros((2, 0, 2), np.float32))}),
    B("inputs-zero-batch-sine", f"{P} --inputs {{d}}/a.npz", 2, "'x'", "empty",
      files={"a.npz": lambda a: _npz(x=np.zeros((0, 5, 1), np.float32))}),
    B("inputs-nan", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "nan", "index", files={"a.npz": NAN_X}),
    B("inputs-inf", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "inf", "index", files={"a.npz": INF_X}),
    B("inputs-float64", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "float64", "float32",
      files={"a.npz": lambda a: _npz(x=np.zeros((2, 5, 2)))}),
    B("inputs-rank", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "rank",
      files={"a.npz": lambda a: _npz(x=np.zeros((2, 5), np.float32))}),
    B("inputs-static-dim", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "axis 2",
      files={"a.npz": lambda a: _npz(x=np.zeros((2, 5, 3), np.float32))}),
    B("inputs-wrong-name", f"{PA} --inputs {{d}}/a.npz", 2, "missing 'x'",
      files={"a.npz": lambda a: _npz(z=np.zeros((2, 5, 2), np.float32))}),
    B("inputs-extra-name", f"{PA} --inputs {{d}}/a.npz", 2, "unexpected 'z'",
      files={"a.npz": lambda a: _npz(x=np.zeros((2, 5, 2), np.float32), z=np.zeros(1))}),
    B("inputs-scalar", f"{PA} --inputs {{d}}/a.npz", 2, "'x'", "rank",
      files={"a.npz": lambda a: _npz(x=np.float32(1))}),
    B("inputs-with-golden", f"{PA} --inputs {{x}} --golden {{golden}}", 2, "--golden", "--inputs"),
    B("inputs-huge-claims", f"{PA} --inputs {{d}}/a.npz", 2, "--inputs", files={"a.npz": b"PK\x03\x04" + b"\x00" * 40}),
    B("expected-without-inputs", f"{PA} --expected {{y}}", 2, "--expected", "--inputs"),
    B("expected-missing-file", f"{PA} --inputs {{x}} --expected {{d}}/none.npz", 2, "--expected", "none.npz"),
    B("expected-missing-output", f"{PA} --inputs {{x}} --expected {{d}}/e.npz", 2, "--expected", "y",
      files={"e.npz": lambda a: _npz(q=np.zeros((2, 5, 2), np.float32))}),
    B("expected-shape", f"{PA} --inputs {{x}} --expected {{d}}/e.npz", 2, "--expected", "'y'", "shape",
      files={"e.npz": lambda a: _npz(y=np.zeros((3, 5, 2), np.float32))}),
    B("expected-rank", f"{PA} --inputs {{x}} --expected {{d}}/e.npz", 2, "--expected", "'y'",
      files={"e.npz": lambda a: _npz(y=np.zeros((2, 5), np.float32))}),
    B("expected-dtype", f"{PA} --inputs {{x}} --expected {{d}}/e.npz", 2, "--expected", "'y'", "int64", "float32",
      files={"e.npz": lambda a: _npz(y=np.zeros((2, 5, 2), np.int64))}),
    B("expected-nan", f"{PA} --inputs {{x}} --expected {{d}}/e.npz", 2, "--expected", "'y'", "nan", "index",
      files={"e.npz": lambda a: _npz(y=np.full((2, 5, 2), np.nan, np.float32))}),
    B("expected-inf", f"{PA} --inputs {{x}} --expected {{d}}/e.npz", 2, "--expected", "'y'", "inf",
      files={"e.npz": lambda a: _npz(y=np.full((2, 5, 2), -np.inf, np.float32))}),
    B("expected-extra-output", f"{PA} --inputs {{x}} --expected {{d}}/e.npz", 2, "--expected", "'z'",
      files={"e.npz": lambda a: _npz(y=np.zeros((2, 5, 2), np.float32), z=np.zeros(2))}),
    B("tokens-out-of-vocab", "parity {connx} --backend ort-cpu --with-state --inputs {d}/t.npz", 2,
      "'tokens'", "index", "0", files={"t.npz": _tokens(np.array([[1, 2, 999]]))}),
    B("tokens-negative", "parity {connx} --backend ort-cpu --with-state --inputs {d}/t.npz", 2,
      "'tokens'", "-1", "index", files={"t.npz": _tokens(np.array([[1, -1, 2]]))}),
    B("tokens-float", "parity {connx} --backend ort-cpu --with-state --inputs {d}/t.npz", 2,
      "'tokens'", "float32", "int64", files={"t.npz": _tokens(np.array([[1.0, 2.0]]), np.float32)}),
    B("tokens-int32", "parity {connx} --backend ort-cpu --with-state --inputs {d}/t.npz", 2,
      "'tokens'", "int32", "int64", files={"t.npz": _tokens(np.array([[1, 2]]), np.int32)}),
    B("tokens-empty-seq", "parity {connx} --backend ort-cpu --with-state --inputs {d}/t.npz", 2,
      "'tokens'", "empty", files={"t.npz": _tokens(np.zeros((1, 0)))}),
    B("tokens-state-nan", "parity {connx} --backend ort-cpu --with-state --inputs {d}/t.npz", 2, "'h0'", "nan",
      files={"t.npz": lambda a: _npz(tokens=np.ones((1, 3), np.int64), h0=np.full((1, 1, 4), np.nan, np.float32))}),
    B("tokens-state-batch-mismatch", "parity {connx} --backend ort-cpu --with-state --inputs {d}/t.npz", 2, "batch",
      files={"t.npz": lambda a: _npz(tokens=np.ones((2, 3), np.int64), h0=np.zeros((1, 1, 4), np.float32))}),
    # -- parity: golden directories ---------------------------------------------------------------
    B("golden-missing", f"{P} --golden {{d}}/nope", 2, "golden", "nope"),
    B("golden-is-file", f"{P} --golden {{d}}/f", 2, "golden", files={"f": "x"}),
    B("golden-manifest-not-json", f"{P} --golden {{d}}/g", 2, "manifest.json", "json",
      files=_golden_with(lambda m: "{oops")),
    B("golden-manifest-list", f"{P} --golden {{d}}/g", 2, "manifest.json",
      files=_golden_with(lambda m: "[]")),
    B("golden-cases-oops", f"{P} --golden {{d}}/g", 2, "manifest.json", "cases",
      files=_golden_with(lambda m: m.__setitem__("cases", "oops"))),
    B("golden-case-no-inputs", f"{P} --golden {{d}}/g", 2, "manifest.json", "inputs",
      files=_golden_with(lambda m: m["cases"][0].pop("inputs") and None)),
    B("golden-case-inputs-int", f"{P} --golden {{d}}/g", 2, "manifest.json", "inputs",
      files=_golden_with(lambda m: m["cases"][0].__setitem__("inputs", 5))),
    B("golden-case-escape", f"{P} --golden {{d}}/g", 2, "manifest.json", "inputs",
      files=_golden_with(lambda m: m["cases"][0].__setitem__("inputs", "../../etc/passwd"))),
    B("golden-version-word", f"{P} --golden {{d}}/g", 2, "manifest.json", "version",
      files=_golden_with(lambda m: m.__setitem__("version", "x"))),
    B("golden-version-new", f"{P} --golden {{d}}/g", 2, "version", "upgrade",
      files=_golden_with(lambda m: m.__setitem__("version", 99))),
    B("golden-format", f"{P} --golden {{d}}/g", 2, "golden", "format",
      files=_golden_with(lambda m: m.__setitem__("format", "other"))),
    B("golden-sizes-word", f"{P} --golden {{d}}/g", 2, "manifest.json", "sizes",
      files=_golden_with(lambda m: m["cases"][0].__setitem__("sizes", {"batch": "x"}))),
    B("golden-no-cases", f"{P} --golden {{d}}/g", 2, "no cases",
      files=_golden_with(lambda m: m.__setitem__("cases", []))),
    B("golden-model-not-dict", f"{P} --golden {{d}}/g", 2, "manifest.json", "model",
      files=_golden_with(lambda m: m.__setitem__("model", "x"))),
    B("golden-npz-missing", f"{P} --golden {{d}}/g", 2, "b1-s4.inputs.npz",
      files={k: v for k, v in _golden_with().items() if k != "g/b1-s4.inputs.npz"}),
    B("golden-npz-nan", f"{P} --golden {{d}}/g", 2, "'x'", "nan",
      files=_golden_with(files={"g/b1-s4.inputs.npz": lambda a: _npz(x=np.full((1, 4, 1), np.nan, np.float32))})),
    B("golden-outputs-nan", f"{P} --golden {{d}}/g", 2, "'y'", "nan",
      files=_golden_with(files={"g/b1-s4.outputs.npz": lambda a: _npz(y=np.full((1, 1), np.nan, np.float32))})),
    B("golden-outputs-shape", f"{P} --golden {{d}}/g", 2, "'y'", "shape",
      files=_golden_with(files={"g/b1-s4.outputs.npz": lambda a: _npz(y=np.zeros((7, 1), np.float32))})),
    B("golden-other-model", "parity {add} --backend ort-cpu --golden {golden}", 2, "golden"),
    B("save-golden-is-file", f"{P} --save-golden {{d}}/f", 2, "--save-golden", "f", files={"f": "keep"}),
    B("save-golden-no-parent", f"{P} --save-golden {{d}}/a/b", 2, "--save-golden", "does not exist"),
    B("save-golden-sys", f"{P} --save-golden /sys/rnndeploy-golden", 2, "/sys"),
    B("save-golden-proc", f"{P} --save-golden /proc/rnndeploy-golden", 2, "/proc"),
    # -- parity / bench: outputs are checked before any work --------------------------------------
    B("parity-json-is-dir", f"{P} --json {{d}}/out", 2, "--json", "directory", files={"out/keep": "k"}),
    B("parity-json-no-parent", f"{P} --json {{d}}/no/r.json", 2, "--json", "does not exist"),
    B("parity-json-sys", f"{P} --json /sys/r.json", 2, "/sys/r.json"),
    B("parity-json-proc", f"{P} --json /proc/r.json", 2, "/proc/r.json"),
    B("parity-markdown-is-dir", f"{P} --markdown {{d}}/out", 2, "--markdown", "directory", files={"out/keep": "k"}),
    B("parity-markdown-sys", f"{P} --markdown /sys/r.md", 2, "/sys/r.md"),
    B("parity-json-prev-intact", f"{P} --json {{d}}/prev.json --tol y:nan:0", 2, "--tol", files={"prev.json": "old"}),
    B("parity-json-dir-and-bad-model", "parity {d}/nope.onnx --backend ort-cpu --json {d}/o.json", 2, "nope.onnx"),
    B("parity-json-is-fifo", f"{P} --json {{d}}/pipe", 2, "--json", "not a regular file"),
    B("report-markdown-is-fifo", "report {results} --markdown {d}/pipe", 2, "--markdown", "not a regular file"),
    B("bench-json-is-dir", f"{BE} --json {{d}}/out", 2, "--json", "directory", files={"out/keep": "k"}),
    B("bench-json-sys", f"{BE} --json /sys/b.json", 2, "/sys/b.json"),
    B("bench-markdown-no-parent", f"{BE} --markdown {{d}}/no/b.md", 2, "--markdown", "does not exist"),
    # -- bench ---------------------------------------------------------------------------------------
    B("bench-batch-huge", f"{BE} --batch 1000000000", 2, "memory", "gib"),
    B("bench-seq-huge", f"{BE} --seq 1000000000", 2, "memory", "gib"),
    B("bench-batch-zero", f"{BE} --batch 0", 2, "--batch"),
    B("bench-batch-word", f"{BE} --batch one", 2, "--batch", "one"),
    B("bench-batch-float", f"{BE} --batch 1.5", 2, "--batch"),
    B("bench-seq-neg", f"{BE} --seq -4", 2, "--seq"),
    B("bench-seq-empty", f"{BE} --seq ,", 2, "--seq"),
    B("bench-min-time-nan", "bench {onnx} --backend ort-cpu --no-torch-row --min-time nan", 2, "--min-time", "nan"),
    B("bench-min-time-inf", "bench {onnx} --backend ort-cpu --no-torch-row --min-time inf", 2, "--min-time", "inf"),
    B("bench-min-time-neg", "bench {onnx} --backend ort-cpu --no-torch-row --min-time -1", 2, "--min-time"),
    B("bench-min-time-zero", "bench {onnx} --backend ort-cpu --no-torch-row --min-time 0", 2, "--min-time"),
    B("bench-iters-zero", f"{BE} --iters 0", 2, "--iters"),
    B("bench-warmup-neg", f"{BE} --warmup -1", 2, "--warmup"),
    B("bench-seed-neg", f"{BE} --seed -3", 2, "--seed"),
    B("bench-threads-zero", f"{BE} --threads 0", 2, "--threads"),
    B("bench-dim-unknown", f"{BE} --dim Q=3", 2, "--dim", "q"),
    B("bench-baseline-unknown", f"{BE} --baseline nope", 2, "baseline", "nope"),
    B("bench-no-model", "bench --backend ort-cpu", 2, "model"),
    B("bench-zero-byte-onnx", "bench {d}/z.onnx --backend ort-cpu", 2, "empty", files={"z.onnx": b""}),
    B("bench-backend-unknown", "bench {onnx} --backend onnx", 2, "onnx"),
    B("bench-trt-profile-zero", f"{BE} --trt-profile seq=0:1:2", 2, "--trt-profile"),
    # -- report: results it cannot verify are refused ---------------------------------------------
    B("report-no-cases", "report {d}/r.json", 2, "r.json", "cases", files={"r.json": _set("results.0.cases", "<del>")}),
    B("report-no-cases-html", "report {d}/r.json -o {d}/r.html", 2, "cases", files={"r.json": _set("results.0.cases", "<del>")}),
    B("report-empty-cases", "report {d}/r.json -o {d}/r.html", 2, "nothing", files={"r.json": _set("results.0.cases", [])}),
    B("report-empty-results", "report {d}/r.json -o {d}/r.html --markdown {d}/r.md --json {d}/o.json", 2,
      "no results", files={"r.json": _set("results", [])}),
    B("report-cases-oops", "report {d}/r.json", 2, "cases", "list", files={"r.json": _set("results.0.cases", "oops")}),
    B("report-results-str", "report {d}/r.json", 2, "results", "list", files={"r.json": _set("results", "x")}),
    B("report-result-str", "report {d}/r.json", 2, "results[0]", files={"r.json": _set("results.0", "x")}),
    B("report-kind-unknown", "report {d}/r.json", 2, "kind", files={"r.json": _set("results.0.kind", "speed")}),
    B("report-kind-missing", "report {d}/r.json", 2, "kind", files={"r.json": _set("results.0.kind", "<del>")}),
    B("report-case-outputs-str", "report {d}/r.json", 2, "outputs", files={"r.json": _set("results.0.cases.0.outputs", "x")}),
    B("report-case-no-outputs", "report {d}/r.json -o {d}/r.html", 2, "b1-s4", "nothing",
      files={"r.json": _set("results.0.cases.0.outputs", [])}),
    B("report-sizes-str", "report {d}/r.json", 2, "sizes", files={"r.json": _set("results.0.cases.0.sizes", "x")}),
    B("report-sizes-word", "report {d}/r.json", 2, "sizes", files={"r.json": _set("results.0.cases.0.sizes.batch", "x")}),
    B("report-case-missing-backend", "report {d}/r.json", 2, "backend",
      files={"r.json": _set("results.0.cases.0.backend", "<del>")}),
    B("report-tolerance-word", "report {d}/r.json", 2, "atol",
      files={"r.json": _set("results.0.cases.0.outputs.0.tolerance.atol", "big")}),
    B("report-tolerance-neg", "report {d}/r.json", 2, "atol",
      files={"r.json": _set("results.0.cases.0.outputs.0.tolerance.atol", -1)}),
    B("report-tolerance-nan", "report {d}/r.json", 2, "atol",
      files={"r.json": _results(lambda d: json.dumps(d).replace('"atol": 0.0001', '"atol": NaN', 1))}),
    B("report-stats-nan-passed", "report {d}/r.json -o {d}/r.html --markdown {d}/r.md --json {d}/o.json", 2, "max_abs",
      files={"r.json": _results(lambda d: json.dumps(d).replace('"max_abs": ', '"max_abs": NaN, "x": ', 1))}),
    B("report-passed-without-stats", "report {d}/r.json", 2, "stats",
      files={"r.json": _set("results.0.cases.0.outputs.0.stats", None)}),
    B("report-passed-but-over-tolerance", "report {d}/r.json -o {d}/r.html", 2, "passed", "tolerance",
      files={"r.json": _set("results.0.cases.0.outputs.0.stats.rtol_needed", 5.0)}),
    B("report-passed-atol-needed-over", "report {d}/r.json -o {d}/r.html", 2, "passed",
      files={"r.json": _set("results.0.cases.0.outputs.0.stats.atol_needed", 5.0)}),
    B("report-passed-field-word", "report {d}/r.json", 2, "passed",
      files={"r.json": _set("results.0.cases.0.outputs.0.passed", "yes")}),
    B("report-shape-str", "report {d}/r.json", 2, "shape", files={"r.json": _set("results.0.cases.0.outputs.0.shape", "x")}),
    B("report-tasks-str", "report {d}/r.json", 2, "tasks", files={"r.json": _set("results.0.tasks", "x")}),
    B("report-task-agreement-word", "report {d}/r.json", 2, "agreement",
      files={"r.json": _set("results.0.tasks", [{"kind": "argmax", "backend": "b", "agreement": "x", "total": 1}])}),
    B("report-model-str", "report {d}/r.json", 2, "model", files={"r.json": _set("results.0.model", "x")}),
    B("report-backends-str", "report {d}/r.json", 2, "backends", files={"r.json": _set("results.0.backends", "x")}),
    B("report-warnings-str", "report {d}/r.json", 2, "warnings", files={"r.json": _set("results.0.warnings", 5)}),
    B("report-time-profile-word", "report {d}/r.json -o {d}/r.html", 2, "time_profile",
      files={"r.json": _set("results.0.cases.0.outputs.0.time_profile", {"max_abs": "x", "rel_l2": [1]})}),
    B("report-bench-measurements-str", "report {d}/r.json", 2, "measurements",
      files={"r.json": _set("results.0.measurements", "x", "bench")}),
    B("report-bench-empty", "report {d}/r.json -o {d}/r.html", 2, "nothing", files={"r.json": _set("results.0.measurements", [], "bench")}),
    B("report-bench-times-word", "report {d}/r.json -o {d}/r.html", 2, "times",
      files={"r.json": _set("results.0.measurements.0.times", ["x"], "bench")}),
    B("report-bench-times-nan", "report {d}/r.json -o {d}/r.html --json {d}/o.json", 2, "times",
      files={"r.json": _results(lambda d: json.dumps(d).replace('"times": [', '"times": [NaN, ', 1), "bench")}),
    B("report-bench-batch-word", "report {d}/r.json", 2, "batch",
      files={"r.json": _set("results.0.measurements.0.sizes.batch", "x", "bench")}),
    B("report-bench-no-times", "report {d}/r.json", 2, "times",
      files={"r.json": _set("results.0.measurements.0.times", "<del>", "bench")}),
    B("report-bench-settings-str", "report {d}/r.json", 2, "settings",
      files={"r.json": _set("results.0.settings", "x", "bench")}),
    B("report-missing-file", "report {d}/none.json", 2, "none.json", "does not exist"),
    B("report-is-dir", "report {d}/sub", 2, "sub", files={"sub/x": "x"}),
    B("report-not-json", "report {d}/r.json", 2, "r.json", "json", files={"r.json": "{oops"}),
    B("report-binary", "report {d}/r.json", 2, "r.json", files={"r.json": b"\xff\xfe\x00\x01"}),
    B("report-other-format", "report {d}/r.json", 2, "results file", files={"r.json": '{"format": "x"}'}),
    B("report-schema-str", "report {d}/r.json", 2, "schema", files={"r.json": _set("schema_version", "1")}),
    B("report-schema-new", "report {d}/r.json", 2, "schema", "upgrade", files={"r.json": _set("schema_version", 9)}),
    B("report-no-files", "report", 2, "results"),
    B("report-html-is-dir", "report {results} -o {d}/out --markdown {d}/r.md", 2, "-o", "directory", files={"out/k": "k"}),
    B("report-md-is-dir", "report {results} -o {d}/r.html --markdown {d}/out", 2, "--markdown", "directory",
      files={"out/k": "k"}),
    B("report-json-sys", "report {results} -o {d}/r.html --json /sys/r.json", 2, "/sys/r.json"),
    B("report-html-no-parent", "report {results} -o {d}/no/r.html", 2, "-o", "does not exist"),
    B("report-prev-intact", "report {d}/r.json -o {d}/prev.html --markdown {d}/prev.md", 2, "cases",
      files={**REPORT_PREV, "r.json": _set("results.0.cases", "<del>")}),
    B("report-same-output-twice", "report {results} -o {d}/same --markdown {d}/same", 2, "same"),
    B("report-json-is-input", "report {d}/r.json --json {d}/r.json", 2, "overwritten",
      files={"r.json": lambda a: Path(a["results"]).read_text()}),
    # -- inspect ------------------------------------------------------------------------------------
    B("inspect-zero-byte", "inspect {d}/z.onnx", 2, "z.onnx", "empty", files={"z.onnx": b""}),
    B("inspect-garbage", "inspect {d}/g.onnx", 2, "g.onnx", files={"g.onnx": b"\x08\xff\xff\xff" * 5}),
    B("inspect-missing", "inspect {d}/nope.onnx", 2, "nope.onnx"),
    B("inspect-dir", "inspect {d}/sub", 2, "sub", files={"sub/x": "x"}),
    B("inspect-spec-bad", "inspect {d}/s.onnx", 2, "s.onnx", "spec",
      files={"s.onnx": _onnx_meta(lambda p: p.__setitem__(_spec_key(p), "{not json"))}),
    B("inspect-engine-no-sidecar", "inspect {d}/e.plan", 2, "e.plan", files={"e.plan": b"plan"}),
    B("inspect-sidecar-tensorrt-str", "inspect {d}/e.plan --no-live", 2, "tensorrt",
      files=_sidecar(lambda s: s.__setitem__("tensorrt", "8.6.1"))),
    B("inspect-sidecar-profiles-str", "inspect {d}/e.plan --no-live", 2, "profiles",
      files=_sidecar(lambda s: s.__setitem__("profiles", "x"))),
    B("inspect-sidecar-gpu-list", "inspect {d}/e.plan --no-live", 2, "gpu",
      files=_sidecar(lambda s: s.__setitem__("gpu", [1]))),
    B("inspect-sidecar-bytes-word", "inspect {d}/e.plan --no-live", 2, "bytes",
      files=_sidecar(lambda s: s["engine"].__setitem__("bytes", "four"))),
    B("inspect-sidecar-not-json", "inspect {d}/e.plan --no-live", 2, "e.plan.json", files=_sidecar(lambda s: "{oops")),
    B("inspect-sidecar-list", "inspect {d}/e.plan --no-live", 2, "e.plan.json", files=_sidecar(lambda s: "[]")),
    B("inspect-sidecar-schema", "inspect {d}/e.plan --no-live", 2, "schema",
      files=_sidecar(lambda s: s.__setitem__("schema", "other"))),
    B("inspect-sidecar-spec-str", "inspect {d}/e.plan --no-live", 2, "spec", files=_sidecar(lambda s: s.__setitem__("spec", "x"))),
    B("inspect-engine-truncated", "inspect {d}/e.plan --no-live", 2, "e.plan", "bytes",
      files={**_sidecar(lambda s: None), "e.plan": b"pl"}),
    B("inspect-engine-zero-byte", "inspect {d}/e.plan --no-live", 2, "e.plan", "empty",
      files={**_sidecar(lambda s: None), "e.plan": b""}),
    B("inspect-device-neg", "inspect {onnx} --device -1", 2, "--device"),
    # -- build-engine (plans need no TensorRT) ------------------------------------------------------
    B("engine-zero-byte", "build-engine {d}/z.onnx --dry-run", 2, "z.onnx", "empty", files={"z.onnx": b""}),
    B("engine-garbage", "build-engine {d}/g.onnx --dry-run", 2, "g.onnx", files={"g.onnx": b"\xff" * 40}),
    B("engine-missing", "build-engine {d}/nope.onnx --dry-run", 2, "nope.onnx"),
    B("engine-opset-too-new", "build-engine {add21} --dry-run --trt-version 8.6", 2, "opset 21", "tensorrt 8.6"),
    B("engine-keep-node-unknown", "build-engine {onnx} --fp16 --keep-node nosuch --write-fp16-onnx {d}/h.onnx", 2,
      "--keep-node", "nosuch"),
    B("engine-keep-node-unknown-dry", "build-engine {onnx} --fp16 --keep-node nosuch --dry-run", 2, "--keep-node", "nosuch"),
    B("engine-dim-unknown-axis", "build-engine {onnx} --dry-run --dim nope=1:2:3", 2, "--dim", "nope"),
    B("engine-dim-malformed", "build-engine {onnx} --dry-run --dim seq", 2, "--dim"),
    B("engine-batch-zero", "build-engine {onnx} --dry-run --batch 0:1:2", 2, "batch"),
    B("engine-batch-order", "build-engine {onnx} --dry-run --batch 3:2:1", 2, "batch"),
    B("engine-batch-word", "build-engine {onnx} --dry-run --batch a:b:c", 2, "batch"),
    B("engine-seq-huge", "build-engine {onnx} --dry-run --seq 1:2:99999999999999999999", 2, "seq"),
    B("engine-profile-malformed", "build-engine {onnx} --dry-run --profile seq=1", 2, "--profile"),
    B("engine-min-shapes-unknown", "build-engine {onnx} --dry-run --min-shapes q:1x1x1 --max-shapes q:1x2x1", 2, "q"),
    B("engine-workspace-zero", "build-engine {onnx} --dry-run --workspace 0", 2, "--workspace"),
    B("engine-workspace-word", "build-engine {onnx} --dry-run --workspace lots", 2, "--workspace"),
    B("engine-opt-level", "build-engine {onnx} --dry-run --opt-level 9", 2, "--opt-level"),
    B("engine-device-neg", "build-engine {onnx} --dry-run --device -1", 2, "--device"),
    B("engine-no-output", "build-engine {onnx}", 2, "-o"),
    B("engine-out-is-dir", "build-engine {onnx} -o {d}/out", 2, "directory", files={"out/k": "k"}),
    B("engine-out-sys", "build-engine {onnx} -o /sys/m.plan", 2, "/sys/m.plan"),
    B("engine-out-no-parent", "build-engine {onnx} -o {d}/no/m.plan", 2, "does not exist"),
    B("engine-fp16-onnx-is-dir", "build-engine {onnx} --fp16 --write-fp16-onnx {d}/out", 2, "directory",
      files={"out/k": "k"}),
    B("engine-fp16-onnx-sys", "build-engine {onnx} --fp16 --write-fp16-onnx /sys/h.onnx", 2, "/sys/h.onnx"),
    B("engine-timing-cache-dir", "build-engine {onnx} -o {d}/m.plan --timing-cache {d}/tc", 2, "--timing-cache",
      files={"tc/k": "k"}),
    B("engine-stub-contradiction", "build-engine {onnx} --dry-run --no-stub-tactics --keep-stub-tactics", 2, "stub"),
    B("engine-fp32-of-fp16", "build-engine {d}/h.onnx --fp32 --dry-run", 2, "fp16",
      files={"h.onnx": lambda a: _fp16_bytes(a)}),
    B("engine-fp16-onnx-without-fp16", "build-engine {onnx} --write-fp16-onnx {d}/h.onnx", 2, "fp16"),
    # -- normalize ------------------------------------------------------------------------------------
    B("normalize-missing", "normalize {d}/nope.onnx -o {d}/o.onnx", 2, "nope.onnx", "does not exist"),
    B("normalize-zero-byte", "normalize {d}/z.onnx -o {d}/o.onnx", 2, "z.onnx", "empty", files={"z.onnx": b""}),
    B("normalize-garbage", "normalize {d}/g.onnx -o {d}/o.onnx", 2, "g.onnx", files={"g.onnx": b"\xff" * 40}),
    B("normalize-onto-itself", "normalize {d}/a.onnx -o {d}/a.onnx", 2, "is the input",
      files={"a.onnx": lambda a: _onnx_add()}),
    B("normalize-output-dir-missing", "normalize {add} -o {d}/no/o.onnx", 2, "does not exist"),
    B("normalize-no-runtime-runs-it", "normalize {d}/aten.onnx -o {d}/o.onnx", 2, "aten_lstm", "no runtime",
      "ort-cpu refuses", "openvino refuses", "nothing written", files={"aten.onnx": lambda a: _onnx_aten()}),
    B("normalize-for-unknown", "normalize {add} -o {d}/o.onnx --for tensorrt", 2, "--for"),
    # -- export -------------------------------------------------------------------------------------
    B("export-missing-checkpoint", "export {d}/nope -o {d}/m.onnx", 2, "nope"),
    B("export-no-source", "export -o {d}/m.onnx", 2, "checkpoint"),
    B("export-both-sources", "export {ckpt} --model {d}/m.py:f -o {d}/m.onnx", 2, "either"),
    B("export-long-seq-huge", "export {ckpt} -o {d}/m.onnx --long-seq 1000000000", 2, "memory", "gib"),
    B("export-long-seq-zero", "export {ckpt} -o {d}/m.onnx --long-seq 0", 2, "--long-seq"),
    B("export-long-seq-word", "export {ckpt} -o {d}/m.onnx --long-seq x", 2, "--long-seq"),
    B("export-opset-low", "export {ckpt} -o {d}/m.onnx --opset 3", 2, "opset"),
    B("export-opset-high", "export {ckpt} -o {d}/m.onnx --opset 99", 2, "opset"),
    B("export-out-sys", "export {ckpt} -o /sys/m.onnx", 2, "/sys/m.onnx"),
    B("export-out-proc", "export {ckpt} -o /proc/m.onnx", 2, "/proc/m.onnx"),
    B("export-out-no-parent", "export {ckpt} -o {d}/no/m.onnx", 2, "does not exist"),
    B("export-out-prev-intact", "export {ckpt} -o {d}/prev.onnx --opset 3", 2, "opset", files={"prev.onnx": "old"}),
    B("export-checkpoint-empty", "export {d}/ck -o {d}/m.onnx", 2, "ck", files={"ck/.keep": ""}),
    B("export-checkpoint-tampered", "export {d}/ck -o {d}/m.onnx", 2, "weights"),
    B("export-checkpoint-manifest-str", "export {d}/ck -o {d}/m.onnx", 2, "manifest"),
    B("export-checkpoint-spec-str", "export {d}/ck -o {d}/m.onnx", 2, "spec"),
    B("export-module-no-colon", "export --model {d}/m.py -o {d}/m.onnx --input x:float32[batch,seq,2]", 2, "--model"),
    B("export-module-missing", "export --model {d}/nope.py:f -o {d}/m.onnx --input x:float32[batch,seq,2]", 2, "nope.py"),
    B("export-module-factory-missing", "export --model {d}/m.py:nope -o {d}/o.onnx --input x:float32[batch,seq,2]", 2,
      "nope", files={"m.py": "def f():\n    return None\n"}),
    B("export-input-malformed", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32", 2, "--input",
      files={"m.py": "def f():\n    return None\n"}),
    B("export-input-dtype", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float99[batch,seq,2]", 2, "float99",
      files={"m.py": "def f():\n    return None\n"}),
    B("export-input-zero-dim", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,0]", 2, "--input",
      files={"m.py": IDENTITY}),
    B("export-input-huge-dim", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,10000000000]", 2,
      "memory", files={"m.py": IDENTITY}),
    B("export-input-range-nan", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,2]:features:nan..1", 2,
      "nan", files={"m.py": "def f():\n    return None\n"}),
    B("export-with-state-module", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,2] --with-state", 2,
      "--with-state", files={"m.py": "import torch\ndef f():\n    return torch.nn.Identity()\n"}),
    # -- export of a Keras model ------------------------------------------------------------------------
    B("export-keras-missing", "export {d}/nope.keras -o {d}/m.onnx", 2, "nope.keras", "does not exist"),
    B("export-keras-garbage", "export {d}/g.keras -o {d}/m.onnx", 2, "neither a .keras archive nor an hdf5 file",
      files={"g.keras": bytes(range(256)) * 8}),
    B("export-keras-truncated", "export {d}/t.keras -o {d}/m.onnx", 2, "not a readable .keras archive",
      files={"t.keras": _keras(cut=0.5)}),
    B("export-keras-h5-truncated", "export {d}/t.h5 -o {d}/m.onnx", 2, "not a readable hdf5 file", "truncated",
      files={"t.h5": _keras("h5", cut=0.5)}),
    B("export-keras-weights-only", "export {d}/w.weights.h5 -o {d}/m.onnx", 2, "weights only", "model.save(",
      files={"w.weights.h5": _keras(kind="weights")}),
    B("export-keras2-weights-only", "export {d}/w.h5 -o {d}/m.onnx", 2, "weights only", "model.save(",
      files={"w.h5": _keras2_weights_only}),
    B("export-keras-lambda", "export {d}/l.keras -o {d}/m.onnx", 2, "'double'", "lambda", "supported:",
      files={"l.keras": _keras(kind="lambda")}),
    B("export-keras-custom-layer", "export {d}/c.keras -o {d}/m.onnx", 2, "custom layer scale", "'scale'",
      "supported layers:", files={"c.keras": _keras_config(_keras_custom)}),
    B("export-keras-unsupported-layer", "export {d}/c.keras -o {d}/m.onnx", 2, "conv1d", "'conv'", "supported layers:",
      files={"c.keras": _keras(kind="conv")}),
    B("export-keras-activation", "export {d}/g.keras -o {d}/m.onnx", 2, "'rnn'", "gelu", "tanh",
      files={"g.keras": _keras(kind="gelu")}),
    B("export-keras-weights-disagree", "export {d}/u.keras -o {d}/m.onnx", 2, "'lstm'", "[3, 16]", "[3, 20]",
      files={"u.keras": _keras_config(_keras_units)}),
    B("export-keras-newer", "export {d}/n.keras -o {d}/m.onnx", 2, "keras 4.0.0", "newer than this converter knows",
      files={"n.keras": _keras_zip_edit(lambda m: m.update({"metadata.json": b'{"keras_version": "4.0.0"}'}))}),
    B("export-keras-h5-newer", "export {d}/n.h5 -o {d}/m.onnx", 2, "keras 4.1.0", "newer",
      files={"n.h5": _keras_h5_version("4.1.0")}),
    B("export-keras-subclassed", "export {d}/s.keras -o {d}/m.onnx", 2, "subclassed",
      files={"s.keras": _keras_config(lambda c: c.update({"class_name": "MyModel", "config": {}}))}),
    B("export-keras-no-config", "export {d}/z.keras -o {d}/m.onnx", 2, "weights only",
      files={"z.keras": _keras_zip_edit(lambda m: m.pop("config.json"))}),
    B("export-keras-bad-json", "export {d}/j.keras -o {d}/m.onnx", 2, "config.json", "not valid json",
      files={"j.keras": _keras_zip_edit(lambda m: m.update({"config.json": b"{oops"}))}),
    B("export-keras-exporter", "export {d}/m.keras -o {d}/o.onnx --exporter dynamo", 2, "--exporter",
      files={"m.keras": _keras()}),
    B("export-keras-simplify", "export {d}/m.keras -o {d}/o.onnx --simplify", 2, "--simplify", files={"m.keras": _keras()}),
    B("export-keras-input-option", "export {d}/m.keras -o {d}/o.onnx --input x:float32[batch,seq,3]", 2, "--input",
      files={"m.keras": _keras()}),
    B("export-keras-long-seq-huge", "export {d}/m.keras -o {d}/o.onnx --long-seq 1000000000", 2, "memory", "gib",
      files={"m.keras": _keras()}),
    B("export-keras-opset-high", "export {d}/m.keras -o {d}/o.onnx --opset 99", 2, "opset", files={"m.keras": _keras()}),
    B("export-keras-out-no-parent", "export {d}/m.keras -o {d}/no/o.onnx", 2, "does not exist", files={"m.keras": _keras()}),
    B("parity-keras-missing", "parity {onnx} --keras {d}/nope.keras --backend keras", 2, "nope.keras", "does not exist"),
    # -- train --------------------------------------------------------------------------------------
    B("train-out-sys", "train sine --out /sys/run --epochs 1", 2, "/sys/run"),
    B("train-out-proc", "train sine --out /proc/run --epochs 1", 2, "/proc/run"),
    B("train-out-is-file", "train sine --out {d}/f --epochs 1", 2, "f", files={"f": "keep"}),
    B("train-out-no-parent", "train sine --out {d}/a/b/c --epochs 1", 2, "does not exist"),
    B("train-out-not-checkpoint", "train sine --out {d}/data --epochs 1", 2, "not an rnndeploy checkpoint",
      files={"data/notes.txt": "keep"}),
    B("train-hidden-huge", "train sine --out {d}/r --set model.hidden_size=65536", 2, "memory", "gib"),
    B("train-layers-huge", "train sine --out {d}/r --set model.num_layers=64 --set model.hidden_size=4096", 2, "memory"),
    B("train-seed-set-neg", "train sine --out {d}/r --set data.seed=-1", 2, "seed"),
    B("train-window-huge", "train sine --out {d}/r --set data.window=1000000000", 2, "memory"),
    B("train-batch-size-zero", "train sine --out {d}/r --set train.batch_size=0", 2, "batch_size"),
    B("train-lr-nan", "train sine --out {d}/r --set train.lr=nan", 2, "lr", "nan"),
    B("train-lr-inf", "train sine --out {d}/r --set train.lr=inf", 2, "lr", "inf"),
    B("train-lr-neg", "train sine --out {d}/r --set train.lr=-1", 2, "lr"),
    B("train-epochs-zero", "train sine --out {d}/r --epochs 0", 2, "--epochs"),
    B("train-epochs-set-zero", "train sine --out {d}/r --set train.epochs=0", 2, "epochs"),
    B("train-hidden-zero", "train sine --out {d}/r --set model.hidden_size=0", 2, "hidden_size"),
    B("train-n-series-zero", "train sine --out {d}/r --set data.n_series=0", 2, "n_series"),
    B("train-seed-neg", "train sine --out {d}/r --seed -1", 2, "seed"),
    B("train-recipe-missing", "train {d}/nope.toml --out {d}/r", 2, "nope.toml"),
    B("train-recipe-not-toml", "train {d}/r.toml --out {d}/r", 2, "r.toml", files={"r.toml": "this is [not toml"}),
    B("train-recipe-dir", "train {d}/sub --out {d}/r", 2, "sub", files={"sub/k": "k"}),
    B("train-set-malformed", "train sine --out {d}/r --set nodot", 2, "--set"),
    B("train-set-unknown-section", "train sine --out {d}/r --set zz.a=1", 2, "zz"),
    B("train-variant-unknown", "train sine --out {d}/r --variant nope", 2, "nope"),
    B("train-clip-nan", "train sine --out {d}/r --set train.clip_grad_norm=nan", 2, "clip_grad_norm"),
    B("train-val-fraction", "train sine --out {d}/r --set data.val_fraction=1.5", 2, "val_fraction"),
    # -- demo ---------------------------------------------------------------------------------------
    B("demo-out-sys", "demo --out /sys/demo --quick", 2, "/sys/demo"),
    B("demo-out-is-file", "demo --out {d}/f --quick", 2, "f", files={"f": "keep"}),
    B("demo-recipe-missing", "demo --out {d}/demo --recipe {d}/nope.toml --quick", 2, "nope.toml"),
    B("demo-recipe-bad", "demo --out {d}/demo --recipe {d}/r.toml --quick", 2, "r.toml", files={"r.toml": "[oops"}),
    B("demo-out-no-parent-bad-recipe", "demo --out {d}/a/b/demo --recipe {d}/r.toml --quick", 2, "r.toml",
      files={"r.toml": "[oops"}),
    B("demo-stage-fails-new-dirs-removed", "demo --out {d}/a/b/demo --recipe {d}/r.toml --quick", 2, "memory",
      files={"r.toml": lambda a: _sine_recipe("hidden_size = 20", "hidden_size = 65536")}),
    B("demo-stage-fails-previous-intact", "demo --out {d}/prev --recipe {d}/r.toml --quick", 2, "memory",
      files={"r.toml": lambda a: _sine_recipe("hidden_size = 20", "hidden_size = 65536"),
             "prev/report.md": "old report", "prev/model.onnx": "old model"}),
    # -- parity --inputs-from-recipe -----------------------------------------------------------------
    B("parity-recipe-no-data", "parity {add} --backend ort-cpu --inputs-from-recipe", 2, "does not record the data"),
    B("parity-recipe-with-inputs", "parity {onnx} --backend ort-cpu --inputs-from-recipe --inputs {x}", 2,
      "--inputs-from-recipe", "--inputs"),
    B("parity-recipe-split-unknown", "parity {onnx} --backend ort-cpu --inputs-from-recipe --split dev", 2, "dev"),
    B("parity-recipe-rows-zero", "parity {onnx} --backend ort-cpu --inputs-from-recipe --rows 0", 2, "--rows"),
    # -- tune (each refused before any work) ---------------------------------------------------------
    T("tune-not-onnx", "tune {ckpt}", 2, "onnx"),
    T("tune-missing-model", "tune {d}/nope.onnx", 2, "nope.onnx"),
    T("tune-runtime-gpu-absent", "tune {onnx} --runtime trt", 3, "tensorrt is not installed", "rnndeploy[gpu]"),
    T("tune-runtime-unknown", "tune {onnx} --runtime tflite", 2, "tflite"),
    T("tune-variant-unknown", "tune {onnx} --variant fp8", 2, "fp8"),
    T("tune-seq-malformed", "tune {onnx} --seq 1,x", 2, "--seq"),
    T("tune-threads-zero", "tune {onnx} --threads 0", 2, "--threads"),
    T("tune-budget-negative", "tune {onnx} --budget -1", 2, "--budget"),
    T("tune-min-time-zero", "tune {onnx} --min-time 0", 2, "--min-time"),
    T("tune-max-drop-negative", "tune {onnx} --max-accuracy-drop -2", 2, "--max-accuracy-drop"),
    T("tune-max-drop-nan", "tune {onnx} --max-accuracy-drop nan", 2, "--max-accuracy-drop"),
    T("tune-split-unknown", "tune {onnx} --split dev", 2, "dev"),
    T("tune-decoder-missing", "tune {onnx} --decoder {d}/nope.onnx", 2, "nope.onnx"),
    T("tune-out-no-parent", "tune {onnx} --out {d}/a/deploy", 2, "does not exist"),
    T("tune-out-other-files", "tune {onnx} --out {d}/o", 2, "holds other files", files={"o/notes.txt": "mine"}),
    T("tune-json-no-parent", "tune {onnx} --json {d}/a/t.json", 2, "does not exist"),
    # -- quantize -----------------------------------------------------------------------------------
    B("quantize-no-output", "quantize {onnx}", 2, "--output"),
    B("quantize-policy-unknown", "quantize {onnx} -o {d}/q.onnx --policy int4", 2, "int4"),
    B("quantize-missing-model", "quantize {d}/nope.onnx -o {d}/q.onnx", 2, "nope.onnx"),
    B("quantize-not-onnx", "quantize {x} -o {d}/q.onnx", 2, "x.npz"),
    B("quantize-nothing-to-quantize", "quantize {add} -o {d}/q.onnx", 2, "nothing to quantize"),
    B("quantize-out-no-parent", "quantize {onnx} -o {d}/a/q.onnx", 2, "does not exist"),
    B("quantize-out-prev-intact", "quantize {add} -o {d}/q.onnx", 2, "nothing to quantize", files={"q.onnx": "old"}),
    # -- tune, quantize, normalize (commands added later get the same rules) -------------------------
    B("tune-min-time-nan", "tune {onnx} --min-time nan", 2, "--min-time", "nan"),
    B("tune-budget-zero", "tune {onnx} --budget 0", 2, "--budget"),
    B("tune-rows-zero", "tune {onnx} --rows 0", 2, "--rows"),
    B("tune-accuracy-drop-neg", "tune {onnx} --max-accuracy-drop -1", 2, "--max-accuracy-drop"),
    B("tune-out-is-file", "tune {onnx} --out {d}/f", 2, "--out", "file", files={"f": "keep"}),
    B("tune-json-is-dir", "tune {onnx} --json {d}/out", 2, "--json", "directory", files={"out/k": "k"}),
    B("tune-batch-zero", "tune {onnx} --batch 0", 2, "--batch"),
    B("tune-zero-byte", "tune {d}/z.onnx", 2, "empty", files={"z.onnx": b""}),
    B("quantize-out-is-dir", "quantize {onnx} -o {d}/out", 2, "-o", "directory", files={"out/k": "k"}),
    B("quantize-out-sys", "quantize {onnx} -o /sys/q.onnx", 2, "/sys/q.onnx"),
    B("quantize-zero-byte", "quantize {d}/z.onnx -o {d}/q.onnx", 2, "empty", files={"z.onnx": b""}),
    B("normalize-zero-byte-report-only", "normalize {d}/z.onnx", 2, "empty", files={"z.onnx": b""}),
    B("normalize-out-is-dir", "normalize {onnx} -o {d}/out", 2, "directory", files={"out/k": "k"}),
    B("normalize-json-sys", "normalize {onnx} --json /sys/n.json", 2, "/sys/n.json"),
    # -- options that would be silently ignored ------------------------------------------------------
    B("parity-shapes-with-inputs", f"{PA} --inputs {{x}} --shapes 2x3", 2, "--shapes", "--inputs"),
    B("parity-dim-with-golden", f"{P} --golden {{golden}} --dim K=2", 2, "--dim", "--golden"),
    B("parity-bos-without-decoder", f"{P} --bos-id 1", 2, "--bos-id", "decoder"),
    B("parity-decode-max-len-without-decoder", f"{P} --decode-max-len 5", 2, "--decode-max-len", "decoder"),
    B("parity-min-agreement-regressor", f"{P} --min-agreement 0.9", 2, "--min-agreement"),
    B("parity-trt-profile-without-ort-trt", f"{P} --trt-profile seq=1:2:4", 2, "--trt-profile", "ort-trt"),
    B("parity-same-output-twice", f"{P} --json {{d}}/r --markdown {{d}}/r", 2, "same file"),
    B("bench-same-output-twice", f"{BE} --json {{d}}/r --markdown {{d}}/r", 2, "same file"),
    B("parity-threads-absurd", f"{P} --threads 100000", 2, "--threads"),
    B("engine-profile-unknown-axis", "build-engine {onnx} --dry-run --profile foo=1:2:3", 2, "--profile", "foo"),
    B("engine-batch-on-static", "build-engine {d}/s.onnx --dry-run --batch 1:2:4", 2, "--batch",
      files={"s.onnx": lambda a: _onnx_add(dims=(2, 3, 2))}),
    B("export-out-not-onnx", "export {ckpt} -o {d}/m.txt", 2, "m.txt"),
    B("train-batch-size-huge", "train sine --out {d}/r --set train.batch_size=100000000", 2, "memory"),
    B("inspect-results-json", "inspect {results}", 2, "p.json"),
    # -- triton / serve / loadtest -------------------------------------------------------------------
    B("triton-no-output", "triton {onnx}", 2, "-o REPO/"),
    B("triton-missing-model", "triton {d}/none.onnx -o {d}/repo", 2, "none.onnx", "does not exist"),
    B("triton-not-a-model", "triton {d}/m.txt -o {d}/repo", 2, "neither an ONNX file nor a TensorRT engine",
      files={"m.txt": "x"}),
    B("triton-garbage-onnx", "triton {d}/g.onnx -o {d}/repo", 2, "g.onnx", files={"g.onnx": b"garbage"}),
    B("triton-repo-is-a-file", "triton {onnx} -o {d}/r", 2, "is not a directory", files={"r": "x"}),
    B("triton-repo-no-parent", "triton {onnx} -o {d}/a/b", 2, "does not exist"),
    B("triton-model-dir-exists", "triton {onnx} -o {d}/repo", 2, "already exists", "--overwrite",
      files={"repo/sine-lstm/config.pbtxt": "old"}),
    B("triton-fp16-without-accelerator", "triton {onnx} -o {d}/repo --fp16", 2, "--fp16 needs --accelerator tensorrt"),
    B("triton-streaming-without-state", "triton {onnx} -o {d}/repo --streaming", 2, "no optional state inputs"),
    B("triton-batch-with-kept-state-layout", "triton {connx} -o {d}/repo --no-streaming --keep-state-layout "
      "--max-batch-size 4", 2, "batch axis is not the first axis"),
    B("triton-preferred-over-max", "triton {onnx} -o {d}/repo --max-batch-size 4 --preferred-batch 8", 2,
      "exceed max_batch_size 4"),
    B("triton-preferred-zero", "triton {onnx} -o {d}/repo --preferred-batch 0", 2, "--preferred-batch"),
    B("triton-bad-name", "triton {onnx} -o {d}/repo --name 'a b'", 2, "characters Triton does not accept"),
    B("triton-sequence-idle-zero", "triton {connx} -o {d}/repo --sequence-idle 0", 2, "--sequence-idle", "> 0"),
    B("triton-engine-without-sidecar", "triton {d}/e.plan -o {d}/repo", 2, "no sidecar", files={"e.plan": b"plan"}),
    B("triton-check-with-model", "triton {onnx} --check {d}", 2, "--check takes the repository alone"),
    B("triton-check-empty", "triton --check {d}", 2, "holds no model directory"),
    B("triton-check-unparsable-config", "triton --check {d}", 1, "would not load",
      files={"m/config.pbtxt": 'name: "m" platform: "onnxruntime_onnx" max_batch_sise: 2'}),
    B("triton-check-config-without-model-file", "triton --check {d}", 1, "would not load",
      files={"m/config.pbtxt": 'name: "m" platform: "onnxruntime_onnx"', "m/1/readme.txt": "x"}),
    B("serve-no-model", "serve", 2, "no model given"),
    B("loadtest-bad-url", "loadtest 'http://a b' --model m --reference {onnx}", 2, "is not host:port"),
    B("loadtest-no-server", "loadtest 127.0.0.1:9 --model m --reference {onnx} --connect-timeout 0.2", 2,
      "no Triton server is ready at 127.0.0.1:9"),
    B("loadtest-missing-reference", "loadtest 127.0.0.1:9 --model m --reference {d}/none.onnx", 2, "none.onnx"),
    B("loadtest-concurrency-zero", "loadtest 127.0.0.1:9 --model m --reference {onnx} --concurrency 0", 2,
      "--concurrency"),
    B("loadtest-max-seconds-zero", "loadtest 127.0.0.1:9 --model m --reference {onnx} --max-seconds 0", 2,
      "--max-seconds", "> 0"),
    B("loadtest-protocol-mismatch", "loadtest grpc://127.0.0.1:9 --protocol http --model m --reference {onnx}", 2,
      "says grpc but --protocol is http"),
    # -- outputs that are inputs, or two outputs in one file -------------------------------------------
    B("engine-out-is-input", "build-engine {d}/m.onnx -o {d}/m.onnx", 2, "-o", "overwritten",
      files={"m.onnx": lambda a: Path(a["onnx"]).read_bytes()}),
    B("engine-fp16-onnx-is-input", "build-engine {d}/m.onnx --fp16 --write-fp16-onnx {d}/m.onnx", 2,
      "--write-fp16-onnx", "overwritten", files={"m.onnx": lambda a: Path(a["onnx"]).read_bytes()}),
    B("engine-same-outputs", "build-engine {onnx} --fp16 --write-fp16-onnx {d}/x -o {d}/x", 2, "same file"),
    B("engine-fp16-onnx-and-plan-without-tensorrt", "build-engine {onnx} --fp16 --write-fp16-onnx {d}/h.onnx "
      "-o {d}/m.plan", 3, "tensorrt"),
    B("engine-trt-version-word", "build-engine {onnx} --dry-run --trt-version abc", 2, "--trt-version", "abc"),
    B("export-out-is-checkpoint", "export {ckpt} -o {ckpt}", 2, "overwritten"),
    B("quantize-out-is-input", "quantize {d}/m.onnx -o {d}/m.onnx", 2, "overwritten",
      files={"m.onnx": lambda a: Path(a["onnx"]).read_bytes()}),
    B("tune-json-is-input", "tune {d}/m.onnx --json {d}/m.onnx", 2, "overwritten",
      files={"m.onnx": lambda a: Path(a["onnx"]).read_bytes()}),
    B("save-golden-over-other-dir", f"{P} --shapes 1x2 --save-golden {{d}}/data", 2, "not a golden",
      files={"data/notes.txt": "keep me"}),
    B("train-lr-huge", "train sine --out {d}/r --set train.lr=1e308", 2, "lr"),
    B("train-float-overflow", "train sine --out {d}/r --set train.weight_decay=1e300", 2, "weight_decay"),
    B("serve-port-out-of-range", "serve {onnx} --http-port 70000", 2, "--http-port"),
    B("loadtest-timeout-nan", "loadtest 127.0.0.1:9 --model m --reference {onnx} --timeout nan", 2, "--timeout", "nan"),
    B("loadtest-seed-neg", "loadtest 127.0.0.1:9 --model m --reference {onnx} --seed -1", 2, "--seed"),
    B("loadtest-json-is-dir", "loadtest 127.0.0.1:9 --model m --reference {onnx} --json {d}/o", 2, "--json",
      files={"o/k": "k"}),
    # -- session 3: general rules found by exploring (threads, runner options, output directories) -----
    B("train-threads-huge", "train sine --out {d}/r --set train.threads=100000", 2, "threads", "1024"),
    B("parity-backend-threads-huge", "parity {onnx} --backend ort-cpu:t100000", 2, "t100000", "1024"),
    T("tune-threads-huge", "tune {onnx} --threads 1,100000", 2, "--threads", "1024"),
    B("parity-dim-batch", f"{P} --dim batch=3", 2, "--dim", "batch", "--shapes"),
    B("bench-dim-seq", f"{BE} --dim seq=3", 2, "--dim", "seq", "--seq"),
    B("parity-dim-twice", "parity {addk} --backend ort-cpu --dim K=2 --dim K=3", 2, "--dim k", "twice"),
    B("parity-cuda-graph-cpu-only", f"{P} --cuda-graph", 2, "--cuda-graph", "gpu"),
    B("bench-include-copies-cpu-only", f"{BE} --include-copies", 2, "--include-copies", "gpu"),
    B("parity-fp16-mode-at-fp32", "parity {onnx} --checkpoint {ckpt} --backend torch --reference ort-cpu --fp16-mode half",
      2, "--fp16-mode", "fp16"),
    B("demo-out-empty", "demo --out '' --quick", 2, "--out", "empty"),
    B("demo-out-foreign-dir", "demo --out {d} --quick", 2, "--out", "holds files the demo does not write", "notes.txt",
      files={"notes.txt": "mine", "sub/more.txt": "mine too"}),
    B("report-deep-json", "report {d}/r.json", 2, "r.json", "nested too deeply", files={"r.json": DEEP_JSON}),
    B("golden-manifest-deep-json", f"{P} --golden {{d}}/g", 2, "manifest.json", "nested too deeply",
      files=_golden_with(lambda m: DEEP_JSON)),
    B("inspect-sidecar-deep-json", "inspect {d}/e.plan --no-live", 2, "e.plan.json", "nested too deeply",
      files=_sidecar(lambda s: DEEP_JSON)),
    B("report-schema-bool", "report {d}/r.json", 2, "schema", files={"r.json": _set("schema_version", True)}),
    B("report-schema-zero", "report {d}/r.json", 2, "schema", files={"r.json": _set("schema_version", 0)}),
    B("report-bench-sizes-empty", "report {d}/r.json -o {d}/r.html", 2, "sizes.batch",
      files={"r.json": _set("results.0.measurements.0.sizes", {}, "bench")}),
    B("engine-dangling-dry", "build-engine {d}/g.onnx --dry-run", 2, "g.onnx", "not a valid onnx graph", "nope",
      files={"g.onnx": lambda a: _onnx_dangling()}),
    B("engine-trt-version-old", "build-engine {onnx} --dry-run --trt-version 7.1", 2, "tensorrt 7.1", "8.6"),
    B("engine-trt-version-future", "build-engine {onnx} --dry-run --trt-version 99", 2, "tensorrt 99", "11"),
    B("engine-workspace-huge", "build-engine {onnx} --dry-run --workspace 99999999999", 2, "--workspace"),
    B("normalize-dangling", "normalize {d}/g.onnx -o {d}/o.onnx", 2, "g.onnx", "not a valid onnx graph",
      files={"g.onnx": lambda a: _onnx_dangling()}),
    B("triton-dangling", "triton {d}/g.onnx -o {d}/repo", 2, "g.onnx", "not a valid onnx graph",
      files={"g.onnx": lambda a: _onnx_dangling()}),
    B("triton-out-sys", "triton {onnx} -o /sys/rnndeploy-repo", 2, "/sys/rnndeploy-repo"),
    B("triton-instances-huge", "triton {onnx} -o {d}/repo --instances 1000000000", 2, "--instances"),
    B("triton-engine-sidecar-bad", "triton {d}/e.plan -o {d}/repo", 2, "profiles",
      files=_sidecar(lambda s: s.__setitem__("profiles", "x"))),
    B("loadtest-port-range", "loadtest 127.0.0.1:99999 --model m --reference {onnx}", 2, "port 99999"),
    B("loadtest-concurrency-huge", "loadtest 127.0.0.1:9 --model m --reference {onnx} --concurrency 1,100000", 2,
      "--concurrency", "1024"),
    B("train-epochs-huge", "train sine --out {d}/r --epochs 100000000000", 2, "epochs"),
    B("export-name-empty-checkpoint", "export {ckpt} -o {d}/m.onnx --name ''", 2, "--name", "empty"),
    B("parity-engine-is-onnx", "parity {onnx} --engine {onnx} --backend trt", 2, "--engine", "not a tensorrt engine"),
    B("parity-engine-empty", "parity {onnx} --engine {d}/e.plan --backend trt", 2, "e.plan", "empty",
      files={"e.plan": b""}),
    B("parity-engine-sidecar-bad", "parity {onnx} --engine {d}/e.plan --backend trt", 2, "tensorrt",
      files=_sidecar(lambda s: s.__setitem__("tensorrt", "8.6.1"))),
    B("normalize-json-is-input", "normalize {d}/m.onnx --json {d}/m.onnx", 2, "--json", "overwritten",
      files={"m.onnx": lambda a: Path(a["onnx"]).read_bytes()}),
    B("normalize-json-same-as-output", "normalize {onnx} -o {d}/o.onnx --json {d}/o.onnx", 2, "same file"),
    B("parity-without-state-of-stateful-onnx", "parity {connx} --backend ort-cpu --without-state --shapes 1x4", 2,
      "--without-state", "h0"),
    B("export-module-exits-at-import", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,2]", 2,
      "importing", "systemexit", files={"m.py": "import sys\nsys.exit(3)\n"}),
    B("export-module-factory-exits", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,2]", 2,
      "factory f()", "systemexit", files={"m.py": "import sys\ndef f():\n    sys.exit(0)\n"}),
    B("export-module-no-callables", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,2]", 2,
      "no callable 'f'", "none", files={"m.py": "x = 1\n"}),
    B("export-name-empty-module", "export --model {d}/m.py:f -o {d}/o.onnx --input x:float32[batch,seq,2] --name ''", 2,
      "--name", "empty", files={"m.py": IDENTITY}),
    B("inspect-onnx-device", "inspect {onnx} --device 3", 2, "--device", "engines"),
    B("inspect-onnx-no-live", "inspect {onnx} --no-live", 2, "--no-live", "engines"),
    B("triton-name-dotdot", "triton {onnx} -o {d}/repo --name ..", 2, "'..'", "dot", files={"repo/keep": "k"}),
    B("triton-name-dot-overwrite", "triton {onnx} -o {d}/repo --name . --overwrite", 2, "'.'", "dot",
      files={"repo/keep": "k"}),
    B("engine-dim-batch", "build-engine {onnx} --dry-run --dim batch=1:2:3", 2, "--dim batch", "--batch"),
    B("triton-max-batch-size-huge", "triton {onnx} -o {d}/repo --max-batch-size 100000000000000000000", 2,
      "--max-batch-size", "2147483647"),
    B("triton-queue-delay-nan", "triton {onnx} -o {d}/repo --max-queue-delay-us nan", 2, "--max-queue-delay-us"),
    B("loadtest-batch-zero", "loadtest 127.0.0.1:9 --model m --reference {onnx} --batch 0", 2, "--batch"),
    B("parity-rows-word", "parity {onnx} --backend ort-cpu --inputs-from-recipe --rows many", 2, "--rows", "many"),
    B("train-recipe-name-empty", "train sine --out {d}/r --set recipe.name=", 2, "recipe", "name"),
    B("train-opset-high", "train sine --out {d}/r --set export.opset=99", 2, "opset", "23"),
    B("parity-device-negative-index", "parity {onnx} --checkpoint {ckpt} --backend torch --reference ort-cpu "
      "--device cuda:-1", 2, "--device", "cuda:n"),
    B("bench-device-word", f"{BE} --device gpu0", 2, "--device", "gpu0"),
    B("serve-device-word", "serve {onnx} --device gpu", 2, "--device", "gpu"),
    # -- the command line itself --------------------------------------------------------------------
    B("cli-unknown-command", "frobnicate", 2, "frobnicate"),
    B("cli-unknown-option", "parity {onnx} --frob", 2, "--frob"),
    B("cli-missing-option-value", "parity {onnx} --backend", 2, "--backend"),
    B("cli-bad-choice", "parity {onnx} --backend ort-cpu --precision fp8", 2, "fp8"),
    B("cli-recipes-option", "recipes --bogus", 2, "--bogus"),
    B("cli-doctor-option", "doctor --bogus", 2, "--bogus"),
]


def _sine_recipe(old: str, new: str) -> str:
    from rnndeploy.recipe import find_recipe

    text = find_recipe("sine").read_text()
    assert old in text
    return text.replace(old, new)


def _fp16_bytes(a: Mapping[str, Any]) -> bytes:
    from rnndeploy.artefacts.onnx_file import load_onnx
    from rnndeploy.precision import convert_to_fp16

    return convert_to_fp16(load_onnx(a["onnx"]), "fp16")[0].SerializeToString()


# rows whose scratch directory needs more than files
_SETUP: Dict[str, Callable[[Mapping[str, Any], Path], None]] = {
    # never a real device: a FIFO made here stands for /dev/null and friends
    "parity-json-is-fifo": lambda a, d: os.mkfifo(d / "pipe"),
    "report-markdown-is-fifo": lambda a, d: os.mkfifo(d / "pipe"),
    "export-checkpoint-tampered": _ckpt_copy(lambda ck: (ck / "weights.safetensors").write_bytes(
        (ck / "weights.safetensors").read_bytes()[:-8] + b"\x00" * 8)),
    "export-checkpoint-manifest-str": _ckpt_copy(lambda ck: (ck / "manifest.json").write_text('"x"')),
    "export-checkpoint-spec-str": _ckpt_copy(lambda ck: (ck / "spec.json").write_text('{"graphs": "x"}')),
}


def _write(d: Path, files: Mapping[str, Content], a: Mapping[str, Any]) -> None:
    for name, content in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        data = content(a) if callable(content) else content
        p.write_bytes(data if isinstance(data, bytes) else data.encode())


def _argv(case: Bad, a: Mapping[str, Any], d: Path) -> list:
    return [w.format(**a, d=str(d)) for w in shlex.split(case.argv)]


def check_clean(case: Bad, res_code: int, stderr: str, exception: Any, before: Dict[str, str], d: Path) -> None:
    assert res_code == case.exit, f"{case.id}: exit {res_code}, expected {case.exit}\n{stderr}\n{exception!r}"
    assert exception is None or isinstance(exception, SystemExit), f"{case.id}: raised {exception!r}"
    assert "Traceback" not in stderr, f"{case.id}: traceback\n{stderr}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    assert len(errors) == 1, f"{case.id}: want one error line, got\n{stderr}"
    for w in case.words:
        assert w.lower() in errors[0].lower(), f"{case.id}: {w!r} not in {errors[0]!r}"
    assert _snapshot(d) == before, f"{case.id}: left files behind or changed them: {sorted(set(_snapshot(d)) ^ set(before))}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Bad, art: Mapping[str, Any], tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    _write(d, case.files, art)
    if case.id in _SETUP:
        _SETUP[case.id](art, d)
    before = _snapshot(d)
    art_before = _snapshot(Path(art["root"]))
    with memory_cap():
        res = _cli(_argv(case, art, d))
    check_clean(case, res.exit_code, res.stderr, res.exception, before, d)
    assert _snapshot(Path(art["root"])) == art_before, f"{case.id}: changed the shared artefacts"


def test_the_table_is_large_and_unique() -> None:
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {shlex.split(c.argv)[0] for c in CASES if c.argv}
    assert {"parity", "bench", "report", "inspect", "build-engine", "export", "train", "demo"} <= commands


SUBPROCESS = ["export-keras-weights-only", "parity-tol-nan", "inputs-zero-batch", "report-no-cases", "bench-min-time-nan", "engine-zero-byte",
              "train-out-sys", "triton-model-dir-exists", "loadtest-no-server", "report-deep-json", "demo-out-foreign-dir"]


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_real_subprocess(case_id: str, art: Mapping[str, Any], tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    d = tmp_path / "d"
    d.mkdir()
    _write(d, case.files, art)
    before = _snapshot(d)
    proc = run_cli(*_argv(case, art, d))
    check_clean(case, proc.returncode, proc.stderr, None, before, d)
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
