"""Shared fixtures and the gpu/browser skip logic.

GPU tests carry ``@pytest.mark.gpu`` and are skipped unless a CUDA device is
visible (checked through the driver, never by importing TensorRT at collection).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _has_gpu() -> bool:
    from rnndeploy.environment import probe_gpus

    gpus, _ = probe_gpus()
    return bool(gpus)


def pytest_collection_modifyitems(config, items):
    has_gpu = None
    has_browser = shutil.which("chromium") is not None or shutil.which("chromium-browser") is not None
    for item in items:
        if "gpu" in item.keywords:
            if has_gpu is None:
                has_gpu = _has_gpu()
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible"))
        if "browser" in item.keywords and not has_browser:
            item.add_marker(pytest.mark.skip(reason="chromium not installed (make test installs it)"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
