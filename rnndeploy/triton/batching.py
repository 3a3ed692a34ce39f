"""What ``rnndeploy serve``'s Python-backend model does with one batch of Triton requests.

Triton hands the model a list of requests (a dynamic batch; for a streaming model, requests
of different sequences picked by the sequence batcher's "oldest" strategy). ``Executor``:

1. checks each request on its own against the contract (a malformed request gets its own
   error response; the others in the batch are still served);
2. for a streaming model, looks up each request's sequence state by correlation id (zeros on
   START, an error for an unknown sequence without START), frees it on END, and frees
   sequences idle longer than the timeout (a client killed mid-sequence);
3. stacks requests whose shapes agree along each tensor's batch axis, runs the Runner once
   per group, and splits the outputs back.

Triton sees every tensor batch-first; the runner keeps the model's own layout (state
tensors are [layers, batch, hidden]); ``Layout`` moves the batch axis between the two.
Everything here is plain numpy: tests drive it without a server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from rnndeploy.backends.base import check_feed
from rnndeploy.errors import RnnDeployError, ShapeError, first_line
from rnndeploy.spec import GraphSpec, TensorSpec, numpy_dtype

FLAG_START = 1  # TRITONSERVER_REQUEST_FLAG_SEQUENCE_START
FLAG_END = 2  # TRITONSERVER_REQUEST_FLAG_SEQUENCE_END


def batch_axis(t: TensorSpec) -> Optional[int]:
    """Index of the "batch" axis of a spec tensor, or None."""
    return list(t.dims).index("batch") if "batch" in t.dims else None


def triton_dims(t: TensorSpec) -> Tuple[Any, ...]:
    """The tensor's dims as Triton sees them: the batch axis moved first."""
    a = batch_axis(t)
    if a is None or a == 0:
        return tuple(t.dims)
    dims = list(t.dims)
    return tuple([dims.pop(a)] + dims)


@dataclass(frozen=True)
class Layout:
    """Batch-axis positions of a graph's tensors, to convert between Triton's batch-first view
    and the runner's layout. ``batched`` is False when some tensor has no batch axis (then
    tensors pass unchanged and Triton does not batch)."""

    graph: GraphSpec
    batched: bool

    @classmethod
    def of(cls, graph: GraphSpec) -> Layout:
        return cls(graph, all(batch_axis(t) is not None for t in graph.inputs + graph.outputs))

    def axis(self, name: str) -> int:
        t = next(t for t in self.graph.inputs + self.graph.outputs if t.name == name)
        a = batch_axis(t)
        return 0 if a is None else a

    def to_runner(self, name: str, arr: np.ndarray) -> np.ndarray:
        return np.moveaxis(arr, 0, self.axis(name)) if self.batched else arr

    def to_triton(self, name: str, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(arr, self.axis(name), 0)) if self.batched else arr


@dataclass
class Request:
    """One Triton request as the executor sees it: inputs in Triton's layout, plus sequence facts."""

    inputs: Dict[str, np.ndarray]
    correlation_id: Union[int, str] = 0
    flags: int = 0


Result = Union[Dict[str, np.ndarray], str]  # outputs (Triton layout) or a one-line error


@dataclass
class _Sequence:
    states: Tuple[np.ndarray, ...]
    last_used: float


@dataclass
class SequenceStore:
    """Recurrent state per sequence id, freed on END or after ``idle_s`` without a request.

    ``log`` receives one line per freed idle sequence.
    """

    idle_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = field(default=lambda line: None)
    _live: Dict[Any, _Sequence] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._live)

    def get(self, cid: Any) -> Optional[Tuple[np.ndarray, ...]]:
        s = self._live.get(cid)
        return None if s is None else s.states

    def put(self, cid: Any, states: Tuple[np.ndarray, ...]) -> None:
        self._live[cid] = _Sequence(states, self.clock())

    def end(self, cid: Any) -> None:
        self._live.pop(cid, None)

    def evict_idle(self) -> List[Any]:
        """Free every sequence idle longer than ``idle_s``; returns their ids."""
        now = self.clock()
        gone = [cid for cid, s in self._live.items() if now - s.last_used > self.idle_s]
        for cid in gone:
            age = now - self._live.pop(cid).last_used
            self.log(f"rnndeploy: sequence {cid} idle for {age:.1f} s: its state is freed")
        return gone


