"""The ``trt`` runner: a serialized TensorRT engine, run through the name-based tensor API
(``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``: TensorRT 8.5+, 10 and 11) with device memory, streams and events
from ``rnndeploy.cuda`` — no torch, no pycuda.

Activation (``engine.inspect_engine.load_engine``) refuses, in one line and before any
``trt.Runtime`` exists, an engine that is missing, truncated or altered (against its
JSON sidecar), built by another TensorRT version or for another GPU, and checks for a
CUDA device first (TensorRT 8.6's Runtime segfaults without one).

Per run: the optimization profile containing the input shapes (nearest ``opt``) is
selected — a shape outside every profile raises ShapeError listing each profile's
ranges; inputs are cast to the engine's dtypes where that is lossless (TensorRT 8.6 has
no int64 tensors: int64 token ids / lengths become int32 after a range check); outputs
come back in the spec's dtypes. Inputs may also be CUDA arrays (torch CUDA tensors,
``__cuda_array_interface__``) of the engine's dtype: they are used in place.

Timing (``prepare`` / ``run_prepared`` / ``timer``): ``prepare`` copies inputs to device
buffers and binds every address once; ``run_prepared`` enqueues ``execute_async_v3``
(or replays a CUDA graph captured from it with ``cuda_graph=True``) on the runner's
stream, plus the H2D/D2H copies when ``include_copies``; it does not synchronise. The
timer records CUDA events on the same stream around ``number`` calls and waits for the
last one, so the figure is GPU time of the enqueued work, excluding host-side waits.

``RunnerOptions.extra`` keys: ``allow_other_gpu`` (bool, same compute capability),
``verify_hash`` (bool, default True: sha256 of the engine against the sidecar),
``profile`` (int: force an optimization profile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from rnndeploy.backends.base import ModelSource, RunDescription, Runner, RunnerOptions, Timer
from rnndeploy.engine.profiles import Profile, describe_profiles, select_profile
from rnndeploy.errors import RnnDeployError, ShapeError, SpecError, UsageError
from rnndeploy.spec import NUMPY_DTYPES


class CudaEventTimer(Timer):
    """GPU time of ``number`` back-to-back calls, between two CUDA events on ``stream``."""

    kind = "cuda-event"

    def __init__(self, rt: Any, stream: int):
        self.rt, self.stream = rt, stream
        self._start, self._end = rt.event_create(), rt.event_create()

    def measure(self, fn: Any, number: int = 1) -> float:
        self.rt.event_record(self._start, self.stream)
        for _ in range(number):
            fn()
        self.rt.event_record(self._end, self.stream)
        self.rt.event_synchronize(self._end)
        return self.rt.event_elapsed_ms(self._start, self._end) / 1000.0

    def close(self) -> None:
        for e in (self._start, self._end):
            self.rt.event_destroy(e)
        self._start = self._end = 0


# -- pure helpers (unit-tested without a GPU) --------------------------------------------------------
def choose_profile(profiles: List[Profile], shapes: Mapping[str, Tuple[int, ...]], forced: Optional[int] = None) -> int:
    """The profile for these input shapes (see profiles.select_profile); ``forced`` must contain them."""
    dynamic = {n: s for n, s in shapes.items() if any(n in p.shapes for p in profiles)}
    if forced is not None:
        if not 0 <= forced < len(profiles):
            raise UsageError(f"profile {forced} does not exist; the engine has {len(profiles)}", describe_profiles(profiles))
        if not profiles[forced].contains(dynamic):
            given = ", ".join(f"{n} {list(s)}" for n, s in dynamic.items())
            raise ShapeError(f"input shapes {given} lie outside the requested profile {forced}", describe_profiles(profiles))
        return forced
    if not profiles:
        return 0
    return select_profile(profiles, dynamic)


def to_engine_dtype(name: str, arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr`` as the engine's dtype, C-contiguous. Only lossless casts: int64 → int32
    when every value fits; bool ↔ engine bool; float32 ↔ float16 for FP16 I/O engines.

    Raises:
        ShapeError: the cast would lose information.
    """
    dtype = np.dtype(dtype)
    if arr.dtype == dtype:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ShapeError(f"input {name!r} holds values outside {dtype} (the engine's type for it)",
                             f"keep values within [{info.min}, {info.max}]")
        return np.ascontiguousarray(arr.astype(dtype))
    if arr.dtype.kind == "f" and dtype.kind == "f":
        return np.ascontiguousarray(arr.astype(dtype))
    if arr.dtype.kind == "b" or dtype.kind == "b":
        return np.ascontiguousarray(arr.astype(dtype))
    raise ShapeError(f"input {name!r} is {arr.dtype} but the engine takes {dtype}", f"give {name!r} as {dtype}")


