"""ONNX Runtime decoding (rnndeploy.onnx_decoding) gives the PyTorch decoder's tokens.

The seq2seq and char-LM cases export zoo models (torch needed); the hand-built char-LM
case at the end is torch-free and also runs under the Python 3.9 deploy kit.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from rnndeploy.errors import SpecError, UsageError  # noqa: E402
from rnndeploy.onnx_decoding import OnnxCharLM, OnnxSeq2Seq, seq2seq_paths  # noqa: E402
from tests.helpers import REPO  # noqa: E402

S2S_INFO = {"src_vocab_size": 20, "tgt_vocab_size": 15, "bos_id": 1, "eos_id": 2}


@pytest.fixture(autouse=True, scope="module")
def _torch_single_thread():
    """Step-by-step decoding runs thousands of tiny torch calls; on a busy 2-core box
    OpenMP's spinning threads make each one slow."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _s2s_model(cell: str, layers: int, seed: int):
    pytest.importorskip("torch")
    from rnndeploy.models import build_model

    cfg = {"family": "seq2seq", "name": f"s2s-{cell}", "cell": cell, "hidden_size": 16, "embedding_dim": 8,
           "num_layers": layers, "max_decode_len": 14}  # fmt: skip
    # Untrained, yet its greedy decodes of _sources() end at eos at different steps and some
    # run to max_decode_len (asserted below), so finishing and cutting are both exercised.
    return build_model(cfg, S2S_INFO, seed=seed).eval()


