"""rnndeploy doctor: versions, providers, GPUs, and what a missing piece disables."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from rnndeploy import doctor
from rnndeploy.cli import cli
from tests.helpers import has_gpu, run_cli


def test_json_lists_every_component_with_its_version():
    res = CliRunner().invoke(cli, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    comps = {c["name"]: c for c in data["components"]}
    assert {"numpy", "onnx", "click", "torch", "onnxruntime", "tensorrt"} <= set(comps)
    import numpy

    assert comps["numpy"]["version"] == numpy.__version__
    ort_installed = importlib.util.find_spec("onnxruntime") is not None
    assert bool(comps["onnxruntime"]["version"]) == ort_installed
    assert ("CPUExecutionProvider" in comps["onnxruntime"].get("providers", [])) == ort_installed


def test_missing_pieces_say_what_they_disable_and_how_to_install():
    report = doctor.Report(
        python="3.9.2",
        platform="Linux x86_64",
        components=[doctor.Component("tensorrt", None, "build-engine and the trt runner", "gpu")],
        gpus=[],
        gpu_error="no CUDA driver (libcuda.so.1 not found)",
    )
    text = report.render()
    assert "tensorrt     missing — disables build-engine and the trt runner (pip install 'rnndeploy[gpu]')" in text
    assert "gpu          none — no CUDA driver" in text


def test_doctor_in_a_subprocess_exits_zero():
    """What is missing is reported, not an error: exit 0 on any machine."""
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("python ")


@pytest.mark.skipif(has_gpu(), reason="a GPU is visible here")
def test_doctor_without_gpu_says_none_and_exits_zero():
    proc = run_cli("doctor")
    assert proc.returncode == 0, proc.stderr
    assert "\ngpu          none" in proc.stdout


def test_openvino_is_listed_with_whether_bf16_can_run():
    """doctor names OpenVINO's version and whether ``openvino:bf16`` can run on this CPU (the
    runner's own check), so a user knows before asking for it."""
    import pytest

    ov = pytest.importorskip("openvino")
    from rnndeploy.backends.openvino_runner import cpu_has_native_bf16

    res = CliRunner().invoke(cli, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    comp = {c["name"]: c for c in json.loads(res.output)["components"]}["openvino"]
    native, why = cpu_has_native_bf16()  # the CPU flags, as doctor reads them without importing openvino
    assert comp["version"] and comp["version"].split("-")[0] in ov.get_version()
    assert comp["bf16"] == {"native": native, "why": why}
    text = CliRunner().invoke(cli, ["doctor"]).output
    line = next(x for x in text.splitlines() if x.startswith("openvino"))
    assert ("openvino:bf16 available" if native else "openvino:bf16 refused") in line, line
