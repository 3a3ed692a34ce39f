"""A real Triton server: `rnndeploy serve` (PyTriton's tritonserver, Python backend) on zoo models,
`rnndeploy loadtest` at concurrency 16 with every answer verified, malformed requests, a client
killed mid-sequence, a port in use, a server restart during a sweep, and a clean shutdown.

The server runs in the serve environment (nvidia-pytriton needs numpy < 2), built by
`make serve-env` (`make test` builds it and sets RNNDEPLOY_SERVE_PYTHON); clients run here.
Everything listens on 127.0.0.1 on free ports; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("tritonclient.http")

from rnndeploy.export import ExportOptions, export_zoo_model  # noqa: E402
from tests.helpers import REPO, run_cli  # noqa: E402
from tests.zoo import ZOO, zoo_model  # noqa: E402

HOST = "127.0.0.1"
START_TIMEOUT = 240.0  # cold start on a loaded 2-core box: PyTriton copies tritonserver, stubs import onnxruntime
IDLE = 2.0  # --sequence-idle of the shared server, seconds


def serve_python() -> str:
    env = os.environ.get("RNNDEPLOY_SERVE_PYTHON")
    if env:
        if not Path(env).exists():
            pytest.fail(f"RNNDEPLOY_SERVE_PYTHON={env} does not exist (make serve-env builds it)")
        # Absolute, not resolved: some tests run the server from a temporary cwd, and resolving
        # the venv's symlinked python would leave the venv.
        return os.path.abspath(env)
    default = REPO / ".venv-serve" / "bin" / "python"
    if not default.exists():
        pytest.skip("no serve environment (make serve-env, or set RNNDEPLOY_SERVE_PYTHON)")
    return str(default)


def free_ports(n: int):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def default_sigint() -> None:
    """In the server's child process before exec: SIGINT back to its default. A test run started
    in the background (``pytest ... &`` from a script) inherits SIGINT ignored, and so would the
    server, which then never sees the Ctrl-C that stop() sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Server:
    """`rnndeploy serve` in a subprocess, its output in a file."""

    def __init__(self, models, ports, log: Path, *extra: str):
        self.ports, self.log = ports, log
        self.cmd = [serve_python(), "-m", "rnndeploy", "serve", *models, "--host", HOST, "--http-port", str(ports[0]),
                    "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), "--quiet", "--timeout", "900", *extra]
        self.proc = None

    def start(self) -> Server:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.out = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                                     preexec_fn=default_sigint)
        deadline = time.monotonic() + START_TIMEOUT
        while b"rnndeploy: ready" not in self.log.read_bytes().split(b"stopping the server")[-1]:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"serve not ready after {START_TIMEOUT} s:\n{self.text()[-3000:]}")
            time.sleep(0.5)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig=signal.SIGINT, timeout: float = 90.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(f"serve did not stop within {timeout} s after {sig!r}") from None
        finally:
            self.out.close()

    @property
    def url(self) -> str:
        return f"{HOST}:{self.ports[0]}"

    def stub_pids(self):
        """Python-backend stubs of this server's tritonserver (children of its children)."""
        def children(pid):
            out = []
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry.name))
                except (OSError, ValueError, IndexError):
                    continue
            return out
        return [s for t in children(self.proc.pid) for s in children(t)]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve")
    paths = {}
    for name in ("reg-lstm-bi-mul-var", "charlm-lstm-state"):
        paths[name] = export_zoo_model(zoo_model(name), str(out / f"{name}.onnx"), ExportOptions(**ZOO[name][2])).paths["model"]
    return paths


