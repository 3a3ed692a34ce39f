"""Stand-ins for CUDA: checks of rnndeploy's calls and their order, never of CUDA itself.

- FakeCuda: rnndeploy.cuda's runtime object: device memory as bytearrays, a stream as a queue
  run at synchronisation, graph capture as a recorded list of kernels.
- FakeLibcudart: the ctypes library under rnndeploy.cuda.CudaRuntime: configured error codes.
"""

from __future__ import annotations

import types

import numpy as np


class FakeCuda:
    """Device memory as bytearrays; a stream is a queue run at synchronisation; graph
    capture records the enqueued kernels so launch() replays them."""

    ONLY = None

    def __init__(self, count=1):
        FakeCuda.ONLY = self
        self.count, self.mem, self.next, self.queue, self.capturing, self.log = count, {}, 0x1000, [], None, []
        self.path = "fake-cudart"

    def require_device(self, i):
        from rnndeploy.errors import DeviceError

        if i >= self.count:
            raise DeviceError("no CUDA GPU 0 (fake)")

    def device_properties(self, i):
        return types.SimpleNamespace(name="Fake GPU", compute_capability="9.0", total_memory=80 << 30)

    def runtime_version(self):
        return 12010

    def driver_version(self):
        return 13000

    def set_device(self, i):
        self.log.append(("set_device", i))

    def mem_get_info(self):
        used = sum(len(b) for b in self.mem.values())
        return (80 << 30) - used, 80 << 30

    def malloc(self, n):
        p, self.next = self.next, self.next + n + 256
        self.mem[p] = bytearray(n)
        return p

    def free(self, p):
        del self.mem[p]

    def read(self, p, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(bytes(self.mem[p][:n]), dtype).reshape(shape).copy()

    def write(self, p, arr):
        self.mem[p][: arr.nbytes] = np.ascontiguousarray(arr).tobytes()

    def enqueue(self, fn):
        (self.capturing if self.capturing is not None else self.queue).append(fn)

    def memcpy_htod(self, dst, arr, stream=0):
        data = np.ascontiguousarray(arr).copy()
        self.log.append("h2d")
        self.enqueue(lambda: self.write(dst, data))

    def memcpy_dtoh(self, arr, src, stream=0):
        self.log.append("d2h")
        self.enqueue(lambda: arr.__setitem__(Ellipsis, self.read(src, arr.shape, arr.dtype)))

    def stream_synchronize(self, stream):
        while self.queue:
            self.queue.pop(0)()

    def host_array(self, shape, dtype):
        return np.zeros(shape, dtype)

    stream_create = lambda self: 5  # noqa: E731
    stream_destroy = lambda self, s: None  # noqa: E731
    event_create = lambda self: 1  # noqa: E731
    event_destroy = lambda self, e: None  # noqa: E731

    def event_record(self, e, s):
        self.log.append("event")

    def event_synchronize(self, e):
        self.stream_synchronize(0)

    def event_elapsed_ms(self, a, b):
        return 2.0

    def capture_graph(self, stream, work):
        self.capturing = []
        try:
            work()
            kernels = self.capturing
        finally:
            self.capturing = None
        self.log.append("capture")
        return types.SimpleNamespace(launch=lambda s: [self.enqueue(k) for k in kernels], destroy=lambda: None)


class FakeLibcudart:
    """A stand-in for the loaded libcudart (what rnndeploy.cuda.CudaRuntime(lib=...) calls): its
    functions return configured error codes and write outputs through ctypes byref."""

    NAMES = {0: b"cudaSuccess", 2: b"cudaErrorMemoryAllocation", 100: b"cudaErrorNoDevice", 700: b"cudaErrorIllegalAddress"}
    TEXTS = {2: b"out of memory", 100: b"no CUDA-capable device is detected", 700: b"an illegal memory access was encountered"}

    def __init__(self, count=0, count_code=100, malloc_code=0):
        self.count, self.count_code, self.malloc_code = count, count_code, malloc_code
        self.calls = []

    def cudaGetErrorName(self, code):
        return self.NAMES.get(code, b"cudaErrorUnknown")

    def cudaGetErrorString(self, code):
        return self.TEXTS.get(code, b"unknown error")

    def cudaGetDeviceCount(self, ref):
        ref._obj.value = self.count
        return self.count_code

    def cudaMalloc(self, ref, nbytes):
        self.calls.append(("malloc", nbytes))
        if self.malloc_code == 0:
            ref._obj.value = 0x1000
        return self.malloc_code

    def cudaSetDevice(self, i):
        return 0

    def cudaFree(self, p):
        self.calls.append(("free", p.value))
        return 0

    def cudaEventElapsedTime(self, ref, a, b):
        ref._obj.value = 1.5
        return 700
