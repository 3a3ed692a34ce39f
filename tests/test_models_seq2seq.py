"""Seq2seq with Bahdanau attention: encoder/decoder_step graphs, teacher forcing, decoding."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnndeploy.decoding import beam_search, log_softmax  # noqa: E402
from rnndeploy.models import build_model  # noqa: E402
from tests.model_checks import check_against_spec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INFO = {"src_vocab_size": 15, "tgt_vocab_size": 12, "pad_id": 0, "bos_id": 2, "eos_id": 3}


def seq2seq(seed=0, **cfg):
    return build_model({"family": "seq2seq", "hidden_size": 8, "embedding_dim": 6, **cfg}, INFO, seed=seed).eval()


def sources(seed=0, batch=4, src_seq=7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, src_seq + 1, (batch,), generator=g)
    lengths[0] = src_seq
    src = torch.randint(4, 15, (batch, src_seq), generator=g)
    for i, n in enumerate(lengths.tolist()):
        src[i, n:] = 0
    return src, lengths


def sharpen(m, factor=30.0):
    """A fresh model's next-token scores are nearly flat; scale them so decoding has clear choices."""
    with torch.no_grad():
        m.out.weight.mul_(factor)
        m.out.bias.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    return m


VARIANTS = [
    {"cell": "gru"},
    {"cell": "lstm", "num_layers": 2},
    {"cell": "rnn_tanh", "bidirectional": False},
    {"cell": "lstm", "bidirectional": True, "merge_mode": "sum", "num_layers": 2},
]


