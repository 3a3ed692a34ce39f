"""Helpers shared by tests (import as ``from tests.helpers import run_cli``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

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


def py39_interpreter() -> Optional[str]:
    """A Python 3.9 to run the deploy side under: $RNNDEPLOY_PY39, else the staged trt86 kit's; None if neither."""
    env = os.environ.get("RNNDEPLOY_PY39")
    if env:
        return env
    kit = REPO / ".devkit" / "stage" / "trt86" / "bin" / "python3.9"
    return str(kit) if kit.exists() else None
