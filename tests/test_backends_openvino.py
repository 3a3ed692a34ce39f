"""The openvino runner: explicit precision, the rewrites OpenVINO needs, one-line refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

from rnndeploy.backends import ModelSource, RunnerOptions, create_runner
from rnndeploy.errors import DeviceError, UsageError
from rnndeploy.graph.reference import reference_run
from rnndeploy.spec import spec_from_onnx_io
from tests.helpers import REPO, block_imports
from tests.onnx_rnn_cases import RnnCase, build

ov = pytest.importorskip("openvino")


def _source(tmp_path, case):
    model, feed = build(case)
    path = tmp_path / f"{case.id}.onnx"
    onnx.save(model, path)
    return ModelSource(spec=spec_from_onnx_io(model, case.id), onnx=str(path)), model, feed


def _max_err(out, want):
    return max(float(np.abs(out[k] - want[k]).max()) for k in want)


def test_fp32_is_explicit_and_matches_the_reference(tmp_path):
    source, model, feed = _source(tmp_path, RnnCase("GRU", "bidirectional", initial=True, lbr=1))
    with create_runner("openvino", source, RunnerOptions(threads=1)) as r:
        out = r.infer(feed)
        d = r.describe()
    assert _max_err(out, reference_run(model, feed)) < 1e-5
    assert d.backend == "openvino" and d.precision == "fp32" and d.details["inference_precision"] == "f32"
    assert d.threads == 1 and "rewrites" not in d.details


def test_layout1_and_lengths_are_rewritten_in_memory(tmp_path):
    source, model, feed = _source(tmp_path, RnnCase("LSTM", "reverse", 1, seq_lens=True, initial=True))
    with create_runner("openvino", source) as r:
        out = r.infer(feed)
        rewrites = r.describe().details["rewrites"]
    assert _max_err(out, reference_run(model, feed)) < 1e-5
    assert any("layout=1 → layout=0" in t for t in rewrites) and any("clip=" in t for t in rewrites)
    assert onnx.load(source.onnx).graph.node[0].op_type == "LSTM"  # the file itself is untouched


def test_openvino_still_ignores_lengths_without_clip():
    """Why the runner adds a no-op clip: compiled as written, the lengths are ignored (OpenVINO 2026.4,
    2025.3). If this starts failing, OpenVINO fixed it and the workaround can go."""
    model, feed = build(RnnCase("GRU", seq_lens=True))
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString()), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    res = compiled(feed)
    out = {p.get_any_name(): res[p] for p in compiled.outputs}
    assert _max_err(out, reference_run(model, feed)) > 0.1


def test_bf16_is_reported_where_the_cpu_has_it_and_refused_where_not(tmp_path, monkeypatch):
    from rnndeploy.backends import openvino_runner

    source, model, feed = _source(tmp_path, RnnCase("LSTM", initial=True))
    native, why = openvino_runner.cpu_has_native_bf16(ov.Core())
    if native:
        with create_runner("openvino:bf16", source) as r:
            out = r.infer(feed)
            d = r.describe()
        assert d.backend == "openvino:bf16" and d.precision == "bf16" and d.details["inference_precision"] == "bf16"
        assert 1e-4 < _max_err(out, reference_run(model, feed)) < 0.1  # bf16 rounding, not FP32
    monkeypatch.setattr(openvino_runner, "cpu_has_native_bf16", lambda core=None: (False, "CPU flags: none"))
    with pytest.raises(DeviceError, match="needs a CPU with native bf16"):
        create_runner("openvino:bf16", source).activate()


def test_other_backends_refuse_bf16(tmp_path):
    source, _, _ = _source(tmp_path, RnnCase("RNN"))
    with pytest.raises(UsageError, match="does not compute in bf16"):
        create_runner("onnx-ref:bf16", source)


def test_unsupported_activation_is_one_line(tmp_path):
    source, _, feed = _source(tmp_path, RnnCase("RNN", attrs={"activations": ["Softsign"]}))
    with pytest.raises(UsageError, match="OpenVINO could not compile .*activation"):
        create_runner("openvino", source).activate()


def test_missing_openvino_names_the_extra(tmp_path):
    model, _ = build(RnnCase("RNN"))
    onnx.save(model, tmp_path / "m.onnx")
    code = block_imports("openvino") + (
        "from rnndeploy.cli import main\n"
        f"sys.argv = ['rnndeploy', 'parity', {str(tmp_path / 'm.onnx')!r}, '--backend', 'openvino', '--shapes', '1x2', "
        "'--reference', 'onnx-ref']\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "rnndeploy[openvino]" in proc.stderr and "Traceback" not in proc.stderr


def test_an_input_openvino_prunes_is_not_fed_and_is_reported(tmp_path):
    """ONNX's own test_lstm_with_peepholes has P as a graph input: OpenVINO prunes it (it ignores
    peepholes), so the runner feeds the rest, says so, and the values show what that costs."""
    from onnx import helper, numpy_helper

    model, feed = build(RnnCase("LSTM", seq_lens=True, initial=True, peepholes=True))
    for init in list(model.graph.initializer):  # every weight a graph input, as in ONNX's node test
        feed[init.name] = numpy_helper.to_array(init)
        model.graph.input.append(helper.make_tensor_value_info(init.name, onnx.TensorProto.FLOAT, list(init.dims)))
        model.graph.initializer.remove(init)
    onnx.save(model, tmp_path / "p_input.onnx")
    source = ModelSource(spec=spec_from_onnx_io(model), onnx=str(tmp_path / "p_input.onnx"))
    with create_runner("openvino", source) as r:
        out = r.infer(feed)
        assert r.describe().details["ignored_inputs"] == ["P"]
    assert _max_err(out, reference_run(model, feed)) > 1e-2


@pytest.mark.parametrize("case", [RnnCase("GRU", "bidirectional", initial=True, lbr=1),
                                  RnnCase("LSTM", "reverse", 1, seq_lens=True, initial=True)], ids=lambda c: c.id)
def test_split_batch_runs_parts_on_streams_and_joins_them_on_each_batch_axis(tmp_path, case):
    source, model, feed = _source(tmp_path, case)
    axis = 0 if case.layout else 1  # X and the states are batch-first with layout 1; lens is [batch]
    feed = {k: np.take(v, range(3), axis=0 if k == "lens" else axis) for k, v in feed.items()}  # 3 rows: uneven
    want = reference_run(model, feed)
    with create_runner("openvino:s2", source) as r:
        assert len(r.requests) == 2
        parts = r._parts({k: v for k, v in feed.items()})
        out, timed = r.infer(feed), r.run_prepared(r.prepare(feed))
        d = r.describe()
    assert [p["X"].shape[axis] for p in parts] == [2, 1]  # as even as 3 rows allow
    assert [p["lens"].shape for p in parts if "lens" in p] == ([(2,), (1,)] if case.seq_lens else [])
    assert _max_err(out, want) < 1e-5 and _max_err(timed, want) < 1e-5
    assert (d.details["split_batch"], d.details["performance_hint"], d.threads) == (2, "THROUGHPUT", 2)


def test_split_batch_with_one_row_runs_one_part(tmp_path):
    source, model, feed = _source(tmp_path, RnnCase("GRU", "forward", initial=True, lbr=1))
    one = {k: v[:, :1] if v.ndim == 3 else v for k, v in feed.items()}  # X [seq, 1, I], h0 [dirs, 1, H]
    with create_runner("openvino:s2", source) as r:
        assert len(r._parts(one)) == 1
        assert _max_err(r.infer(one), reference_run(model, one)) < 1e-5


def test_split_batch_is_an_openvino_modifier_only():
    from rnndeploy.backends import BackendLabel

    assert BackendLabel.parse("openvino:bf16:s2").changes == {"precision": "bf16", "extra": {"split_batch": 2}}
    with pytest.raises(UsageError, match="for openvino only"):
        BackendLabel.parse("ort-cpu:s2")
    with pytest.raises(UsageError, match="modifier 's1' is unknown"):
        BackendLabel.parse("openvino:s1")
