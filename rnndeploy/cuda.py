"""A small ctypes wrapper over the CUDA runtime (libcudart), so the TensorRT runner needs
no torch, no cuda-python and no pycuda.

What it covers: device count/properties/memory, malloc/free/memset, host↔device and
device↔device copies (async on a stream), streams, events (elapsed time), and stream
capture → CUDA graph → launch where the runtime has it. Every failing call raises
``CudaError`` naming the call and CUDA's own error name and string.

Finding libcudart (``find_cudart``), first hit wins:
1. ``$RNNDEPLOY_CUDART`` (a path);
2. a libcudart already mapped into this process (e.g. by torch), so one runtime is used;
3. the ``nvidia-cuda-runtime-cu12/13`` wheel's lib dir on sys.path (what the trt86 kit
   and pip-installed torch ship), including ``$TRTKIT_ROOT/site``;
4. torch's bundled copy (``torch/lib``), found on sys.path without importing torch;
5. the dynamic linker: ``libcudart.so.13``, ``.so.12``, ``.so.11.0``, ``libcudart.so``.

Device pointers are plain ints. ``device_pointer`` also accepts a ``DeviceBuffer``, a
torch CUDA tensor (``data_ptr()``) or anything with ``__cuda_array_interface__``, without
importing torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import DeviceError

# cudaMemcpyKind, cudaStreamCaptureMode, cudaDeviceAttr: CUDA ABI constants, unchanged since CUDA 10.
H2D, D2H, D2D = 1, 2, 3
CAPTURE_THREAD_LOCAL = 1
ATTR_CC_MAJOR, ATTR_CC_MINOR, ATTR_SM_COUNT = 75, 76, 16
# Errors that mean "no usable GPU here" rather than "this call went wrong".
NO_DEVICE_ERRORS = {35: "cudaErrorInsufficientDriver", 100: "cudaErrorNoDevice", 3: "cudaErrorInitializationError",
                    999: "cudaErrorUnknown", 34: "cudaErrorStubLibrary"}

_SONAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so")


class CudaError(DeviceError):
    """A CUDA runtime call failed; ``code`` is the cudaError_t value."""

    def __init__(self, message: str, hint: Optional[str] = None, code: int = -1):
        self.code = code
        super().__init__(message, hint)


# -- finding the library --------------------------------------------------------------------
def mapped_libraries(maps_text: Optional[str] = None) -> List[str]:
    """Absolute paths of the files mapped into this process (from /proc/self/maps).

    ``maps_text`` (the text of that file) is injectable for tests; [] where it is unreadable.
    """
    if maps_text is None:
        try:
            with open("/proc/self/maps") as f:
                maps_text = f.read()
        except OSError:
            return []
    return sorted({line.split()[-1] for line in maps_text.splitlines() if line.split() and line.split()[-1].startswith("/")})


def _mapped_cudart(maps_text: Optional[str] = None) -> List[str]:
    return [p for p in mapped_libraries(maps_text) if "/libcudart.so" in p]


def candidate_paths(search_path: Optional[Sequence[str]] = None, environ: Optional[Dict[str, str]] = None,
                    maps_text: Optional[str] = None) -> List[str]:
    """Every libcudart this process could load, in preference order (files that exist,
    then bare sonames for the dynamic linker). Inputs are injectable for tests."""
    env = os.environ if environ is None else environ
    roots = list(sys.path if search_path is None else search_path)
    if env.get("TRTKIT_ROOT"):
        roots.append(os.path.join(env["TRTKIT_ROOT"], "site"))
    out: List[str] = []

    def add(p: str) -> None:
        if p and p not in out:
            out.append(p)

    if env.get("RNNDEPLOY_CUDART"):
        add(env["RNNDEPLOY_CUDART"])
    for p in _mapped_cudart(maps_text):
        add(p)
    for root in roots:
        if not root or not os.path.isdir(root):
            continue
        for pattern in ("nvidia/cuda_runtime/lib/libcudart.so*", "nvidia/cu1[0-9]/lib/libcudart.so*",
                        "torch/lib/libcudart*.so*"):
            for p in sorted(glob.glob(os.path.join(root, pattern)), reverse=True):
                add(p)
    found = ctypes.util.find_library("cudart")
    if found:
        add(found)
    for s in _SONAMES:
        add(s)
    return out


def find_cudart(candidates: Optional[Sequence[str]] = None, loader: Callable[[str], Any] = ctypes.CDLL) -> Tuple[str, Any]:
    """(path, loaded library) of the first candidate that loads.

    Raises:
        DeviceError: none loads (exit 3), listing what was tried.
    """
    tried = []
    for path in candidate_paths() if candidates is None else candidates:
        try:
            return path, loader(path)
        except OSError as exc:
            tried.append(f"{path} ({str(exc).split(':')[-1].strip() or 'not loadable'})")
    raise DeviceError(
        "cannot load the CUDA runtime (libcudart): tried " + "; ".join(tried[:6]) + ("; ..." if len(tried) > 6 else ""),
        "pip install nvidia-cuda-runtime-cu12 (or set RNNDEPLOY_CUDART=/path/to/libcudart.so.12)",
    )


# -- the runtime ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceProperties:
    """One CUDA device. ``total_memory`` is in bytes."""

    index: int
    name: str
    compute_capability: str
    total_memory: int
    multiprocessors: int

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


_I, _U64, _P, _SZ = ctypes.c_int, ctypes.c_ulonglong, ctypes.c_void_p, ctypes.c_size_t
_SIGNATURES: Dict[str, Tuple[Any, ...]] = {
    "cudaGetDeviceCount": (ctypes.POINTER(_I),),
    "cudaRuntimeGetVersion": (ctypes.POINTER(_I),),
    "cudaDriverGetVersion": (ctypes.POINTER(_I),),
    "cudaSetDevice": (_I,),
    "cudaGetDevice": (ctypes.POINTER(_I),),
    "cudaDeviceGetAttribute": (ctypes.POINTER(_I), _I, _I),
    "cudaMemGetInfo": (ctypes.POINTER(_SZ), ctypes.POINTER(_SZ)),
    "cudaMalloc": (ctypes.POINTER(_P), _SZ),
    "cudaFree": (_P,),
    "cudaMemset": (_P, _I, _SZ),
    "cudaMemsetAsync": (_P, _I, _SZ, _P),
    "cudaMemcpy": (_P, _P, _SZ, _I),
    "cudaMemcpyAsync": (_P, _P, _SZ, _I, _P),
    "cudaStreamCreate": (ctypes.POINTER(_P),),
    "cudaStreamDestroy": (_P,),
    "cudaStreamSynchronize": (_P,),
    "cudaDeviceSynchronize": (),
    "cudaEventCreate": (ctypes.POINTER(_P),),
    "cudaEventDestroy": (_P,),
    "cudaEventRecord": (_P, _P),
    "cudaEventSynchronize": (_P,),
    "cudaEventElapsedTime": (ctypes.POINTER(ctypes.c_float), _P, _P),
    "cudaStreamBeginCapture": (_P, _I),
    "cudaStreamEndCapture": (_P, ctypes.POINTER(_P)),
    "cudaGraphInstantiateWithFlags": (ctypes.POINTER(_P), _P, _U64),
    "cudaGraphLaunch": (_P, _P),
    "cudaGraphExecDestroy": (_P,),
    "cudaGraphDestroy": (_P,),
    "cudaHostAlloc": (ctypes.POINTER(_P), _SZ, ctypes.c_uint),
    "cudaFreeHost": (_P,),
}


class CudaRuntime:
    """Functions of one libcudart. ``lib`` is injectable (tests use a stand-in)."""

    def __init__(self, path: Optional[str] = None, lib: Any = None):
        if lib is None:
            path, lib = find_cudart([path] if path else None)
        self.path = path or "<injected>"
        self.lib = lib
        self._fns: Dict[str, Any] = {}
        for name, args in _SIGNATURES.items():
            fn = getattr(lib, name, None)
            if fn is None:
                continue
            try:
                fn.argtypes, fn.restype = list(args), ctypes.c_int
            except (AttributeError, TypeError):  # a stand-in function
                pass
            self._fns[name] = fn
        for name, restype in (("cudaGetErrorString", ctypes.c_char_p), ("cudaGetErrorName", ctypes.c_char_p)):
            fn = getattr(lib, name, None)
            if fn is not None:
                try:
                    fn.argtypes, fn.restype = [ctypes.c_int], restype
                except (AttributeError, TypeError):
                    pass
        props = getattr(lib, "cudaGetDeviceProperties_v2", None) or getattr(lib, "cudaGetDeviceProperties", None)
        if props is not None:
            try:
                props.argtypes, props.restype = [ctypes.c_void_p, ctypes.c_int], ctypes.c_int
            except (AttributeError, TypeError):
                pass
        self._props = props

    # errors ------------------------------------------------------------------------------------
    def error_text(self, code: int) -> str:
        """e.g. "cudaErrorMemoryAllocation: out of memory (code 2)"."""
        name = text = None
        for attr in ("cudaGetErrorName", "cudaGetErrorString"):
            fn = getattr(self.lib, attr, None)
            if fn is not None:
                raw = fn(int(code))
                value = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                if attr == "cudaGetErrorName":
                    name = value
                else:
                    text = value
        name = name or NO_DEVICE_ERRORS.get(int(code), "cudaError")
        return f"{name}: {text} (code {code})" if text else f"{name} (code {code})"

    def check(self, code: int, what: str) -> None:
        if code != 0:
            hint = None
            if int(code) in NO_DEVICE_ERRORS:
                hint = "this needs an NVIDIA GPU with a driver that supports this CUDA runtime"
            elif int(code) == 2:
                hint = "free GPU memory or use smaller shapes"
            raise CudaError(f"{what} failed: {self.error_text(code)}", hint, int(code))

    def has(self, name: str) -> bool:
        return name in self._fns

    def _call(self, name: str, *args: Any) -> int:
        fn = self._fns.get(name)
        if fn is None:
            raise CudaError(f"{name} is not in {self.path}", "use a newer CUDA runtime (nvidia-cuda-runtime-cu12)")
        return int(fn(*args))

    def _out(self, name: str, ctype: Any, *args: Any, what: Optional[str] = None) -> Any:
        v = ctype()
        self.check(self._call(name, ctypes.byref(v), *args), what or name)
        return v.value

    # devices -------------------------------------------------------------------------------------
    def device_count(self) -> int:
        """Number of usable devices; 0 when there is no GPU or no driver (never raises for that)."""
        v = ctypes.c_int(0)
        code = self._call("cudaGetDeviceCount", ctypes.byref(v))
        if code in NO_DEVICE_ERRORS:
            return 0
        self.check(code, "cudaGetDeviceCount")
        return int(v.value)

    def require_device(self, index: int = 0) -> None:
        """Raise DeviceError (exit 3) unless device ``index`` exists; then make it current."""
        v = ctypes.c_int(0)
        code = self._call("cudaGetDeviceCount", ctypes.byref(v))
        if code != 0 or v.value <= index:
            why = self.error_text(code) if code != 0 else f"{v.value} CUDA device(s) visible"
            raise DeviceError(f"no CUDA GPU {index} ({why})", "run this on a machine with an NVIDIA GPU and driver")
        self.set_device(index)

    def set_device(self, index: int) -> None:
        self.check(self._call("cudaSetDevice", int(index)), f"cudaSetDevice({index})")

    def current_device(self) -> int:
        return int(self._out("cudaGetDevice", ctypes.c_int))

    def runtime_version(self) -> int:
        return int(self._out("cudaRuntimeGetVersion", ctypes.c_int))

    def driver_version(self) -> int:
        return int(self._out("cudaDriverGetVersion", ctypes.c_int))

    def attribute(self, attr: int, device: int = 0) -> int:
        v = ctypes.c_int(0)
        self.check(self._call("cudaDeviceGetAttribute", ctypes.byref(v), int(attr), int(device)), "cudaDeviceGetAttribute")
        return int(v.value)

    def mem_get_info(self) -> Tuple[int, int]:
        """(free, total) bytes on the current device."""
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        self.check(self._call("cudaMemGetInfo", ctypes.byref(free), ctypes.byref(total)), "cudaMemGetInfo")
        return int(free.value), int(total.value)

    def device_properties(self, index: int = 0) -> DeviceProperties:
        """Name (from cudaDeviceProp, whose first 256 bytes are the name in every CUDA
        version), compute capability, total memory and SM count of device ``index``."""
        name = "unknown"
        if self._props is not None:
            buf = ctypes.create_string_buffer(8192)  # > sizeof(cudaDeviceProp) in CUDA 11-13
            if int(self._props(buf, int(index))) == 0:
                name = buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace")
        major, minor = self.attribute(ATTR_CC_MAJOR, index), self.attribute(ATTR_CC_MINOR, index)
        previous = self.current_device()
        self.set_device(index)
        try:
            _, total = self.mem_get_info()
        finally:
            self.set_device(previous)
        return DeviceProperties(index, name, f"{major}.{minor}", total, self.attribute(ATTR_SM_COUNT, index))

    # memory ----------------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        p = ctypes.c_void_p()
        self.check(self._call("cudaMalloc", ctypes.byref(p), max(int(nbytes), 1)), f"cudaMalloc({int(nbytes)} bytes)")
        return int(p.value or 0)

    def free(self, ptr: int) -> None:
        if ptr:
            self.check(self._call("cudaFree", ctypes.c_void_p(int(ptr))), "cudaFree")

    def memset(self, ptr: int, value: int, nbytes: int, stream: int = 0) -> None:
        self.check(self._call("cudaMemsetAsync", ctypes.c_void_p(int(ptr)), int(value), int(nbytes), ctypes.c_void_p(int(stream))),
                   "cudaMemsetAsync")

    def memcpy_htod(self, dst: int, src: np.ndarray, stream: int = 0) -> None:
        """Host array → device (async on ``stream``; pageable memory makes it synchronous
        with respect to the host for the staging copy, which keeps ``src`` safe to reuse)."""
        src = _contiguous(src)
        self.check(self._call("cudaMemcpyAsync", ctypes.c_void_p(int(dst)), src.ctypes.data_as(ctypes.c_void_p),
                              src.nbytes, H2D, ctypes.c_void_p(int(stream))), "cudaMemcpyAsync host->device")

    def memcpy_dtoh(self, dst: np.ndarray, src: int, stream: int = 0) -> None:
        """Device → host array (``dst`` must be C-contiguous and writable); synchronise
        ``stream`` before reading ``dst``."""
        if not (dst.flags.c_contiguous and dst.flags.writeable):
            raise ValueError("memcpy_dtoh needs a C-contiguous, writable destination array")
        self.check(self._call("cudaMemcpyAsync", dst.ctypes.data_as(ctypes.c_void_p), ctypes.c_void_p(int(src)),
                              dst.nbytes, D2H, ctypes.c_void_p(int(stream))), "cudaMemcpyAsync device->host")

    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream: int = 0) -> None:
        self.check(self._call("cudaMemcpyAsync", ctypes.c_void_p(int(dst)), ctypes.c_void_p(int(src)), int(nbytes), D2D,
                              ctypes.c_void_p(int(stream))), "cudaMemcpyAsync device->device")

    # streams and events --------------------------------------------------------------------------------
    def stream_create(self) -> int:
        return int(self._out("cudaStreamCreate", ctypes.c_void_p, what="cudaStreamCreate") or 0)

    def stream_destroy(self, stream: int) -> None:
        if stream:
            self.check(self._call("cudaStreamDestroy", ctypes.c_void_p(int(stream))), "cudaStreamDestroy")

    def stream_synchronize(self, stream: int) -> None:
        self.check(self._call("cudaStreamSynchronize", ctypes.c_void_p(int(stream))), "cudaStreamSynchronize")

    def device_synchronize(self) -> None:
        self.check(self._call("cudaDeviceSynchronize"), "cudaDeviceSynchronize")

    def event_create(self) -> int:
        return int(self._out("cudaEventCreate", ctypes.c_void_p, what="cudaEventCreate") or 0)

    def event_destroy(self, event: int) -> None:
        if event:
            self.check(self._call("cudaEventDestroy", ctypes.c_void_p(int(event))), "cudaEventDestroy")

    def event_record(self, event: int, stream: int = 0) -> None:
        self.check(self._call("cudaEventRecord", ctypes.c_void_p(int(event)), ctypes.c_void_p(int(stream))), "cudaEventRecord")

    def event_synchronize(self, event: int) -> None:
        self.check(self._call("cudaEventSynchronize", ctypes.c_void_p(int(event))), "cudaEventSynchronize")

    def event_elapsed_ms(self, start: int, end: int) -> float:
        ms = ctypes.c_float(0.0)
        self.check(self._call("cudaEventElapsedTime", ctypes.byref(ms), ctypes.c_void_p(int(start)), ctypes.c_void_p(int(end))),
                   "cudaEventElapsedTime")
        return float(ms.value)

    # CUDA graphs ----------------------------------------------------------------------------------------
    @property
    def has_graphs(self) -> bool:
        return all(self.has(n) for n in ("cudaStreamBeginCapture", "cudaStreamEndCapture",
                                         "cudaGraphInstantiateWithFlags", "cudaGraphLaunch"))

    def capture_graph(self, stream: int, work: Callable[[], Any]) -> CudaGraph:
        """Capture what ``work()`` enqueues on ``stream`` into an instantiated CUDA graph."""
        if not self.has_graphs:
            raise CudaError(f"{self.path} has no CUDA graph API", "use a CUDA 11.4+ runtime")
        self.check(self._call("cudaStreamBeginCapture", ctypes.c_void_p(int(stream)), CAPTURE_THREAD_LOCAL),
                   "cudaStreamBeginCapture")
        graph = ctypes.c_void_p()
        try:
            work()
        finally:
            code = self._call("cudaStreamEndCapture", ctypes.c_void_p(int(stream)), ctypes.byref(graph))
        self.check(code, "cudaStreamEndCapture")
        exec_ = ctypes.c_void_p()
        code = self._call("cudaGraphInstantiateWithFlags", ctypes.byref(exec_), graph, ctypes.c_ulonglong(0))
        if code != 0:
            self._call("cudaGraphDestroy", graph)
            self.check(code, "cudaGraphInstantiateWithFlags")
        return CudaGraph(self, int(graph.value or 0), int(exec_.value or 0))

    # pinned host memory ------------------------------------------------------------------------------------
    def host_array(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        """A numpy array in page-locked host memory (fast, truly async D2H copies). The
        memory is released when the array is garbage collected."""
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        p = ctypes.c_void_p()
        self.check(self._call("cudaHostAlloc", ctypes.byref(p), nbytes, 0), f"cudaHostAlloc({nbytes} bytes)")
        raw = (ctypes.c_byte * nbytes).from_address(int(p.value))
        owner = np.frombuffer(raw, dtype=np.uint8)  # every view below keeps ``owner`` alive
        _free_when_collected(self, int(p.value), owner)
        count = int(np.prod(shape, dtype=np.int64))
        return owner[: count * dtype.itemsize].view(dtype).reshape(tuple(shape))


def _free_when_collected(rt: CudaRuntime, ptr: int, owner: np.ndarray) -> None:
    import weakref

    def release() -> None:
        try:
            rt._call("cudaFreeHost", ctypes.c_void_p(ptr))
        except Exception:  # interpreter shutdown; the OS reclaims it
            pass

    weakref.finalize(owner, release)


class CudaGraph:
    """An instantiated CUDA graph: ``launch(stream)`` replays the captured work."""

    def __init__(self, rt: CudaRuntime, graph: int, exec_: int):
        self.rt, self.graph, self.exec = rt, graph, exec_

    def launch(self, stream: int) -> None:
        self.rt.check(self.rt._call("cudaGraphLaunch", ctypes.c_void_p(self.exec), ctypes.c_void_p(int(stream))), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self.exec:
            self.rt._call("cudaGraphExecDestroy", ctypes.c_void_p(self.exec))
            self.exec = 0
        if self.graph:
            self.rt._call("cudaGraphDestroy", ctypes.c_void_p(self.graph))
            self.graph = 0


class DeviceBuffer:
    """``nbytes`` of device memory; ``ptr`` is the address. Frees itself on ``free()`` or exit."""

    def __init__(self, rt: CudaRuntime, nbytes: int):
        self.rt = rt
        self.nbytes = int(nbytes)
        self.ptr = rt.malloc(self.nbytes)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.rt.free(ptr)

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.free()

    def __int__(self) -> int:
        return self.ptr


# -- module-level runtime ---------------------------------------------------------------------------
_RUNTIME: Optional[CudaRuntime] = None
_LOCK = threading.Lock()


def runtime() -> CudaRuntime:
    """The process-wide CudaRuntime (loaded on first use).

    Raises:
        DeviceError: libcudart cannot be loaded.
    """
    global _RUNTIME
    with _LOCK:
        if _RUNTIME is None:
            _RUNTIME = CudaRuntime()
        return _RUNTIME


def device_pointer(obj: Any) -> int:
    """Device address of ``obj``: an int, a DeviceBuffer, a torch CUDA tensor or anything
    exposing ``__cuda_array_interface__``. torch is never imported here.

    Raises:
        TypeError: ``obj`` is not on a CUDA device.
    """
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, DeviceBuffer):
        return obj.ptr
    if hasattr(obj, "data_ptr") and getattr(obj, "is_cuda", False):
        if hasattr(obj, "is_contiguous") and not obj.is_contiguous():
            raise TypeError("the torch tensor is not contiguous; call .contiguous() first")
        return int(obj.data_ptr())
    iface = getattr(obj, "__cuda_array_interface__", None)
    if isinstance(iface, dict) and "data" in iface:
        return int(iface["data"][0])
    raise TypeError(f"{type(obj).__name__} is not a CUDA device array")


def is_device_array(obj: Any) -> bool:
    try:
        device_pointer(obj)
    except TypeError:
        return False
    return not isinstance(obj, (int, np.integer))


def _contiguous(a: np.ndarray) -> np.ndarray:
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)
