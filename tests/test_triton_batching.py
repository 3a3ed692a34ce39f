"""What `rnndeploy serve`'s Python-backend model does with a batch of requests, driven without a
server: batching across requests, per-request errors, per-sequence state with START/END,
idle sequences freed. The runner is a real ort-cpu runner on exported zoo models."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from rnndeploy.backends import RunnerOptions, create_runner  # noqa: E402
from rnndeploy.backends.source import resolve_source  # noqa: E402
from rnndeploy.export import ExportOptions, export_zoo_model  # noqa: E402
from rnndeploy.triton.batching import FLAG_END, FLAG_START, Executor, Layout, Request, SequenceStore  # noqa: E402
from tests.zoo import ZOO, zoo_model  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("m")
    paths = {}
    for name in ("charlm-lstm-state", "reg-lstm-bi-mul-var"):
        paths[name] = export_zoo_model(zoo_model(name), str(out / f"{name}.onnx"), ExportOptions(**ZOO[name][2])).paths["model"]
    return paths


def executor(path, store=None):
    source = resolve_source(path, auto_checkpoint=False)
    runner = create_runner("ort-cpu", source, RunnerOptions(threads=1)).activate()
    from rnndeploy.triton.streaming import is_streaming, state_pairs

    pairs = state_pairs(source.graph_spec) if is_streaming(source.graph_spec) else ()
    return Executor(runner, source.graph_spec, pairs, store), runner


def test_stateless_batch_equals_each_request_alone_and_a_bad_request_fails_alone(models):
    ex, runner = executor(models["reg-lstm-bi-mul-var"])
    rng = np.random.default_rng(0)
    reqs = []
    for b in (1, 3, 2):
        x = rng.uniform(-1, 1, (b, 6, 3)).astype(np.float32)
        lengths = rng.integers(1, 7, (b,)).astype(np.int64)
        reqs.append(Request({"x": x, "lengths": lengths}))
    bad = Request({"x": np.zeros((2, 6, 4), np.float32), "lengths": np.ones((2,), np.int64)})
    results = ex.execute(reqs[:2] + [bad] + reqs[2:])
    assert isinstance(results[2], str) and "input 'x' axis 2 has size 4, expected 3" in results[2]
    for req, res in zip(reqs, results[:2] + results[3:]):
        alone = runner.infer(req.inputs)
        assert res["y"].shape == alone["y"].shape
        np.testing.assert_allclose(res["y"], alone["y"], rtol=1e-5, atol=1e-6)
    runner.deactivate()


def test_streaming_sequences_interleaved_in_batches_equal_each_sequence_alone(models):
    ex, runner = executor(models["charlm-lstm-state"])
    rng = np.random.default_rng(1)
    seqs = {cid: rng.integers(0, 12, (1, 12)).astype(np.int64) for cid in (11, 12, 13)}
    chunks = [(0, 5), (5, 9), (9, 12)]
    got = {cid: [] for cid in seqs}
    # batch k holds chunk k of every sequence (the "oldest" strategy's batches), in a shuffled order
    for k, (a, b) in enumerate(chunks):
        order = list(seqs)[::-1] if k % 2 else list(seqs)
        flags = FLAG_START if k == 0 else FLAG_END if k == len(chunks) - 1 else 0
        res = ex.execute([Request({"tokens": seqs[c][:, a:b]}, c, flags) for c in order])
        for c, r in zip(order, res):
            assert not isinstance(r, str), r
            assert set(r) == {"logits"}  # the state stays on the server
            got[c].append(r["logits"])
    z = np.zeros((2, 1, 8), np.float32)
    for cid, tokens in seqs.items():
        alone = runner.infer({"tokens": tokens, "h0": z, "c0": z})["logits"]
        np.testing.assert_allclose(np.concatenate(got[cid], axis=1), alone, rtol=1e-5, atol=1e-6)
    assert len(ex.store) == 0  # END freed every sequence
    runner.deactivate()


def test_sequence_without_start_and_ids_outside_the_vocabulary_get_their_own_error(models):
    ex, runner = executor(models["charlm-lstm-state"])
    tok = np.zeros((1, 3), np.int64)
    res = ex.execute([Request({"tokens": tok}, 5, 0), Request({"tokens": tok}, 6, FLAG_START),
                      Request({"tokens": tok + 99}, 7, FLAG_START)])
    assert "sequence 5 has no state here: start it with sequence_start=True" in res[0]
    assert isinstance(res[1], dict)
    assert "holds id 99 outside the vocabulary [0, 12)" in res[2]
    assert ex.store.get(6) is not None and ex.store.get(7) is None
    runner.deactivate()


def test_idle_sequences_are_freed_with_a_log_line(models):
    now = [100.0]
    lines = []
    store = SequenceStore(idle_s=2.0, clock=lambda: now[0], log=lines.append)
    ex, runner = executor(models["charlm-lstm-state"], store)
    tok = np.ones((1, 2), np.int64)
    ex.execute([Request({"tokens": tok}, 1, FLAG_START), Request({"tokens": tok}, 2, FLAG_START)])
    now[0] += 1.5
    ex.execute([Request({"tokens": tok}, 2, 0)])  # sequence 2 stays busy
    now[0] += 1.0  # sequence 1 idle 2.5 s, sequence 2 idle 1.0 s
    res = ex.execute([Request({"tokens": tok}, 1, 0), Request({"tokens": tok}, 2, FLAG_END)])
    assert lines == ["rnndeploy: sequence 1 idle for 2.5 s: its state is freed"]
    assert "sequence 1 has no state here" in res[0] and isinstance(res[1], dict)
    assert len(store) == 0
    runner.deactivate()


def test_layout_moves_the_batch_axis_of_state_tensors(models):
    source = resolve_source(models["charlm-lstm-state"], auto_checkpoint=False)
    lay = Layout.of(source.graph_spec)
    h = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)  # [layers, batch, hidden]
    assert lay.to_triton("h0", h).shape == (3, 2, 8)
    np.testing.assert_array_equal(lay.to_runner("h0", lay.to_triton("h0", h)), h)
    assert lay.to_triton("tokens", np.zeros((3, 5))).shape == (3, 5)


def test_explicit_state_is_batch_first_for_triton_and_batched_requests_equal_each_alone(tmp_path):
    """A seq2seq decoder step takes its state as a plain input ([layers, batch, hidden] in the model):
    Triton sees it batch-first, the executor stacks requests and gives each its own rows back."""
    paths = export_zoo_model(zoo_model("s2s-lstm-2l"), str(tmp_path / "s2s.onnx"), ExportOptions()).paths
    ex, runner = executor(paths["decoder_step"])
    assert ex.layout.batched and not ex.states
    rng = np.random.default_rng(4)
    reqs = []
    for b in (2, 1, 3):
        reqs.append(Request({"token": rng.integers(0, 15, (b,)).astype(np.int64),
                             "h": rng.uniform(-1, 1, (b, 2, 8)).astype(np.float32),  # Triton's layout
                             "c": rng.uniform(-1, 1, (b, 2, 8)).astype(np.float32),
                             "memory": rng.uniform(-1, 1, (b, 6, 8)).astype(np.float32),
                             "src_lengths": rng.integers(1, 7, (b,)).astype(np.int64)}))
    results = ex.execute(reqs)
    for req, res in zip(reqs, results):
        feed = {k: (np.ascontiguousarray(np.moveaxis(v, 0, 1)) if k in ("h", "c") else v) for k, v in req.inputs.items()}
        alone = runner.infer(feed)
        assert res["h_next"].shape == req.inputs["h"].shape  # back in Triton's layout
        np.testing.assert_allclose(res["h_next"], np.moveaxis(alone["h_next"], 1, 0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res["logits"], alone["logits"], rtol=1e-5, atol=1e-6)
    runner.deactivate()