@pytest.mark.parametrize("cfg", VARIANTS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_graphs_match_spec_and_state_names(cfg):
    m = seq2seq(**cfg)
    spec = m.spec()
    assert tuple(spec.graphs) == ("encoder", "decoder_step")
    check_against_spec(m, "encoder")
    check_against_spec(m, "decoder_step")
    lstm = cfg["cell"] == "lstm"
    enc, dec = spec.graph("encoder"), spec.graph("decoder_step")
    assert [t.name for t in enc.inputs] == ["src_tokens", "src_lengths"]
    assert [t.name for t in enc.outputs] == ["memory", "h0"] + (["c0"] if lstm else [])
    assert [t.name for t in dec.inputs] == ["token", "h"] + (["c"] if lstm else []) + ["memory", "src_lengths"]
    assert [t.name for t in dec.outputs] == ["logits", "h_next"] + (["c_next"] if lstm else []) + ["attention"]
    assert spec.attrs["decoder_state"]["encoder_outputs"] == [t.name for t in enc.outputs[1:]]
    assert dec.input("memory").dims == ("batch", "src_seq", m.memory_size)
    assert enc.output("h0").dims == (cfg.get("num_layers", 1), "batch", 8) and enc.output("h0").role == "state"
    assert spec.attrs["bos_id"] == 2 and spec.attrs["eos_id"] == 3 and spec.attrs["tgt_vocab_size"] == 12


@pytest.mark.parametrize("cfg", VARIANTS[:2], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_teacher_forcing_equals_graphs_step_by_step(cfg):
    m = seq2seq(**cfg)
    src, lengths = sources()
    tgt_in = torch.randint(4, 12, (4, 5), generator=torch.Generator().manual_seed(1))
    tgt_in[:, 0] = 2
    enc, dec = m.graph_module("encoder"), m.graph_module("decoder_step")
    with torch.no_grad():
        logits = m(src, lengths, tgt_in)
        memory, *states = enc(src, lengths)
        for t in range(5):
            step_logits, *rest = dec(tgt_in[:, t], *states, memory, lengths)
            states = rest[:-1]
            torch.testing.assert_close(step_logits, logits[:, t], rtol=0, atol=0)
    assert logits.shape == (4, 5, 12)


def test_source_padding_never_matters():
    m = seq2seq(cell="lstm", num_layers=2, seed=3)
    src, lengths = sources(2)
    noisy = src.clone()
    for i, n in enumerate(lengths.tolist()):
        noisy[i, n:] = 9
    enc, dec = m.graph_module("encoder"), m.graph_module("decoder_step")
    with torch.no_grad():
        memory, h, c = enc(noisy, lengths)
        assert all((memory[i, n:] == 0).all() for i, n in enumerate(lengths.tolist()))
        tok = torch.full((4,), 2)
        logits, _, _, att = dec(tok, h, c, memory + 5.0 * (memory == 0), lengths)  # garbage where padded
        for i, n in enumerate(lengths.tolist()):
            m_i, h_i, c_i = enc(src[i : i + 1, :n], lengths[i : i + 1])
            torch.testing.assert_close(memory[i, :n], m_i[0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(h[:, i], h_i[:, 0], rtol=1e-5, atol=1e-6)
            lg_i, _, _, att_i = dec(tok[:1], h_i, c_i, m_i, lengths[i : i + 1])
            torch.testing.assert_close(logits[i], lg_i[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(att[i, :n], att_i[0], rtol=1e-5, atol=1e-6)
            assert (att[i, n:] == 0).all()


@pytest.mark.parametrize("cell", ("gru", "lstm"))
def test_greedy_equals_beam_of_one_and_beam_scores_higher(cell):
    m = sharpen(seq2seq(cell=cell, seed=5), factor=3.0)
    src, lengths = sources(4, batch=6)
    greedy = m.decode(src, lengths, beam_size=1, max_len=10)
    memory, states = m.numpy_encoder()(src.numpy(), lengths.numpy())
    beam1 = beam_search(m.numpy_step(), states, memory, lengths.numpy(), bos_id=2, eos_id=3, max_len=10, beam_size=1)
    assert [r[0] for r in beam1] == [r[0] for r in greedy]
    beam4 = m.decode(src, lengths, beam_size=4, max_len=10)
    assert all(b[0].score >= g[0].score - 1e-9 for b, g in zip(beam4, greedy))
    assert any(b[0].score > g[0].score + 1e-6 for b, g in zip(beam4, greedy))


def test_greedy_decode_matches_argmax_of_teacher_forcing():
    m = sharpen(seq2seq(cell="gru", seed=6))
    src, lengths = sources(5)
    tokens, scores = m.greedy_decode(src, lengths, max_len=8)
    assert tokens.dtype == torch.int64 and scores.shape == (4,)
    for i in range(4):
        row = tokens[i].tolist()
        hyp = row[: row.index(3) + 1] if 3 in row else row
        assert all(t == 0 for t in row[len(hyp):])  # pad after eos
        # Feeding the decoded tokens back with teacher forcing reproduces each argmax and the score.
        tgt_in = torch.tensor([[2] + hyp[:-1]])
        with torch.no_grad():
            logits = m(src[i : i + 1], lengths[i : i + 1], tgt_in)[0]
        assert logits.argmax(-1).tolist() == hyp
        lp = log_softmax(logits.numpy())
        assert scores[i].item() == pytest.approx(float(sum(lp[t, tok] for t, tok in enumerate(hyp))), abs=1e-6)


def test_decode_options():
    m = sharpen(seq2seq(cell="gru", seed=7), factor=2.0)
    src, lengths = sources(6, batch=2)
    res = m.decode(src, lengths, beam_size=3, n_best=3, max_len=6, length_penalty=0.8, return_attention=True)
    assert [len(r) for r in res] == [3, 3]
    for r, n in zip(res, lengths.tolist()):
        assert [h.normalized_score for h in r] == sorted((h.normalized_score for h in r), reverse=True)
        assert r[0].attention.shape == (r[0].length, 7)
        assert np.all(r[0].attention[:, n:] == 0)
    assert m.beam_search(src, lengths, beam_size=2, max_len=6)[0].shape[0] == 2
    assert max(h.length for r in m.decode(src, lengths, max_len=2) for h in r) <= 2


def test_example_inputs_pad_each_vocabulary_with_its_own_pad_id():
    info = {"src_vocab_size": 6, "tgt_vocab_size": 9, "pad_id": 8, "src_pad_id": 5, "bos_id": 2, "eos_id": 3}
    m = build_model({"family": "seq2seq", "hidden_size": 4}, info, seed=0)
    assert m.src_embedding.padding_idx == 5 and m.tgt_embedding.padding_idx == 8
    ex = m.example_inputs("encoder", batch=6, seq=8, seed=2)
    src, lengths = ex["src_tokens"], ex["src_lengths"]
    assert lengths.min() < 8  # some rows are padded
    for row, n in zip(src, lengths.tolist()):
        assert (row[n:] == 5).all() and int(row.max()) < 6
