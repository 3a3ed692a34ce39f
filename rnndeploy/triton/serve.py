"""``rnndeploy serve``: a real Triton server on this machine, through PyTriton.

``nvidia-pytriton`` ships a tritonserver binary (2.51 in 0.7.0) with only the Python backend.
serve writes a temporary model repository of Python-backend models (python_model.py) whose
parameters name the artefacts and the rnndeploy Runner to use, starts tritonserver on it
through PyTriton (which picks the backend stub for this interpreter and points it at this
environment's packages), waits until every model is ready, and serves until Ctrl-C, SIGTERM
or ``--timeout``. Dynamic batching and the sequence batcher are Triton's own; the Python
model batches requests for the Runner and keeps a streaming model's state per sequence id.

The Python-backend stub links the system's ``libpython3.X.so.1.0``. When the interpreter
running serve is another build of the same minor version (pyenv, a venv over it), the stub
would mix that libpython with this interpreter's standard library and fail at import
(``RLock has no attribute _recursion_count``): serve puts this interpreter's own lib
directory first on LD_LIBRARY_PATH for the server (``libpython_dir``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from rnndeploy.errors import MissingDependencyError, RnnDeployError, UsageError
from rnndeploy.triton.config import TRITON_TYPES, ConfigOptions, config_dims, to_message, to_pbtxt
from rnndeploy.triton.modelio import IoTensor

MODEL_PY = "from rnndeploy.triton.python_model import TritonPythonModel  # noqa: F401  (written by rnndeploy serve)\n"
DEFAULT_MAX_BATCH = 32


@dataclass(frozen=True)
class ServeOptions:
    """How to run the server.

    Attributes:
        host: address every endpoint listens on (default loopback).
        http_port / grpc_port / metrics_port: ports (default 8000 / 8001 / 8002).
        backend: rnndeploy backend label the models run on ("ort-cpu", "trt", ...).
        threads / device / precision: RunnerOptions for that backend.
        config: batching, instances and sequence settings (ConfigOptions; kind is always CPU
            for the Python backend: the runner itself picks its device).
        timeout_s: stop after this many seconds (None: until Ctrl-C / SIGTERM).
        startup_timeout_s: give up when the models are not ready after this long.
        exit_timeout_s: on stop, tritonserver finishes in-flight work (and keeps answering while its
            models are busy) for at most this long (Triton's --exit-timeout-secs, default 30).
        server_log: print tritonserver's log (default on; off: it goes to a file whose end is printed if
            the server fails to start; lines the models print still show).
    """

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    backend: str = "ort-cpu"
    threads: Optional[int] = None
    device: Optional[str] = None
    precision: str = "fp32"
    config: ConfigOptions = field(default_factory=ConfigOptions)
    timeout_s: Optional[float] = None
    startup_timeout_s: float = 120.0
    exit_timeout_s: int = 30
    server_log: bool = True


@dataclass(frozen=True)
class ServedModel:
    """One model in the server's repository."""

    name: str
    source: Any  # ModelSource
    streaming: bool
    max_batch_size: int
    config_text: str

    def render(self) -> str:
        kind = "streaming (state per sequence id)" if self.streaming else "stateless"
        batch = f"max batch {self.max_batch_size}" if self.max_batch_size else "no batching"
        return f"{self.name}: {kind}, {batch}"


