"""Text classifier: variants, padding never matters, attention weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rnndeploy.models import build_model  # noqa: E402
from tests.model_checks import check_against_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INFO = {"vocab_size": 23, "num_classes": 4, "pad_id": 0, "class_names": ["a", "b", "c", "d"]}
DIRECTIONS = ((False, "concat"), (True, "concat"), (True, "sum"), (True, "mul"), (True, "ave"))


def classifier(seed=0, **cfg):
    return build_model({"family": "classifier", "hidden_size": 6, "embedding_dim": 5, **cfg}, INFO, seed=seed).eval()


@pytest.mark.parametrize("cell", ("lstm", "gru", "rnn_tanh", "rnn_relu"))
@pytest.mark.parametrize("bidirectional, merge_mode", DIRECTIONS)
def test_shapes_every_variant(cell, bidirectional, merge_mode):
    for attention, dense in ((False, 0), (True, 7)):
        m = classifier(cell=cell, bidirectional=bidirectional, merge_mode=merge_mode, attention=attention,
                       dense_units=dense, num_layers=2, dropout=0.1)
        ex, outs = check_against_spec(m)
        names = [t.name for t in m.spec().graph().outputs]
        assert names == (["logits", "attention"] if attention else ["logits"])
        with torch.no_grad():
            torch.testing.assert_close(m(ex["tokens"], ex["lengths"]), outs[0], rtol=0, atol=0)


def padded_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 3, 1, 5])
    tokens = torch.randint(1, 23, (4, 7), generator=g)
    noisy = tokens.clone()
    clean = tokens.clone()
    for i, n in enumerate(lengths.tolist()):
        clean[i, n:] = 0
        noisy[i, n:] = torch.randint(1, 23, (7 - n,), generator=g)  # real tokens in the padding
    return clean, noisy, lengths


@pytest.mark.parametrize("bidirectional, merge_mode", DIRECTIONS)
@pytest.mark.parametrize("attention", (False, True))
def test_padded_batch_equals_each_sequence_alone(bidirectional, merge_mode, attention):
    m = classifier(cell="gru", bidirectional=bidirectional, merge_mode=merge_mode, attention=attention, num_layers=2, seed=4)
    gm = m.graph_module()
    clean, noisy, lengths = padded_batch()
    with torch.no_grad():
        outs = gm(noisy, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = gm(clean[i : i + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(outs[0][i], alone[0][0], rtol=1e-5, atol=1e-6)
            if attention:
                torch.testing.assert_close(outs[1][i, :n], alone[1][0], rtol=1e-5, atol=1e-6)
                assert (outs[1][i, n:] == 0).all()
        if attention:
            torch.testing.assert_close(outs[1].sum(dim=1), torch.ones(4))
        # The same rows without lengths telling where padding starts give other logits.
        leaked = gm(noisy, torch.full((4,), 7))[0]
    assert not torch.allclose(leaked[1], outs[0][1], rtol=1e-3, atol=0)


def test_attention_pools_and_is_not_uniform():
    m = classifier(attention=True, bidirectional=True, attention_size=9)
    assert m.attention.key_proj.out_features == 9 and m.attention.query_proj is None
    clean, _, lengths = padded_batch(1)
    with torch.no_grad():
        _, weights = m.graph_module()(clean, lengths)
    assert weights[0].std() > 0  # depends on the content, not a fixed mean


def test_pad_embedding_is_zero_and_spec():
    m = classifier(bidirectional=True, attention=True)
    assert (m.embedding.weight[0] == 0).all() and m.embedding.padding_idx == 0
    spec = m.spec()
    g = spec.graph()
    tok = g.input("tokens")
    assert (tok.low, tok.high, tok.time_axis) == (0, 23, 1)
    assert g.input("lengths").role == "lengths" and g.output("logits").role == "logits"
    assert g.output("attention").role == "attention" and g.output("attention").time_axis == 1
    # attention has its own FP16 tolerance; logits use the graph default
    assert g.tolerance("attention", "fp16") != g.tolerance("logits", "fp16")
    assert g.tolerance("attention", "fp32") == g.tolerance("logits", "fp32")
    assert spec.attrs["class_names"] == ["a", "b", "c", "d"] and spec.attrs["num_classes"] == 4
