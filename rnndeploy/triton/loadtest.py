"""``rnndeploy loadtest``: a concurrency sweep against a Triton server that checks every answer.

For each concurrency level, ``concurrency`` client threads (one tritonclient each, HTTP or
gRPC) send requests back to back until ``requests`` have been sent or ``max_seconds`` have
passed. Every request carries inputs no other request has (a fresh seed) and a unique
request id, and its expected outputs are computed beforehand with the local reference
(an rnndeploy Runner on the same model), so a lost, duplicated, reordered or wrong answer
cannot pass: each answer must carry its request's id and equal its own expected outputs
within the spec's FP32 tolerance.

A streaming model (the server config has ``sequence_batching``) is driven by sequences:
each client sends one sequence of ``chunks`` requests (``sequence_start`` on the first,
``sequence_end`` on the last, a sequence id of its own), many sequences interleave on the
server, and each chunk's answer must equal running that sequence alone, chunk by chunk
from zero state, locally.

Faults do not stop the sweep: a failed request is counted and reported with its message, the
client pauses briefly (so a restarting server is not hammered) and goes on; the rest of a
sequence whose request failed is abandoned (its state on the server is gone or suspect).
Every loop is bounded by a request count and a deadline.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import MissingDependencyError, RnnDeployError, UsageError, first_line
from rnndeploy.triton.results import MAX_FAILURES_KEPT, Level, LoadTestResult

PROTOCOLS = {"http": 8000, "grpc": 8001}


@dataclass(frozen=True)
class LoadTestConfig:
    """What to send.

    Attributes:
        url: "host:port" (a leading http:// or grpc:// is accepted and sets the protocol).
        model: the served model's name.
        protocol: "http" or "grpc" (default: the URL's scheme, else http).
        concurrency: client counts to sweep (default 1, 4, 16, 64).
        requests: requests per level (streaming: chunk requests; default 200).
        max_seconds: time limit per level (default 60).
        batch / seq: rows and time steps per request (default 1 × 16).
        chunks: requests per streaming sequence (default 4).
        warmup: untimed (still checked) requests per client before its timed ones (default 1).
        timeout_s: per-request network timeout (default 30).
        seed: inputs are drawn from seed + request number.
        extra_dims: sizes of other named axes (foreign models).
        retry_pause_s: a client waits this long after a failed request (default 0.5).
        connect_timeout_s: how long to wait for the server to answer at the start (default 30).
    """

    url: str
    model: str
    protocol: Optional[str] = None
    concurrency: Tuple[int, ...] = (1, 4, 16, 64)
    requests: int = 200
    max_seconds: float = 60.0
    batch: int = 1
    seq: int = 16
    chunks: int = 4
    warmup: int = 1
    timeout_s: float = 30.0
    seed: int = 0
    extra_dims: Mapping[str, int] = field(default_factory=dict)
    retry_pause_s: float = 0.5
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise UsageError(f"protocol {self.protocol!r} is unknown", "use http or grpc")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise UsageError("concurrency levels must be positive integers", "e.g. --concurrency 1,4,16,64")
        for what, v in (("requests", self.requests), ("batch", self.batch), ("seq", self.seq), ("chunks", self.chunks)):
            if v < 1:
                raise UsageError(f"--{what} must be at least 1, got {v}")
        if self.max_seconds <= 0 or self.timeout_s <= 0:
            raise UsageError("--max-seconds and --timeout must be positive")
        if self.warmup < 0:
            raise UsageError("--warmup must be 0 or more")


def split_url(url: str, protocol: Optional[str]) -> Tuple[str, str]:
    """(host:port, protocol) from "host[:port]", "http://host:port" or "grpc://host:port"."""
    m = re.match(r"^(?:(http|grpc)://)?([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\])(?::(\d{1,5}))?/?$", url.strip())
    if not m:
        raise UsageError(f"URL {url!r} is not host:port", "e.g. 127.0.0.1:8000 or grpc://127.0.0.1:8001")
    scheme, host, port = m.group(1), m.group(2), m.group(3)
    if port is not None and not 0 < int(port) <= 65535:
        raise UsageError(f"URL {url!r}: port {port} is outside 1-65535", "e.g. 127.0.0.1:8000")
    if scheme and protocol and scheme != protocol:
        raise UsageError(f"URL {url!r} says {scheme} but --protocol is {protocol}")
    proto = protocol or scheme or "http"
    hostport = f"{host}:{port or PROTOCOLS[proto]}"
    return hostport, proto


# -- the client ----------------------------------------------------------------------------------------
class Client:
    """One tritonclient (HTTP or gRPC) behind one small interface."""

    def __init__(self, protocol: str, url: str, timeout_s: float):
        try:
            if protocol == "http":
                import tritonclient.http as mod
            else:
                import tritonclient.grpc as mod
        except ImportError as exc:
            raise MissingDependencyError("tritonclient", "triton", "rnndeploy loadtest") from exc
        self.protocol, self.mod, self.timeout_s = protocol, mod, timeout_s
        if protocol == "http":
            self.client = mod.InferenceServerClient(url, connection_timeout=timeout_s, network_timeout=timeout_s)
        else:
            self.client = mod.InferenceServerClient(url)

    def server_ready(self) -> bool:
        try:
            return bool(self.client.is_server_ready())
        except Exception:  # refused / reset while the server starts: not ready
            return False

    def model_ready(self, model: str) -> bool:
        return bool(self.client.is_model_ready(model))

    def model_config(self, model: str) -> Dict[str, Any]:
        if self.protocol == "http":
            return dict(self.client.get_model_config(model))
        return dict(self.client.get_model_config(model, as_json=True)["config"])

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], types: Mapping[str, str], outputs: Sequence[str],
              request_id: str, sequence_id: int = 0, start: bool = False, end: bool = False
              ) -> Tuple[Dict[str, np.ndarray], str]:
        ins = []
        for name, arr in inputs.items():
            t = self.mod.InferInput(name, list(arr.shape), types[name])
            t.set_data_from_numpy(arr)
            ins.append(t)
        outs = [self.mod.InferRequestedOutput(n) for n in outputs]
        kwargs: Dict[str, Any] = {"request_id": request_id}
        if sequence_id:
            kwargs.update(sequence_id=sequence_id, sequence_start=start, sequence_end=end)
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        result = self.client.infer(model, ins, outputs=outs, **kwargs)
        response = result.get_response()
        rid = response.get("id", "") if isinstance(response, dict) else getattr(response, "id", "")
        return {n: result.as_numpy(n) for n in outputs}, str(rid)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a client of a dead server must not mask the real result
            pass


# -- what the server expects -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerModel:
    """The served model as its config describes it."""

    name: str
    max_batch_size: int
    streaming: bool
    inputs: Mapping[str, Mapping[str, Any]]  # name -> config entry
    outputs: Mapping[str, Mapping[str, Any]]
    dynamic_batching: bool = False

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> ServerModel:
        return cls(name, int(cfg.get("max_batch_size", 0) or 0), "sequence_batching" in cfg,
                   {i["name"]: i for i in cfg.get("input", [])}, {o["name"]: o for o in cfg.get("output", [])},
                   "dynamic_batching" in cfg)

    @property
    def batching(self) -> str:
        """How the server combines requests, in words."""
        if self.streaming:
            return ("sequence batcher, requests of up to " f"{self.max_batch_size} sequences per execution"
                    if self.max_batch_size > 1 else "sequence batcher, one request per execution")
        if self.dynamic_batching and self.max_batch_size > 1:
            return f"dynamic batching up to {self.max_batch_size}"
        return "no dynamic batching (one request per execution)"

    def wire_type(self, name: str) -> str:
        entry = self.inputs.get(name) or self.outputs[name]
        return str(entry["data_type"]).replace("TYPE_", "")

    def to_wire(self, name: str, arr: np.ndarray, batch_axis: Optional[int]) -> np.ndarray:
        """A spec-layout array as the server takes it: batch axis first, the config's dims, its dtype."""
        entry = self.inputs.get(name) or self.outputs[name]
        out = np.asarray(arr)
        if self.max_batch_size > 0 and batch_axis not in (None, 0):
            out = np.moveaxis(out, batch_axis, 0)
        if entry.get("reshape") is not None:
            dims = [int(d) for d in entry.get("dims", [])]
            out = out.reshape(([out.shape[0]] if self.max_batch_size > 0 else []) + dims)
        if name in self.inputs:
            from tritonclient.utils import triton_to_np_dtype

            out = out.astype(triton_to_np_dtype(self.wire_type(name)), copy=False)
        return np.ascontiguousarray(out)


@dataclass
class _Unit:
    """A stateless request, or a streaming sequence of chunk requests."""

    ident: str
    steps: List[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]]  # (wire inputs, expected wire outputs)
    sequence_id: int = 0


@dataclass
class _Tally:
    latencies: List[float] = field(default_factory=list)
    starts: List[float] = field(default_factory=list)
    ends: List[float] = field(default_factory=list)
    sent: int = 0
    verified: int = 0
    wrong: int = 0
    errors: int = 0
    abandoned: int = 0
    failures: List[Dict[str, Any]] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)

    def fail(self, request: str, kind: str, message: str) -> None:
        message = message.strip().splitlines()[0][:300] if message.strip() else kind
        key = f"{kind}: {re.sub(r'[0-9]+', 'N', message)}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append({"request": request, "kind": kind, "message": message})