# -- the repository ----------------------------------------------------------------------------------------
def python_config(name: str, source: Any, options: ServeOptions, streaming: bool) -> Tuple[Dict[str, Any], int]:
    """The Python-backend config of one model; returns (config dict, max_batch_size)."""
    from rnndeploy.triton.batching import Layout, triton_dims
    from rnndeploy.triton.streaming import state_pairs

    graph = source.graph_spec
    pairs = state_pairs(graph) if streaming else ()
    state_in = {i for i, _ in pairs}
    state_out = {o for _, o in pairs}
    layout = Layout.of(graph)
    opts = options.config
    mbs = opts.max_batch_size
    if mbs is None:
        mbs = DEFAULT_MAX_BATCH if layout.batched else 0
    elif mbs > 0 and not layout.batched:
        raise UsageError(f"cannot batch {name}: some tensor has no batch axis", "give --max-batch-size 0")
    if streaming and not opts.dynamic_batching and mbs > 1:
        mbs = 1

    def io(t: Any) -> Dict[str, Any]:
        dims = triton_dims(t) if layout.batched else tuple(t.dims)
        shape = tuple(d if isinstance(d, int) else -1 for d in dims)
        return {"name": t.name, "data_type": TRITON_TYPES[t.dtype], **config_dims(IoTensor(t.name, t.dtype, shape, 0), mbs)}

    params = {"onnx": _abs(source.onnx), "engine": _abs(source.engine), "checkpoint": _abs(source.checkpoint),
              "graph": source.graph, "with_state": source.with_state, "backend": options.backend,
              "threads": options.threads, "device": options.device, "precision": options.precision,
              "states": [list(p) for p in pairs], "sequence_idle_s": opts.sequence_idle_s}
    cfg: Dict[str, Any] = {
        "name": name, "backend": "python", "max_batch_size": mbs,
        "input": [io(t) for t in graph.inputs if t.name not in state_in],
        "output": [io(t) for t in graph.outputs if t.name not in state_out],
        "instance_group": [{"count": opts.instances, "kind": "KIND_CPU"}],
        "parameters": {"rnndeploy": {"string_value": json.dumps(params, sort_keys=True)}},
    }
    preferred = sorted({b for b in (opts.preferred_batch_sizes or ()) if 1 < b <= mbs})
    if streaming:
        oldest: Dict[str, Any] = {"max_candidate_sequences": opts.max_candidate_sequences or max(64, mbs),
                                  "max_queue_delay_microseconds": opts.max_queue_delay_us}
        if preferred:
            oldest["preferred_batch_size"] = preferred
        cfg["sequence_batching"] = {"max_sequence_idle_microseconds": int(round(opts.sequence_idle_s * 1e6)),
                                    "oldest": oldest}
    elif mbs > 0 and opts.dynamic_batching:
        cfg["dynamic_batching"] = {"max_queue_delay_microseconds": opts.max_queue_delay_us,
                                   **({"preferred_batch_size": preferred} if preferred else {})}
    return cfg, mbs


def _abs(path: Optional[str]) -> Optional[str]:
    return None if path is None else os.path.abspath(path)


def write_python_repository(root: Path, models: Sequence[str], options: ServeOptions,
                            names: Sequence[Optional[str]] = ()) -> List[ServedModel]:
    """Write one Python-backend model directory per MODEL under ``root``."""
    from rnndeploy.backends import BackendLabel
    from rnndeploy.backends.source import resolve_source
    from rnndeploy.triton.repository import model_name
    from rnndeploy.triton.streaming import is_streaming

    BackendLabel.parse(options.backend)  # unknown backend: one line before anything starts
    served: List[ServedModel] = []
    for k, m in enumerate(models):
        source = resolve_source(m, auto_checkpoint=False)
        name = names[k] if k < len(names) and names[k] else model_name(
            source.spec.name if len(source.spec.graphs) == 1 else f"{source.spec.name}-{source.graph}")
        if any(s.name == name for s in served):
            raise UsageError(f"two models would be served as {name!r}", "give each a --name")
        streaming = is_streaming(source.graph_spec)
        cfg, mbs = python_config(name, source, options, streaming)
        text = to_pbtxt(to_message(cfg), [f"written by rnndeploy serve for {m} (runner {options.backend})"])
        d = root / name
        (d / "1").mkdir(parents=True)
        (d / "config.pbtxt").write_text(text, encoding="utf-8")
        (d / "1" / "model.py").write_text(MODEL_PY, encoding="utf-8")
        served.append(ServedModel(name, source, streaming, mbs, text))
    return served


# -- environment ------------------------------------------------------------------------------------------
def libpython_dir() -> Optional[str]:
    """This interpreter's own directory holding ``libpython3.X.so.1.0`` (None when it has none)."""
    import sysconfig

    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if libdir and soname and os.path.isfile(os.path.join(libdir, soname)):
        return libdir
    return None


