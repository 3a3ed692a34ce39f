"""Helpers for the Keras tests: Keras on its torch backend, deterministic weights, saving.

Import ``keras`` through ``keras_or_skip()`` so KERAS_BACKEND=torch is set before Keras
loads (it picks its backend at import) and a box without Keras skips cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")


def keras_or_skip() -> Any:
    pytest.importorskip("torch")
    return pytest.importorskip("keras")


def scramble(model: Any, seed: int = 0, scale: float = 0.5) -> Any:
    """Give every weight N(0, scale²) values (variances positive), so outputs depend on every
    weight and gate: freshly initialised Keras RNNs sit close to zero and hide mapping errors."""
    rng = np.random.default_rng(seed)
    values = []
    for var in model.weights:
        shape = tuple(var.shape)
        v = rng.normal(0.0, scale, shape).astype(np.float32)
        if "variance" in var.path:
            v = np.abs(v) + 0.5
        values.append(v)
    model.set_weights(values)
    return model


def save(model: Any, directory: Path, name: str, fmt: str = "keras") -> str:
    path = str(directory / f"{name}.{fmt}")
    model.save(path)
    return path


def max_errors(result: Any) -> Dict[str, float]:
    """Output → worst max abs error over every validation case of an export result."""
    report = result.graphs[0].validation
    assert report is not None and report.ok, report.render() if report is not None else "not validated"
    return report.max_errors()
