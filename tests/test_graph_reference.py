"""The spec-complete recurrent operators for onnx's reference evaluator, checked two ways:
against onnx's own operators where those are complete (no sequence_lens, clip,
input_forget or custom activations), and against ONNX Runtime's CPU kernels everywhere
ONNX Runtime runs (layout 0)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from rnndeploy.graph.reference import reference_run, run_recurrent
from tests.onnx_rnn_cases import RnnCase, build, cases

EXTRA = [
    RnnCase("LSTM", attrs={"input_forget": 1}),
    RnnCase("LSTM", "bidirectional", seq_lens=True),
    RnnCase("GRU", "reverse", seq_lens=True),
    RnnCase("GRU", attrs={"activations": ["HardSigmoid", "Softsign"], "activation_alpha": [0.3],
                          "activation_beta": [0.4]}),
    RnnCase("RNN", attrs={"activations": ["Relu"]}),
    RnnCase("RNN", "bidirectional", attrs={"activations": ["Tanh", "Relu"]}),
    RnnCase("LSTM", "bidirectional", attrs={"activations": ["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Tanh", "Softsign"]}),
]
LAYOUT0 = [c for c in cases() if c.layout == 0] + EXTRA


def _stock_is_complete(c: RnnCase) -> bool:
    return not (c.seq_lens or c.clip is not None or c.attrs)


@pytest.mark.skipif(tuple(int(p) for p in onnx.__version__.split(".")[:2]) < (1, 23),
                    reason="onnx < 1.23's own recurrent operators fail on reverse, bidirectional and layout=1 "
                           "(measured with 1.19), which is why rnndeploy has its own")
@pytest.mark.parametrize("case", [c for c in cases() if _stock_is_complete(c)], ids=lambda c: c.id)
def test_matches_onnx_reference_where_that_is_complete(case):
    model, feed = build(case)
    ours = reference_run(model, feed)
    stock = ReferenceEvaluator(model).run(None, feed)
    for name, arr in zip(ours, stock):
        np.testing.assert_allclose(ours[name], arr, atol=2e-6)


@pytest.mark.parametrize("case", LAYOUT0, ids=lambda c: c.id)
def test_matches_onnxruntime(case):
    ort = pytest.importorskip("onnxruntime")
    model, feed = build(case)
    ours = reference_run(model, feed)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, arr in zip(ours, sess.run(list(ours), feed)):
        np.testing.assert_allclose(ours[name], arr, atol=1e-6, err_msg=name)


def test_padded_steps_are_zero_and_states_stop_at_each_length():
    model, feed = build(RnnCase("GRU", "reverse", seq_lens=True, initial=True))
    out = reference_run(model, feed)
    lens = feed["lens"]
    for b, n in enumerate(lens):
        assert np.all(out["Y"][n:, 0, b] == 0)
        # reverse direction: the final state is the output at step 0
        np.testing.assert_array_equal(out["Y_h"][0, b], out["Y"][0, 0, b])


def test_unspecified_activation_defaults_are_refused():
    x = np.zeros((2, 1, 3), np.float32)
    w = np.zeros((1, 4, 3), np.float32)
    r = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="Affine"):
        run_recurrent("RNN", {"activations": ["Affine"]}, x, w, r)
