"""Sequence regressor: shapes for every variant, spec ↔ graph agreement, lengths, streaming, init."""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

from rnndeploy.errors import RecipeError, UsageError  # noqa: E402
from rnndeploy.models import build_model  # noqa: E402
from tests.model_checks import check_against_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
DIRECTIONS = ((False, "concat"), (True, "concat"), (True, "sum"), (True, "mul"), (True, "ave"))
INFO = {"input_size": 3, "output_size": 2}


def regressor(seed=0, **cfg):
    base = {"family": "regressor", "hidden_size": 5}
    base.update(cfg)
    return build_model(base, INFO, seed=seed).eval()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional, merge_mode", DIRECTIONS)
@pytest.mark.parametrize("output", ("last", "sequence"))
def test_shapes_every_variant(cell, bidirectional, merge_mode, output):
    for variable_length in (False, True):
        m = regressor(cell=cell, num_layers=2, bidirectional=bidirectional, merge_mode=merge_mode, output=output,
                      variable_length=variable_length, dropout=0.2)
        ex, outs = check_against_spec(m)
        # graph_module computes the training forward.
        with torch.no_grad():
            y = m(ex["x"], ex.get("lengths"))
        torch.testing.assert_close(outs[0], y, rtol=0, atol=0)
        names = [t.name for t in m.spec().graph().inputs]
        assert names == (["x", "lengths"] if variable_length else ["x"]) + ([] if bidirectional else ["h0"] + (["c0"] if cell == "lstm" else []))


def test_merge_modes_change_feature_size_of_next_layer():
    widths = {}
    for mode in ("concat", "sum", "mul", "ave"):
        m = regressor(cell="gru", num_layers=2, bidirectional=True, merge_mode=mode)
        # Keras: a merged Bidirectional layer feeds hidden_size (or 2*hidden for concat) to the next.
        widths[mode] = [layer.input_size for layer in m.rnn.layers]
        assert m.rnn.output_size == (10 if mode == "concat" else 5)
    assert widths["concat"] == [3]  # one fused nn.GRU(num_layers=2, bidirectional=True)
    assert widths["sum"] == widths["mul"] == widths["ave"] == [3, 5]


def test_merge_modes_compute_their_operation():
    m = regressor(cell="lstm", bidirectional=True, merge_mode="sum")
    x = torch.randn(2, 4, 3)
    with torch.no_grad():
        out, (h, _) = m.rnn.layers[0](x)
        results = {}
        for mode in ("sum", "mul", "ave"):
            m.rnn.merge_mode = mode
            results[mode] = m.rnn(x)[1]
    f, b = h[0], h[1]
    torch.testing.assert_close(results["sum"], f + b)
    torch.testing.assert_close(results["mul"], f * b)
    torch.testing.assert_close(results["ave"], (f + b) / 2)


def test_last_is_keras_last_output_of_each_direction():
    m = regressor(cell="gru", bidirectional=True, num_layers=1)
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        seq, last, _ = m.rnn(x)
    # forward direction at the final step, backward direction at step 0
    torch.testing.assert_close(last, torch.cat([seq[:, -1, :5], seq[:, 0, 5:]], dim=-1))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional, merge_mode", DIRECTIONS)
def test_padded_batch_equals_each_sequence_alone(cell, bidirectional, merge_mode):
    for output in ("last", "sequence"):
        m = regressor(cell=cell, num_layers=2, bidirectional=bidirectional, merge_mode=merge_mode, output=output,
                      variable_length=True, seed=3)
        lengths = torch.tensor([4, 9, 1, 6])
        x = torch.randn(4, 9, 3)
        # Garbage in the padding must not matter.
        x_noisy = x.clone()
        for i, n in enumerate(lengths.tolist()):
            x_noisy[i, n:] = 100.0
        with torch.no_grad():
            batch = m(x_noisy, lengths)
            for i, n in enumerate(lengths.tolist()):
                alone = m(x[i : i + 1, :n], torch.tensor([n]))
                if output == "last":
                    torch.testing.assert_close(batch[i], alone[0], rtol=1e-5, atol=1e-6)
                else:
                    torch.testing.assert_close(batch[i, :n], alone[0], rtol=1e-5, atol=1e-6)
                    assert (batch[i, n:] == 0).all()
        # Without lengths the padding does leak in (so the test above is not vacuous).
        with torch.no_grad():
            leaked = m(x_noisy, torch.full((4,), 9))
        assert not torch.allclose(leaked[0], batch[0])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("output", ("last", "sequence"))
def test_streaming_chunks_equal_whole_sequence(cell, output):
    m = regressor(cell=cell, num_layers=2, output=output, seed=1)
    gm_state = m.graph_module(with_state=True)
    ex = m.example_inputs(batch=2, seq=10, with_state=True)
    x = ex["x"]
    zeros = tuple(torch.zeros_like(ex[n]) for n in m.state_names[0])
    with torch.no_grad():
        whole = gm_state(x, *zeros)
        state = zeros
        pieces = []
        for a, b in ((0, 3), (3, 4), (4, 10)):
            y, *state = gm_state(x[:, a:b], *state)
            pieces.append(y)
        plain = m.graph_module()(x)[0]
    torch.testing.assert_close(whole[0], plain)  # zero state == no state
    for got, want in zip(state, whole[1:]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if output == "last":
        torch.testing.assert_close(pieces[-1], whole[0], rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(torch.cat(pieces, dim=1), whole[0], rtol=1e-5, atol=1e-6)


def test_bidirectional_has_no_streaming_form():
    m = regressor(bidirectional=True)
    assert not m.supports_state()
    with pytest.raises(UsageError, match="no streaming"):
        m.graph_module(with_state=True)


def test_determinism_under_seed():
    cfg = {"cell": "lstm", "num_layers": 2, "bidirectional": True, "merge_mode": "sum"}
    a, b, c = regressor(seed=7, **cfg), regressor(seed=7, **cfg), regressor(seed=8, **cfg)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))
    x = a.example_inputs(seed=0)["x"]
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert not torch.equal(a(x), c(x))
    # build_model(seed=...) leaves the global RNG alone.
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    regressor(seed=5)
    assert torch.equal(torch.rand(3), before)


