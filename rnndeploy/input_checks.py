"""Input and reference arrays checked before any runtime sees them.

``check_feed`` (rnndeploy.backends.base) checks names, dtypes, ranks and that named
axes agree between inputs — the contract every runner call needs. The values of
arrays that come from *files* (``--inputs``, ``--expected``, golden directories) get
the checks below too, because a runtime given them either crashes (ONNX Runtime
aborts the process on a zero-size batch), indexes out of bounds (a token id past the
vocabulary), or produces a "mismatch" that is really a bad input (NaN in, NaN out):

``check_input_values(graph, feed, who)``
    no empty axis; floats finite; integers inside the range the spec declares
    (``low``/``high``: token ids in [0, vocab)), or a token input's padding id
    (``padding_ids``); lengths in 1..seq; masks 0/1.

``check_expected(graph, expected, sizes, who)``
    reference outputs: exactly the graph's outputs, each with the spec's dtype, rank,
    fixed sizes and the named-axis sizes of the inputs (``sizes``), all finite.

Each failure is a ``ShapeError`` (exit status 2) naming the file, the tensor, the
index of the first bad element and the allowed values. Anything that reads arrays
for a model from a file should call both.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import ShapeError
from rnndeploy.spec import GraphSpec, TensorSpec


def first_index(bad: np.ndarray) -> List[int]:
    """Index (C order) of the first True element of a boolean array."""
    flat = int(np.flatnonzero(bad.ravel())[0])
    return [int(i) for i in np.unravel_index(flat, bad.shape)] if bad.ndim else []


def _dims(t: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in t.dims) + "]"


def check_not_empty(t: TensorSpec, arr: np.ndarray, who: str, kind: str = "input") -> None:
    """Refuse an array with a zero-size axis (runtimes crash or silently compare nothing)."""
    shape = list(np.shape(arr))
    for axis, n in enumerate(shape):
        if n == 0:
            name = t.dims[axis] if axis < len(t.dims) else axis
            raise ShapeError(f"{who}: {kind} {t.name!r} has an empty axis {axis} ({name}): shape {shape}",
                             f"every axis needs at least one element; {t.name} is {t.dtype}{_dims(t)}")


def check_finite(t: TensorSpec, arr: np.ndarray, who: str, kind: str = "input") -> None:
    """Refuse NaN / Inf in a float array, naming the first one."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(a)
    if not bad.any():
        return
    idx = first_index(bad)
    v = a[tuple(idx)] if idx else a[()]
    what = "NaN" if np.isnan(v) else ("Inf" if v > 0 else "-Inf")
    raise ShapeError(f"{who}: {kind} {t.name!r} has {what} at index {idx} ({int(bad.sum())} non-finite of {a.size})",
                     "values must be finite numbers")


def integer_range(t: TensorSpec, sizes: Mapping[str, int]) -> Optional[Tuple[int, int]]:
    """[low, high) allowed for an integer input, or None when unconstrained."""
    if t.role == "lengths":
        seq = sizes.get("seq", sizes.get("src_seq"))
        return (1, int(seq) + 1) if seq else (1, 2**62)
    if t.role == "mask":
        return (0, 2)
    if t.high is not None:
        return (int(t.low) if t.low is not None else 0, int(t.high))
    return None


def padding_ids(attrs: Mapping[str, Any]) -> Dict[str, int]:
    """Token input → its padding id, from a spec's ``attrs["padding"]`` (a Keras model with
    ``Embedding(mask_zero=True)``: its ids range over 1..vocab-1, and 0 marks padding)."""
    pads = attrs.get("padding")
    if not isinstance(pads, Mapping):
        return {}
    return {str(name): int(p["value"]) for name, p in pads.items()
            if isinstance(p, Mapping) and p.get("kind") == "tokens" and isinstance(p.get("value"), int)}


