"""Task-level agreement on real zoo models (random weights) exported by rnndeploy: torch vs onnxruntime.

char-LM sampling (stateful, through rnndeploy.decoding.generate_text), seq2seq greedy
decoding (encoder + decoder_step runners through rnndeploy.decoding.greedy_decode) and
classifier argmax agreement must all be exact in FP32.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.backends import ModelSource  # noqa: E402
from rnndeploy.backends.source import resolve_source  # noqa: E402
from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.export import ExportOptions, export_zoo_model  # noqa: E402
from rnndeploy.models import build_model  # noqa: E402
from rnndeploy.parity.harness import ParityConfig, run_parity  # noqa: E402
from tests.zoo import torch_factory  # noqa: E402


def export(tmp_path, cfg, info, with_state=False):
    model = build_model(cfg, info, seed=1).eval()
    res = export_zoo_model(model, str(tmp_path / "m.onnx"), ExportOptions(with_state=with_state))
    return model, res.paths


def test_charlm_sampling_and_argmax_agree(tmp_path):
    model, paths = export(tmp_path, {"family": "charlm", "cell": "lstm", "num_layers": 2},
                          {"vocab_size": 12, "vocab": list("abcdefghij .")}, with_state=True)
    src = resolve_source(paths["model"])
    assert src.with_state and src.spec.family == "charlm"
    cfg = ParityConfig(backends=("ort-cpu",), reference="torch", shapes=((2, 9), (1, 40)), sample_steps=30,
                       min_agreement=1.0, show_progress=False)
    res = run_parity(src, cfg, runner_factory=torch_factory(model))
    assert res.passed, res.failures()
    tasks = {t.kind: t for t in res.tasks}
    assert tasks["sampling"].agreement == 1.0 and tasks["sampling"].details["stateful"] and tasks["sampling"].total == 60
    assert tasks["argmax"].agreement == 1.0
    assert res.time_profile("ort-cpu", "logits") is not None


def test_seq2seq_decoding_agrees(tmp_path):
    info = {"src_vocab_size": 20, "tgt_vocab_size": 15, "bos_id": 1, "eos_id": 2}
    model, paths = export(tmp_path, {"family": "seq2seq", "cell": "gru"}, info)
    enc = resolve_source(paths["encoder"])
    dec = resolve_source(paths["decoder_step"])
    assert (enc.graph, dec.graph) == ("encoder", "decoder_step")
    cfg = ParityConfig(backends=("ort-cpu",), reference="torch", shapes=((3, 7), (2, 12)), decoder=dec,
                       decode_max_len=10, min_agreement=1.0, show_progress=False)
    res = run_parity(enc, cfg, runner_factory=torch_factory(model))
    assert res.passed, res.failures()
    d = [t for t in res.tasks if t.kind == "decoding"][0]
    assert d.agreement == 1.0 and d.details["sequences"] == 5 and d.details["exact_sequences"] == 1.0
    assert d.total >= 5


def test_seq2seq_cli_decoder_usage_errors(tmp_path):
    info = {"src_vocab_size": 20, "tgt_vocab_size": 15, "bos_id": 1, "eos_id": 2}
    _, paths = export(tmp_path, {"family": "seq2seq", "cell": "gru"}, info)
    res = CliRunner().invoke(cli, ["parity", paths["decoder_step"], "--decoder", paths["decoder_step"],
                                   "--backend", "ort-cpu"])
    assert res.exit_code == 2 and "encoder" in res.output
    res = CliRunner().invoke(cli, ["parity", paths["encoder"], "--decoder", str(tmp_path), "--backend", "ort-cpu"])
    assert res.exit_code == 2


def test_classifier_argmax_agreement_and_bench_rows(tmp_path):
    model, paths = export(tmp_path, {"family": "classifier", "cell": "lstm", "bidirectional": True},
                          {"vocab_size": 40, "num_classes": 3})
    src = resolve_source(paths["model"])
    res = run_parity(src, ParityConfig(backends=("ort-cpu",), reference="torch", shapes=((16, 20),), show_progress=False),
                     runner_factory=torch_factory(model))
    assert res.passed, res.failures()
    argmax = [t for t in res.tasks if t.kind == "argmax"]
    assert argmax and argmax[0].agreement == 1.0 and argmax[0].total == 16

    from rnndeploy.bench.sweep import BenchConfig, run_bench

    b = run_bench(ModelSource(src.spec, src.graph, False, onnx=src.onnx),
                  BenchConfig(backends=("torch", "ort-cpu"), batches=(1,), seqs=(8,), warmup=1, iters=3, settle=0.0,
                              torch_row=False, show_progress=False),
                  runner_factory=torch_factory(model))
    assert b.ratio("ort-cpu", 1, 8) is not None and b.get("torch", 1, 8).description["details"]["source"] == "in-memory"


def test_cli_finds_the_decoder_and_samples_char_lms_by_default(tmp_path):
    import json

    info = {"src_vocab_size": 20, "tgt_vocab_size": 15, "bos_id": 1, "eos_id": 2}
    (tmp_path / "s2s").mkdir()
    _, paths = export(tmp_path / "s2s", {"family": "seq2seq", "cell": "gru"}, info)
    # labels make two configurations of one backend comparable: ort-cpu (reference) vs ort-cpu:t1
    res = CliRunner().invoke(cli, ["parity", paths["encoder"], "--reference", "ort-cpu", "--backend", "ort-cpu:t1",
                                   "--shapes", "2x6", "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "s.json").read_text())["results"][0]
    d = [t for t in r["tasks"] if t["kind"] == "decoding"]
    assert d and d[0]["agreement"] == 1.0 and d[0]["backend"] == "ort-cpu:t1"

    (tmp_path / "lm").mkdir()
    _, lm = export(tmp_path / "lm", {"family": "charlm", "cell": "gru"}, {"vocab_size": 12, "vocab": list("abcdefghij .")},
                   with_state=True)
    res = CliRunner().invoke(cli, ["parity", lm["model"], "--reference", "ort-cpu", "--backend", "ort-cpu:t1",
                                   "--shapes", "2x5", "--json", str(tmp_path / "l.json")])
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "l.json").read_text())["results"][0]
    s = [t for t in r["tasks"] if t["kind"] == "sampling"]
    assert s and s[0]["details"]["steps"] == 32 and s[0]["agreement"] == 1.0