@dataclass
class _Prepared:
    profile: int
    shapes: Dict[str, Tuple[int, ...]]
    host_inputs: Dict[str, np.ndarray]
    outputs: Dict[str, np.ndarray]  # host arrays (pinned) the outputs are copied into
    addresses: Dict[str, int]  # device address of every I/O tensor
    owned: List[Any] = field(default_factory=list)  # device buffers that belong to this preparation
    kept: List[Any] = field(default_factory=list)  # caller's device arrays, kept alive
    graph: Any = None


class TensorRTRunner(Runner):
    """Runs a serialized engine (``ModelSource.engine``). See the module docstring."""

    backend = "trt"

    def __init__(self, source: ModelSource, options: Optional[RunnerOptions] = None, label: Optional[str] = None):
        super().__init__(source, options, label)
        self._loaded: Any = None
        self._rt: Any = None
        self._context: Any = None
        self._stream = 0
        self._timer: Optional[CudaEventTimer] = None
        self._buffers: Dict[str, Any] = {}
        self._graph_note: Optional[str] = None
        self._profile: Optional[int] = None
        self._bound: Optional[_Prepared] = None
        self._prepared: List[_Prepared] = []
        self._facts: Dict[str, Any] = {}
        self._profiles: List[Profile] = []

    # lifecycle ------------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        try:
            self._activate()
        except BaseException:
            self._deactivate_impl()  # release in TensorRT's order, not the garbage collector's
            raise

    def _activate(self) -> None:
        from rnndeploy import cuda
        from rnndeploy.engine.inspect_engine import engine_profiles, io_tensors, load_engine

        path = self.source.need("engine", self.label)
        extra = dict(self.options.extra)
        device = _device_index(self.options.device)
        self._loaded = load_engine(path, device=device, allow_other_gpu=bool(extra.get("allow_other_gpu", False)),
                                   verify_hash=bool(extra.get("verify_hash", True)))
        trt, engine = self._loaded.trt, self._loaded.engine
        side = self._loaded.sidecar.to_dict() if self._loaded.sidecar else {}
        self._facts = {"precision": dict(side.get("precision") or {}), "gpu": dict(self._loaded.gpu),
                       "tensorrt": self._loaded.features.version}
        self._check_precision()
        self._rt = cuda.runtime()
        self._io = io_tensors(trt, engine)
        self._inputs = [t["name"] for t in self._io if t["mode"] == "input"]
        self._outputs = [t["name"] for t in self._io if t["mode"] == "output"]
        self._dtypes = {t["name"]: np.dtype(t["dtype"]) for t in self._io}
        missing = [t.name for t in self.graph_spec.inputs if t.name not in self._inputs]
        unfed = [n for n in self._inputs if n not in {t.name for t in self.graph_spec.inputs}]
        if missing or unfed:
            raise SpecError(f"engine {path} takes inputs {self._inputs} but the model spec gives "
                            f"{[t.name for t in self.graph_spec.inputs]}",
                            "build the engine from the same ONNX file (same --with-state form) as the spec")
        self._profiles = engine_profiles(trt, engine)
        self._context = engine.create_execution_context()
        if self._context is None:
            raise RnnDeployError(f"TensorRT could not create an execution context for {path}", "free GPU memory and retry")
        self._stream = self._rt.stream_create()
        self._profile = None

    def _deactivate_impl(self) -> None:
        if self._stream and self._rt is not None:
            self._rt.stream_synchronize(self._stream)
        for p in self._prepared:
            if p.graph is not None:
                p.graph.destroy()
            for buf in p.owned:
                buf.free()
        self._prepared = []
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        self._bound = None
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if self._stream:
            self._rt.stream_destroy(self._stream)
            self._stream = 0
        self._context = None  # the context must go before the engine it came from
        if self._loaded is not None:
            self._loaded.release()
        self._loaded = None

    # running --------------------------------------------------------------------------------------
    def _infer_impl(self, feed: Dict[str, Any]) -> Mapping[str, Any]:
        prepared = self._prepare(feed, own=False)
        self._enqueue(prepared, copy_in=True, copy_out=True)
        self._rt.stream_synchronize(self._stream)
        return self._to_spec_dtypes({n: a.copy() for n, a in prepared.outputs.items()})

    def _prepare_impl(self, feed: Dict[str, Any]) -> _Prepared:
        # Timed preparations own their buffers: a later prepare() with other shapes must not
        # move memory an earlier one (or its CUDA graph) still points at.
        prepared = self._prepare(feed, own=True)
        self._prepared.append(prepared)
        if not self.options.include_copies:
            self._copy_inputs(prepared)
        if self.options.cuda_graph:
            prepared.graph = self._capture(prepared)
        return prepared

    def _prepare(self, feed: Dict[str, Any], own: bool) -> _Prepared:
        from rnndeploy import cuda

        shapes = {n: tuple(int(d) for d in feed[n].shape) for n in self._inputs}
        forced = self.options.extra.get("profile")
        profile = choose_profile(self._profiles, shapes, None if forced is None else int(forced))
        prepared = _Prepared(profile, shapes, {}, {}, {})
        self._set_shapes(prepared)
        for n in self._inputs:
            value = feed[n]
            if cuda.is_device_array(value):
                dtype = str(getattr(value, "dtype", "")).replace("torch.", "")
                if np.dtype(NUMPY_DTYPES.get(dtype, dtype)) != self._dtypes[n]:
                    raise ShapeError(f"input {n!r} is a CUDA {dtype} array but the engine takes {self._dtypes[n]}",
                                     f"convert it to {self._dtypes[n]} first")
                prepared.addresses[n] = cuda.device_pointer(value)
                prepared.kept.append(value)
                continue
            host = to_engine_dtype(n, np.asarray(value), self._dtypes[n])
            prepared.host_inputs[n] = host
            prepared.addresses[n] = self._device_memory(n, host.nbytes, prepared if own else None)
        for n in self._outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise RnnDeployError(f"TensorRT left output {n!r} with an unresolved shape {list(shape)}",
                                     "set every input shape (a shape-tensor input may be missing)")
            prepared.outputs[n] = self._rt.host_array(shape, self._dtypes[n])
            prepared.addresses[n] = self._device_memory(n, prepared.outputs[n].nbytes, prepared if own else None)
        self._bind(prepared)
        return prepared

    def _set_shapes(self, prepared: _Prepared) -> None:
        ctx = self._context
        self._bound = None
        if prepared.profile != self._profile:
            try:
                ok = ctx.set_optimization_profile_async(prepared.profile, self._stream)
            except RuntimeError:  # the binding raises instead of returning False (PY_ASSERT_RUNTIME_ERROR)
                ok = False
            if not ok:
                raise RnnDeployError(f"TensorRT refused optimization profile {prepared.profile}")
            self._profile = prepared.profile
        for n in self._inputs:
            if not ctx.set_input_shape(n, prepared.shapes[n]):
                raise ShapeError(f"TensorRT rejected shape {list(prepared.shapes[n])} for input {n!r}",
                                 describe_profiles(self._profiles))

    def _bind(self, prepared: _Prepared) -> None:
        """Make the context run ``prepared``: profile, input shapes, every tensor address."""
        if self._bound is prepared:
            return
        self._set_shapes(prepared)
        for n, ptr in prepared.addresses.items():
            if not self._context.set_tensor_address(n, ptr):
                raise RnnDeployError(f"TensorRT refused the device address of {n!r}")
        self._bound = prepared

    def _run_prepared_impl(self, prepared: _Prepared) -> Any:
        self._enqueue(prepared, copy_in=self.options.include_copies, copy_out=self.options.include_copies)
        return prepared.outputs

    def _enqueue(self, prepared: _Prepared, copy_in: bool, copy_out: bool) -> None:
        if prepared.graph is not None and self._bound is not prepared:
            # The context was set up for another preparation after this graph was captured, and a
            # graph replays the context state of its capture: capture it again for this one.
            prepared.graph.destroy()
            prepared.graph = None
            prepared.graph = self._capture(prepared)
        if copy_in:
            self._copy_inputs(prepared)
        if prepared.graph is not None:
            prepared.graph.launch(self._stream)  # the graph holds its own addresses and shapes
        else:
            self._bind(prepared)
            if not self._context.execute_async_v3(self._stream):
                raise RnnDeployError("TensorRT execute_async_v3 failed (see the TensorRT messages above)")
        if copy_out:
            for n, host in prepared.outputs.items():
                self._rt.memcpy_dtoh(host, prepared.addresses[n], self._stream)

    def _copy_inputs(self, prepared: _Prepared) -> None:
        for n, host in prepared.host_inputs.items():
            self._rt.memcpy_htod(prepared.addresses[n], host, self._stream)

    def _capture(self, prepared: _Prepared) -> Any:
        """A CUDA graph of one execute_async_v3 (after a warm-up run TensorRT needs to do its
        shape-dependent setup outside the capture). On failure: no graph, and say why."""
        from rnndeploy.cuda import CudaError

        # With include_copies, prepare() left the device inputs unwritten: copy them before this
        # warm-up run, so it never reads garbage (e.g. out-of-range token ids for a Gather).
        self._enqueue(prepared, copy_in=self.options.include_copies, copy_out=False)
        self._rt.stream_synchronize(self._stream)
        ok: List[bool] = []
        try:
            graph = self._rt.capture_graph(self._stream, lambda: ok.append(bool(self._context.execute_async_v3(self._stream))))
        except CudaError as exc:
            self._graph_note = f"CUDA graph capture failed, running without: {exc}"
            return None
        if not all(ok):
            graph.destroy()
            self._graph_note = "execute_async_v3 failed during CUDA graph capture; running without a graph"
            return None
        self._graph_note = None
        return graph

    def _device_memory(self, name: str, nbytes: int, owner: Optional[_Prepared]) -> int:
        """Device memory for ``name``: a buffer owned by ``owner``, or (None) the runner's shared
        buffer for ``name``, reused across infer() calls and grown when needed."""
        from rnndeploy.cuda import DeviceBuffer

        if owner is not None:
            buf = DeviceBuffer(self._rt, max(nbytes, 1))
            owner.owned.append(buf)
            return buf.ptr
        buf = self._buffers.get(name)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                self._rt.stream_synchronize(self._stream)
                buf.free()
            buf = DeviceBuffer(self._rt, max(nbytes, 1))
            self._buffers[name] = buf
            self._bound = None
        return buf.ptr

    def _to_spec_dtypes(self, out: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        specs = {t.name: t for t in self.graph_spec.outputs}
        result = {}
        for n, a in out.items():
            t = specs.get(n)
            want = NUMPY_DTYPES.get(t.dtype) if t is not None else None
            result[n] = a.astype(want) if want is not None and a.dtype != want else a
        return result

    # description and timing -----------------------------------------------------------------------
    def timer(self) -> Timer:
        self._require_active("timer")
        if self._timer is None:
            self._timer = CudaEventTimer(self._rt, self._stream)
        return self._timer

    def describe(self) -> RunDescription:
        prec = self._facts.get("precision", {})
        gpu = self._facts.get("gpu", {})
        details: Dict[str, Any] = {
            "engine": self.source.engine,
            "tensorrt": self._facts.get("tensorrt"),
            "precision_path": prec.get("path"),
            "policy": prec.get("policy"),
            "profiles": [p.describe() for p in self._profiles],
        }
        if self._graph_note:
            details["cuda_graph_note"] = self._graph_note
        return RunDescription(
            backend=self.label,
            device=f"cuda:{_device_index(self.options.device)} ({gpu.get('name', '?')})",
            precision=prec.get("requested", self.options.precision),
            host_device_copies=self.options.include_copies,
            cuda_graph=self.options.cuda_graph and self._graph_note is None,
            timer="cuda-event",
            details=details,
        )

    def _check_precision(self) -> None:
        side = self._loaded.sidecar
        built = (side.precision.get("requested") if side is not None else None) or None
        if built and built != self.options.precision:
            raise UsageError(f"engine {self.source.engine} was built {built} but the run asks for {self.options.precision}",
                             f"use --precision {built} with this engine, or build another with build-engine")


def _device_index(device: Optional[str]) -> int:
    if device in (None, "cuda", "gpu"):
        return 0
    text = str(device)
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise UsageError(f"device {device!r} is not a CUDA device for the trt backend", "use cuda or cuda:N")
