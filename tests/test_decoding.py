"""rnndeploy.decoding: greedy, beam search, sampling and text generation on numpy step functions.

Torch-free: runs on the deploy side's Python 3.9 + numpy 1.26 as well.
"""

from __future__ import annotations

import numpy as np
import pytest

from rnndeploy.decoding import (
    Hypothesis,
    beam_search,
    generate_text,
    greedy_decode,
    length_normalize,
    log_softmax,
    sample,
)
from rnndeploy.errors import UsageError

PAD, BOS, EOS = 0, 1, 2


class ToySeq2Seq:
    """A tiny numpy attention decoder: the shape of a real decoder_step, random weights."""

    def __init__(self, seed: int, vocab: int = 9, hidden: int = 6, mem: int = 4, sharpness: float = 2.0):
        rng = np.random.default_rng(seed)
        self.emb = rng.normal(size=(vocab, hidden))
        self.w = rng.normal(size=(hidden, hidden)) * 0.5
        self.q = rng.normal(size=(hidden, mem))
        self.u = rng.normal(size=(mem, hidden))
        self.out = rng.normal(size=(hidden, vocab)) * sharpness
        self.calls = []

    def __call__(self, tokens, states, memory, src_lengths):
        self.calls.append(len(tokens))
        h = states[0][0]
        scores = np.einsum("bsm,bm->bs", memory, h @ self.q)
        mask = np.arange(memory.shape[1])[None, :] < src_lengths[:, None]
        scores = np.where(mask, scores, -np.inf)
        att = np.exp(scores - scores.max(axis=1, keepdims=True))
        att /= att.sum(axis=1, keepdims=True)
        ctx = np.einsum("bs,bsm->bm", att, memory)
        h_new = np.tanh(self.emb[tokens] + h @ self.w + ctx @ self.u)
        return (h_new @ self.out).astype(np.float32), (h_new[None],), att.astype(np.float32)


def toy_inputs(seed: int, batch: int = 3, src_seq: int = 5, hidden: int = 6, mem: int = 4):
    rng = np.random.default_rng(seed + 1000)
    states = (rng.normal(size=(1, batch, hidden)) * 0.5,)
    memory = rng.normal(size=(batch, src_seq, mem)).astype(np.float32)
    lengths = rng.integers(1, src_seq + 1, size=batch)
    lengths[0] = src_seq
    return states, memory, lengths.astype(np.int64)


class TableStep:
    """A Markov table: next-token probabilities depend on the previous token only."""

    def __init__(self, table):
        self.table = {k: np.log(np.asarray(v, dtype=np.float64) + 1e-300) for k, v in table.items()}
        self.vocab = len(next(iter(table.values())))

    def __call__(self, tokens, states, memory, src_lengths):
        uniform = np.full(self.vocab, -np.log(self.vocab))  # rows the table leaves out (pad, eos)
        return np.stack([self.table.get(int(t), uniform) for t in tokens]), states, None


def table_inputs(batch=1):
    return (np.zeros((1, batch, 1)),), np.zeros((batch, 2, 1), np.float32), np.full((batch,), 2, np.int64)


# -- numerics --------------------------------------------------------------------------------
def test_log_softmax_normalises_and_is_idempotent():
    x = np.random.default_rng(0).normal(size=(4, 11)).astype(np.float32) * 10
    lp = log_softmax(x)
    assert lp.dtype == np.float64
    np.testing.assert_allclose(np.exp(lp).sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(log_softmax(lp), lp, atol=1e-12)
    np.testing.assert_allclose(lp - lp[:, :1], x - x[:, :1], rtol=1e-5, atol=1e-5)


def test_length_normalize():
    assert length_normalize(-6.0, 3, 0.0) == -6.0
    assert length_normalize(-6.0, 3, 1.0) == -2.0
    assert length_normalize(-8.0, 4, 0.5) == -4.0


# -- sampling --------------------------------------------------------------------------------
def test_temperature_zero_is_argmax_and_small_temperature_converges_to_it():
    logits = np.random.default_rng(1).normal(size=(50, 30))
    want = logits.argmax(axis=-1)
    np.testing.assert_array_equal(sample(logits, 0.0, np.random.default_rng(0)), want)
    rng = np.random.default_rng(5)
    for _ in range(20):
        np.testing.assert_array_equal(sample(logits, 1e-4, rng), want)


def test_temperature_one_matches_softmax_frequencies():
    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5])
    n = 40000
    draws = sample(np.tile(logits, (n, 1)), 1.0, np.random.default_rng(3))
    freq = np.bincount(draws, minlength=5) / n
    probs = np.exp(log_softmax(logits))
    np.testing.assert_allclose(freq, probs, atol=0.01)


def test_high_temperature_flattens_and_low_sharpens():
    logits = np.array([3.0, 0.0, -3.0])
    n = 20000
    hot = np.bincount(sample(np.tile(logits, (n, 1)), 100.0, np.random.default_rng(4)), minlength=3) / n
    cold = np.bincount(sample(np.tile(logits, (n, 1)), 0.5, np.random.default_rng(4)), minlength=3) / n
    assert np.abs(hot - 1 / 3).max() < 0.02
    assert cold[0] > np.exp(log_softmax(logits))[0] > hot[0]