# -- the sweep ----------------------------------------------------------------------------------------------
class LoadTest:
    """A prepared load test: server checked, reference runner active. Use ``run()``."""

    def __init__(self, source: Any, config: LoadTestConfig, reference_backend: str = "ort-cpu"):
        from rnndeploy.backends import RunnerOptions, create_runner
        from rnndeploy.triton.streaming import state_pairs

        self.config = config
        self.url, self.protocol = split_url(config.url, config.protocol)
        probe = Client(self.protocol, self.url, min(config.timeout_s, 5.0))
        try:
            deadline = time.monotonic() + config.connect_timeout_s
            while not probe.server_ready():
                if time.monotonic() > deadline:
                    raise UsageError(f"no Triton server is ready at {self.url} ({self.protocol})",
                                     "start one (rnndeploy serve MODEL) or check the URL and --protocol")
                time.sleep(0.25)
            try:
                ready = probe.model_ready(config.model)
            except Exception:  # the server answers "unknown model" as an error on some protocols
                ready = False
            if not ready:
                raise UsageError(f"the server at {self.url} has no ready model {config.model!r}",
                                 "check --model against the names rnndeploy serve printed")
            self.server = ServerModel.from_config(config.model, probe.model_config(config.model))
        finally:
            probe.close()
        self.source = source
        graph = source.graph_spec
        self.pairs = state_pairs(graph) if self.server.streaming else ()
        if self.server.streaming and not self.pairs:
            raise UsageError(f"{config.model} keeps state per sequence on the server, but the reference has no state inputs",
                             "give the ONNX file the server was made from (exported --with-state)")
        state_in = {i for i, _ in self.pairs}
        state_out = {o for _, o in self.pairs}
        from rnndeploy.spec import GraphSpec

        self.graph = graph
        # what the reference is fed (states excluded: they start at zero and are carried)
        self.feed_graph = GraphSpec(graph.name, tuple(t for t in graph.inputs if t.name not in state_in),
                                    tuple(t for t in graph.outputs if t.name not in state_out))
        want = {t.name for t in self.feed_graph.inputs}
        have = set(self.server.inputs)
        unsendable = sorted(n for n in want - have if not self.feed_graph.input(n).optional)
        if have - want or unsendable:
            raise UsageError(f"served model {config.model!r} takes inputs {sorted(have)}; the reference takes {sorted(want)}",
                             "give the model file the server was made from")
        self.sent = [t for t in self.feed_graph.inputs if t.name in have]
        self.outputs = [t.name for t in self.feed_graph.outputs if t.name in self.server.outputs]
        if not self.outputs:
            raise UsageError(f"served model {config.model!r} returns none of the reference's outputs")
        if self.server.streaming:
            untimed = [t.name for t in self.sent if t.time_axis is None]
            if untimed:
                raise UsageError(f"inputs {', '.join(untimed)} have no time axis, so a sequence cannot be sent in chunks")
        self.runner = create_runner(reference_backend, source, RunnerOptions(threads=1))
        self.reference = reference_backend
        self._counter = 0

    # preparation (not timed) --------------------------------------------------------------------------------
    def _batch_axis(self, name: str) -> Optional[int]:
        from rnndeploy.triton.batching import batch_axis

        t = next(t for t in self.graph.inputs + self.graph.outputs if t.name == name)
        return batch_axis(t)

    def _wire(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The arrays the server takes (inputs it declares, outputs it returns), in its layout."""
        keep = set(self.server.inputs) | set(self.server.outputs)
        return {n: self.server.to_wire(n, a, self._batch_axis(n)) for n, a in arrays.items() if n in keep}

    def _plan(self, level: int, n_requests: int) -> List[_Unit]:
        from rnndeploy.inputs import generate_inputs, sizes_for
        from rnndeploy.spec import numpy_dtype

        cfg = self.config
        units: List[_Unit] = []
        if not self.server.streaming:
            sizes = sizes_for(self.feed_graph, cfg.batch, cfg.seq, cfg.extra_dims)
            for k in range(n_requests):
                self._counter += 1
                feed = generate_inputs(self.feed_graph, sizes, cfg.seed + self._counter)
                expected = self.runner.infer(feed)
                units.append(_Unit(f"c{level}-r{k}", [(self._wire(feed), self._wire(
                    {n: expected[n] for n in self.outputs}))]))
            return units
        n_seq = max(1, n_requests // cfg.chunks)
        total = cfg.seq * cfg.chunks
        sizes = sizes_for(self.feed_graph, cfg.batch, total, cfg.extra_dims)
        for k in range(n_seq):
            self._counter += 1
            full = generate_inputs(self.feed_graph, sizes, cfg.seed + self._counter)
            states = {i: np.zeros(self.graph.input(i).shape_for({**sizes, "batch": cfg.batch}),
                                  numpy_dtype(self.graph.input(i).dtype)) for i, _ in self.pairs}
            steps = []
            for c in range(cfg.chunks):
                chunk = {t.name: full[t.name] if t.time_axis is None else
                         np.take(full[t.name], np.arange(c * cfg.seq, (c + 1) * cfg.seq), axis=t.time_axis)
                         for t in self.feed_graph.inputs}
                out = self.runner.infer({**chunk, **states})
                states = {i: out[o] for i, o in self.pairs}
                steps.append((self._wire(chunk), self._wire({n: out[n] for n in self.outputs})))
            units.append(_Unit(f"c{level}-s{k}", steps, sequence_id=level * 1_000_000 + k + 1))
        return units

    # running --------------------------------------------------------------------------------------------------
    def run(self, command: str = "", progress: Any = None) -> LoadTestResult:
        """Sweep every concurrency level; never raises for failed requests (they are in the result).

        ``progress(event, value)`` hears ("start", (concurrency, requests planned)) when a level
        starts sending and ("done", Level) when it ends."""
        from rnndeploy.environment import describe_machine

        cfg = self.config
        levels: List[Level] = []
        warnings: List[str] = []
        with self.runner:
            for li, conc in enumerate(cfg.concurrency):
                units = self._plan(li, cfg.requests)
                if progress is not None:
                    progress("start", (conc, sum(len(u.steps) for u in units)))
                levels.append(self._level(conc, units, li))
                if progress is not None:
                    progress("done", levels[-1])
        steps = cfg.batch * cfg.seq
        if any(lv.sent < cfg.requests and lv.passed for lv in levels):
            warnings.append(f"a level stopped at its {cfg.max_seconds:g} s limit before sending {cfg.requests} requests")
        model = {
            "name": self.source.spec.name, "graph": self.source.graph, "served_as": cfg.model, "url": self.url,
            "protocol": self.protocol, "streaming": self.server.streaming, "max_batch_size": self.server.max_batch_size,
            "server_batching": self.server.batching,
            "reference": self.reference, "onnx": self.source.onnx,
        }
        settings = {"requests": cfg.requests, "max_seconds": cfg.max_seconds, "batch": cfg.batch, "seq": cfg.seq,
                    "chunks": cfg.chunks if self.server.streaming else None, "warmup": cfg.warmup,
                    "timeout_s": cfg.timeout_s, "seed": cfg.seed, "steps_per_request": steps}
        return LoadTestResult(model=model, levels=tuple(levels), settings=settings, warnings=tuple(warnings),
                              machine=describe_machine(), command=command,
                              created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

    def _level(self, concurrency: int, units: List[_Unit], level: int) -> Level:
        cfg = self.config
        lock = threading.Lock()
        queue = list(reversed(units))
        deadline = time.monotonic() + cfg.max_seconds
        tallies = [_Tally() for _ in range(concurrency)]
        crashes: List[BaseException] = []

        def take() -> Optional[_Unit]:
            with lock:
                if not queue or time.monotonic() > deadline:
                    return None
                return queue.pop()

        def work(w: int) -> None:
            tally = tallies[w]
            try:
                client = Client(self.protocol, self.url, cfg.timeout_s)
            except Exception as exc:  # pragma: no cover - constructing a client does not connect
                tally.fail(f"client{w}", "error", f"cannot create a client: {exc}")
                return
            answered = 0
            try:
                while True:
                    unit = take()
                    if unit is None:
                        break
                    for j, (inputs, expected) in enumerate(unit.steps):
                        ok = self._request(client, tally, f"{unit.ident}-{j}", inputs, expected, unit.sequence_id,
                                           j == 0, j == len(unit.steps) - 1, timed=answered >= cfg.warmup)
                        if ok is not None:
                            answered += 1
                        if ok is None:  # no answer: the rest of this sequence cannot be right
                            tally.abandoned += len(unit.steps) - j - 1
                            time.sleep(cfg.retry_pause_s)
                            break
            except BaseException as exc:  # a bug in this code: re-raised by the caller thread
                crashes.append(exc)
            finally:
                client.close()

        threads = [threading.Thread(target=work, args=(w,), name=f"loadtest-{w}", daemon=True) for w in range(concurrency)]
        for t in threads:
            t.start()
        longest = max((len(u.steps) for u in units), default=1)
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()) + cfg.timeout_s * (longest + 1) + 10)
        if any(t.is_alive() for t in threads):
            raise RnnDeployError(f"load test clients did not finish within the {cfg.max_seconds:g} s limit plus timeouts")
        if crashes:
            raise crashes[0]
        merged = _Tally()
        for t in tallies:
            merged.latencies += t.latencies
            merged.starts += t.starts
            merged.ends += t.ends
            for k in ("sent", "verified", "wrong", "errors", "abandoned"):
                setattr(merged, k, getattr(merged, k) + getattr(t, k))
            for k, v in t.counts.items():
                merged.counts[k] = merged.counts.get(k, 0) + v
            merged.failures += t.failures
        wall = (max(merged.ends) - min(merged.starts)) if merged.starts else 0.0
        return Level(concurrency=concurrency, latencies=tuple(merged.latencies), sent=merged.sent,
                     verified=merged.verified, wrong=merged.wrong, errors=merged.errors, abandoned=merged.abandoned,
                     wall_s=wall, steps_per_request=cfg.batch * cfg.seq,
                     failures=tuple(merged.failures[:MAX_FAILURES_KEPT]), failure_counts=merged.counts)

    def _request(self, client: Client, tally: _Tally, rid: str, inputs: Mapping[str, np.ndarray],
                 expected: Mapping[str, np.ndarray], sequence_id: int, start: bool, end: bool,
                 timed: bool) -> Optional[bool]:
        """Send one request and check its answer: True right, False wrong, None no answer."""
        types = {n: self.server.wire_type(n) for n in inputs}
        tally.sent += 1
        t0 = time.perf_counter()
        try:
            got, got_id = client.infer(self.config.model, inputs, types, self.outputs, rid, sequence_id, start, end)
        except Exception as exc:  # every failure to get an answer is reported, whatever raised it
            tally.errors += 1
            tally.fail(rid, "error", _message(exc))
            return None
        t1 = time.perf_counter()
        if timed:
            tally.latencies.append(t1 - t0)
            tally.starts.append(t0)
            tally.ends.append(t1)
        problem = None
        if got_id != rid:
            problem = f"answer carries request id {got_id!r}, expected {rid!r}"
        else:
            for name in self.outputs:
                problem = self._compare(name, got.get(name), expected[name])
                if problem:
                    break
        if problem:
            tally.wrong += 1
            tally.fail(rid, "wrong", problem)
            return False
        tally.verified += 1
        return True

    def _compare(self, name: str, got: Optional[np.ndarray], want: np.ndarray) -> Optional[str]:
        if got is None:
            return f"output {name!r} is missing"
        if tuple(got.shape) != tuple(want.shape):
            return f"output {name!r} has shape {list(got.shape)}, expected {list(want.shape)}"
        tol = self.graph.tolerance(name, "fp32")
        g, w = got.astype(np.float64), want.astype(np.float64)
        if not np.allclose(g, w, atol=tol.atol, rtol=tol.rtol):
            return (f"output {name!r} differs from the reference: max abs {float(np.max(np.abs(g - w))):.3g} "
                    f"(atol {tol.atol:g}, rtol {tol.rtol:g})")
        return None


def _message(exc: BaseException) -> str:
    text = first_line(exc)
    return text if text.startswith("[") else f"{type(exc).__name__}: {text}"


def run_loadtest(model: str, config: LoadTestConfig, reference_backend: str = "ort-cpu", command: str = "",
                 progress: Any = None) -> LoadTestResult:
    """Resolve the reference ``model``, check the served model against it, and sweep."""
    from rnndeploy.backends.source import resolve_source

    source = resolve_source(model, auto_checkpoint=False)
    return LoadTest(source, config, reference_backend).run(command, progress)
