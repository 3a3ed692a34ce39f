"""The ONNX test models of tests/onnx_models.py compute what they should: the LSTM builder
against the ONNX equations written out in numpy, the float64 reference against ONNX Runtime,
and ONNX Runtime against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.onnx_models import feeds, make_rnn_model, numpy_reference, reference_supports_bidirectional


# -- the builders are right ---------------------------------------------------------------------
def _np_lstm_forward(x, W, R, B):
    """Forward-direction ONNX LSTM (gates i, o, f, c), zero initial state; x: [seq, batch, I]."""
    H = R.shape[1]
    h = np.zeros((x.shape[1], H))
    c = np.zeros((x.shape[1], H))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    ys = []
    for t in range(x.shape[0]):
        z = x[t] @ W.T + h @ R.T + B[: 4 * H] + B[4 * H:]
        i, o, f, g = sig(z[:, :H]), sig(z[:, H:2 * H]), sig(z[:, 2 * H:3 * H]), np.tanh(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys)


def test_lstm_builder_matches_numpy_equations():
    from onnx import numpy_helper

    from rnndeploy.precision import run_model

    model = make_rnn_model("LSTM")
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    f = feeds()
    h = _np_lstm_forward(f["x"].transpose(1, 0, 2).astype(np.float64), inits["W0"][0], inits["R0"][0], inits["B0"][0])
    expected = h.transpose(1, 0, 2) @ inits["W_head"] + inits["b_head"]
    got = run_model(model, f, engine="reference")["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell,bi", [("GRU", True), ("RNN", False), ("LSTM", True), ("LSTM", False)])
def test_numpy_reference_matches_onnxruntime(cell, bi):
    """The float64 reference used by the GPU tests, against ORT, including sequence lengths."""
    pytest.importorskip("onnxruntime")
    from rnndeploy.precision import run_model

    model = make_rnn_model(cell, bidirectional=bi, layers=2, with_lengths=True)
    f = feeds(batch=4, seq=13, lengths=True)
    f["lengths"][0] = 13
    a = run_model(model, f, engine="onnxruntime")["y"]
    b = numpy_reference(model, f)["y"]
    assert b.dtype == np.float64
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell,bi", [("GRU", True), ("RNN", False), ("LSTM", True)])
def test_builders_agree_between_onnxruntime_and_reference(cell, bi):
    pytest.importorskip("onnxruntime")
    if bi and not reference_supports_bidirectional():
        pytest.skip("this onnx's reference evaluator has no bidirectional RNNs")
    import onnx

    from rnndeploy.precision import run_model

    model = make_rnn_model(cell, bidirectional=bi, layers=2)
    onnx.checker.check_model(model, full_check=True)
    f = feeds(batch=3, seq=11)
    a = run_model(model, f, engine="onnxruntime")["y"]
    b = run_model(model, f, engine="reference")["y"]
    assert a.shape == (3, 11, 3)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
