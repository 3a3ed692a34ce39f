"""Helpers shared by tests (import as ``from tests.helpers import run_cli``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
