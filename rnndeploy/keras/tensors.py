"""Tensors of the Keras model as they live in the ONNX graph, and the ops shared by layers.

A ``KT`` is one Keras tensor: its ONNX value name, dtype, dims (``"batch"``, a time
axis name, ints, or None when unknown) and its Keras mask (an ONNX bool ``[batch,
time]`` value, or None). A tensor an RNN produced may also carry its time-major,
valid-steps-first form (``compact``) so the next RNN under the same mask reuses it.

``Ops`` wraps a GraphBuilder with the opset-dependent spellings (Reduce* axes are an
attribute before opset 18 and an input from 18) and the few composite ops every
layer needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from rnndeploy.keras.builder import BOOL, FLOAT, INT32, INT64, ONNX_TYPES, GraphBuilder
from rnndeploy.spec import numpy_dtype

Dim = Union[int, str, None]
INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Compact:
    """A tensor's time-major form with each row's valid steps first (under ``mask``; None: no mask)."""

    mask: Optional[str]
    name: str


@dataclass(frozen=True)
class KT:
    """One Keras tensor in the ONNX graph."""

    name: str
    dtype: str
    dims: Tuple[Dim, ...]
    mask: Optional[str] = None
    compact: Optional[Compact] = None

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def last(self) -> Optional[int]:
        d = self.dims[-1] if self.dims else None
        return d if isinstance(d, int) else None

    def with_(self, **changes: Any) -> KT:
        return replace(self, **changes)


@dataclass(frozen=True)
class MaskIndex:
    """Per-row positions that move a masked sequence's valid steps to the front and back.

    All ``[batch, time]`` int64 unless noted:
        lengths: valid steps per row ``[batch]`` (int64) and ``seq_lens`` the same as int32.
        to_compact: where step t goes when valid steps are packed first (a permutation per row).
        from_compact: for step t, the packed index of the last valid step at or before t (0 if none).
        seen: bool, whether any valid step is at or before t.
    """

    mask: str
    lengths: str
    seq_lens: str
    to_compact: str
    from_compact: str
    seen: str


class Ops:
    """Graph-building helpers over a GraphBuilder at a given opset."""

    def __init__(self, b: GraphBuilder, opset: int):
        self.b = b
        self.opset = opset
        self._mask_index: Dict[str, MaskIndex] = {}

    # -- basics ------------------------------------------------------------------------------
    def cast(self, x: str, dtype: str) -> str:
        return self.b.op("Cast", [x], to=ONNX_TYPES[dtype])

    def shape(self, x: str) -> str:
        return self.b.op("Shape", [x])

    def dim(self, x: str, axis: int) -> str:
        """Size of ``x`` along ``axis`` as a 1-element int64 tensor."""
        return self.b.op("Gather", [self.shape(x), self.b.i64([axis], "axis")], axis=0)

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        return self.b.op("Unsqueeze", [x, self.b.i64(axes, "axes")])

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        return self.b.op("Squeeze", [x, self.b.i64(axes, "axes")])

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        return self.b.op("Transpose", [x], perm=list(perm))

    def reduce(self, op: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
        """Reduce{Sum,Mean,Max,Min} over ``axes``; ReduceSum takes axes as an input from opset 13,
        the others from opset 18."""
        k = 1 if keepdims else 0
        if op == "ReduceSum" or self.opset >= 18:
            return self.b.op(op, [x, self.b.i64(axes, "axes")], keepdims=k)
        return self.b.op(op, [x], axes=list(axes), keepdims=k)

    def any(self, x: str, axes: Sequence[int], keepdims: bool = False) -> str:
        """Logical any of a bool tensor (ReduceMax over its 0/1 float cast)."""
        r = self.reduce("ReduceMax", self.cast(x, "float32"), axes, keepdims)
        return self.cast(r, "bool")

    def all(self, x: str, axes: Sequence[int], keepdims: bool = False) -> str:
        r = self.reduce("ReduceMin", self.cast(x, "float32"), axes, keepdims)
        return self.cast(r, "bool")

    def not_equal(self, x: KT, value: Any) -> str:
        """``x != value`` with the scalar in ``x``'s dtype (Keras compares after casting it)."""
        other = value.name if isinstance(value, KT) else self.b.const(np.asarray(value, dtype=numpy_dtype(x.dtype)), "value")
        return self.b.op("Not", [self.b.op("Equal", [x.name, other])])

    def flip_time(self, x: str, axis: int = 1) -> str:
        """``x`` reversed along ``axis`` (Slice with step -1)."""
        return self.b.op("Slice", [x, self.b.i64([-1], "starts"), self.b.i64([INT64_MIN], "ends"),
                                   self.b.i64([axis], "axes"), self.b.i64([-1], "steps")])

    def expand_like(self, x: str, like: str) -> str:
        """``x`` broadcast to ``like``'s shape."""
        return self.b.op("Expand", [x, self.shape(like)])

    def zeros_like(self, x: str, dtype: str) -> str:
        from onnx import helper

        return self.b.op("ConstantOfShape", [self.shape(x)],
                         value=helper.make_tensor("zero", ONNX_TYPES[dtype], [1], [0]))

    def ones_like(self, x: str, dtype: str) -> str:
        from onnx import helper

        return self.b.op("ConstantOfShape", [self.shape(x)],
                         value=helper.make_tensor("one", ONNX_TYPES[dtype], [1], [1]))

    def where_mask(self, mask: str, x: str, rank: int, other: Optional[str] = None) -> str:
        """``x`` where ``mask`` ([batch, time]) holds, else ``other`` (default 0), broadcasting
        the mask over ``x``'s trailing axes."""
        m = self.unsqueeze(mask, list(range(2, rank))) if rank > 2 else mask
        return self.b.op("Where", [m, x, other if other is not None else self.b.scalar(0.0)])

    # -- masks -----------------------------------------------------------------------------
    def mask_index(self, mask: str) -> MaskIndex:
        """Positions that pack a row's valid steps first and unpack results (built once per mask).

        With ``c`` the running count of valid steps (inclusive) and ``L`` the row's total,
        a valid step t goes to ``c - 1`` and a masked one to ``L + (t + 1 - c) - 1``, so the
        valid steps keep their order at the front and the masked ones follow: a
        permutation, so any mask (pre-padding, post-padding, holes) is exact.
        """
        if mask in self._mask_index:
            return self._mask_index[mask]
        b = self.b
        one = b.const(np.asarray(1, dtype=np.int64), "one")
        zero = b.const(np.asarray(0, dtype=np.int64), "zero")
        mi = self.cast(mask, "int64")
        count = b.op("CumSum", [mi, b.const(np.asarray(1, dtype=np.int64), "axis1")], name="mask_count")
        lengths = self.reduce("ReduceSum", mi, [1], keepdims=False)
        steps = b.op("Range", [zero, self.squeeze(self.dim(mask, 1), [0]), one], name="steps")
        invalid_before = b.op("Sub", [b.op("Add", [steps, one]), count])  # masked steps up to t, inclusive
        masked_pos = b.op("Sub", [b.op("Add", [self.unsqueeze(lengths, [1]), invalid_before]), one])
        valid_pos = b.op("Sub", [count, one])
        to_compact = b.op("Where", [mask, valid_pos, masked_pos], name="to_compact")
        from_compact = b.op("Max", [valid_pos, zero], name="from_compact")
        seen = b.op("Greater", [count, zero], name="seen")
        seq_lens = self.cast(lengths, "int32")
        idx = MaskIndex(mask, lengths, seq_lens, to_compact, from_compact, seen)
        self._mask_index[mask] = idx
        return idx

    def pack(self, x: str, idx: MaskIndex) -> str:
        """``x`` [batch, time, n] with each row's valid steps moved to the front (order kept)."""
        where = self.expand_like(self.unsqueeze(idx.to_compact, [2]), x)
        return self.b.op("ScatterElements", [x, where, x], axis=1, name="pack")

    def unpack(self, y: str, idx: MaskIndex, zero_masked: bool) -> str:
        """``y`` [batch, time, n] computed on packed steps, back at the original steps.

        A masked step takes the output of the last valid step before it (Keras' default)
        or zeros (``zero_masked``: Keras' ``zero_output_for_mask``); before any valid step
        it is zeros either way.
        """
        where = self.expand_like(self.unsqueeze(idx.from_compact, [2]), y)
        gathered = self.b.op("GatherElements", [y, where], axis=1, name="unpack")
        keep = idx.mask if zero_masked else idx.seen
        return self.where_mask(keep, gathered, 3)


__all__ = ["BOOL", "FLOAT", "INT32", "INT64", "KT", "Compact", "MaskIndex", "Ops", "Dim"]
