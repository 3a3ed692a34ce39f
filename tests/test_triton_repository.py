"""`rnndeploy triton`: repositories for every zoo model, parsed with Triton's own schema
(tritonclient's model_config_pb2) and checked against the server's load-time rules; the rules
themselves; the TensorRT variant from an engine's sidecar; the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("tritonclient.grpc")

from click.testing import CliRunner  # noqa: E402

from rnndeploy.cli import cli  # noqa: E402
from rnndeploy.errors import UsageError  # noqa: E402
from rnndeploy.export import ExportOptions, export_zoo_model  # noqa: E402
from rnndeploy.fileio import sha256_file  # noqa: E402
from rnndeploy.triton.config import ConfigOptions, build_config, check_config, parse_pbtxt  # noqa: E402
from rnndeploy.triton.modelio import IoTensor, ModelIO, onnx_io  # noqa: E402
from rnndeploy.triton.repository import check_repository, write_repository  # noqa: E402
from tests.helpers import run_cli  # noqa: E402
from tests.zoo import ZOO, zoo_model  # noqa: E402


@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory):
    """Every zoo model exported once: name -> {graph: path}."""
    out = tmp_path_factory.mktemp("zoo")
    paths = {}
    for name in sorted(ZOO):
        res = export_zoo_model(zoo_model(name), str(out / f"{name}.onnx"), ExportOptions(**ZOO[name][2]))
        paths[name] = res.paths
    return paths


def stateless_files(zoo_onnx):
    return [(f"{name}:{graph}", path) for name, graphs in sorted(zoo_onnx.items()) for graph, path in graphs.items()]


def test_every_zoo_graph_gets_a_repository_that_parses_and_passes_the_load_rules(zoo_onnx, tmp_path):
    repo = tmp_path / "repo"
    written = {}
    for label, path in stateless_files(zoo_onnx):
        written[label] = write_repository(path, str(repo))
    checks = {c.name: c for c in check_repository(str(repo))}
    assert len(checks) == len(written) == 14
    for label, w in written.items():
        assert checks[w.name].problems == (), (label, checks[w.name].problems)
        cfg = parse_pbtxt((w.directory / "config.pbtxt").read_text())
        assert cfg.platform == "onnxruntime_onnx" and cfg.name == w.name
        io = onnx_io(str(w.model_file))
        if w.streaming:  # the streaming form: see the tests below
            assert label.split(":")[0] in STREAMING and cfg.HasField("sequence_batching")
            continue
        if not any("made batch-first" in n for n in w.notes):  # else a Transpose went in (see below)
            assert w.model_file.read_bytes() == Path(dict(stateless_files(zoo_onnx))[label]).read_bytes()
        assert {i.name for i in cfg.input} == {t.name for t in io.inputs}
        assert {o.name for o in cfg.output} == {t.name for t in io.outputs}
    # batch-first models batch dynamically; models with [layers, batch, hidden] state tensors cannot
    lstm = parse_pbtxt((written["reg-lstm-2l:model"].directory / "config.pbtxt").read_text())
    assert lstm.max_batch_size == 32 and lstm.HasField("dynamic_batching")
    assert [list(i.dims) for i in lstm.input] == [[-1, 3]]
    # explicit [layers, batch, hidden] state (a seq2seq decoder step) is made batch-first so Triton batches it
    dec = written["s2s-lstm-2l:decoder_step"]
    assert dec.max_batch_size == 32 and any("state tensors h, c, h_next, c_next made batch-first" in n for n in dec.notes)
    assert [t.shape for t in onnx_io(str(dec.model_file)).inputs if t.name == "h"] == [(-1, 2, 8)]


def test_explicit_state_kept_in_its_layout_means_no_batching(zoo_onnx, tmp_path):
    w = write_repository(zoo_onnx["s2s-lstm-2l"]["decoder_step"], str(tmp_path / "r"), keep_state_layout=True)
    assert w.max_batch_size == 0 and any("batch axis is not the first axis of h, c" in n for n in w.notes)
    assert "max_batch_size 0" in w.config_text.splitlines()[1]
    assert (w.model_file).read_bytes() == Path(zoo_onnx["s2s-lstm-2l"]["decoder_step"]).read_bytes()


STREAMING = ("charlm-lstm-state", "reg-gru-seq-state")


@pytest.mark.parametrize("name", STREAMING)
def test_streaming_zoo_model_gets_implicit_state_with_controls_and_zero_initial_state(zoo_onnx, tmp_path, name):
    w = write_repository(zoo_onnx[name]["model"], str(tmp_path / "repo"))
    assert w.streaming and w.max_batch_size == 32
    cfg = parse_pbtxt(w.config_text)
    seq = cfg.sequence_batching
    assert not cfg.HasField("dynamic_batching") and seq.HasField("oldest")
    pairs = [(s.input_name, s.output_name) for s in seq.state]
    assert pairs == ([("h0", "hn"), ("c0", "cn")] if "lstm" in name else [("h0", "hn")])  # an LSTM keeps two states
    for s in seq.state:
        assert list(s.dims) == [1 if "reg" in name else 2, 8]  # [layers, hidden]: the batch axis is Triton's
        assert len(s.initial_state) == 1 and s.initial_state[0].zero_data and list(s.initial_state[0].dims) == list(s.dims)
    kinds = {c.name: type(c.control[0]).Kind.Name(c.control[0].kind) for c in seq.control_input}
    assert kinds == {"START": "CONTROL_SEQUENCE_START", "END": "CONTROL_SEQUENCE_END",
                     "READY": "CONTROL_SEQUENCE_READY", "CORRID": "CONTROL_SEQUENCE_CORRID"}
    assert [i.name for i in cfg.input] == ["tokens" if "charlm" in name else "x"]  # clients send only new inputs
    io = onnx_io(str(w.model_file))
    assert io.input("h0").shape[0] == -1 and io.input("h0").batch_axis == 0 and io.input("START").shape == (-1, 1)
    assert check_repository(str(tmp_path / "repo"))[0].problems == ()
    assert "checked against the original in ONNX Runtime" in w.config_text


def test_streaming_repository_model_driven_like_the_sequence_batcher_equals_each_sequence_alone(zoo_onnx, tmp_path):
    """Interleave three sequences the way Triton's sequence batcher does with implicit state: each
    execution stacks the rows of the sequences that have a request, states batch-first, zero initial
    state (and START=1) on a sequence's first request, an empty slot with READY=0."""
    import onnxruntime as ort

    w = write_repository(zoo_onnx["charlm-lstm-state"]["model"], str(tmp_path / "repo"))
    sess = ort.InferenceSession(str(w.model_file), providers=["CPUExecutionProvider"])
    orig = ort.InferenceSession(zoo_onnx["charlm-lstm-state"]["model"], providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    seqs = [rng.integers(0, 12, (1, 9)).astype(np.int64) for _ in range(3)]
    cuts = [(0, 3), (3, 7), (7, 9)]
    state = {k: (np.zeros((1, 2, 8), np.float32), np.zeros((1, 2, 8), np.float32)) for k in range(3)}
    got = {k: [] for k in range(3)}
    # executions: (sequence, chunk) per row; sequence 2 starts late; a row of -1 is an empty slot
    schedule = [[(0, 0), (1, 0), (-1, None)], [(1, 1), (0, 1), (2, 0)], [(2, 1), (-1, None), (0, 2)],
                [(1, 2), (2, 2), (-1, None)]]
    for rows in schedule:
        width = max(b - a for k, c in rows if k >= 0 for a, b in [cuts[c]])
        if len({cuts[c][1] - cuts[c][0] for k, c in rows if k >= 0}) > 1:  # Triton batches equal shapes only
            groups = [[r] for r in rows if r[0] >= 0]
        else:
            groups = [rows]
        for group in groups:
            toks, h, c, start, ready = [], [], [], [], []
            for k, ci in group:
                if k < 0:
                    toks.append(np.zeros((1, width), np.int64))
                    h.append(rng.uniform(-1, 1, (1, 2, 8)).astype(np.float32))  # garbage in an empty slot
                    c.append(rng.uniform(-1, 1, (1, 2, 8)).astype(np.float32))
                    start.append(0.0)
                    ready.append(0.0)
                    continue
                a, b = cuts[ci]
                toks.append(seqs[k][:, a:b])
                h.append(state[k][0])
                c.append(state[k][1])
                start.append(1.0 if ci == 0 else 0.0)
                ready.append(1.0)
            n = len(group)
            logits, hn, cn = sess.run(["logits", "hn", "cn"], {
                "tokens": np.concatenate(toks), "h0": np.concatenate(h), "c0": np.concatenate(c),
                "START": np.reshape(np.float32(start), (n, 1)), "READY": np.reshape(np.float32(ready), (n, 1)),
                "END": np.zeros((n, 1), np.float32), "CORRID": np.arange(n, dtype=np.int64).reshape(n, 1)})
            for row, (k, _) in enumerate(group):
                if k < 0:
                    np.testing.assert_array_equal(hn[row], h[row][0])  # READY=0: the slot's state is held
                    continue
                got[k].append(logits[row:row + 1])
                state[k] = (hn[row:row + 1], cn[row:row + 1])
    z = np.zeros((2, 1, 8), np.float32)
    for k in range(3):
        alone = orig.run(["logits"], {"tokens": seqs[k], "h0": z, "c0": z})[0]
        np.testing.assert_allclose(np.concatenate(got[k], axis=1), alone, rtol=1e-5, atol=1e-6)


def test_streaming_tensorrt_repository_from_an_engine_of_the_streaming_form(zoo_onnx, tmp_path):
    onnx_repo = write_repository(zoo_onnx["charlm-lstm-state"]["model"], str(tmp_path / "onnx-repo"))
    engine = fake_engine(tmp_path, str(onnx_repo.model_file), batch=(1, 4, 16))
    w = write_repository(str(engine), str(tmp_path / "trt-repo"))
    cfg = parse_pbtxt(w.config_text)
    assert w.streaming and cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 16
    corrid = next(c for c in cfg.sequence_batching.control_input if c.name == "CORRID").control[0]
    assert cfg.DESCRIPTOR.file.pool.FindEnumTypeByName("inference.DataType").values_by_number[corrid.data_type].name \
        == "TYPE_INT32"  # TensorRT 8.6 narrowed the int64 CORRID input: the config follows the engine
    assert list(cfg.sequence_batching.oldest.preferred_batch_size) == [4]
    assert check_repository(str(tmp_path / "trt-repo"))[0].problems == ()


def test_streaming_engine_without_the_unread_controls_gets_a_config_with_the_controls_it_has(zoo_onnx, tmp_path):
    import json as _json

    onnx_repo = write_repository(zoo_onnx["charlm-lstm-state"]["model"], str(tmp_path / "onnx-repo"))
    engine = fake_engine(tmp_path, str(onnx_repo.model_file))
    side = Path(str(engine) + ".json")
    data = _json.loads(side.read_text())
    data["io"] = [t for t in data["io"] if t["name"] not in ("END", "CORRID")]  # TensorRT dropped unread inputs
    side.write_text(_json.dumps(data))
    w = write_repository(str(engine), str(tmp_path / "trt-repo"))
    cfg = parse_pbtxt(w.config_text)
    assert [c.name for c in cfg.sequence_batching.control_input] == ["START", "READY"]
    assert "the engine has no END, CORRID input" in w.config_text
    assert check_repository(str(tmp_path / "trt-repo"))[0].problems == ()


def test_engine_of_a_streaming_model_without_controls_is_refused_with_the_way_forward(zoo_onnx, tmp_path):
    engine = fake_engine(tmp_path, zoo_onnx["charlm-lstm-state"]["model"])
    with pytest.raises(UsageError, match="built from an ONNX file without Triton's sequence controls"):
        write_repository(str(engine), str(tmp_path / "repo"))
    w = write_repository(str(engine), str(tmp_path / "repo"), streaming=False)
    assert w.max_batch_size == 0  # explicit [layers, batch, hidden] state: no batching


def test_batch_only_tensor_is_written_dims_1_with_empty_reshape(zoo_onnx, tmp_path):
    w = write_repository(zoo_onnx["reg-lstm-bi-mul-var"]["model"], str(tmp_path / "r"))
    cfg = parse_pbtxt(w.config_text)
    lengths = next(i for i in cfg.input if i.name == "lengths")
    assert list(lengths.dims) == [1] and lengths.HasField("reshape") and list(lengths.reshape.shape) == []


def test_options_reach_the_config(zoo_onnx, tmp_path):
    opts = ConfigOptions(max_batch_size=16, preferred_batch_sizes=(4, 8), max_queue_delay_us=500, instances=3,
                         kind="gpu", accelerator="tensorrt", fp16=True)
    w = write_repository(zoo_onnx["cls-gru-dense"]["model"], str(tmp_path / "r"), name="cls", options=opts)
    cfg = parse_pbtxt(w.config_text)
    assert cfg.name == "cls" and cfg.max_batch_size == 16
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert cfg.instance_group[0].count == 3 and cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    trt = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    off = write_repository(zoo_onnx["cls-gru-dense"]["model"], str(tmp_path / "r"), name="cls-nobatch",
                           options=ConfigOptions(dynamic_batching=False))
    assert not parse_pbtxt(off.config_text).HasField("dynamic_batching")


@pytest.mark.parametrize("options, match", [
    (dict(max_batch_size=8), "batch axis is not the first axis"),
    (dict(accelerator="tensorrt", fp16=False, kind="cpu", instances=0), "instances must be at least 1"),
])
def test_options_the_model_cannot_honour_are_one_usage_error(zoo_onnx, tmp_path, options, match):
    with pytest.raises(UsageError, match=match):
        write_repository(zoo_onnx["s2s-gru"]["decoder_step"], str(tmp_path / "r"), options=ConfigOptions(**options),
                         keep_state_layout=True)
    assert not (tmp_path / "r" / "s2s-gru-decoder_step").exists()


def test_fp16_without_the_tensorrt_accelerator_is_refused():
    with pytest.raises(UsageError, match="--fp16 needs --accelerator tensorrt"):
        ConfigOptions(fp16=True)


def test_existing_model_directory_needs_overwrite(zoo_onnx, tmp_path):
    path = zoo_onnx["reg-rnn-tanh"]["model"]
    first = write_repository(path, str(tmp_path / "r"))
    (first.directory / "marker").write_text("x")
    with pytest.raises(UsageError, match="already exists"):
        write_repository(path, str(tmp_path / "r"))
    assert (first.directory / "marker").exists()
    again = write_repository(path, str(tmp_path / "r"), overwrite=True)
    assert not (again.directory / "marker").exists() and (again.directory / "config.pbtxt").is_file()


# -- the load rules, one violation each ---------------------------------------------------------------------
def _io():
    return ModelIO("onnxruntime_onnx",
                   (IoTensor("tokens", "int64", (-1, -1), 0), IoTensor("h0", "float32", (-1, 2, 8), 0),
                    IoTensor("START", "float32", (-1, 1), 0)),
                   (IoTensor("logits", "float32", (-1, -1, 12), 0), IoTensor("hn", "float32", (-1, 2, 8), 0)))


GOOD = """
name: "m" platform: "onnxruntime_onnx" max_batch_size: 8
input { name: "tokens" data_type: TYPE_INT64 dims: [ -1 ] }
output { name: "logits" data_type: TYPE_FP32 dims: [ -1, 12 ] }
sequence_batching {
  oldest { max_candidate_sequences: 4 preferred_batch_size: [ 4 ] }
  control_input { name: "START" control { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } }
  state { input_name: "h0" output_name: "hn" data_type: TYPE_FP32 dims: [ 2, 8 ]
          initial_state { data_type: TYPE_FP32 dims: [ 2, 8 ] zero_data: true name: "z" } }
}
"""

VIOLATIONS = [
    ('data_type: TYPE_INT64 dims: [ -1 ] }', 'data_type: TYPE_INT32 dims: [ -1 ] }', "configuration expects datatype TYPE_INT32"),
    ('dims: [ -1, 12 ]', 'dims: [ -1, 13 ]', "output 'logits': the model expects 2 dimensions [-1, 12]"),
    ('name: "tokens"', 'name: "token"', "input 'token' is not an input of the model"),
    ('fp32_false_true: [ 0, 1 ]', 'int32_false_true: [ 0, 1 ]', "the model expects float32, the config gives int32"),
    ('data_type: TYPE_FP32 dims: [ 2, 8 ]\n', 'data_type: TYPE_FP32 dims: [ 3, 8 ]\n', "state input 'h0': the model has dims [2, 8]"),
    ('initial_state { data_type: TYPE_FP32 dims: [ 2, 8 ] zero_data: true name: "z" }', '', "has no initial_state"),
    ('preferred_batch_size: [ 4 ]', 'preferred_batch_size: [ 16 ]', "preferred batch sizes [16] lie outside"),
    ('platform: "onnxruntime_onnx"', 'backend: "python"', "implicit state (sequence_batching.state) is not supported"),
    ('output_name: "hn"', 'output_name: "hx"', "state output 'hx' is not an output of the model"),
]


def test_a_config_that_follows_the_rules_has_no_problems():
    assert check_config(parse_pbtxt(GOOD), _io()) == []


@pytest.mark.parametrize("old, new, problem", VIOLATIONS, ids=[v[2][:40] for v in VIOLATIONS])
def test_each_broken_rule_is_reported(old, new, problem):
    assert old in GOOD
    problems = check_config(parse_pbtxt(GOOD.replace(old, new, 1)), _io())
    assert any(problem in p for p in problems), problems


def test_batch_axis_that_is_not_first_is_reported_even_when_the_first_axis_is_dynamic():
    io = ModelIO("onnxruntime_onnx", (IoTensor("x", "float32", (-1, -1, 3), 1),), (IoTensor("y", "float32", (-1, 2), 0),))
    cfg = parse_pbtxt('name: "m" platform: "onnxruntime_onnx" max_batch_size: 4 '
                      'input { name: "x" data_type: TYPE_FP32 dims: [ -1, 3 ] } '
                      'output { name: "y" data_type: TYPE_FP32 dims: [ 2 ] }')
    assert any("the batch axis is axis 1" in p for p in check_config(cfg, io))


def test_text_outside_the_schema_is_refused_with_the_parser_message():
    with pytest.raises(UsageError, match="max_batch_sise"):
        parse_pbtxt(GOOD.replace("max_batch_size", "max_batch_sise"))
    with pytest.raises(UsageError, match="TYPE_FLOAT"):
        parse_pbtxt(GOOD.replace("TYPE_INT64", "TYPE_FLOAT"))


def test_input_count_rule_names_the_unlisted_model_input():
    cfg = parse_pbtxt(GOOD.replace('  control_input { name: "START" control { kind: CONTROL_SEQUENCE_START '
                                   'fp32_false_true: [ 0, 1 ] } }\n', ""))
    problems = check_config(cfg, _io())
    assert any("configuration expects 2 inputs, model provides 3" in p and "START" in p for p in problems), problems


# -- TensorRT variant, from an engine's sidecar (no TensorRT here: the engine bytes are a stand-in) ----------
def fake_engine(tmp_path, onnx_path, batch=(1, 8, 32), seq=(1, 64, 256), trt_version="8.6.1"):
    """An engine file whose sidecar records what build-engine records: spec, profiles and the engine's I/O
    (int64 tensors as int32, as TensorRT 8.6 builds them)."""
    import onnx

    from rnndeploy.engine.profiles import derive_profiles
    from rnndeploy.engine.sidecar import write_sidecar
    from rnndeploy.spec import read_onnx_metadata

    model = onnx.load(onnx_path)
    spec, graph, _ = read_onnx_metadata(model)
    io = onnx_io(onnx_path)
    gspec = spec.graph(graph)
    file_inputs = {t.name for t in io.inputs}
    inputs = [t for t in gspec.inputs if t.name in file_inputs]
    axes = {d for t in inputs for d in t.dims if isinstance(d, str)}
    profiles, _ = derive_profiles(inputs, batch=":".join(map(str, batch)),
                                  seq=":".join(map(str, seq)) if "seq" in axes else None,
                                  dims=("src_seq=1:32:128",) if "src_seq" in axes else ())
    engine = tmp_path / (Path(onnx_path).stem + ".plan")
    engine.write_bytes(b"stand-in engine bytes " + Path(onnx_path).name.encode())
    narrow = {"int64": "int32"} if trt_version.startswith("8.") else {}
    tensors = [{"name": t.name, "mode": mode, "dtype": narrow.get(t.dtype, t.dtype), "shape": list(t.shape)}
               for mode, ts in (("input", io.inputs), ("output", io.outputs)) for t in ts]
    write_sidecar(engine, {"engine": {"file": engine.name, "bytes": engine.stat().st_size, "sha256": sha256_file(engine)},
                           "tensorrt": {"version": trt_version}, "gpu": {"name": "NVIDIA H200", "compute_capability": "9.0"},
                           "spec": spec.to_dict(), "graph": graph, "with_state": any(t.optional for t in inputs),
                           "profiles": [p.to_dict() for p in profiles], "io": tensors})
    return engine


def test_tensorrt_repository_from_engine_sidecar_uses_the_engine_types_and_profiles(zoo_onnx, tmp_path):
    engine = fake_engine(tmp_path, zoo_onnx["cls-lstm-bi-att"]["model"], batch=(1, 16, 64))
    w = write_repository(str(engine), str(tmp_path / "repo"))
    cfg = parse_pbtxt(w.config_text)
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 64
    assert list(cfg.dynamic_batching.preferred_batch_size) == [16]
    assert {i.name: cfg.DESCRIPTOR.file.pool.FindEnumTypeByName("inference.DataType").values_by_number[i.data_type].name
            for i in cfg.input} == {"tokens": "TYPE_INT32", "lengths": "TYPE_INT32"}
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    assert (w.directory / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert [c.problems for c in check_repository(str(tmp_path / "repo"))] == [()]
    assert "TensorRT 8.6.1 engine for NVIDIA H200" in w.config_text


def test_every_stateless_zoo_graph_gets_a_tensorrt_repository_from_its_sidecar(zoo_onnx, tmp_path):
    for label, path in stateless_files(zoo_onnx):
        if label.split(":")[0] in STREAMING:
            continue
        engine = fake_engine(tmp_path, path, trt_version="10.3.0")
        w = write_repository(str(engine), str(tmp_path / "repo"))
        assert w.platform == "tensorrt_plan", label
    checks = check_repository(str(tmp_path / "repo"))
    assert len(checks) == 12 and all(c.problems == () for c in checks), [(c.name, c.problems) for c in checks]


@pytest.mark.parametrize("batch, options, match", [
    ((2, 8, 32), {}, "needs batch >= 2; Triton sends batches from 1"),
    ((1, 8, 32), {"max_batch_size": 64}, "exceeds optimization profile 0's max batch 32"),
])
def test_engine_profiles_that_triton_cannot_use_are_refused(zoo_onnx, tmp_path, batch, options, match):
    engine = fake_engine(tmp_path, zoo_onnx["reg-lstm-2l"]["model"], batch=batch)
    with pytest.raises(UsageError, match=match):
        write_repository(str(engine), str(tmp_path / "repo"), options=ConfigOptions(**options))


def test_altered_engine_is_refused_before_a_config_is_written(zoo_onnx, tmp_path):
    engine = fake_engine(tmp_path, zoo_onnx["reg-lstm-2l"]["model"])
    engine.write_bytes(engine.read_bytes() + b"!")
    with pytest.raises(UsageError, match="truncated or replaced"):
        write_repository(str(engine), str(tmp_path / "repo"))
    assert not (tmp_path / "repo" / "reg-lstm-2l").exists()


def test_build_config_marks_batch_only_tensors_and_keeps_names():
    io = ModelIO("onnxruntime_onnx", (IoTensor("x", "float32", (-1, -1, 3), 0), IoTensor("n", "int64", (-1,), 0)),
                 (IoTensor("y", "float32", (-1, 1), 0),))
    cfg = build_config("m", io, ConfigOptions(), batch_hint=(1, 8, 16)).config
    assert cfg["max_batch_size"] == 16 and cfg["dynamic_batching"]["preferred_batch_size"] == [8]
    assert cfg["input"][1] == {"name": "n", "data_type": "TYPE_INT64", "dims": [1], "reshape": {"shape": []}}


# -- command line -------------------------------------------------------------------------------------------
def test_cli_writes_and_checks_a_repository(zoo_onnx, tmp_path):
    path = zoo_onnx["charlm-gru"]["model"]
    res = CliRunner().invoke(cli, ["triton", path, "-o", str(tmp_path / "repo"), "--max-batch-size", "8",
                                   "--preferred-batch", "2,4", "--instances", "2"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "max batch 8" in res.output
    cfg = parse_pbtxt((tmp_path / "repo" / "charlm-gru" / "config.pbtxt").read_text())
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4] and cfg.instance_group[0].count == 2
    proc = run_cli("triton", "--check", str(tmp_path / "repo"))
    assert proc.returncode == 0 and "charlm-gru (onnxruntime_onnx): ok" in proc.stdout, proc.stderr


def test_cli_check_fails_a_hand_broken_config(zoo_onnx, tmp_path):
    w = write_repository(zoo_onnx["charlm-gru"]["model"], str(tmp_path / "repo"))
    text = (w.directory / "config.pbtxt").read_text().replace("TYPE_INT64", "TYPE_INT32")
    (w.directory / "config.pbtxt").write_text(text)
    res = CliRunner().invoke(cli, ["triton", "--check", str(tmp_path / "repo")])
    assert res.exit_code == 1
    assert "configuration expects datatype TYPE_INT32 for input 'tokens', model provides TYPE_INT64" in res.output


@pytest.mark.parametrize("args, code, message", [
    (["triton", "missing.onnx", "-o", "repo"], 2, "missing.onnx does not exist"),
    (["triton", "model.onnx"], 2, "give MODEL and -o REPO/"),
    (["triton", "--check", "nowhere"], 2, "is not a directory"),
    (["triton", "x.txt", "-o", "repo"], 2, "neither an ONNX file nor a TensorRT engine"),
])
def test_cli_bad_input_is_one_line(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text("not a model")
    (tmp_path / "model.onnx").write_bytes(b"")
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("blocked, argv, extra", [
    ("tritonclient", ["triton", "{model}", "-o", "{repo}"], "triton"),
    ("pytriton", ["serve", "{model}", "--http-port", "1", "--grpc-port", "2", "--metrics-port", "3"], "serve"),
    ("tritonclient", ["loadtest", "127.0.0.1:9", "--model", "m", "--reference", "{model}"], "triton"),
])
def test_cli_without_its_package_names_the_extra(zoo_onnx, tmp_path, blocked, argv, extra):
    import subprocess
    import sys

    from tests.helpers import block_imports

    argv = [a.format(model=zoo_onnx["reg-rnn-tanh"]["model"], repo=str(tmp_path / "repo")) for a in argv]
    code = block_imports(blocked) + f"""
from rnndeploy.cli import main
import sys
sys.argv = ["rnndeploy"] + {argv!r}
main()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert f"pip install 'rnndeploy[{extra}]'" in proc.stderr and "Traceback" not in proc.stderr
    assert (extra == "serve") == ("make serve-env" in proc.stderr)  # numpy < 2: an environment of its own
    assert not (tmp_path / "repo").exists()


def test_loadtest_result_round_trips_through_the_results_format(tmp_path):
    from rnndeploy.report.schema import load_results, read_document, write_results
    from rnndeploy.triton.results import Level, LoadTestResult

    lv = Level(concurrency=4, latencies=(0.001, 0.002, 0.004), sent=4, verified=3, errors=1, wall_s=0.01,
               steps_per_request=16, failures=({"request": "r1", "kind": "error", "message": "refused"},),
               failure_counts={"error: refused": 1})
    res = LoadTestResult(model={"name": "m", "served_as": "m", "streaming": False}, levels=(lv,),
                         settings={"requests": 4}, command="rnndeploy loadtest", created="now")
    write_results(str(tmp_path / "r.json"), [res])
    back = load_results(read_document(tmp_path / "r.json"))[0]
    assert back.kind == "loadtest" and not back.passed
    assert back.levels[0].latencies == lv.latencies and back.failures() == ["concurrency 4: 1 × error: refused"]
    assert np.isclose(back.levels[0].throughput, 300.0) and np.isclose(back.levels[0].p50, 0.002)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["results"][0]["passed"] is False
    res_html = CliRunner().invoke(cli, ["report", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.html"),
                                        "--markdown", str(tmp_path / "r.md")])
    assert res_html.exit_code == 0, res_html.output
    html = (tmp_path / "r.html").read_text()
    assert "Throughput vs concurrency" in html and "Served on Triton" in html
    assert "| 4 | 4 | 3 | 0 | 1 |" in (tmp_path / "r.md").read_text().replace("  ", " ")
