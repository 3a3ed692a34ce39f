"""Helpers shared by tests (import as ``from tests.helpers import run_cli``)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

REPO = Path(__file__).resolve().parents[1]

# Modules allowed to import torch (training and export). Everything else is deploy side
# (tests/test_portability.py imports it without torch; tests/test_architecture.py checks its imports).
TORCH_SIDE = (
    "rnndeploy/models/",
    "rnndeploy/train.py",
    "rnndeploy/checkpoint.py",
    "rnndeploy/export/",
    "rnndeploy/backends/torch_runner.py",
    "rnndeploy/campaign/prepare.py",
)


def run_cli(*args: str, cwd=None, env=None, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m rnndeploy ARGS`` in a real subprocess (what users run)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "rnndeploy", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"rnndeploy {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def convert_onnx_file(src, dst, policy: str = "fp16"):
    """Convert an FP32 ONNX file to FP16 with ``policy`` and write it (metadata kept); the report."""
    from rnndeploy.artefacts.onnx_file import load_onnx
    from rnndeploy.fileio import write_bytes_atomic
    from rnndeploy.precision import convert_to_fp16

    converted, report = convert_to_fp16(load_onnx(src, external_data=True), policy)
    write_bytes_atomic(dst, converted.SerializeToString())
    return report


def has_gpu() -> bool:
    """True when the CUDA driver reports at least one GPU (what the ``gpu`` marker's skip reads)."""
    from rnndeploy.environment import probe_gpus

    gpus, _ = probe_gpus()
    return bool(gpus)


def block_imports(*packages: str) -> str:
    """Python source that makes ``packages`` (and their submodules) fail to import, as if absent."""
    return f"""
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {tuple(packages)!r}:
            raise ImportError(name + " is blocked in this test")
        return None
sys.meta_path.insert(0, _Absent())
"""


BLOCK_TORCH = block_imports("torch")


# -- the Python 3.9 deploy kit -----------------------------------------------------------------------
# Tests that run rnndeploy under the trt86 kit's Python 3.9 (numpy 1.26, onnx 1.19, click 8.1,
# TensorRT 8.6). The kit itself has no onnxruntime or h5py: those come from a --target install
# beside it (benchmarks/GPU_RUNBOOK.md), default .devkit/py39extra.
PY39_KIT = REPO / ".devkit" / "stage" / "trt86" / "bin" / "python3.9"
PY39_EXTRA_HINT = ("<py3.9> -m pip install --target .devkit/py39extra onnxruntime==1.19.2 h5py==3.14.0 numpy==1.26.4 "
                   "(benchmarks/GPU_RUNBOOK.md)")


def py39_python() -> Optional[str]:
    """The Python 3.9 interpreter: $RNNDEPLOY_PY39, else the staged kit's; None when neither exists."""
    env = os.environ.get("RNNDEPLOY_PY39")
    if env:
        return env if Path(env).exists() else None
    return str(PY39_KIT) if PY39_KIT.exists() else None


def py39_extra() -> Path:
    """Where the kit's extra packages are: $RNNDEPLOY_PY39_EXTRA, else .devkit/py39extra."""
    return Path(os.environ.get("RNNDEPLOY_PY39_EXTRA") or REPO / ".devkit" / "py39extra")


def py39_env(**extra: str) -> Dict[str, str]:
    """A subprocess environment for the Python 3.9 interpreter: py39extra, then the repository."""
    return dict(os.environ, PYTHONPATH=f"{py39_extra()}{os.pathsep}{REPO}", **extra)


@functools.cache
def py39_missing(*modules: str) -> Optional[str]:
    """Why a test that runs ``modules`` under Python 3.9 cannot run here (a skip reason naming
    what is missing and how to get it), or None when it can."""
    py = py39_python()
    if py is None:
        where = f"RNNDEPLOY_PY39={os.environ['RNNDEPLOY_PY39']} does not exist" if os.environ.get("RNNDEPLOY_PY39") \
            else f"no {PY39_KIT.relative_to(REPO)}"
        return f"no Python 3.9 interpreter ({where}): set RNNDEPLOY_PY39 or stage the trt86 kit"
    code = "import importlib, sys\nassert sys.version_info[:2] == (3, 9), sys.version\n" \
           "missing = []\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n" \
           "    except ImportError:\n        missing.append(m)\nprint(' '.join(missing))\n"
    proc = subprocess.run([py, "-c", code, *modules], capture_output=True, text=True, env=py39_env(), timeout=120)
    if proc.returncode != 0:
        return f"{py} is not a working Python 3.9: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    missing = proc.stdout.split()
    if missing:
        extra = py39_extra()
        state = "" if extra.is_dir() else f", and {extra} does not exist"
        return f"Python 3.9 kit lacks {', '.join(missing)} (looked in the kit and {extra}{state}): {PY39_EXTRA_HINT}"
    return None


def needs_py39(*modules: str):
    """A skipif mark: the test runs under Python 3.9 with ``modules`` importable there."""
    import pytest

    why = py39_missing(*modules)
    return pytest.mark.skipif(why is not None, reason=why or "")
