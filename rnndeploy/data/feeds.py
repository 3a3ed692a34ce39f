"""Real data as graph inputs: a dataset split → arrays keyed by a graph's input names.

The deploy side (parity, bench) learns a model from its ONNX metadata only. The spec's
attrs carry the dataset facts (``data_info``), including ``data_config``, the resolved
``[data]`` table of the recipe; with it the exact train/val/test splits are rebuilt with
numpy alone, and the test split can be fed to every backend::

    spec, graph, _ = read_onnx_metadata(load_onnx("sine.onnx"))   # rnndeploy.artefacts.onnx_file
    ds = dataset_for_spec(spec)
    feeds = spec_feeds(ds, spec.graph(graph), split="test", limit=256)
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

from rnndeploy.data.base import Dataset
from rnndeploy.errors import DataError
from rnndeploy.spec import numpy_dtype

# graph input role → the dataset arrays that hold it, by task (first present wins)
_ROLE_ARRAYS = {
    "features": ("x",),
    "tokens": ("tokens", "inputs", "src"),
    "lengths": ("lengths", "src_lengths"),
}
# graph output role → the dataset array with the ground truth it predicts
_TARGET_ARRAYS = {"prediction": ("y",), "logits": ("labels", "targets", "tgt_out"), "probs": ("labels",)}


def dataset_for_spec(spec: Any) -> Dataset:
    """Rebuild the dataset a model was trained on from its spec's ``data_config`` attr.

    Raises:
        DataError: the spec carries no data_config (a model not trained by rnndeploy,
            or trained before data_config was recorded), or the data cannot be loaded
            on this machine (e.g. a user file that lives elsewhere).
    """
    from rnndeploy.data import load_dataset

    cfg = dict(getattr(spec, "attrs", {}) or {}).get("data_config")
    if not isinstance(cfg, Mapping) or "source" not in cfg:
        raise DataError(
            f"model {getattr(spec, 'name', '?')!r} does not record the data it was trained on (no data_config)",
            "re-train it with rnndeploy train, or give inputs explicitly",
        )
    return load_dataset(cfg)


def spec_feeds(ds: Dataset, graph: Any, split: str = "test", limit: Optional[int] = None) -> Dict[str, np.ndarray]:
    """``split`` of ``ds`` as inputs of ``graph`` (a rnndeploy.spec.GraphSpec), in spec order.

    Optional inputs (streaming state) are left out: runtimes start them at zero. Inputs
    with roles the data cannot provide (a decoder step's ``token``/``memory``/``state``)
    raise DataError: feed such a graph from the encoder's outputs instead.
    """
    if split not in ds.splits:
        raise DataError(f"dataset {ds.name!r} has no split {split!r}", "use train, val or test")
    arrays = ds.splits[split]
    n = len(next(iter(arrays.values())))
    take = slice(0, n if limit is None else max(1, min(n, int(limit))))
    feeds: Dict[str, np.ndarray] = {}
    for t in graph.inputs:
        if t.optional:
            continue
        source = next((a for a in _ROLE_ARRAYS.get(t.role, ()) if a in arrays), None)
        if source is None:
            raise DataError(
                f"graph {graph.name!r} input {t.name!r} (role {t.role!r}) cannot be fed from dataset {ds.name!r}",
                f"the dataset holds {', '.join(sorted(arrays))}",
            )
        feeds[t.name] = np.ascontiguousarray(arrays[source][take].astype(numpy_dtype(t.dtype), copy=False))
    return feeds


def spec_targets(ds: Dataset, graph: Any, split: str = "test", limit: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Ground truth for the graph's outputs that have one (regression values, class or token
    ids), keyed by output name — for task metrics of a deployed model on real data."""
    arrays = ds.splits[split]
    n = len(next(iter(arrays.values())))
    take = slice(0, n if limit is None else max(1, min(n, int(limit))))
    out: Dict[str, np.ndarray] = {}
    for t in graph.outputs:
        source = next((a for a in _TARGET_ARRAYS.get(t.role, ()) if a in arrays), None)
        if source is None or t.optional:
            continue
        # ids have one axis fewer than the logits over them; values as many as predictions
        want_ndim = len(t.dims) - (0 if t.role == "prediction" else 1)
        if arrays[source].ndim == want_ndim:
            out[t.name] = arrays[source][take]
    return out