@pytest.mark.parametrize("init", ("keras", "torch"))
def test_lstm_forget_bias_sums_to_one(init):
    m = regressor(cell="lstm", num_layers=2, bidirectional=True, init=init)
    rnn = m.rnn.layers[0]
    h = rnn.hidden_size
    for layer, suffix in itertools.product(range(2), ("", "_reverse")):
        b_ih = getattr(rnn, f"bias_ih_l{layer}{suffix}")
        b_hh = getattr(rnn, f"bias_hh_l{layer}{suffix}")
        torch.testing.assert_close(b_ih[h : 2 * h] + b_hh[h : 2 * h], torch.ones(h))
        if init == "keras":
            assert (b_ih[:h] == 0).all() and (b_hh == 0).all()
    off = regressor(cell="lstm", unit_forget_bias=False)
    assert (off.rnn.layers[0].bias_ih_l0 == 0).all()


@pytest.mark.parametrize("cell, gates", (("lstm", 4), ("gru", 3), ("rnn_tanh", 1)))
def test_recurrent_gate_blocks_orthogonal_and_input_xavier(cell, gates):
    m = regressor(cell=cell, num_layers=2, bidirectional=True, merge_mode="ave", seed=2)
    for rnn in m.rnn.layers:
        h = rnn.hidden_size
        for name, p in rnn.named_parameters():
            if name.startswith("weight_hh"):
                for g in range(gates):
                    block = p[g * h : (g + 1) * h].detach()
                    torch.testing.assert_close(block @ block.T, torch.eye(h), atol=1e-5, rtol=0)
            elif name.startswith("weight_ih"):
                limit = (6.0 / (p.shape[0] + p.shape[1])) ** 0.5
                assert p.abs().max() <= limit and p.abs().max() > limit / 2
    default = regressor(cell=cell, init="torch", seed=2)
    w = default.rnn.layers[0].weight_hh_l0[:5].detach()
    assert not torch.allclose(w @ w.T, torch.eye(5), atol=1e-3)


def test_dropout_between_layers_active_only_in_training():
    m = regressor(cell="gru", num_layers=3, dropout=0.5, bidirectional=True, merge_mode="mul")
    x = torch.randn(2, 6, 3)
    m.train()
    torch.manual_seed(0)
    a = m(x)
    b = m(x)
    assert not torch.allclose(a, b)
    m.eval()
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)
    fused = regressor(cell="lstm", num_layers=2, dropout=0.25)
    assert fused.rnn.layers[0].dropout == 0.25


def test_spec_contents():
    m = regressor(cell="gru", num_layers=2, variable_length=True, output="sequence")
    spec = m.spec()
    assert spec.family == "regressor" and spec.name == "regressor-gru"
    g = spec.graph("model")
    x = g.input("x")
    assert x.dims == ("batch", "seq", 3) and x.time_axis == 1 and (x.low, x.high) == (-3.0, 3.0)
    assert g.input("lengths").role == "lengths" and g.input("lengths").dtype == "int64"
    assert g.output("y").time_axis == 1 and g.output("y").role == "prediction"
    assert g.input("h0").optional and g.output("hn").dims == (2, "batch", 5)
    assert spec.attrs["cell"] == "gru" and spec.attrs["num_layers"] == 2 and spec.attrs["output_size"] == 2
    assert g.tolerance("y", "fp32").atol < g.tolerance("y", "fp16").atol
    # Round-trips through JSON (what export writes into the ONNX metadata).
    from rnndeploy.spec import ModelSpec

    assert ModelSpec.from_json(spec.to_json()) == spec


def test_data_info_facts_reach_the_spec():
    info = {"input_size": 1, "n_outputs": 1, "input_range": [-2, 5], "normalization": {"mean": [3.0], "std": [2.0]}}
    m = build_model({"family": "regressor"}, info, seed=0)
    spec = m.spec()
    assert spec.attrs["normalization"] == {"mean": [3.0], "std": [2.0]}
    assert (spec.graph().input("x").low, spec.graph().input("x").high) == (-2.0, 5.0)


@pytest.mark.parametrize(
    "info, needle",
    [
        ({"output_size": 1}, "'input_size'"),
        ({"input_size": 2}, "'output_size'"),
        ({"input_size": 0, "output_size": 1}, ">= 1"),
        ({"input_size": 2, "output_size": 1, "input_range": [1, 1]}, "input_range"),
        ({"input_size": 2, "output_size": 1, "oops": object()}, "JSON"),
    ],
)
def test_bad_data_info(info, needle):
    with pytest.raises(RecipeError, match=needle):
        build_model({"family": "regressor"}, info).spec()
