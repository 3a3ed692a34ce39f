"""Character LM: explicit state, chunked == whole, generation with temperature."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnndeploy.errors import UsageError  # noqa: E402
from rnndeploy.models import build_model  # noqa: E402
from tests.model_checks import check_against_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = list("abcdefgh ,.\n")


def charlm(cell="lstm", seed=0, layers=2):
    return build_model({"family": "charlm", "cell": cell, "hidden_size": 8, "embedding_dim": 5, "num_layers": layers},
                       {"vocab_size": len(VOCAB), "vocab": VOCAB}, seed=seed).eval()


@pytest.mark.parametrize("cell", ("lstm", "gru", "rnn_tanh", "rnn_relu"))
def test_shapes_and_state_names(cell):
    m = charlm(cell)
    check_against_spec(m)
    ex, outs = check_against_spec(m, with_state=True)
    g = m.spec().graph()
    want_in = ["tokens", "h0"] + (["c0"] if cell == "lstm" else [])
    want_out = ["logits", "hn"] + (["cn"] if cell == "lstm" else [])
    assert [t.name for t in g.inputs] == want_in and [t.name for t in g.outputs] == want_out
    assert all(t.optional for t in g.inputs[1:] + g.outputs[1:])
    assert g.input("h0").dims == (2, "batch", 8)


@pytest.mark.parametrize("cell", ("lstm", "gru", "rnn_tanh"))
def test_chunks_with_state_equal_whole_sequence(cell):
    m = charlm(cell, seed=1)
    gm = m.graph_module(with_state=True)
    tokens = torch.randint(0, len(VOCAB), (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = m.graph_module()(tokens)[0]
        state = m.zero_state(3)
        pieces = []
        for a, b in ((0, 1), (1, 6), (6, 7), (7, 17)):
            logits, *state = gm(tokens[:, a:b], *state)
            pieces.append(logits)
        again = gm(tokens, *m.zero_state(3))
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-5, atol=1e-5)
    for s_chunked, s_whole in zip(state, again[1:]):
        torch.testing.assert_close(s_chunked, s_whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again[0], whole, rtol=0, atol=0)  # zero state == no state


def test_state_carries_information():
    m = charlm("gru")
    gm = m.graph_module(with_state=True)
    tok = torch.tensor([[3]])
    with torch.no_grad():
        a = gm(tok, *m.zero_state(1))[0]
        b = gm(tok, torch.full((2, 1, 8), 0.5))[0]
    assert not torch.allclose(a, b)


def test_generate_is_seeded_text_and_temperature_zero_is_argmax_chain():
    m = charlm("lstm", seed=2)
    with torch.no_grad():  # a freshly initialised LM is nearly uniform; make its choices clear-cut
        m.head.weight.mul_(50.0)
    a = m.generate("abc", 30, temperature=1.0, seed=5)
    assert isinstance(a, str) and len(a) == 30 and set(a) <= set(VOCAB)
    assert a == m.generate("abc", 30, temperature=1.0, seed=5)
    assert a != m.generate("abc", 30, temperature=1.0, seed=6)
    greedy = m.generate([0, 1, 2], 12, temperature=0.0)
    assert isinstance(greedy, np.ndarray) and greedy.dtype == np.int64
    seq = [0, 1, 2]
    with torch.no_grad():
        for _ in range(12):
            seq.append(int(m(torch.tensor([seq]))[0, -1].argmax()))
    assert greedy.tolist() == seq[3:]
    cold = m.generate([0, 1, 2], 12, temperature=1e-4, seed=9)
    assert cold.tolist() == greedy.tolist()


def test_generate_errors():
    m = charlm()
    with pytest.raises(UsageError, match="'xz'"):
        m.generate("axz", 3)
    bare = build_model({"family": "charlm", "hidden_size": 4}, {"vocab_size": 5}, seed=0)
    with pytest.raises(UsageError, match="no vocabulary"):
        bare.generate("ab", 3)
    assert bare.generate([1, 2], 4).shape == (4,)
