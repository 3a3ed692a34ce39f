"""Every zoo model (every family, cell, direction, lengths, state) through parity against
torch with an ``openvino`` row beside ``ort-cpu``: OpenVINO at FP32 computes them all
within the FP32 tolerances (the sentiment-style classifier's sequence_lens only thanks to
the runner's no-op clip)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from rnndeploy.backends.source import resolve_source  # noqa: E402
from rnndeploy.export import ExportOptions, export_zoo_model  # noqa: E402
from rnndeploy.parity.harness import ParityConfig, run_parity  # noqa: E402
from tests.zoo import (  # noqa: E402
    ZOO,
    torch_factory,  # noqa: E402
    zoo_model,
)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_parity_has_a_passing_openvino_row(name, tmp_path):
    model = zoo_model(name)
    result = export_zoo_model(model, str(tmp_path / f"{name}.onnx"), ExportOptions(validate=False, **ZOO[name][2]))
    for g in result.graphs:
        src = resolve_source(g.path)
        cfg = ParityConfig(backends=("ort-cpu", "openvino"), reference="torch", shapes=((1, 5), (3, 9)),
                           show_progress=False)
        res = run_parity(src, cfg, runner_factory=torch_factory(model))
        assert res.passed, res.failures()
        assert res.backends["openvino"]["precision"] == "fp32"
        assert {c.backend for c in res.cases} == {"ort-cpu", "openvino"}
