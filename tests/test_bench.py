"""Latency measurement: statistics from raw samples, deterministic timing with a mock timer,
fixed count vs minimum duration, side-by-side sweeps and the bench CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnndeploy.backends import ModelSource, Runner, Timer
from rnndeploy.bench.measurement import Measurement
from rnndeploy.bench.results import BenchResult
from rnndeploy.bench.sweep import BenchConfig, plan_backends, run_bench
from rnndeploy.bench.timing import measure
from rnndeploy.cli import cli
from rnndeploy.errors import UsageError
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec

FOREIGN = Path(__file__).resolve().parent / "data" / "foreign"


class ScriptedTimer(Timer):
    """Returns the next scripted duration per block (seconds), calling fn ``number`` times."""

    kind = "mock"

    def __init__(self, durations):
        self.durations = list(durations)
        self.blocks = 0

    def measure(self, fn, number=1):
        for _ in range(number):
            fn()
        d = self.durations[self.blocks % len(self.durations)]
        self.blocks += 1
        return d * number


def source() -> ModelSource:
    g = GraphSpec("model", (TensorSpec("x", "float32", ("batch", "seq", 2), "features"),),
                  (TensorSpec("y", "float32", ("batch", 2), "prediction"),))
    return ModelSource(ModelSpec("toy", "regressor", {"model": g}), checkpoint="ckpt")


class CountingRunner(Runner):
    def __init__(self, source, options=None, name="fake"):
        super().__init__(source, options, label=name)
        self.runs = 0
        self.prepared = 0

    def _activate_impl(self):
        pass

    def _infer_impl(self, feed):
        self.runs += 1
        return {"y": feed["x"].sum(axis=1)}

    def _prepare_impl(self, feed):
        self.prepared += 1
        return feed


def feed(b=2, s=5):
    return {"x": np.ones((b, s, 2), np.float32)}


def test_statistics_from_raw_samples():
    times = (0.010, 0.011, 0.012, 0.013, 0.050)
    m = Measurement("ort-cpu", {"batch": 4, "seq": 100}, times)
    assert m.median == pytest.approx(0.012)
    assert m.min == 0.010 and m.max == 0.050
    assert m.q1 == pytest.approx(0.011) and m.q3 == pytest.approx(0.013)
    assert m.iqr == pytest.approx(0.002) and m.iqr_rel == pytest.approx(0.002 / 0.012)
    assert m.p90 == pytest.approx(float(np.percentile(times, 90)))
    assert m.p99 == pytest.approx(float(np.percentile(times, 99)))
    assert m.sequences_per_s == pytest.approx(4 / 0.012)
    assert m.timesteps_per_s == pytest.approx(400 / 0.012)
    assert any("high variance" in w for w in m.warnings)  # 17% > 10%
    quiet = Measurement("x", {"batch": 1, "seq": 1}, (1.0, 1.01, 1.0, 1.01, 1.0, 1.01))
    assert quiet.warnings == []
    assert Measurement("x", {"batch": 1, "seq": 1}, (1.0, 1.0)).warnings == ["only 2 samples"]
    back = Measurement.from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False)))
    assert back == m and back.median == m.median


def test_fixed_iterations_with_mock_timer_are_deterministic():
    r = CountingRunner(source()).activate()
    timer = ScriptedTimer([0.004, 0.002, 0.003])
    m = measure(r, feed(), warmup=3, iters=6, timer=timer)
    assert m.times == (0.004, 0.002, 0.003, 0.004, 0.002, 0.003)
    assert m.median == pytest.approx(0.003) and m.min == 0.002 and m.max == 0.004
    assert r.runs == 3 + 6 and r.prepared == 1  # prepare once, outside the timing
    assert m.sizes == {"batch": 2, "seq": 5} and m.warmup == 3 and m.backend == "fake"
    assert m.description["timer"] == "host"  # what the runner says about itself


def test_min_time_stops_after_enough_time_and_samples():
    r = CountingRunner(source()).activate()
    m = measure(r, feed(), warmup=0, iters=None, min_time=0.05, timer=ScriptedTimer([0.01]), min_samples=3)
    assert len(m.times) == 5  # 5 x 10 ms reaches 50 ms
    m = measure(r, feed(), warmup=0, iters=None, min_time=0.05, timer=ScriptedTimer([0.1]), min_samples=4)
    assert len(m.times) == 4  # time reached at once, but at least min_samples
    m = measure(r, feed(), warmup=0, iters=None, min_time=10.0, timer=ScriptedTimer([1e-6]), max_samples=50)
    assert len(m.times) == 50  # capped


def test_blocks_average_calls():
    r = CountingRunner(source()).activate()
    m = measure(r, feed(), warmup=0, iters=4, number=5, timer=ScriptedTimer([0.002]))
    assert m.number == 5 and m.times == (0.002,) * 4 and r.runs == 20


def test_measure_rejects_bad_settings():
    r = CountingRunner(source()).activate()
    for kwargs in ({"iters": 0}, {"iters": None, "min_time": 0}, {"warmup": -1, "iters": 1}, {"number": 0, "iters": 1}):
        with pytest.raises(UsageError):
            measure(r, feed(), timer=ScriptedTimer([1.0]), **kwargs)


def test_sweep_is_side_by_side_and_ratios_use_torch():
    made = {}

    def factory(name, src, opts):
        made[name] = CountingRunner(src, opts, name)
        return made[name]

    timers = {"torch": ScriptedTimer([0.010]), "ort-cpu": ScriptedTimer([0.004])}
    cfg = BenchConfig(backends=("ort-cpu", "torch"), batches=(1, 4), seqs=(8, 32), warmup=1, iters=3, settle=0.0,
                      show_progress=False)
    res = run_bench(source(), cfg, runner_factory=factory, timer_factory=lambda r: timers[r.label])
    order = [(m.backend, m.batch, m.seq) for m in res.measurements]
    assert order == [("ort-cpu", 1, 8), ("torch", 1, 8), ("ort-cpu", 4, 8), ("torch", 4, 8),
                     ("ort-cpu", 1, 32), ("torch", 1, 32), ("ort-cpu", 4, 32), ("torch", 4, 32)]
    assert res.baseline == "torch"
    assert res.ratio("ort-cpu", 4, 32) == pytest.approx(0.4)
    assert res.ratio("torch", 4, 32) is None
    assert all(not r.is_active for r in made.values())  # deactivated afterwards
    back = BenchResult.from_dict(json.loads(json.dumps(res.to_dict(), allow_nan=False)))
    assert back.ratio("ort-cpu", 1, 8) == pytest.approx(0.4) and back.measurements == res.measurements


def test_torch_row_is_added_when_possible(monkeypatch):
    import rnndeploy.bench.sweep as sweep

    monkeypatch.setattr(sweep, "available", lambda m: True)
    backends, warnings = plan_backends(source(), BenchConfig(backends=("ort-cpu",)))
    assert backends == ["torch", "ort-cpu"] and warnings == []
    no_torch_artifact = ModelSource(source().spec, onnx="m.onnx")
    backends, warnings = plan_backends(no_torch_artifact, BenchConfig(backends=("ort-cpu",)))
    assert backends == ["ort-cpu"] and "no torch row" in warnings[0]
    assert plan_backends(source(), BenchConfig(backends=("ort-cpu",), torch_row=False))[0] == ["ort-cpu"]


def test_bench_cli_on_a_foreign_model(tmp_path):
    pytest.importorskip("onnxruntime")
    res = CliRunner().invoke(cli, ["bench", str(FOREIGN / "gru_seq.onnx"), "--backend", "ort-cpu", "--batch", "1,2",
                                   "--seq", "4", "--iters", "5", "--warmup", "2", "--threads", "1",
                                   "--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md")])
    assert res.exit_code == 0, res.output
    assert "no torch row" in res.output and "1 threads" in res.output
    doc = json.loads((tmp_path / "b.json").read_text())
    r = doc["results"][0]
    assert r["kind"] == "bench" and len(r["measurements"]) == 2
    m = r["measurements"][0]
    assert len(m["times"]) == 5 and m["description"]["threads"] == 1 and m["stats"]["median"] > 0
    assert "| ort-cpu |" in (tmp_path / "b.md").read_text()
    bad = CliRunner().invoke(cli, ["bench", str(FOREIGN / "gru_seq.onnx"), "--backend", "ort-cpu", "--batch", "0"])
    assert bad.exit_code == 2


def test_backend_labels_give_several_configurations_side_by_side(tmp_path):
    pytest.importorskip("onnxruntime")
    from rnndeploy.backends import BackendLabel, create_runner
    from rnndeploy.backends.source import resolve_source

    label = BackendLabel.parse("torch:fp16:half:graph")
    assert (label.name, label.changes) == (
        "torch", {"precision": "fp16", "cuda_graph": True, "extra": {"fp16_mode": "half"}})
    label = BackendLabel.parse("ort-cpu:t1")
    assert (label.name, label.changes) == ("ort-cpu", {"threads": 1})
    for bad in ("tflite", "torch:fast", "ort-cpu:t0"):
        with pytest.raises(UsageError):
            BackendLabel.parse(bad)
    src = resolve_source(str(FOREIGN / "gru_seq.onnx"))
    r = create_runner("ort-cpu:t1", src)
    assert r.label == "ort-cpu:t1" and r.backend == "ort-cpu" and r.options.threads == 1
    res = CliRunner().invoke(cli, ["bench", str(FOREIGN / "gru_seq.onnx"), "--backend", "ort-cpu",
                                   "--backend", "ort-cpu:t1", "--baseline", "ort-cpu", "--seq", "4", "--iters", "3",
                                   "--warmup", "1", "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert [m["backend"] for m in doc["measurements"]] == ["ort-cpu", "ort-cpu:t1"]
    assert doc["measurements"][1]["description"]["threads"] == 1 and doc["baseline"] == "ort-cpu"
    res = CliRunner().invoke(cli, ["bench", str(FOREIGN / "gru_seq.onnx"), "--backend", "ort-cpu", "--baseline", "trt",
                                   "--iters", "1"])
    assert res.exit_code == 2 and "baseline" in res.output
