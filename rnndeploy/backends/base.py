"""The Runner interface every backend implements (torch, ort-cpu, ort-cuda, ort-trt, trt).

Lifecycle (Polygraphy style)::

    with create_runner("ort-cpu", source, RunnerOptions(threads=2)) as runner:
        outputs = runner.infer({"x": x})          # checked inputs -> {name: np.ndarray}

A subclass implements three hooks and declares its backend name:

    _activate_impl()          load the model / engine, allocate device memory
    _infer_impl(feed)         run once; ``feed`` is already checked; return {output name: array}
    _deactivate_impl()        free everything ``_activate_impl`` took

The base class owns the state machine (activate twice, infer while inactive: clear
errors), checks input names, dtypes and shapes against the model's GraphSpec (the
message lists what is expected), checks that every declared output came back, and
returns host numpy arrays.

Timing hook (used by rnndeploy.bench; no runner formats or aggregates times):

    prepared = runner.prepare(feed)   # once, NOT timed: e.g. copy inputs to device buffers
    timer = runner.timer()            # HostTimer for CPU runners; GPU runners return a
                                      # CUDA-event timer (see Timer) so no host clock wraps
                                      # asynchronous work
    call = runner.bind_prepared(prepared)   # == lambda: runner.run_prepared(prepared)
    seconds = timer.measure(call, number)

``run_prepared`` runs the model on what ``prepare`` returned and must not copy outputs
back to the host unless ``describe().host_device_copies`` says copies are included.
The defaults (prepare = the checked host feed, run_prepared = ``_infer_impl``) are right
for CPU runners. A GPU runner overrides ``_prepare_impl`` (device-resident inputs and
output buffers), ``_run_prepared_impl`` (enqueue + the synchronisation its timer needs)
and ``timer()``, and states all of it in ``describe()``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from rnndeploy.errors import RnnDeployError, ShapeError, SpecError, UsageError
from rnndeploy.spec import PRECISIONS, GraphSpec, ModelSpec, TensorSpec


# -- what a runner is given ---------------------------------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """Everything a runner may load, plus the contract it is checked against.

    A backend uses the artefact it needs and raises a UsageError naming the missing
    option otherwise (``need``). ``spec`` + ``graph`` + ``with_state`` select the
    GraphSpec inputs are checked against (``graph_spec``).

    Attributes:
        spec: the model contract (from ONNX metadata, a checkpoint, or
            ``spec_from_onnx_io`` for a foreign ONNX file).
        graph: which of ``spec.graphs`` this source runs ("model", "encoder", ...).
        with_state: the streaming form (initial states in, final states out).
        onnx: path of the ONNX file (ort-* runners; trt may build from it).
        checkpoint: rnndeploy checkpoint directory (torch runner).
        module: a user module as "path/to/file.py:factory" (torch runner).
        engine: path of a serialized TensorRT engine (trt runner).
        keras: path of a saved Keras model, .keras or .h5 (keras runner).
        onnx_bytes: an ONNX model held in memory (export validation, FP16 checks);
            ONNX runners load it instead of ``onnx``.
    """

    spec: ModelSpec
    graph: str = "model"
    with_state: bool = False
    onnx: Optional[str] = None
    checkpoint: Optional[str] = None
    module: Optional[str] = None
    engine: Optional[str] = None
    keras: Optional[str] = None
    onnx_bytes: Optional[bytes] = field(default=None, repr=False)

    @classmethod
    def for_graph(cls, graph: GraphSpec, **artefacts: Any) -> ModelSource:
        """A source whose contract is exactly ``graph`` (every tensor kept, state included),
        for code that holds a GraphSpec rather than a whole model spec."""
        return cls(spec=ModelSpec(name=graph.name, family="custom", graphs={graph.name: graph}), graph=graph.name,
                   with_state=True, **artefacts)

    @property
    def graph_spec(self) -> GraphSpec:
        return self.spec.graph(self.graph).streaming(self.with_state)

    def onnx_model(self, backend: str) -> Union[str, bytes]:
        """What an ONNX runner loads: the in-memory model when there is one, else the ONNX path
        (a UsageError naming --onnx when there is neither)."""
        return self.onnx_bytes if self.onnx_bytes is not None else self.need("onnx", backend)

    def need(self, what: str, backend: str) -> str:
        """The path for artefact ``what`` ("onnx", "checkpoint", "module", "engine", "keras") or a UsageError."""
        value = getattr(self, what)
        if not value:
            option = {"onnx": "--onnx FILE", "checkpoint": "--checkpoint DIR", "module": "--module FILE.py:FACTORY",
                      "engine": "--engine FILE", "keras": "--keras FILE.keras"}[what]
            raise UsageError(f"backend {backend!r} needs a {what} and none was given", f"pass {option}")
        return value


@dataclass(frozen=True)
class RunnerOptions:
    """How to run. Every backend reads the fields that apply to it and ignores the rest.

    Attributes:
        precision: "fp32" (default) or "fp16". For torch: autocast or .half() (see
            ``extra["fp16_mode"]``); for ort-trt / trt: FP16 kernels allowed.
        device: "cpu", "cuda" or "cuda:N"; None = the backend's natural device.
        threads: intra-op CPU threads; None = the backend's default.
        cuda_graph: capture the run in a CUDA graph and replay it (GPU backends; fixed
            shapes per capture).
        include_copies: when True, timed runs include host->device input copies and
            device->host output copies; default False (device-resident inputs, outputs
            left on the device) — the figure most latency budgets mean on a GPU.
        extra: backend-specific settings (documented by each backend), e.g. ORT
            graph optimisation level, TensorRT EP profile shapes, torch fp16_mode.
    """

    precision: str = "fp32"
    device: Optional[str] = None
    threads: Optional[int] = None
    cuda_graph: bool = False
    include_copies: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision {self.precision!r} is unknown", f"use one of {', '.join(PRECISIONS)}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class RunDescription:
    """What a latency figure from this runner includes. Shown beside every number.

    Attributes:
        backend: registry name ("ort-cpu", "trt", ...).
        device: e.g. "cpu", "cuda:0 (NVIDIA H100)".
        precision: "fp32" / "fp16" as run (not as requested, if the backend had to fall back).
        threads: CPU threads used (None when not applicable / backend default unknown).
        host_device_copies: timed region includes host<->device copies.
        cuda_graph: timed region replays a captured CUDA graph.
        timer: "host" (time.perf_counter around synchronous calls) or "cuda-event".
        details: backend specifics worth printing (provider options, torch fp16 mode, ...).
    """

    backend: str
    device: str
    precision: str
    threads: Optional[int] = None
    host_device_copies: bool = False
    cuda_graph: bool = False
    timer: str = "host"
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["details"] = dict(self.details)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunDescription:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def summary(self) -> str:
        """One line, e.g. "ort-cpu fp32 on cpu, 2 threads, host timer"."""
        parts = [f"{self.backend} {self.precision} on {self.device}"]
        if self.threads:
            parts.append(f"{self.threads} threads")
        if self.device != "cpu":
            parts.append("with H2D/D2H copies" if self.host_device_copies else "device-resident I/O")
            parts.append("CUDA graph" if self.cuda_graph else "no CUDA graph")
        parts.append(f"{self.timer} timer")
        return ", ".join(parts)


# -- timing --------------------------------------------------------------------------------
class Timer:
    """Measures ``number`` back-to-back calls of ``fn``; returns total seconds.

    ``kind`` goes into RunDescription.timer. Subclasses: HostTimer here; GPU runners
    provide a CUDA-event timer (record an event on their stream, call ``fn`` number
    times, record a second event, synchronise on it, return elapsed ms / 1000).
    """

    kind: ClassVar[str] = "abstract"

    def measure(self, fn: Callable[[], Any], number: int = 1) -> float:
        raise NotImplementedError


class HostTimer(Timer):
    """Host wall clock around synchronous calls. ``clock`` is injectable for tests."""

    kind = "host"

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock

    def measure(self, fn: Callable[[], Any], number: int = 1) -> float:
        clock = self.clock
        if number == 1:  # the common case, without loop overhead inside the timed region
            start = clock()
            fn()
            return clock() - start
        start = clock()
        for _ in range(number):
            fn()
        return clock() - start


# -- the runner ------------------------------------------------------------------------------
class Runner:
    """Base class of every backend runner. See the module docstring for the contract.

    Args:
        source: the model artefacts and spec.
        options: how to run (precision, device, threads, CUDA graph, ...).
        label: what this runner is called in results and messages (default: the
            registry name), e.g. "torch:fp16" when one run holds several
            configurations of a backend (``create_runner`` passes the label it parsed).
    """

    # The registry name of the class (fixed; the instance's name is ``label``).
    backend: ClassVar[str] = "abstract"
    # Precisions this backend computes in (RunnerOptions.precision / a label's fp16, bf16 modifier).
    precisions: ClassVar[Tuple[str, ...]] = ("fp32", "fp16")

    def __init__(self, source: ModelSource, options: Optional[RunnerOptions] = None, label: Optional[str] = None):
        self.source = source
        self.options = options or RunnerOptions()
        self.label: str = label or self.backend
        if self.options.precision not in self.precisions:
            raise UsageError(f"backend {type(self).backend!r} does not compute in {self.options.precision}",
                             f"its precisions: {', '.join(self.precisions)}")
        self.graph_spec: GraphSpec = source.graph_spec
        self._active = False

    # lifecycle ------------------------------------------------------------------------------
    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> Runner:
        if self._active:
            raise RnnDeployError(f"runner {self.label!r} is already active", "deactivate it before activating again")
        self._activate_impl()
        self._active = True
        return self

    def deactivate(self) -> None:
        if not self._active:
            return
        try:
            self._deactivate_impl()
        finally:
            self._active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # inference ------------------------------------------------------------------------------
    def infer(self, feed: Mapping[str, Any], check: bool = True) -> Dict[str, np.ndarray]:
        """Run once on host arrays keyed by input name; return host arrays keyed by output name.

        Raises:
            ShapeError: an input is missing, unexpected, or has the wrong dtype / shape.
            SpecError: the backend did not return an output the spec declares.
        """
        self._require_active("infer")
        if check:
            feed = self.check_inputs(feed)
        out = self._infer_impl(dict(feed))
        return self._check_outputs(out)

    def prepare(self, feed: Mapping[str, Any]) -> Any:
        """Checked inputs turned into whatever ``run_prepared`` consumes (not timed)."""
        self._require_active("prepare")
        return self._prepare_impl(self.check_inputs(feed))

    def run_prepared(self, prepared: Any) -> Any:
        """One timed run on the result of ``prepare``. Returns backend-native outputs."""
        return self._run_prepared_impl(prepared)

    def bind_prepared(self, prepared: Any) -> Callable[[], Any]:
        """A zero-argument callable equivalent to ``run_prepared(prepared)``.

        The benchmark times this callable; a backend may return something leaner than
        the default closure (e.g. ``functools.partial(session.run, names, feed)``) so
        the harness adds as little as possible to the smallest workloads.
        """
        impl = self._run_prepared_impl
        return lambda: impl(prepared)

    def timer(self) -> Timer:
        """The timer for ``run_prepared``; HostTimer unless the backend overrides it."""
        return HostTimer()

    def describe(self) -> RunDescription:
        """What this runner's latency figures include. Subclasses should override."""
        return RunDescription(backend=self.label, device=self.options.device or "cpu",
                              precision=self.options.precision, threads=self.options.threads)

    # checking ------------------------------------------------------------------------------
    def check_inputs(self, feed: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Validate ``feed`` against the GraphSpec; returns it as {name: np.ndarray}."""
        return check_feed(self.graph_spec, feed, self.label)

    def _check_outputs(self, out: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        missing = [t.name for t in self.graph_spec.outputs if t.name not in out]
        if missing:
            raise SpecError(
                f"backend {self.label!r} returned no output {', '.join(repr(m) for m in missing)}",
                f"the model returned: {', '.join(sorted(out)) or 'nothing'}; the spec expects {_expected(self.graph_spec.outputs)}",
            )
        return {t.name: np.asarray(out[t.name]) for t in self.graph_spec.outputs}

    def _require_active(self, what: str) -> None:
        if not self._active:
            raise RnnDeployError(f"runner {self.label!r} is not active ({what} called)",
                                 "use it as a context manager or call activate() first")

    # subclass hooks ---------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        raise NotImplementedError

    def _infer_impl(self, feed: Dict[str, np.ndarray]) -> Mapping[str, Any]:
        raise NotImplementedError

    def _deactivate_impl(self) -> None:
        pass

    def _prepare_impl(self, feed: Dict[str, np.ndarray]) -> Any:
        return feed

    def _run_prepared_impl(self, prepared: Any) -> Any:
        return self._infer_impl(prepared)


# -- input checking (also used without a runner, e.g. for golden files) -------------------------
def check_feed(graph: GraphSpec, feed: Mapping[str, Any], who: str = "model") -> Dict[str, np.ndarray]:
    """Check names, dtypes and shapes of ``feed`` against ``graph``'s inputs.

    Dynamic axes must be consistent: every input with a "batch" axis has the same
    batch size, and so on. Returns the feed as numpy arrays (no copies, no casts).

    Raises:
        ShapeError: naming the offending input and listing what is expected.
    """
    expected = _expected(graph.inputs)
    names = {t.name for t in graph.inputs}
    missing = [t.name for t in graph.inputs if t.name not in feed]
    extra = sorted(set(feed) - names)
    if missing or extra:
        what = []
        if missing:
            what.append("missing " + ", ".join(repr(m) for m in missing))
        if extra:
            what.append("unexpected " + ", ".join(repr(e) for e in extra))
        raise ShapeError(f"{who}: inputs do not match graph {graph.name!r}: {'; '.join(what)}", f"expected {expected}")
    sizes: Dict[str, Tuple[int, str]] = {}
    out: Dict[str, np.ndarray] = {}
    for t in graph.inputs:
        arr = np.asarray(feed[t.name]) if not _is_device_array(feed[t.name]) else feed[t.name]
        dtype = str(getattr(arr, "dtype", "?")).replace("torch.", "")
        if dtype != t.dtype:
            raise ShapeError(f"{who}: input {t.name!r} has dtype {dtype}, expected {t.dtype}", f"expected {expected}")
        shape = tuple(int(s) for s in arr.shape)
        if len(shape) != len(t.dims):
            raise ShapeError(f"{who}: input {t.name!r} has shape {list(shape)} (rank {len(shape)}), "
                             f"expected rank {len(t.dims)} {_dims(t)}", f"expected {expected}")
        for axis, (size, dim) in enumerate(zip(shape, t.dims)):
            if isinstance(dim, int):
                if size != dim:
                    raise ShapeError(f"{who}: input {t.name!r} axis {axis} has size {size}, expected {dim} "
                                     f"(shape {list(shape)} vs {_dims(t)})", f"expected {expected}")
            elif dim in sizes and sizes[dim][0] != size:
                first_size, first_name = sizes[dim]
                raise ShapeError(f"{who}: axis {dim!r} is {size} in input {t.name!r} but {first_size} in {first_name!r}",
                                 f"give every input the same {dim} size; expected {expected}")
            else:
                sizes.setdefault(dim, (size, t.name))
        out[t.name] = arr
    return out


def _is_device_array(x: Any) -> bool:
    # torch tensors (possibly on CUDA) pass through unconverted; anything with a dtype and shape works.
    return not isinstance(x, np.ndarray) and hasattr(x, "dtype") and hasattr(x, "shape") and hasattr(x, "device")


def _dims(t: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in t.dims) + "]"


def _expected(tensors: Tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{t.name} {t.dtype}{_dims(t)}" for t in tensors) or "no tensors"