def test_sample_is_seeded_and_never_draws_impossible_ids():
    logits = np.array([[0.0, -np.inf, 1.0, -np.inf]] * 500)
    a = sample(logits, 1.0, np.random.default_rng(7))
    b = sample(logits, 1.0, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert set(a.tolist()) == {0, 2}
    assert not np.array_equal(a, sample(logits, 1.0, np.random.default_rng(8)))
    assert sample(np.zeros((2, 3, 4)), 1.0, np.random.default_rng(0)).shape == (2, 3)


def test_sample_consumes_one_draw_per_row_at_any_temperature():
    # So two backends given one seed stay in lockstep even when one call is greedy.
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    sample(np.zeros((3, 5)), 0.0, r1)
    sample(np.zeros((3, 5)), 2.0, r2)
    assert r1.random() == r2.random()


@pytest.mark.parametrize("t", (-1.0, float("nan"), float("inf")))
def test_bad_temperature(t):
    with pytest.raises(UsageError, match="temperature"):
        sample(np.zeros((1, 3)), t, np.random.default_rng(0))


# -- greedy and beam -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_beam_of_one_equals_greedy(seed):
    step = ToySeq2Seq(seed)
    states, memory, lengths = toy_inputs(seed, batch=4)
    greedy = greedy_decode(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=12)
    beam = beam_search(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=12, beam_size=1)
    assert [b[0] for b in beam] == greedy  # tokens, score, finished, normalized score


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", (2, 4))
def test_beam_score_at_least_greedy_score(seed, k):
    step = ToySeq2Seq(seed, sharpness=1.0)
    states, memory, lengths = toy_inputs(seed, batch=3)
    greedy = greedy_decode(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=10)
    beam = beam_search(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=10, beam_size=k)
    for g, b in zip(greedy, beam):
        assert b[0].score >= g.score - 1e-12
        # The reported score is the sum of the step log-probabilities of the reported tokens.
        assert b[0].score == pytest.approx(rescore(step, states, memory, lengths, beam.index(b), b[0]), abs=1e-9)


def rescore(step, states, memory, lengths, row, hyp):
    st = tuple(s[:, row : row + 1] for s in states)
    tokens = [BOS] + list(hyp.tokens)
    targets = list(hyp.tokens) + ([EOS] if hyp.finished else [])
    total = 0.0
    for prev, nxt in zip(tokens, targets):
        logits, st, _ = step(np.array([prev]), st, memory[row : row + 1], lengths[row : row + 1])
        total += log_softmax(logits)[0, nxt]
    return total


def test_beam_finds_what_greedy_misses():
    # bos → A (0.55) | B (0.45); A → eos 0.35 / A / B ~0.33; B → eos 0.95.
    A, B = 3, 4
    step = TableStep({BOS: [0, 0, 0, 0.55, 0.45], A: [0, 0, 0.35, 0.33, 0.32], B: [0, 0, 0.95, 0.03, 0.02]})
    g = greedy_decode(step, *table_inputs(), bos_id=BOS, eos_id=EOS, max_len=5)[0]
    b = beam_search(step, *table_inputs(), bos_id=BOS, eos_id=EOS, max_len=5, beam_size=2, n_best=2)[0]
    assert g.tokens == (A,) and g.finished
    assert b[0].tokens == (B,) and b[0].finished
    assert b[0].score == pytest.approx(np.log(0.45) + np.log(0.95))
    assert b[0].score > g.score
    assert b[1].score <= b[0].score and b[1].tokens != b[0].tokens


def test_length_penalty_prefers_longer_outputs():
    A, B = 3, 4
    # Short: bos → eos (0.5). Long: bos → A (0.5) → B (1) → eos (1 - tiny) ... sums a bit lower.
    step = TableStep({BOS: [0, 0, 0.5, 0.5, 0.0], A: [0, 0, 0.0, 0.0, 1.0], B: [0, 0, 0.9, 0.05, 0.05]})
    args = dict(bos_id=BOS, eos_id=EOS, max_len=6, beam_size=3)
    raw = beam_search(step, *table_inputs(), length_penalty=0.0, **args)[0][0]
    norm = beam_search(step, *table_inputs(), length_penalty=1.0, **args)[0][0]
    assert raw.tokens == () and raw.finished
    assert norm.tokens == (A, B) and norm.finished
    assert norm.normalized_score == pytest.approx(norm.score / 3)


def test_no_eos_stops_at_max_len_and_eos_first_gives_empty():
    never = TableStep({BOS: [0, 0, 0, 1, 0], 3: [0, 0, 0, 1, 0]})
    g = greedy_decode(never, *table_inputs(2), bos_id=BOS, eos_id=EOS, max_len=4)
    assert all(h.tokens == (3, 3, 3, 3) and not h.finished and h.length == 4 for h in g)
    b = beam_search(never, *table_inputs(2), bos_id=BOS, eos_id=EOS, max_len=4, beam_size=2)
    assert all(r[0].tokens == (3, 3, 3, 3) and not r[0].finished for r in b)
    now = TableStep({BOS: [0, 0, 1, 0, 0]})
    g = greedy_decode(now, *table_inputs(), bos_id=BOS, eos_id=EOS, max_len=4)[0]
    assert g.tokens == () and g.finished and g.length == 1 and g.with_eos(EOS) == [EOS]
    assert beam_search(now, *table_inputs(), bos_id=BOS, eos_id=EOS, max_len=4, beam_size=3)[0][0] == g


@pytest.mark.parametrize("k", (1, 3))
def test_batch_equals_each_row_alone(k):
    step = ToySeq2Seq(11)
    states, memory, lengths = toy_inputs(11, batch=4)
    batch = beam_search(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=9, beam_size=k, n_best=k)
    for b in range(4):
        alone = beam_search(step, (states[0][:, b : b + 1],), memory[b : b + 1], lengths[b : b + 1],
                            bos_id=BOS, eos_id=EOS, max_len=9, beam_size=k, n_best=k)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in batch[b]]
        np.testing.assert_allclose([h.score for h in alone], [h.score for h in batch[b]], rtol=1e-9)


