"""rnndeploy.cuda without a GPU: library discovery, error mapping, pointers; the real
libcudart (when installed, e.g. the trt86 kit's) must load and report "no device" cleanly.
Device work (malloc, copies, events, graphs) is in the gpu-marked tests at the end."""

from __future__ import annotations

import types

import numpy as np
import pytest

from rnndeploy import cuda
from rnndeploy.errors import DeviceError
from tests.fakes.cuda import FakeLibcudart


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return str(path)


def test_candidate_paths_order(tmp_path):
    site = tmp_path / "site"
    wheel = _touch(site / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12")
    cu13 = _touch(site / "nvidia" / "cu13" / "lib" / "libcudart.so.13")
    torch_lib = _touch(tmp_path / "site2" / "torch" / "lib" / "libcudart-abc123.so.12")
    kit = _touch(tmp_path / "kit" / "site" / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.12.1")
    maps = "7f-8f r-xp 0 0 0 /opt/cuda/lib64/libcudart.so.12.4.127\n7f-8f r-xp 0 0 0 /usr/lib/libc.so.6"
    env = {"RNNDEPLOY_CUDART": "/explicit/libcudart.so", "TRTKIT_ROOT": str(tmp_path / "kit")}
    got = cuda.candidate_paths([str(site), str(tmp_path / "site2"), "/does/not/exist"], env, maps)
    assert got[:6] == ["/explicit/libcudart.so", "/opt/cuda/lib64/libcudart.so.12.4.127", wheel, cu13, torch_lib, kit]
    assert got[-4:] == ["libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"]
    assert len(got) == len(set(got))


def test_find_cudart_lists_what_it_tried():
    def loader(path):
        raise OSError(f"{path}: cannot open shared object file: No such file or directory")

    with pytest.raises(DeviceError) as e:
        cuda.find_cudart(["/a/libcudart.so.12", "libcudart.so.13"], loader=loader)
    text = str(e.value)
    assert e.value.exit_code == 3 and "tried /a/libcudart.so.12 (No such file or directory); libcudart.so.13" in text
    assert "nvidia-cuda-runtime-cu12" in text and "\n" not in text
    assert cuda.find_cudart(["x", "y"], loader=lambda p: p == "y" or (_ for _ in ()).throw(OSError("no")))[0] == "y"


def test_error_mapping_names_the_call_and_cuda_error():
    rt = cuda.CudaRuntime(lib=FakeLibcudart(count=1, count_code=0, malloc_code=2))
    with pytest.raises(cuda.CudaError) as e:
        rt.malloc(1 << 40)
    assert str(e.value).startswith(f"cudaMalloc({1 << 40} bytes) failed: cudaErrorMemoryAllocation: out of memory (code 2)")
    assert e.value.code == 2 and "free GPU memory" in str(e.value)
    with pytest.raises(cuda.CudaError, match="cudaEventElapsedTime failed: cudaErrorIllegalAddress: an illegal memory access"):
        rt.event_elapsed_ms(1, 2)
    with pytest.raises(cuda.CudaError, match="cudaStreamCreate is not in"):
        rt.stream_create()  # the stand-in lacks it: a clear error, not an AttributeError
    assert not rt.has_graphs


def test_no_device_is_zero_devices_not_an_exception():
    rt = cuda.CudaRuntime(lib=FakeLibcudart(count=0, count_code=100))
    assert rt.device_count() == 0
    with pytest.raises(DeviceError) as e:
        rt.require_device(0)
    assert "no CUDA GPU 0 (cudaErrorNoDevice: no CUDA-capable device is detected (code 100))" in str(e.value)
    assert e.value.exit_code == 3
    rt1 = cuda.CudaRuntime(lib=FakeLibcudart(count=1, count_code=0))
    assert rt1.device_count() == 1
    with pytest.raises(DeviceError, match="1 CUDA device"):
        rt1.require_device(1)
    buf = cuda.DeviceBuffer(rt1, 64)
    assert buf.ptr == 0x1000 and int(buf) == 0x1000
    with buf:
        pass
    assert buf.ptr == 0 and rt1.lib.calls == [("malloc", 64), ("free", 0x1000)]


def test_device_pointer_accepts_torch_like_and_cuda_array_interface():
    torch_like = types.SimpleNamespace(is_cuda=True, data_ptr=lambda: 1234, is_contiguous=lambda: True)
    assert cuda.device_pointer(torch_like) == 1234
    assert cuda.device_pointer(types.SimpleNamespace(__cuda_array_interface__={"data": (99, False)})) == 99
    assert cuda.device_pointer(7) == 7
    assert cuda.is_device_array(torch_like) and not cuda.is_device_array(7)
    with pytest.raises(TypeError, match="not contiguous"):
        cuda.device_pointer(types.SimpleNamespace(is_cuda=True, data_ptr=lambda: 1, is_contiguous=lambda: False))
    for bad in (np.zeros(3), types.SimpleNamespace(is_cuda=False, data_ptr=lambda: 1), True):
        with pytest.raises(TypeError):
            cuda.device_pointer(bad)


def _real_runtime():
    try:
        return cuda.CudaRuntime()
    except DeviceError:
        pytest.skip("no libcudart on this machine (pip install nvidia-cuda-runtime-cu12 to test the real one)")


def test_real_libcudart_signatures_without_a_gpu():
    from tests.helpers import has_gpu

    rt = _real_runtime()
    assert rt.runtime_version() >= 11000
    assert "cudaErrorNoDevice" in rt.error_text(100) and "(code 100)" in rt.error_text(100)
    assert rt.has_graphs
    if has_gpu():
        assert rt.device_count() >= 1
    else:
        assert rt.device_count() == 0
        with pytest.raises(DeviceError, match="no CUDA GPU 0"):
            rt.require_device(0)


# -- on a GPU ------------------------------------------------------------------------------------------------
@pytest.mark.gpu
def test_gpu_memory_copies_events_and_graphs():
    rt = _real_runtime()
    rt.require_device(0)
    props = rt.device_properties(0)
    assert props.name and props.compute_capability.count(".") == 1 and props.total_memory > 1 << 30
    free, total = rt.mem_get_info()
    assert 0 < free <= total
    x = np.arange(1 << 16, dtype=np.float32)
    stream = rt.stream_create()
    a, b = cuda.DeviceBuffer(rt, x.nbytes), cuda.DeviceBuffer(rt, x.nbytes)
    try:
        rt.memcpy_htod(a.ptr, x, stream)
        rt.memcpy_dtod(b.ptr, a.ptr, x.nbytes, stream)
        y = rt.host_array(x.shape, np.float32)
        rt.memcpy_dtoh(y, b.ptr, stream)
        rt.stream_synchronize(stream)
        np.testing.assert_array_equal(x, y)
        rt.memset(b.ptr, 0, x.nbytes, stream)
        start, end = rt.event_create(), rt.event_create()
        graph = rt.capture_graph(stream, lambda: rt.memcpy_dtod(b.ptr, a.ptr, x.nbytes, stream))
        rt.event_record(start, stream)
        graph.launch(stream)
        rt.event_record(end, stream)
        rt.event_synchronize(end)
        assert rt.event_elapsed_ms(start, end) >= 0.0
        z = np.zeros_like(x)
        rt.memcpy_dtoh(z, b.ptr, stream)
        rt.stream_synchronize(stream)
        np.testing.assert_array_equal(z, x)  # the graph replayed the copy
        graph.destroy()
        rt.event_destroy(start)
        rt.event_destroy(end)
    finally:
        a.free()
        b.free()
        rt.stream_destroy(stream)


@pytest.mark.gpu
def test_gpu_torch_tensor_pointer():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    t = torch.arange(16, dtype=torch.float32, device="cuda")
    rt = _real_runtime()
    out = np.zeros(16, np.float32)
    rt.memcpy_dtoh(out, cuda.device_pointer(t))
    rt.device_synchronize()
    np.testing.assert_array_equal(out, np.arange(16, dtype=np.float32))
