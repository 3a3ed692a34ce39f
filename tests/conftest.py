"""Shared fixtures and the gpu/browser skip logic.

GPU tests carry ``@pytest.mark.gpu`` and are skipped unless a CUDA device is
visible (checked through the driver, never by importing TensorRT at collection).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers import has_gpu as gpu_visible


def pytest_collection_modifyitems(config, items):
    has_gpu = None
    has_browser = shutil.which("chromium") is not None or shutil.which("chromium-browser") is not None
    for item in items:
        if "gpu" in item.keywords:
            if has_gpu is None:
                has_gpu = gpu_visible()
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible"))
        if "browser" in item.keywords and not has_browser:
            item.add_marker(pytest.mark.skip(reason="chromium not installed (make test installs it)"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def fake_env(monkeypatch):
    """``install(version="8.6.0", **kw)`` puts the recording stand-in tensorrt (tests.fakes.tensorrt)
    and the fake CUDA runtime in place; returns (trt, runtime)."""
    from rnndeploy import cuda as cuda_mod
    from tests.fakes.cuda import FakeCuda
    from tests.fakes.tensorrt import make_fake_trt

    def install(version="8.6.0", **kw):
        trt = make_fake_trt(version, **kw)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        rt = FakeCuda()
        monkeypatch.setattr(cuda_mod, "runtime", lambda: rt)
        monkeypatch.setattr("rnndeploy.engine.trt_compat.loaded_stub_libraries", lambda maps_text=None: [])
        return trt, rt

    return install


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; with two, OpenMP's barrier stalls for tenths of a
    second per new shape whenever the 2-core machine is busy (pytest -n 2, other jobs).
    Modules that build torch models use it: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