@pytest.fixture(scope="module")
def server(zoo, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "serve.log"
    srv = Server([zoo["reg-lstm-bi-mul-var"], zoo["charlm-lstm-state"]], free_ports(3), log,
                 "--sequence-idle", str(IDLE)).start()
    yield srv
    code = srv.stop()
    text = srv.text()
    # a clean shutdown: exit 0, the stop announced, every port free again
    assert code == 0, text[-3000:]
    assert "rnndeploy: stopping the server" in text
    for p in srv.ports:
        with socket.socket() as s:
            s.bind((HOST, p))


def test_loadtest_at_concurrency_16_verifies_every_answer(server, zoo, tmp_path):
    proc = run_cli("loadtest", server.url, "--model", "reg-lstm-bi-mul-var", "--reference", zoo["reg-lstm-bi-mul-var"],
                   "--concurrency", "16", "--requests", "160", "--max-seconds", "60", "--json", str(tmp_path / "l.json"),
                   timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    level = json.loads((tmp_path / "l.json").read_text())["results"][0]["levels"][0]
    assert level["concurrency"] == 16 and level["sent"] == level["verified"] == 160
    assert level["errors"] == level["wrong"] == 0 and len(level["latencies"]) == 160 - 16  # 1 warm-up per client
    assert "PASSED" in proc.stdout


def test_streaming_loadtest_interleaves_sequences_over_grpc_and_each_equals_its_sequence_alone(server, zoo, tmp_path):
    proc = run_cli("loadtest", f"grpc://{HOST}:{server.ports[1]}", "--model", "charlm-lstm-state", "--reference",
                   zoo["charlm-lstm-state"], "--concurrency", "16", "--requests", "192", "--chunks", "4", "--seq", "5",
                   "--json", str(tmp_path / "s.json"), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads((tmp_path / "s.json").read_text())["results"][0]
    assert res["model"]["streaming"] is True and res["model"]["protocol"] == "grpc"
    level = res["levels"][0]
    assert level["sent"] == level["verified"] == 192 and level["abandoned"] == 0


def test_serve_runs_the_model_through_another_runner_openvino(zoo, tmp_path):
    probe = subprocess.run([serve_python(), "-c", "import openvino"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("openvino is not installed in the serve environment")
    srv = Server([zoo["charlm-lstm-state"]], free_ports(3), tmp_path / "ov.log", "--backend", "openvino").start()
    try:
        assert "with runner openvino" in srv.text()
        proc = run_cli("loadtest", srv.url, "--model", "charlm-lstm-state", "--reference", zoo["charlm-lstm-state"],
                       "--concurrency", "4", "--requests", "32", "--seq", "4", "--json", str(tmp_path / "ov.json"),
                       timeout=240)
    finally:
        assert srv.stop() == 0
    assert proc.returncode == 0, proc.stdout + proc.stderr  # OpenVINO FP32 answers within the spec's tolerances
    level = json.loads((tmp_path / "ov.json").read_text())["results"][0]["levels"][0]
    assert level["sent"] == level["verified"] == 32


def _client(server):
    import tritonclient.http as http

    return http, http.InferenceServerClient(server.url, network_timeout=30)


def _input(http, name, arr, dtype):
    t = http.InferInput(name, list(arr.shape), dtype)
    t.set_data_from_numpy(arr)
    return t


@pytest.mark.parametrize("case, message", [
    ("wrong name", "unexpected inference input 'tokenz'"),
    ("wrong dtype", "data-type is 'INT32', but model 'charlm-lstm-state' expects 'INT64'"),
    ("wrong rank", "unexpected shape for input 'tokens'"),
    ("outside the vocabulary", "holds id 40 outside the vocabulary [0, 12)"),
    ("sequence without START", "must specify the START flag on the first request of the sequence"),
    ("no sequence id", "must specify a non-zero or non-empty correlation ID"),
])
def test_malformed_request_gets_one_clear_error_and_the_server_keeps_serving(server, case, message):
    from tritonclient.utils import InferenceServerException

    http, client = _client(server)
    tok = np.zeros((1, 4), np.int64)
    kwargs = {"sequence_id": 9000 + abs(hash(case)) % 1000, "sequence_start": True}
    inputs = [_input(http, "tokens", tok, "INT64")]
    if case == "wrong name":
        inputs = [_input(http, "tokenz", tok, "INT64")]
    elif case == "wrong dtype":
        inputs = [_input(http, "tokens", tok.astype(np.int32), "INT32")]
    elif case == "wrong rank":
        inputs = [_input(http, "tokens", tok.reshape(1, 2, 2), "INT64")]
    elif case == "outside the vocabulary":
        inputs = [_input(http, "tokens", tok + 40, "INT64")]
    elif case == "sequence without START":
        kwargs["sequence_start"] = False
    elif case == "no sequence id":
        kwargs = {}
    with pytest.raises(InferenceServerException) as err:
        client.infer("charlm-lstm-state", inputs, **kwargs)
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)
    ok = client.infer("charlm-lstm-state", [_input(http, "tokens", tok, "INT64")], sequence_id=8999,
                      sequence_start=True, sequence_end=True)
    assert ok.as_numpy("logits").shape == (1, 4, 12)
    client.close()


KILLED_CLIENT = """
import sys, time, numpy as np, tritonclient.http as http
c = http.InferenceServerClient(sys.argv[1])
t = http.InferInput("tokens", [1, 3], "INT64"); t.set_data_from_numpy(np.ones((1, 3), np.int64))
c.infer("charlm-lstm-state", [t], sequence_id=int(sys.argv[2]), sequence_start=True)
print("started", flush=True)
time.sleep(120)
"""


def test_client_killed_mid_sequence_is_freed_after_the_idle_timeout_and_others_are_served(server):
    seq_id = 4242
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, server.url, str(seq_id)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    http, client = _client(server)
    tok = np.ones((1, 3), np.int64)
    time.sleep(IDLE + 1.5)
    # another client's sequence is served; running the model also frees the idle sequence's state
    r = client.infer("charlm-lstm-state", [_input(http, "tokens", tok, "INT64")], sequence_id=4343,
                     sequence_start=True, sequence_end=True)
    assert r.as_numpy("logits").shape == (1, 3, 12)
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        client.infer("charlm-lstm-state", [_input(http, "tokens", tok, "INT64")], sequence_id=seq_id)
    client.close()
    deadline = time.monotonic() + 10
    while f"sequence {seq_id} idle for" not in server.text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"rnndeploy: sequence {seq_id} idle for" in server.text()


def test_serve_on_a_port_in_use_is_one_line(server, zoo):
    t0 = time.monotonic()
    proc = subprocess.run([serve_python(), "-m", "rnndeploy", "serve", zoo["reg-lstm-bi-mul-var"], "--host", HOST,
                           "--http-port", str(server.ports[0]), "--grpc-port", str(free_ports(1)[0]),
                           "--metrics-port", str(free_ports(1)[0])], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"http port {server.ports[0]} on {HOST} is in use" in proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - t0 < 120


@pytest.mark.parametrize("args, message", [
    (["--backend", "nosuch"], "backend 'nosuch' is unknown"),
    (["--http-port", "{grpc}"], "are both"),
    (["missing.onnx"], "missing.onnx does not exist"),
    (["--instances", "0"], "Invalid value for '--instances'"),
])
def test_serve_bad_input_is_one_line_before_a_server_starts(zoo, tmp_path, args, message):
    grpc = free_ports(1)[0]
    args = [a.format(grpc=grpc) for a in args]
    model = [] if "missing.onnx" in args else [zoo["reg-lstm-bi-mul-var"]]
    proc = subprocess.run([serve_python(), "-m", "rnndeploy", "serve", *model, "--grpc-port", str(grpc), *args],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "tritonserver" not in proc.stdout  # nothing was started


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuch"], "has no ready model 'nosuch'"),
    (["--reference", "{charlm}"], "served model 'reg-lstm-bi-mul-var' takes inputs"),
    (["--reference", "missing.onnx"], "missing.onnx does not exist"),
    (["--url", "http://a b"], "is not host:port"),
    (["--url", "127.0.0.1:{free}"], "no Triton server is ready at 127.0.0.1:"),
    (["--concurrency", "0"], "--concurrency '0': give positive integers"),
])
def test_loadtest_bad_input_is_one_line(server, zoo, tmp_path, args, message):
    opts = {"--url": server.url, "--model": "reg-lstm-bi-mul-var", "--reference": zoo["reg-lstm-bi-mul-var"],
            "--concurrency": "1"}
    for k, v in zip(args[::2], args[1::2]):
        opts[k] = v.format(charlm=zoo["charlm-lstm-state"], free=free_ports(1)[0])
    url = opts.pop("--url")
    argv = ["loadtest", url, "--requests", "2", "--connect-timeout", "1"] + [x for kv in opts.items() for x in kv]
    proc = run_cli(*argv, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_server_restart_during_a_sweep_is_reported_and_the_sweep_resumes(zoo, tmp_path):
    ports = free_ports(3)
    log = tmp_path / "serve.log"
    # --exit-timeout 1: a server that stops at once, as a crash or a fast restart does (the default
    # drains in-flight work for up to 30 s and keeps answering meanwhile)
    first = Server([zoo["reg-lstm-bi-mul-var"]], ports, log, "--exit-timeout", "1").start()
    out = tmp_path / "load.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    load = subprocess.Popen([sys.executable, "-m", "rnndeploy", "loadtest", first.url, "--model", "reg-lstm-bi-mul-var",
                             "--reference", zoo["reg-lstm-bi-mul-var"], "--concurrency", "2", "--requests", "8000",
                             "--max-seconds", "45", "--timeout", "5", "--json", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(load.stderr.readline, "")), daemon=True)
    reader.start()
    second = None
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("concurrency 2: sending") for line in lines):
            assert load.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.1)
        time.sleep(1.0)
        stubs = first.stub_pids()
        assert stubs, "no Python-backend stub found under the server"
        assert first.stop(signal.SIGTERM) == 0  # the server goes away in the middle of level 1
        # tritonserver exits within its 1 s exit timeout; serve ends the stubs it left behind
        from rnndeploy.triton.serve import _alive

        assert not [p for p in stubs if _alive(p)], "stubs outlived the server"
        second = Server([zoo["reg-lstm-bi-mul-var"]], ports, log).start()  # and comes back on the same ports
        stdout = load.stdout.read()
        load.wait(timeout=240)
        reader.join(timeout=30)
        stderr = "".join(lines)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait(timeout=30)
        if second is not None:
            assert second.stop() == 0
    assert load.returncode == 1, stdout + stderr
    assert "not every answer was verified" in stderr
    level = json.loads(out.read_text())["results"][0]["levels"][0]
    assert level["errors"] > 0 and level["verified"] + level["errors"] == level["sent"], level["failure_counts"]
    assert any("Connection refused" in k for k in level["failure_counts"]), level["failure_counts"]
    # the sweep went on after the failures: many requests after the last recorded failure were verified
    last_failed = max(int(f["request"].split("-r")[1].split("-")[0]) for f in level["failures"])
    assert level["sent"] > last_failed + 100 and level["verified"] > 100
    assert "Connection refused" in stdout and "FAILED" in stdout