def check_input_values(graph: GraphSpec, feed: Mapping[str, Any], who: str,
                       sizes: Optional[Mapping[str, int]] = None, padding: Optional[Mapping[str, int]] = None) -> None:
    """Values of ``feed`` (already through ``check_feed``) against ``graph``'s inputs (see module docstring).

    Args:
        sizes: named-axis sizes of the feed (for lengths: 1..seq); inferred when None.
        padding: token input → padding id allowed besides its range (see ``padding_ids``).

    Raises:
        ShapeError: an empty axis, a non-finite float, an integer outside its range.
    """
    if sizes is None:
        sizes = axis_sizes(graph.inputs, feed)
    for t in graph.inputs:
        if t.name not in feed:
            continue
        arr = np.asarray(feed[t.name])
        check_not_empty(t, arr, who)
        check_finite(t, arr, who)
        if arr.dtype.kind in "iub":
            rng = integer_range(t, sizes)
            if rng is None:
                continue
            lo, hi = rng
            a = arr.astype(np.int64)
            bad = (a < lo) | (a >= hi)
            if padding and t.name in padding:
                bad &= a != padding[t.name]
            if bad.any():
                idx = first_index(bad)
                value = int(a[tuple(idx)]) if idx else int(a[()])
                allowed = f"{lo}..{hi - 1}"
                why = {"lengths": f" (1..seq, seq = {hi - 1})", "mask": " (0 or 1)"}.get(t.role, "")
                if t.role in ("tokens", "token"):
                    why = f" (the vocabulary has {hi} ids)" if lo == 0 else ""
                    if padding and t.name in padding:
                        why += f" or the padding id {padding[t.name]}"
                raise ShapeError(f"{who}: input {t.name!r} has {value} at index {idx}, outside the allowed "
                                 f"{allowed}{why}", f"{int(bad.sum())} of {a.size} values are out of range")


def axis_sizes(tensors: Sequence[TensorSpec], arrays: Mapping[str, Any]) -> dict:
    """Named-axis sizes as found in ``arrays`` (first tensor naming an axis wins)."""
    sizes: dict = {}
    for t in tensors:
        if t.name not in arrays:
            continue
        for d, n in zip(t.dims, np.shape(arrays[t.name])):
            if isinstance(d, str):
                sizes.setdefault(d, int(n))
    return sizes


def check_expected(graph: GraphSpec, expected: Mapping[str, Any], sizes: Mapping[str, int], who: str) -> None:
    """Reference outputs against ``graph``'s outputs and the inputs' axis ``sizes`` (see module docstring).

    Raises:
        ShapeError: missing / unexpected outputs, another dtype, rank or size, NaN/Inf.
    """
    names = [t.name for t in graph.outputs]
    missing = [n for n in names if n not in expected]
    extra = sorted(set(expected) - set(names))
    if missing or extra:
        what = (["lacks " + ", ".join(repr(m) for m in missing)] if missing else []) + \
               (["has unexpected " + ", ".join(repr(e) for e in extra)] if extra else [])
        raise ShapeError(f"{who} {' and '.join(what)}",
                         "outputs of graph " + f"{graph.name!r}: " + ", ".join(f"{t.name} {t.dtype}{_dims(t)}"
                                                                               for t in graph.outputs))
    for t in graph.outputs:
        arr = np.asarray(expected[t.name])
        if str(arr.dtype) != t.dtype:
            raise ShapeError(f"{who}: output {t.name!r} has dtype {arr.dtype}, the model's is {t.dtype}",
                             f"save it as {t.dtype}")
        shape = list(arr.shape)
        if len(shape) != len(t.dims):
            raise ShapeError(f"{who}: output {t.name!r} has shape {shape} (rank {len(shape)}), expected rank "
                             f"{len(t.dims)} {_dims(t)}")
        for axis, (n, d) in enumerate(zip(shape, t.dims)):
            want = d if isinstance(d, int) else sizes.get(d)
            if want is not None and n != want:
                what = f"{d} = {want} in the inputs" if isinstance(d, str) else f"{want}"
                raise ShapeError(f"{who}: output {t.name!r} has shape {shape}: axis {axis} is {n}, expected {what}",
                                 f"expected {t.dtype}{_dims(t)} for these inputs")
        check_not_empty(t, arr, who, "output")
        check_finite(t, arr, who, "output")