def test_greedy_stops_when_all_rows_finished_and_returns_attention():
    step = ToySeq2Seq(2)
    states, memory, lengths = toy_inputs(2, batch=3, src_seq=6)
    hyps = greedy_decode(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=30, return_attention=True)
    assert len(step.calls) == max(h.length for h in hyps) and set(step.calls) == {3}
    for h, n in zip(hyps, lengths):
        assert h.attention.shape == (h.length, 6)
        np.testing.assert_allclose(h.attention.sum(axis=1), 1.0, rtol=1e-5)
        assert (h.attention[:, n:] == 0).all()  # masked source padding gets no weight
    beams = beam_search(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=30, beam_size=2, return_attention=True)
    for r in beams:
        assert r[0].attention.shape == (r[0].length, 6)


def test_bad_decode_arguments():
    step = ToySeq2Seq(0)
    states, memory, lengths = toy_inputs(0)
    with pytest.raises(UsageError, match="max_len"):
        greedy_decode(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=0)
    with pytest.raises(UsageError, match="n_best"):
        beam_search(step, states, memory, lengths, bos_id=BOS, eos_id=EOS, max_len=3, beam_size=2, n_best=3)


def test_hypothesis_to_dict():
    h = Hypothesis((4, 5), -1.5, True, -0.5)
    assert h.to_dict() == {"tokens": [4, 5], "score": -1.5, "finished": True, "normalized_score": -0.5}
    assert h.length == 3 and h.with_eos(2) == [4, 5, 2]


# -- generate_text ---------------------------------------------------------------------------
class ToyLM:
    """A numpy Elman LM; records the chunk lengths it was called with."""

    def __init__(self, seed: int, vocab: int = 12, hidden: int = 8):
        rng = np.random.default_rng(seed)
        self.emb = rng.normal(size=(vocab, hidden))
        self.w = rng.normal(size=(hidden, hidden)) * 0.4
        self.out = rng.normal(size=(hidden, vocab)) * 2
        self.hidden = hidden
        self.chunks = []

    def __call__(self, tokens, states):
        self.chunks.append(tokens.shape[1])
        h = np.zeros((tokens.shape[0], self.hidden)) if states is None else states[0]
        logits = []
        for t in range(tokens.shape[1]):
            h = np.tanh(self.emb[tokens[:, t]] + h @ self.w)
            logits.append(h @ self.out)
        return np.stack(logits, axis=1), (h,)


def test_generate_is_seeded_and_feeds_back_one_step_at_a_time():
    lm = ToyLM(0)
    a = generate_text(lm, [3, 4, 5], 20, temperature=1.0, seed=42)
    assert a.shape == (20,) and a.dtype == np.int64
    assert lm.chunks == [3] + [1] * 19
    np.testing.assert_array_equal(a, generate_text(ToyLM(0), [3, 4, 5], 20, temperature=1.0, seed=42))
    assert not np.array_equal(a, generate_text(ToyLM(0), [3, 4, 5], 20, temperature=1.0, seed=43))


def test_generate_at_temperature_zero_follows_argmax_chain():
    lm = ToyLM(1)
    got = generate_text(lm, [2, 7], 10, temperature=0.0, seed=0)
    # Recompute the argmax chain by re-running the whole growing sequence each time.
    seq = [2, 7]
    for _ in range(10):
        logits, _ = ToyLM(1)(np.array([seq]), None)
        seq.append(int(logits[0, -1].argmax()))
    np.testing.assert_array_equal(got, seq[2:])


def test_generate_batch_rows_and_errors():
    out = generate_text(ToyLM(2), [[1, 2], [3, 4]], 5, temperature=0.7, seed=1)
    assert out.shape == (2, 5)
    assert generate_text(ToyLM(2), [1], 0).shape == (0,)
    with pytest.raises(UsageError, match="empty"):
        generate_text(ToyLM(2), [], 3)
    with pytest.raises(UsageError, match="count"):
        generate_text(ToyLM(2), [1], -1)