def server_env_library_path(current: Optional[str]) -> Optional[str]:
    """LD_LIBRARY_PATH for tritonserver: this interpreter's lib directory first (see module docstring)."""
    libdir = libpython_dir()
    parts = [p for p in (current or "").split(os.pathsep) if p]
    if libdir is None:
        return current
    return os.pathsep.join([libdir] + [p for p in parts if p != libdir])


def check_ports(host: str, ports: Dict[str, int]) -> None:
    """Every port free on ``host`` and all distinct.

    Raises:
        UsageError: one line naming the endpoint, the port and what to do.
    """
    seen: Dict[int, str] = {}
    for what, port in ports.items():
        if not 0 < port < 65536:
            raise UsageError(f"--{what}-port {port} is not a port number")
        if port in seen:
            raise UsageError(f"--{what}-port and --{seen[port]}-port are both {port}", "give each endpoint its own port")
        seen[port] = what
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise UsageError(f"{what} port {port} on {host} is in use ({exc.strerror or exc})",
                                 f"stop the process holding it, or choose another port with --{what}-port") from None


def require_pytriton() -> Any:
    try:
        import pytriton.triton as pt
    except ImportError as exc:
        raise MissingDependencyError(
            "nvidia-pytriton", "serve", "rnndeploy serve",
            "it needs numpy < 2, so give it an environment of its own: pip install 'rnndeploy[serve]' in a new "
            "virtual environment (in a checkout: make serve-env, then .venv-serve/bin/rnndeploy serve ...)") from exc
    return pt


# -- running ----------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def serve(models: Sequence[str], options: Optional[ServeOptions] = None, names: Sequence[Optional[str]] = (),
          announce: Callable[[str], None] = print) -> List[ServedModel]:
    """Serve ``models`` until Ctrl-C, SIGTERM or ``options.timeout_s``; returns what was served.

    Raises:
        UsageError: bad models/options, a port in use.
        MissingDependencyError: nvidia-pytriton (or tritonclient) missing.
        RnnDeployError: the server did not start, or died while serving.
    """
    opts = options or ServeOptions()
    if not models:
        raise UsageError("no model given", "pass one or more ONNX files (or engines with --backend trt)")
    pt = require_pytriton()
    from rnndeploy.triton.config import schema

    schema()  # tritonclient present (PyTriton depends on it; checked for a clear message)
    check_ports(opts.host, {"http": opts.http_port, "grpc": opts.grpc_port, "metrics": opts.metrics_port})
    root = Path(tempfile.mkdtemp(prefix="rnndeploy-serve-"))
    old_handler = signal.getsignal(signal.SIGTERM)
    old_ld = os.environ.get("LD_LIBRARY_PATH")
    triton = None
    try:
        served = write_python_repository(root / "models", models, opts, names)
        ld = server_env_library_path(old_ld)
        if ld is not None:
            os.environ["LD_LIBRARY_PATH"] = ld

        def _on_term(signum: int, frame: Any) -> None:
            raise _Stop()

        signal.signal(signal.SIGTERM, _on_term)
        log_file = None if opts.server_log else root / "tritonserver.log"
        config = pt.TritonConfig(model_repository=root / "models", http_address=opts.host, http_port=opts.http_port,
                                 grpc_address=opts.host, grpc_port=opts.grpc_port, metrics_address=opts.host,
                                 metrics_port=opts.metrics_port, exit_on_error=True, log_file=log_file,
                                 exit_timeout_secs=opts.exit_timeout_s)
        triton = pt.Triton(config=config, workspace=root / "workspace")
        try:
            try:
                _start(triton, served, opts)
            except RnnDeployError:
                if log_file is not None and log_file.is_file():  # --quiet hid the log: show its end now
                    tail = log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
                    announce("\n".join(["rnndeploy: the end of tritonserver's log:"] + tail))
                raise
            announce(f"rnndeploy: serving {len(served)} model(s) with runner {opts.backend} on "
                     f"http://{opts.host}:{opts.http_port} (gRPC {opts.host}:{opts.grpc_port}, "
                     f"metrics http://{opts.host}:{opts.metrics_port}/metrics)")
            for s in served:
                announce(f"rnndeploy:   {s.render()}")
            announce("rnndeploy: ready; Ctrl-C or SIGTERM stops the server")
            deadline = None if opts.timeout_s is None else time.monotonic() + opts.timeout_s
            while deadline is None or time.monotonic() < deadline:
                if not triton.is_alive():
                    raise RnnDeployError("tritonserver stopped unexpectedly while serving", "see its log above")
                time.sleep(0.2)
        except (KeyboardInterrupt, _Stop):  # Ctrl-C / SIGTERM, also while starting: a clean stop
            pass
        announce("rnndeploy: stopping the server")
        return served
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        if triton is not None:
            triton.stop()
            reap_stubs(root)
        if old_ld is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = old_ld
        shutil.rmtree(root, ignore_errors=True)


