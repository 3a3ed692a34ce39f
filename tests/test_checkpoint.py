"""Checkpoints: atomic save, verified load, pickle refusal, tamper and mismatch detection."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rnndeploy.checkpoint import MANIFEST, REQUIRED, WEIGHTS, load_model, verify_checkpoint  # noqa: E402
from rnndeploy.errors import CheckpointError  # noqa: E402
from rnndeploy.fileio import sha256_file  # noqa: E402
from rnndeploy.recipe import load_recipe  # noqa: E402
from rnndeploy.train import train_recipe  # noqa: E402
from tests.helpers import run_cli  # noqa: E402

TINY = ["data.n_series=120", "model.hidden_size=6", "train.epochs=2", "train.batch_size=16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny sine checkpoint (seconds to train) and its TrainResult."""
    out = tmp_path_factory.mktemp("ckpt") / "sine"
    result = train_recipe(load_recipe("sine", overrides=TINY), out)
    return out, result


def copy_ckpt(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_layout_and_manifest(trained):
    out, result = trained
    names = {p.name for p in out.iterdir()}
    assert names == set(REQUIRED) | {MANIFEST}
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["files"] == {n: sha256_file(out / n) for n in REQUIRED}
    assert manifest["versions"]["torch"] == torch.__version__ and manifest["versions"]["rnndeploy"]
    # readable like any directory the user creates (not the 0700/0600 of temporary files)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in out.iterdir())
    # no temporary directories left next to it
    assert [p.name for p in out.parent.iterdir()] == ["sine"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quality"]["value"] == pytest.approx(result.quality.value)
    assert len(metrics["history"]) == result.epochs_run
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["train"]["epochs"] == 2 and recipe["export"]["longest_train_seq"] == 50


def test_load_model_reproduces_the_trained_model(trained):
    out, result = trained
    ckpt = load_model(out)
    assert not ckpt.model.training
    assert ckpt.spec.name == "sine-lstm" and ckpt.recipe.name == "sine" and ckpt.data_info["input_size"] == 1
    assert ckpt.weights_sha256 == sha256_file(out / WEIGHTS) and ckpt.manifest_sha256 == sha256_file(out / MANIFEST)
    # the reloaded model scores exactly what training reported on the test split, fed the
    # way the deploy side does it: the data rebuilt from the spec alone, inputs by spec name
    from rnndeploy.data.feeds import dataset_for_spec, spec_feeds, spec_targets
    from rnndeploy.train import regression_metrics

    ds = dataset_for_spec(ckpt.spec)
    graph = ckpt.spec.graph("model")
    feeds = spec_feeds(ds, graph, "test")
    with torch.no_grad():
        (pred,) = ckpt.model.graph_module("model")(*(torch.from_numpy(v) for v in feeds.values()))
    truth = spec_targets(ds, graph, "test")["y"]
    mse = regression_metrics(pred.numpy(), truth, ds.test["baseline"], ds.data_info)["mse"]
    assert mse == pytest.approx(result.metrics["test"]["mse"], rel=1e-6)


def test_tampered_file_is_refused(trained, tmp_path):
    ck = copy_ckpt(trained[0], tmp_path / "ck")
    info = json.loads((ck / "data_info.json").read_text())
    info["input_size"] = 2
    (ck / "data_info.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="data_info.json does not match the manifest"):
        load_model(ck)


def test_missing_file_and_missing_manifest(trained, tmp_path):
    ck = copy_ckpt(trained[0], tmp_path / "ck")
    (ck / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="lacks weights.safetensors"):
        verify_checkpoint(ck)
    (ck / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="no manifest.json"):
        verify_checkpoint(ck)
    with pytest.raises(CheckpointError, match="does not exist"):
        verify_checkpoint(tmp_path / "nowhere")


def _rehash(ck: Path) -> None:
    manifest = json.loads((ck / MANIFEST).read_text())
    manifest["files"] = {n: sha256_file(ck / n) for n in manifest["files"]}
    (ck / MANIFEST).write_text(json.dumps(manifest))


def test_config_weights_mismatch_names_the_tensors(trained, tmp_path):
    ck = copy_ckpt(trained[0], tmp_path / "ck")
    cfg = json.loads((ck / "model.json").read_text())
    cfg["hidden_size"] = 7
    (ck / "model.json").write_text(json.dumps(cfg))
    _rehash(ck)  # a consistent manifest: the files agree with it, but not with each other
    with pytest.raises(CheckpointError) as err:
        load_model(ck)
    msg = str(err.value)
    assert "does not match the model" in msg and "mis-shaped" in msg and "weight_hh_l0 (24, 6) vs (28, 7)" in msg
    cfg["num_layers"] = 2
    cfg["hidden_size"] = 6
    (ck / "model.json").write_text(json.dumps(cfg))
    _rehash(ck)
    with pytest.raises(CheckpointError, match="missing .*l1"):
        load_model(ck)


class _Boom:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_are_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    for name in ("model.pt", "weights.pth", "ckpt.pkl", "pytorch_model.bin"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(_Boom(str(marker))))
        with pytest.raises(CheckpointError) as err:
            load_model(path)
        assert "never loads pickles" in str(err.value) and "weights.safetensors" in str(err.value)
    # a directory holding only a pickle, and a pickle under an innocent name
    d = tmp_path / "run"
    d.mkdir()
    (d / "model.pt").write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(CheckpointError, match="never loads pickles"):
        load_model(d)
    disguised = tmp_path / "model.weights"
    torch.save({"w": torch.zeros(2)}, disguised)
    with pytest.raises(CheckpointError, match="never loads pickles"):
        load_model(disguised)
    assert not marker.exists()


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnndeploy: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_checkpoints_through_the_cli(trained, tmp_path):
    """What a user sees when a checkpoint is pickled, tampered with or inconsistent."""
    run = tmp_path / "torch_run"  # what a plain PyTorch tutorial leaves behind
    run.mkdir()
    torch.save({"w": torch.zeros(2)}, run / "model.pt")
    _one_line_error(run_cli("export", str(run), "-o", str(tmp_path / "a.onnx")), "never loads pickles", "model.pt")

    ck = copy_ckpt(trained[0], tmp_path / "tampered")
    (ck / "spec.json").write_text((ck / "spec.json").read_text().replace("sine-lstm", "sine-lstx"))
    _one_line_error(run_cli("export", str(ck), "-o", str(tmp_path / "b.onnx")), "spec.json does not match the manifest")

    ck = copy_ckpt(trained[0], tmp_path / "mismatch")
    cfg = json.loads((ck / "model.json").read_text())
    cfg["cell"] = "gru"
    (ck / "model.json").write_text(json.dumps(cfg))
    _rehash(ck)
    _one_line_error(run_cli("export", str(ck), "-o", str(tmp_path / "c.onnx")), "does not match the model")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp"))
