"""The demo pipeline: stage planning per machine, failure propagation, and a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnndeploy import demo
from rnndeploy.errors import RnnDeployError
from tests.helpers import run_cli

CPU_BOX = demo.Machine(has_gpu=False, has_tensorrt=False, ort_providers=["CPUExecutionProvider"])
GPU_BOX = demo.Machine(has_gpu=True, has_tensorrt=True, ort_providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def _backends(stage: demo.Stage) -> list:
    args = list(stage.args)
    return [args[i + 1] for i, a in enumerate(args) if a == "--backend"]


def test_cpu_box_plan_skips_the_engine_build_and_gpu_backends(tmp_path):
    stages = {s.name: s for s in demo.plan(tmp_path, CPU_BOX)}
    assert stages["build-engine"].skip_reason == "no CUDA GPU visible"
    assert _backends(stages["parity"]) == ["torch", "ort-cpu"]
    assert "--engine" not in stages["bench"].args


def test_gpu_box_plan_has_an_engine_build_and_every_runtime(tmp_path):
    stages = {s.name: s for s in demo.plan(tmp_path, GPU_BOX)}
    assert stages["build-engine"].skip_reason is None
    assert _backends(stages["parity"]) == ["torch", "ort-cpu", "ort-cuda", "trt"]
    assert str(tmp_path / "model.plan") in stages["bench"].args


def test_gpu_without_tensorrt_plan_says_why(tmp_path):
    box = demo.Machine(has_gpu=True, has_tensorrt=False, ort_providers=["CPUExecutionProvider"])
    stages = {s.name: s for s in demo.plan(tmp_path, box)}
    assert stages["build-engine"].skip_reason == "TensorRT is not installed"


def test_a_failing_stage_stops_the_demo_with_its_exit_status(tmp_path):
    ran, lines = [], []

    def invoke(args):
        ran.append(args[0])
        return 1 if args[0] == "parity" else 0

    with pytest.raises(RnnDeployError, match="stage 'parity' failed") as err:
        demo.run(demo.plan(tmp_path, CPU_BOX), invoke, lines.append)
    assert err.value.exit_code == 1
    assert ran == ["train", "export", "parity"]  # bench and report never ran


@pytest.mark.slow
def test_quick_demo_end_to_end_in_a_subprocess(tmp_path):
    pytest.importorskip("torch")  # the demo trains: a deploy-only box (e.g. Python 3.9 + TensorRT) cannot
    pytest.importorskip("onnxruntime")
    out = tmp_path / "demo"
    proc = run_cli("demo", "--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("checkpoint/manifest.json", "model.onnx", "parity.json", "bench.json", "report.html", "report.md"):
        assert (out / name).is_file(), name
    parity = json.loads(Path(out / "parity.json").read_text())
    assert parity["results"][0]["passed"] is True
    assert "skipped build-engine" in proc.stdout