class Executor:
    """Runs batches of requests through an active Runner (see module docstring).

    Args:
        runner: an activated rnndeploy Runner for ``graph``.
        graph: the GraphSpec the runner takes (the streaming form for a streaming model).
        streaming: (state input, state output) pairs kept per sequence; () for stateless.
        store: the sequence store (streaming only).
    """

    def __init__(self, runner: Any, graph: GraphSpec, streaming: Sequence[Tuple[str, str]] = (),
                 store: Optional[SequenceStore] = None):
        self.runner = runner
        self.graph = graph
        self.layout = Layout.of(graph)
        self.states = tuple(streaming)
        self.store = store if store is not None else SequenceStore()
        state_in = {i for i, _ in self.states}
        state_out = {o for _, o in self.states}
        self.client_graph = GraphSpec(graph.name, tuple(t for t in graph.inputs if t.name not in state_in),
                                      tuple(t for t in graph.outputs if t.name not in state_out))

    def execute(self, requests: Sequence[Request]) -> List[Result]:
        if self.states:
            self.store.evict_idle()
        results: List[Optional[Result]] = [None] * len(requests)
        groups: Dict[Tuple[Any, ...], List[int]] = {}
        feeds: Dict[int, Dict[str, np.ndarray]] = {}
        for k, req in enumerate(requests):
            try:
                feeds[k] = self._prepare(req)
            except RnnDeployError as exc:
                results[k] = str(exc)
                continue
            key = tuple((n, a.dtype.str, _shape_without(a, self.layout.axis(n) if self.layout.batched else None))
                        for n, a in sorted(feeds[k].items()))
            groups.setdefault(key, []).append(k)
        for idxs in groups.values():
            self._run_group([requests[k] for k in idxs], [feeds[k] for k in idxs], idxs, results)
        return [r if r is not None else "rnndeploy: no result (internal error)" for r in results]

    # -- steps --------------------------------------------------------------------------------------
    def _prepare(self, req: Request) -> Dict[str, np.ndarray]:
        """The request's full runner feed (state included), checked on its own."""
        feed = {n: self.layout.to_runner(n, np.asarray(a)) for n, a in req.inputs.items()}
        check_feed(self.client_graph, feed, "request")
        for t in self.client_graph.inputs:
            if t.role in ("tokens", "token") and t.high is not None and feed[t.name].size:
                lo, hi = int(t.low or 0), int(t.high)
                bad = feed[t.name][(feed[t.name] < lo) | (feed[t.name] >= hi)]
                if bad.size:
                    raise ShapeError(f"request: input {t.name!r} holds id {int(bad.flat[0])} outside the vocabulary "
                                     f"[{lo}, {hi})")
        if not self.states:
            return feed
        cid = req.correlation_id
        if req.flags & FLAG_START:
            batch = _batch_size(self.client_graph, feed)
            states = tuple(np.zeros(self.graph.input(i).shape_for({"batch": batch}),
                                    numpy_dtype(self.graph.input(i).dtype)) for i, _ in self.states)
        else:
            states = self.store.get(cid)
            if states is None:
                raise RnnDeployError(f"sequence {cid!r} has no state here: start it with sequence_start=True "
                                     f"(a sequence idle over {self.store.idle_s:g} s is freed)")
        for (i, _), s in zip(self.states, states):
            feed[i] = s
        check_feed(self.graph, feed, "request")  # state batch must match the request's
        return feed

    def _run_group(self, reqs: List[Request], feeds: List[Dict[str, np.ndarray]], idxs: List[int],
                   results: List[Optional[Result]]) -> None:
        names = list(feeds[0])
        if self.layout.batched:
            sizes = [_batch_size(self.graph, f) for f in feeds]
            joined = {n: np.concatenate([f[n] for f in feeds], axis=self.layout.axis(n)) if len(feeds) > 1
                      else feeds[0][n] for n in names}
        else:
            sizes = [1] * len(feeds)
            joined = None
        if joined is not None:
            try:
                outs = [self.runner.infer(joined)]
            except Exception as exc:  # some request spoils the batch: run each alone so only it fails
                if len(feeds) == 1:
                    results[idxs[0]] = _message(exc)
                    return
                for req, feed, k in zip(reqs, feeds, idxs):
                    self._run_group([req], [feed], [k], results)
                return
        else:
            outs = []
            for f, k in zip(feeds, idxs):
                try:
                    outs.append(self.runner.infer(f))
                except Exception as exc:  # this request's error only
                    results[k] = _message(exc)
                    outs.append(None)
        if joined is not None:
            bounds = np.cumsum(sizes)[:-1]
            split = {n: np.split(a, bounds, axis=self.layout.axis(n)) for n, a in outs[0].items()}
            per_req = [{n: split[n][j] for n in split} for j in range(len(feeds))]
        else:
            per_req = outs
        state_out = {o for _, o in self.states}
        for req, k, out in zip(reqs, idxs, per_req):
            if out is None:
                continue
            if self.states:
                if req.flags & FLAG_END:
                    self.store.end(req.correlation_id)
                else:
                    self.store.put(req.correlation_id, tuple(np.array(out[o]) for _, o in self.states))
            results[k] = {n: self.layout.to_triton(n, a) for n, a in out.items() if n not in state_out}


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, RnnDeployError) else f"{type(exc).__name__}: {first_line(exc)}"


def _shape_without(arr: np.ndarray, axis: Optional[int]) -> Tuple[int, ...]:
    return tuple(s for i, s in enumerate(arr.shape) if i != axis)


def _batch_size(graph: GraphSpec, feed: Mapping[str, np.ndarray]) -> int:
    for t in graph.inputs:
        a = batch_axis(t)
        if a is not None and t.name in feed:
            return int(np.shape(feed[t.name])[a])
    return 1
