"""Seeded inputs generated from a GraphSpec — the one input generator (export
validation, parity, bench, engine checks all draw from it). It sits beside the spec,
below every user of it, and needs numpy only.

Generation follows each input's role (rnndeploy.spec.INPUT_ROLES):

- features / memory / other floats: uniform in [low, high] (default [-1, 1]);
- tokens / token / other ints: uniform integers in [low, high) (low defaults to 0;
  ``high`` is the vocabulary size; without it [0, 2));
- lengths: integers in 1..seq with the longest equal to seq (so padding matters
  and the full length is exercised); "seq" is the axis the lengths measure (see
  ``_length_axis_size``: an encoder's src_seq);
- mask: 1 / True for positions < length (consistent with ``lengths`` when both exist);
  a mask of rank > 2 repeats the [batch, seq] pattern over its trailing axes, and a
  rank-1 mask is all ones;
- state: uniform in [low, high] (default [-1, 1]);
- an input the model masks itself (a Keras model's ``Embedding(mask_zero=True)`` or
  ``Masking``: the spec's ``attrs["padding"]``), in ``generate_cases``: pre-padded
  rows, as ``pad_sequences`` makes them (one row full, the others 1..seq valid steps
  with the padding value before them).

Every case draws from ``numpy.random.default_rng([seed, batch, seq])``, so a case is
reproducible on its own whatever other shapes run beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import SpecError, UsageError
from rnndeploy.memory import check_graph_fits
from rnndeploy.spec import GraphSpec, TensorSpec, numpy_dtype

DEFAULT_SHAPES: Tuple[Tuple[int, int], ...] = ((1, 1), (1, 16), (3, 37), (8, 128))


@dataclass(frozen=True)
class Case:
    """One input case: an id, the sizes of the named axes, and the arrays."""

    id: str
    sizes: Mapping[str, int]
    inputs: Mapping[str, np.ndarray]

    @property
    def batch(self) -> Optional[int]:
        return self.sizes.get("batch")

    @property
    def seq(self) -> Optional[int]:
        return self.sizes.get("seq", self.sizes.get("src_seq"))


def sizes_for(graph: GraphSpec, batch: int, seq: int, extra: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
    """Sizes for every dynamic axis of ``graph``: batch, seq (src_seq follows seq), plus ``extra``.

    Raises:
        SpecError: the graph has a dynamic axis we cannot size (foreign models): name it with --dim.
    """
    sizes = {"batch": batch, "seq": seq}
    if "src_seq" in graph.input_dims:
        sizes["src_seq"] = seq
    unknown_extra = [d for d in (extra or {}) if d not in graph.dynamic_dims]
    if unknown_extra:
        raise UsageError(f"--dim {unknown_extra[0]}: graph {graph.name!r} has no dynamic axis {unknown_extra[0]!r}",
                         f"its dynamic axes: {', '.join(graph.dynamic_dims) or 'none'}")
    sizes.update(extra or {})
    unknown = [d for d in graph.input_dims if d not in sizes]
    if unknown:
        raise SpecError(f"graph {graph.name!r} has dynamic axes {', '.join(repr(u) for u in unknown)} of unknown size",
                        "give their sizes with --dim NAME=SIZE, or pass --inputs FILE.npz")
    return sizes


def generate_inputs(graph: GraphSpec, sizes: Mapping[str, int], seed: int = 0,
                    pad_id: Optional[int] = None,
                    padding: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Dict[str, np.ndarray]:
    """Inputs for ``graph`` at ``sizes`` (see module docstring for the value rules).

    With ``pad_id`` (the spec's ``attrs["pad_id"]``) and a lengths input, token positions
    past a row's length hold the pad id, as real padded batches do. ``padding`` (the
    spec's ``attrs["padding"]``: input → {"value": pad}) pre-pads those inputs' rows.
    """
    batch = int(sizes.get("batch", 1))
    seq = int(sizes.get("seq", sizes.get("src_seq", 1)))
    check_graph_fits(graph, sizes, f"inputs and outputs of graph {graph.name!r}")
    rng = np.random.default_rng([int(seed), batch, seq])
    lengths = None
    out: Dict[str, np.ndarray] = {}
    # lengths first so a mask can follow them
    for t in sorted(graph.inputs, key=lambda t: t.role != "lengths"):
        shape = t.shape_for(sizes)
        if t.role == "lengths":
            lengths = _lengths(rng, shape, _length_axis_size(t, graph, sizes))
            out[t.name] = lengths.astype(numpy_dtype(t.dtype))
        elif t.role == "mask":
            out[t.name] = _mask(rng, t, shape, lengths, seq)
        else:
            v = _values(rng, t, shape)
            if pad_id is not None and lengths is not None and t.dtype.startswith("int") and t.time_axis is not None:
                steps = np.arange(shape[t.time_axis]).reshape([-1 if i == t.time_axis else 1 for i in range(len(shape))])
                lens = np.asarray(lengths).reshape([-1 if i == 0 else 1 for i in range(len(shape))])
                v = np.where(steps < lens, v, np.asarray(pad_id, dtype=v.dtype))
            pad = (padding or {}).get(t.name)
            if isinstance(pad, Mapping) and t.time_axis == 1 and len(shape) >= 2:
                # lengths from their own stream: the values are those of the unpadded case, and
                # inputs of one length (aligned sequences) are padded alike
                pad_rng = np.random.default_rng([int(seed), batch, seq, shape[1]])
                v = pre_pad(v, _lengths(pad_rng, (shape[0],), shape[1]), pad.get("value", 0))
            out[t.name] = v
    return {t.name: out[t.name] for t in graph.inputs}


def pre_pad(x: np.ndarray, lengths: Sequence[int], value: Any) -> np.ndarray:
    """``x`` [batch, time, ...] with row i's first ``time - lengths[i]`` steps set to ``value``
    (``keras.utils.pad_sequences``' default, padding="pre"); the valid steps keep their values."""
    x = np.array(x, copy=True)
    for row, n in enumerate(lengths):
        x[row, : x.shape[1] - int(n)] = np.asarray(value, dtype=x.dtype)
    return x


def generate_cases(graph: GraphSpec, shapes: Sequence[Tuple[int, int]], seed: int = 0,
                   extra_dims: Optional[Mapping[str, int]] = None, pad_id: Optional[int] = None,
                   attrs: Optional[Mapping[str, Any]] = None) -> List[Case]:
    """One Case per (batch, seq); ids look like "b4-s128". Inputs that ``attrs["padding"]``
    names (a masking Keras model's) are pre-padded, so parity exercises the masked path.

    Every case's memory (rnndeploy.memory.check_graph_fits, with the spec's ``attrs``
    for the recurrent layers) is checked before the first one is generated.
    """
    all_sizes = [sizes_for(graph, b, s, extra_dims) for b, s in shapes]
    for (b, s), sizes in zip(shapes, all_sizes):  # every case checked before the first is made
        check_graph_fits(graph, sizes, f"parity case b{b}-s{s} (inputs, reference and runtime outputs)", copies=3,
                         attrs=attrs)
    padding = (attrs or {}).get("padding")
    return [Case(f"b{b}-s{s}", sizes, generate_inputs(graph, sizes, seed, pad_id,
                                                      padding if isinstance(padding, Mapping) else None))
            for (b, s), sizes in zip(shapes, all_sizes)]


def infer_sizes(graph: GraphSpec, feed: Mapping[str, np.ndarray]) -> Dict[str, int]:
    """Sizes of the named axes as found in ``feed`` (for cases read from files)."""
    sizes: Dict[str, int] = {}
    for t in graph.inputs:
        if t.name not in feed:
            continue
        shape = np.shape(feed[t.name])
        for d, n in zip(t.dims, shape):
            if isinstance(d, str):
                sizes.setdefault(d, int(n))
    return sizes


# -- helpers ------------------------------------------------------------------------------------------
def _lengths(rng: np.random.Generator, shape: Tuple[int, ...], seq: int) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    lens = rng.integers(1, seq + 1, size=n)
    lens[rng.integers(0, n)] = seq  # the longest is exactly seq
    return lens.reshape(shape)


def _length_axis_size(t: TensorSpec, graph: GraphSpec, sizes: Mapping[str, int]) -> int:
    """The size of the axis a ``lengths`` input measures: "seq", else "src_seq" (whichever
    another input has), else the time axis of the first sequence input, else 1. An
    encoder sized {seq: 7, src_seq: 6} measures its src_seq tokens, not seq."""
    for name in ("seq", "src_seq"):
        if name in sizes and any(name in x.dims for x in graph.inputs if x is not t):
            return int(sizes[name])
    for x in graph.inputs:
        if x.time_axis is not None and x is not t:
            return int(x.shape_for(sizes)[x.time_axis])
    return 1


def _mask(rng: np.random.Generator, t: TensorSpec, shape: Tuple[int, ...], lengths: Optional[np.ndarray],
          seq: int) -> np.ndarray:
    if len(shape) < 2:
        return np.ones(shape, dtype=numpy_dtype(t.dtype))
    if lengths is None or np.size(lengths) != shape[0]:
        lengths = _lengths(rng, (shape[0],), shape[1])
    m = np.arange(shape[1])[None, :] < np.asarray(lengths).reshape(-1, 1)
    m = np.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - 2)), shape)
    return np.ascontiguousarray(m).astype(numpy_dtype(t.dtype))


def _values(rng: np.random.Generator, t: TensorSpec, shape: Tuple[int, ...]) -> np.ndarray:
    dtype = numpy_dtype(t.dtype)
    if t.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if t.dtype.startswith("int"):
        low = int(t.low) if t.low is not None else 0
        high = int(t.high) if t.high is not None else low + 2
        if high <= low:
            raise SpecError(f"input {t.name!r}: integer range [{low}, {high}) is empty")
        return rng.integers(low, high, size=shape).astype(dtype)
    low = -1.0 if t.low is None else float(t.low)
    high = 1.0 if t.high is None else float(t.high)
    return rng.uniform(low, high, size=shape).astype(dtype)