def _stubs_of(root: Path) -> List[Tuple[int, List[str]]]:
    """(pid, argv) of every Python-backend stub serving a model under ``root`` (Linux /proc)."""
    out = []
    marker = str(root)
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        argv = _argv_of(int(entry.name))
        if argv and argv[0].endswith("triton_python_backend_stub") and any(marker in a for a in argv):
            out.append((int(entry.name), argv))
    return out


def reap_stubs(root: Path, grace_s: float = 3.0) -> List[int]:
    """End the Python-backend stubs of this server that outlived tritonserver, and their shared memory.

    tritonserver stops its stubs on a normal shutdown; when it exits first (a short
    --exit-timeout, a crash) they stay behind, reparented to init, each holding a model and a
    /dev/shm region. Only stubs whose command line names this server's own temporary
    repository (``root``, unique per serve) are touched. Returns the pids ended.
    """
    stubs = _stubs_of(root)
    if not stubs:
        return []
    for pid, _ in stubs:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    _wait_gone([pid for pid, _ in stubs], grace_s, 0.1)
    for pid, _ in stubs:
        if _alive(pid) and any(str(root) in a for a in _argv_of(pid)):  # still ours (not a reused pid)
            try:
                os.kill(pid, signal.SIGKILL)  # the stub ignores SIGTERM while it waits for its parent
            except OSError:
                pass
    _wait_gone([pid for pid, _ in stubs], grace_s, 0.05)
    for _, argv in stubs:
        for a in argv:
            region = Path("/dev/shm") / a
            if a.startswith("pytrtion") and "/" not in a and region.is_file():
                region.unlink()
    return [pid for pid, _ in stubs]


def _wait_gone(pids: List[int], timeout_s: float, poll_s: float) -> None:
    """Wait until none of ``pids`` is alive, at most ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(poll_s)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _argv_of(pid: int) -> List[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # gone meanwhile, or not ours to read
        return []


def _start(triton: Any, served: Sequence[ServedModel], opts: ServeOptions) -> None:
    """Start tritonserver and wait until every model is ready, the server dies, or time runs out."""
    import tritonclient.http as httpclient

    start = getattr(triton, "_run_server", None)
    if start is None:  # another PyTriton: its own (longer) wait
        triton.run()
        return
    start()
    url = f"{opts.host}:{opts.http_port}" if ":" not in opts.host else f"[{opts.host}]:{opts.http_port}"
    deadline = time.monotonic() + opts.startup_timeout_s
    client = httpclient.InferenceServerClient(url, connection_timeout=2.0, network_timeout=2.0)
    try:
        while True:
            if not triton.is_alive():
                raise RnnDeployError("tritonserver exited while loading the models", "see its log above")
            try:
                if client.is_server_ready() and all(client.is_model_ready(s.name) for s in served):
                    break
            except Exception:  # connection refused while it starts, or the HTTP client's own errors
                pass
            if time.monotonic() > deadline:
                raise RnnDeployError(f"the models were not ready after {opts.startup_timeout_s:g} s",
                                     "see the server log above; raise --startup-timeout on a slow machine")
            time.sleep(0.25)
    finally:
        client.close()
    triton.connect()


__all__ = ["ServeOptions", "ServedModel", "check_ports", "libpython_dir", "python_config", "serve",
           "server_env_library_path", "write_python_repository"]
