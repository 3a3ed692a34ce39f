"""`rnndeploy export CHECKPOINT_DIR`: every zoo model of every recipe (and variant) exports
and validates through the CLI; a real `rnndeploy train` checkpoint exports in a
subprocess; directories that are not checkpoints fail cleanly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("safetensors")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.checkpoint import save_checkpoint  # noqa: E402
from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.fileio import sha256_file  # noqa: E402
from rnndeploy.models import build_model  # noqa: E402
from rnndeploy.onnx_info import describe_onnx  # noqa: E402
from rnndeploy.recipe import load_recipe, read_recipe_file  # noqa: E402
from rnndeploy.spec import read_onnx_metadata  # noqa: E402
from tests.helpers import REPO, run_cli  # noqa: E402

# Stand-in dataset facts per family, so checkpoints are made without loading datasets.
DATA_INFO = {
    "regressor": {"input_size": 2, "output_size": 1, "normalization": {"mean": [0.1, -0.2], "std": [1.5, 0.5]}},
    "classifier": {"vocab_size": 50, "num_classes": 2, "pad_id": 0},
    "charlm": {"vocab_size": 14, "vocab": list("abcdefghijkl .")},
    "seq2seq": {"src_vocab_size": 30, "tgt_vocab_size": 20, "pad_id": 0, "bos_id": 1, "eos_id": 2},
}


class _NoTraining:
    def to_dict(self):
        return {"note": "untrained: made by tests/test_export_checkpoint.py"}


def recipe_cases():
    cases = []
    for path in sorted((REPO / "recipes").glob("*.toml")):
        variants = [None] + sorted(read_recipe_file(path).get("variants", {}))
        cases.extend((path, v) for v in variants)
    return cases


def small_checkpoint(path: Path, variant, out: Path) -> Path:
    """The recipe's [model] section at a small size, untrained, saved as a checkpoint."""
    recipe = load_recipe(str(path), variant)
    cfg = dict(recipe.model)
    for key, cap in (
        ("hidden_size", 12),
        ("embedding_dim", 8),
        ("num_layers", 2),
        ("attention_size", 8),
        ("dense_units", 8),
    ):
        if cfg.get(key):
            cfg[key] = min(int(cfg[key]), cap)
    recipe = dataclasses.replace(recipe, model=cfg)
    model = build_model(cfg, DATA_INFO[cfg["family"]], seed=0)
    return save_checkpoint(out, model, recipe, model.data_info, _NoTraining())


def invoke(*args):
    return CliRunner().invoke(cli, ["export", *args])


