"""Inputs for export and validation, generated from a GraphSpec (numpy only, seeded).

Export traces the module at ``EXAMPLE_SIZES``; validation then runs the ONNX file
at shapes that all differ from it (``validation_sizes``), including batch 1, seq 1
and a sequence longer than any seen in training — a graph that froze an axis
during export fails there.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from rnndeploy.memory import check_graph_fits
from rnndeploy.spec import GraphSpec, TensorSpec

# Example sizes for tracing: distinct from each other and from 1, so an axis the
# exporter confused with another (or specialised) shows up at validation.
EXAMPLE_SIZES: Dict[str, int] = {"batch": 2, "seq": 7, "src_seq": 6}
# Used when neither the recipe nor the user says how long training sequences were.
DEFAULT_LONGEST_SEQ = 128
_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def example_sizes(graph: GraphSpec, overrides: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
    """Sizes of every dynamic dim of ``graph`` for the export example."""
    sizes = {}
    extra = 11  # names other than batch/seq/src_seq get distinct odd sizes
    for name in graph.dynamic_dims:
        if name in EXAMPLE_SIZES:
            sizes[name] = EXAMPLE_SIZES[name]
        else:
            sizes[name] = extra
            extra += 2
    sizes.update(overrides or {})
    return sizes


def long_seq_for(longest_train_seq: Optional[int]) -> int:
    """A sequence length longer than any seen in training: twice the longest (default
    2 × 128), and at least 32 so it is also the longest of the validation shapes."""
    longest = int(longest_train_seq) if longest_train_seq else DEFAULT_LONGEST_SEQ
    return max(2 * longest, 32)


def validation_sizes(graph: GraphSpec, example: Mapping[str, int], long_seq: int) -> List[Dict[str, int]]:
    """At least four size sets, none equal to ``example``: batch 1 × seq 1, batch 1 ×
    a medium seq, a bigger batch × a short seq, and a sequence of ``long_seq``.

    Every time-like dim (anything but "batch") takes the same value in a set, so a
    decoder step sees ``src_seq`` of 1 and of ``long_seq`` too.
    """
    plans = [(1, 1), (1, 19), (5, 3), (3, long_seq)]
    out: List[Dict[str, int]] = []
    for batch, seq in plans:
        sizes = {name: (batch if name == "batch" else seq) for name in graph.dynamic_dims}
        if sizes == dict(example):  # cannot happen with the plans above unless overridden
            sizes = {k: v + 1 for k, v in sizes.items()}
        if sizes not in out:
            out.append(sizes)
    if not graph.dynamic_dims:  # a fully static graph: one run is all there is
        return [{}]
    return out


def make_inputs(graph: GraphSpec, sizes: Mapping[str, int], seed: int = 0) -> Dict[str, np.ndarray]:
    """Inputs for every tensor of ``graph`` at ``sizes``, keyed by name, in spec order.

    Roles decide the values: features/memory/other floats uniform in [low, high]
    (default [-1, 1]); states N(0, 0.5²); tokens uniform in [low, high) (default
    [0, 2)); lengths in 1..seq with the first row at full length (so full-sequence
    outputs keep the padded length); a mask is 1 where a position is within the
    row's length (from the lengths input when there is one).
    """
    check_graph_fits(graph, sizes, f"export inputs and outputs of graph {graph.name!r}")
    rng = np.random.default_rng(seed)
    out: Dict[str, np.ndarray] = {}
    lengths: Optional[np.ndarray] = None
    for t in graph.inputs:
        shape = t.shape_for(sizes)
        if t.role == "lengths":
            lengths = _lengths(rng, shape, _length_axis_size(t, graph, sizes))
            out[t.name] = lengths.astype(_NP_DTYPES[t.dtype])
        elif t.role in ("tokens", "token") or t.dtype in ("int64", "int32"):
            low = int(t.low) if t.low is not None else 0
            high = int(t.high) if t.high is not None else 2
            out[t.name] = rng.integers(low, max(high, low + 1), size=shape).astype(_NP_DTYPES[t.dtype])
        elif t.role == "mask" or t.dtype == "bool":
            out[t.name] = None  # type: ignore[assignment]  # filled below once lengths are known
        elif t.role == "state":
            out[t.name] = (0.5 * rng.standard_normal(shape)).astype(_NP_DTYPES[t.dtype])
        else:
            low = -1.0 if t.low is None else float(t.low)
            high = 1.0 if t.high is None else float(t.high)
            out[t.name] = rng.uniform(low, high, size=shape).astype(_NP_DTYPES[t.dtype])
    for t in graph.inputs:
        if out[t.name] is None:
            shape = t.shape_for(sizes)
            if len(shape) >= 2:
                lens = (
                    lengths
                    if lengths is not None and len(lengths) == shape[0]
                    else _lengths(rng, (shape[0],), shape[1])
                )
                mask = np.arange(shape[1])[None, :] < lens[:, None]
                mask = np.broadcast_to(mask.reshape(mask.shape + (1,) * (len(shape) - 2)), shape)
            else:
                mask = np.ones(shape, dtype=bool)
            out[t.name] = np.ascontiguousarray(mask).astype(_NP_DTYPES[t.dtype])
    return out


def _lengths(rng: np.random.Generator, shape: Sequence[int], seq: int) -> np.ndarray:
    lens = rng.integers(1, seq + 1, size=shape).astype(np.int64)
    if lens.size:
        lens.reshape(-1)[0] = seq
    return lens


def _length_axis_size(t: TensorSpec, graph: GraphSpec, sizes: Mapping[str, int]) -> int:
    """The size of the axis a ``lengths`` input measures: "seq", else "src_seq", else the
    time axis of the first sequence input."""
    for name in ("seq", "src_seq"):
        if name in sizes and any(name in x.dims for x in graph.inputs if x is not t):
            return int(sizes[name])
    for x in graph.inputs:
        if x.time_axis is not None and x is not t:
            return int(x.shape_for(sizes)[x.time_axis])
    return 1