def _sources(seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = np.array([9, 3, 1, 7, 5, 9, 2], dtype=np.int64)
    src = rng.integers(3, 20, size=(len(lengths), 9)).astype(np.int64)
    src[np.arange(9)[None, :] >= lengths[:, None]] = 0
    return src, lengths


@pytest.fixture(scope="module", params=[("gru", 1), ("lstm", 2)], ids=["gru", "lstm-2l"])
def exported_s2s(request, tmp_path_factory):
    from rnndeploy.export import ExportOptions, export_zoo_model

    cell, layers = request.param
    model = _s2s_model(cell, layers, seed=4)
    out = tmp_path_factory.mktemp(f"s2s-{cell}") / "g2p.onnx"
    export_zoo_model(model, str(out), ExportOptions(exporter="torchscript"))
    return model, out


def test_export_writes_the_pair_documented(exported_s2s):
    _, out = exported_s2s
    enc, dec = seq2seq_paths(out)
    assert enc.name == "g2p.encoder.onnx" and dec.name == "g2p.decoder_step.onnx"
    assert enc.is_file() and dec.is_file()


def test_greedy_tokens_equal_torch(exported_s2s):
    model, out = exported_s2s
    onnx_dec = OnnxSeq2Seq.from_export(out)
    src, lengths = _sources()
    got = onnx_dec.decode(src, lengths, return_attention=True)
    ref = model.decode(src, lengths, return_attention=True)
    assert [h[0].tokens for h in got] == [h[0].tokens for h in ref]
    assert [h[0].finished for h in got] == [h[0].finished for h in ref]
    lens = {len(h[0].tokens) for h in got}
    finished = {h[0].finished for h in got}
    assert len(lens) >= 2 and finished == {True, False}, "the decodes are too uniform to prove much"
    for g, r in zip(got, ref):
        assert abs(g[0].score - r[0].score) < 1e-4
        np.testing.assert_allclose(g[0].attention, r[0].attention, atol=1e-5)
        # attention only on valid source steps
    assert np.all(got[1][0].attention[:, 3:] == 0)


@pytest.mark.parametrize("beam, n_best, penalty", [(3, 1, 0.0), (4, 3, 0.7)])
def test_beam_search_tokens_equal_torch(exported_s2s, beam, n_best, penalty):
    model, out = exported_s2s
    onnx_dec = OnnxSeq2Seq.from_export(out)
    src, lengths = _sources(1)
    got = onnx_dec.decode(src, lengths, beam_size=beam, n_best=n_best, length_penalty=penalty)
    ref = model.decode(src, lengths, beam_size=beam, n_best=n_best, length_penalty=penalty)
    assert [[h.tokens for h in row] for row in got] == [[h.tokens for h in row] for row in ref]
    assert all(len(row) == n_best for row in got)
    for grow, rrow in zip(got, ref):
        for g, r in zip(grow, rrow):
            assert g.finished == r.finished and abs(g.normalized_score - r.normalized_score) < 1e-4


def test_seq2seq_refuses_mismatched_files(exported_s2s):
    _, out = exported_s2s
    enc, dec = seq2seq_paths(out)
    with pytest.raises(SpecError, match="encoder file first"):
        OnnxSeq2Seq(dec, enc)
    with pytest.raises(UsageError, match="does not exist"):
        OnnxSeq2Seq(enc, out.with_name("nope.onnx"))
    with pytest.raises(UsageError, match="do not fit"):
        OnnxSeq2Seq(enc, dec).decode(np.zeros((2, 3), np.int64), np.ones(3, np.int64))


def test_charlm_generation_equals_torch(tmp_path):
    pytest.importorskip("torch")
    from rnndeploy.export import ExportOptions, export_zoo_model
    from rnndeploy.models import build_model

    lm = build_model(
        {"family": "charlm", "name": "lm", "cell": "lstm", "hidden_size": 16, "embedding_dim": 8, "num_layers": 2},
        {"vocab_size": 12, "vocab": list("abcdefghij .")},
        seed=5,
    ).eval()
    out = tmp_path / "lm.onnx"
    export_zoo_model(lm, str(out), ExportOptions(with_state=True))
    gen = OnnxCharLM(out)
    for temperature, seed in ((0.8, 3), (0.0, 0)):
        text = gen.generate("abc def", 40, temperature, seed=seed)
        assert text == lm.generate("abc def", 40, temperature, seed=seed)
        assert len(text) == 40
    ids = gen.generate([1, 2, 3], 20, 1.0, seed=2)
    np.testing.assert_array_equal(ids, lm.generate([1, 2, 3], 20, 1.0, seed=2))
    with pytest.raises(UsageError, match="not in the model's vocabulary"):
        gen.generate("xyz", 5)
    stateless = tmp_path / "lm-nostate.onnx"
    export_zoo_model(lm, str(stateless), ExportOptions(with_state=False))
    with pytest.raises(UsageError, match="--with-state"):
        OnnxCharLM(stateless)


# -- torch-free: a hand-built GRU char-LM with an rnndeploy spec -------------------------------
def _foreign_charlm(tmp_path):
    import onnx

    sys.path.insert(0, str(REPO / "tests" / "data" / "foreign"))
    try:
        from make_foreign import charlm_model
    finally:
        sys.path.pop(0)
    from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec, write_onnx_metadata

    model = charlm_model(vocab=11, hid=12)
    g = GraphSpec(
        "model",
        (
            TensorSpec("tokens", "int64", ("batch", "seq"), "tokens", time_axis=1, low=0, high=11),
            TensorSpec("h0", "float32", (1, "batch", 12), "state", optional=True),
        ),
        (
            TensorSpec("logits", "float32", ("batch", "seq", 11), "logits", time_axis=1),
            TensorSpec("hn", "float32", (1, "batch", 12), "state", optional=True),
        ),
    )
    spec = ModelSpec("hand-lm", "charlm", {"model": g}, attrs={"vocab": list("abcdefghij ")})
    write_onnx_metadata(model, spec, "model", {"with_state": True})
    path = tmp_path / "hand.onnx"
    onnx.save(model, str(path))
    return path


def test_charlm_state_carrying_without_torch(tmp_path):
    gen = OnnxCharLM(_foreign_charlm(tmp_path))
    prime = np.array([[1, 4, 2, 7, 3, 9]], dtype=np.int64)
    whole, hw = gen.step(prime, None)
    a, ha = gen.step(prime[:, :2], None)
    b, hb = gen.step(prime[:, 2:], ha)
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), whole, atol=1e-5)
    np.testing.assert_allclose(hb[0], hw[0], atol=1e-5)
    t1 = gen.generate("abc", 30, 0.9, seed=4)
    assert t1 == gen.generate("abc", 30, 0.9, seed=4) and len(t1) == 30
    assert t1 != gen.generate("abc", 30, 0.9, seed=5)
    # temperature 0 is argmax: the first generated id is the argmax of the prime's last logits
    first = gen.generate([0, 1, 2], 1, 0.0)
    logits, _ = gen.step(np.array([[0, 1, 2]]), None)
    assert int(first[0]) == int(np.argmax(logits[0, -1]))