@pytest.mark.parametrize("recipe, variant", recipe_cases(), ids=lambda x: getattr(x, "stem", None) or str(x))
def test_every_recipe_model_exports_through_the_cli(recipe, variant, tmp_path):
    ckpt = small_checkpoint(recipe, variant, tmp_path / "ckpt")
    res = invoke(str(ckpt), "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 0, res.output
    files = sorted(tmp_path.glob("m*.onnx"))
    assert files, res.output
    loaded_recipe = load_recipe(str(recipe), variant)
    for f in files:
        info = describe_onnx(f)
        spec, graph, meta = read_onnx_metadata(onnx.load(str(f)))
        assert info.recurrence == "native"
        assert meta["validated"] is True and meta["checkpoint_sha256"] == sha256_file(ckpt / "manifest.json")
        assert meta["weights_sha256"] == sha256_file(ckpt / "weights.safetensors")
        assert meta["engine"] == {k: v for k, v in loaded_recipe.engine.items() if v is not None}
        # the contract with build-engine, which reads its default profiles from there
        from rnndeploy.engine.profiles import engine_defaults

        assert engine_defaults(spec.attrs, meta)["seq"] == loaded_recipe.engine["seq"]
        assert meta["recipe"] == loaded_recipe.name and spec.family == loaded_recipe.model["family"]
        assert meta["opset"] == loaded_recipe.export["opset"] == info.opset
        assert meta["with_state"] == bool(loaded_recipe.export["with_state"] and spec.family in ("regressor", "charlm"))
        assert meta["normalization"]["input"] == DATA_INFO[spec.family].get("normalization")
    assert "validation [" in res.output and "FAIL" not in res.output


def test_recipe_export_defaults_and_cli_overrides(tmp_path):
    ckpt = small_checkpoint(REPO / "recipes" / "sine.toml", None, tmp_path / "ckpt")
    # the recipe's longest training sequence decides the long validation shape
    res = invoke(str(ckpt), "-o", str(tmp_path / "a.onnx"), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    window = load_recipe("sine").data["window"]
    sizes = [c["sizes"] for c in doc["graphs"][0]["validation"]["checks"]]
    assert max(s["seq"] for s in sizes) == 2 * window
    # options on the command line win over the recipe's
    res = invoke(str(ckpt), "-o", str(tmp_path / "b.onnx"), "--opset", "16", "--with-state", "--long-seq", "30")
    assert res.exit_code == 0, res.output
    info = describe_onnx(tmp_path / "b.onnx")
    assert info.opset == 16 and info.export_info["with_state"] is True
    assert [t.name for t in info.inputs] == ["x", "h0", "c0"]
    assert max(s["seq"] for s in info.export_info["validation"]["sizes"]) == 60


def _one_error_line(res) -> str:
    lines = [x for x in res.output.splitlines() if x.startswith("rnndeploy: error:")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_not_a_checkpoint(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = invoke(str(empty), "-o", str(out / "m.onnx"))
    assert res.exit_code == 2 and str(empty) in _one_error_line(res)
    res = invoke(str(tmp_path / "missing"), "-o", str(out / "m.onnx"))
    assert res.exit_code == 2 and "does not exist" in _one_error_line(res)
    a_file = tmp_path / "model.pt"
    a_file.write_bytes(b"\x80\x04not really")
    res = invoke(str(a_file), "-o", str(out / "m.onnx"))
    assert res.exit_code == 2 and "not a checkpoint directory" in _one_error_line(res)
    assert list(out.iterdir()) == []


def test_tampered_checkpoint_and_option_mixups(tmp_path):
    ckpt = small_checkpoint(REPO / "recipes" / "sine.toml", None, tmp_path / "ckpt")
    res = invoke(str(ckpt), "-o", str(tmp_path / "m.onnx"), "--input", "x[batch,seq,1]")
    assert res.exit_code == 2 and "--model user module" in _one_error_line(res)
    res = invoke(str(ckpt), "--model", "x.py:f", "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 2 and "either a CHECKPOINT" in _one_error_line(res)
    res = invoke(str(ckpt), "-o", str(tmp_path / "m.txt"))
    assert res.exit_code == 2 and ".onnx" in _one_error_line(res)
    weights = ckpt / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    res = invoke(str(ckpt), "-o", str(tmp_path / "m.onnx"))
    assert res.exit_code == 2 and "manifest" in _one_error_line(res)
    assert not list(tmp_path.glob("*.onnx"))


def test_trained_checkpoint_exports_in_a_subprocess(tmp_path):
    """What a user runs: rnndeploy train, then rnndeploy export, as two processes."""
    ckpt = tmp_path / "sine"
    proc = run_cli(
        "train", "sine", "-o", str(ckpt), "--epochs", "1", "--set", "data.n_series=120",
        "--set", "train.steps_per_epoch=2", "-q", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "sine.onnx"
    proc = run_cli("export", str(ckpt), "-o", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "exported sine-lstm [regressor]" in proc.stdout and "torchscript exporter" in proc.stdout
    assert "recurrence: native ONNX recurrent nodes: LSTM(forward) x1" in proc.stdout
    meta = describe_onnx(out).export_info
    assert meta["checkpoint_sha256"] == sha256_file(ckpt / "manifest.json") and meta["validated"]
