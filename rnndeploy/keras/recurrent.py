"""SimpleRNN / LSTM / GRU / Bidirectional → one native ONNX RNN / LSTM / GRU node each.

Weights (Keras stores kernels as [input, gates·units], ONNX as [dirs, gates·units, input]):
- LSTM: Keras gate order i, f, c, o; ONNX i, o, f, c. B = [Wb, Rb] with Rb = 0.
- GRU: z, r, h in both. ``reset_after=True`` (Keras 3 / tf.keras 2 default) is ONNX
  ``linear_before_reset=1`` with B = [bias[0], bias[1]]; ``reset_after=False`` is
  ``linear_before_reset=0`` with Rb = 0.
- SimpleRNN: one gate; B = [bias, 0].

Masking (Keras skips masked steps: the state carries over them; ONNX ``sequence_lens``
assumes each row's valid steps come first): the valid steps are packed to the front of
every row (``Ops.pack``, a per-row permutation, so pre-padding, post-padding and holes
are all exact), the node runs with ``sequence_lens`` = valid count, and sequence outputs
are put back at the original steps (``Ops.unpack``): a masked step repeats the last valid
output, or is zero under ``zero_output_for_mask`` (which Bidirectional forces when it
returns sequences). A row with no valid step keeps its initial state and outputs zeros,
as Keras does; its ``sequence_lens`` is clamped to 1 and the results replaced.

``go_backwards`` flips the time axis (and mask) of the input; Keras returns such a
layer's sequence in processing order, so it is not flipped back. A Bidirectional's
backward half is the node's reverse direction, whose outputs already sit at the
original steps, as Keras returns them after flipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import KerasModelError
from rnndeploy.keras.activations import activation_name, rnn_activations
from rnndeploy.keras.tensors import KT, Compact, Ops

RNN_CLASSES = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
N_STATES = {"RNN": 1, "LSTM": 2, "GRU": 1}
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


@dataclass(frozen=True)
class RnnConfig:
    """What the converter reads from one recurrent layer's config."""

    name: str
    op: str  # "RNN", "LSTM" or "GRU"
    units: int
    activation: str
    recurrent_activation: Optional[str]
    use_bias: bool
    return_sequences: bool
    return_state: bool
    go_backwards: bool
    stateful: bool
    zero_output_for_mask: bool
    reset_after: bool

    @property
    def n_states(self) -> int:
        return N_STATES[self.op]

    @property
    def gates(self) -> int:
        return GATES[self.op]


def rnn_config(class_name: str, cfg: Dict[str, Any], name: str) -> RnnConfig:
    """The recurrent layer config (``class_name`` one of RNN_CLASSES)."""
    op = RNN_CLASSES[class_name]
    where = f"{class_name} layer {name!r}"
    if cfg.get("time_major"):
        raise KerasModelError(f"{where} has time_major=True", "save the model with time_major=False (batch-first)")
    units = cfg.get("units")
    if not isinstance(units, int) or units < 1:
        raise KerasModelError(f"{where}: units {units!r} is not a positive integer")
    return RnnConfig(
        name=name,
        op=op,
        units=units,
        activation=activation_name(cfg.get("activation", "tanh"), where),
        recurrent_activation=(activation_name(cfg.get("recurrent_activation", "sigmoid"), where) if op != "RNN" else None),
        use_bias=bool(cfg.get("use_bias", True)),
        return_sequences=bool(cfg.get("return_sequences", False)),
        return_state=bool(cfg.get("return_state", False)),
        go_backwards=bool(cfg.get("go_backwards", False)),
        stateful=bool(cfg.get("stateful", False)),
        zero_output_for_mask=bool(cfg.get("zero_output_for_mask", False)),
        reset_after=bool(cfg.get("reset_after", op == "GRU")),
    )


def onnx_weights(rc: RnnConfig, weights: Sequence[np.ndarray], input_size: Optional[int],
                 where: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(W [G·H, F], R [G·H, H], B [2·G·H], input size F) for one direction, checked against the config."""
    h, g = rc.units, rc.gates
    n_expected = 3 if rc.use_bias else 2
    if len(weights) != n_expected:
        raise KerasModelError(
            f"{where}: the file holds {len(weights)} weight arrays, the config (use_bias={rc.use_bias}) needs {n_expected}",
            "the weights do not belong to this architecture; save the model again",
        )
    kernel, recurrent = (np.asarray(w, dtype=np.float32) for w in weights[:2])
    f = input_size if input_size is not None else (kernel.shape[0] if kernel.ndim == 2 else -1)
    _check_shape(where, "kernel", kernel, (f, g * h))
    _check_shape(where, "recurrent_kernel", recurrent, (h, g * h))
    if rc.use_bias:
        bias = np.asarray(weights[2], dtype=np.float32)
        if rc.op == "GRU" and rc.reset_after:
            _check_shape(where, "bias", bias, (2, g * h))
            b_w, b_r = bias[0], bias[1]
        else:
            _check_shape(where, "bias", bias, (g * h,))
            b_w, b_r = bias, np.zeros_like(bias)
    else:
        b_w = b_r = np.zeros((g * h,), dtype=np.float32)
    if rc.op == "LSTM":  # Keras i, f, c, o → ONNX i, o, f, c
        order = [0, 3, 1, 2]

        def reorder(a: np.ndarray) -> np.ndarray:
            parts = np.split(a, 4, axis=-1)
            return np.concatenate([parts[i] for i in order], axis=-1)

        kernel, recurrent, b_w, b_r = (reorder(a) for a in (kernel, recurrent, b_w, b_r))
    return kernel.T.copy(), recurrent.T.copy(), np.concatenate([b_w, b_r]), int(f)


def _check_shape(where: str, what: str, arr: np.ndarray, want: Tuple[int, ...]) -> None:
    if tuple(arr.shape) != tuple(want):
        raise KerasModelError(
            f"{where}: weight {what} has shape {list(arr.shape)} but the config implies {list(want)}",
            "the weights do not belong to this architecture; save the model again",
        )


@dataclass
class RecurrentResult:
    """Per direction (forward first): sequence output [batch, time, H] (None unless
    return_sequences), last output [batch, H], final states ([h] or [h, c]); plus the
    concatenated time-major compact sequence for a following recurrent layer."""

    sequences: List[Optional[str]]
    lasts: List[str]
    states: List[List[str]]
    compact: Optional[Compact]
    mask: Optional[str]  # the Keras output mask (the input mask when returning sequences)


def build_recurrent(ops: Ops, configs: Sequence[RnnConfig], weights: Sequence[Sequence[np.ndarray]], x: KT,
                    mask: Optional[str], initial: Optional[Sequence[Sequence[str]]], keras_major: int,
                    where: str, zero_masked: Optional[bool] = None) -> RecurrentResult:
    """One ONNX recurrent node for a layer: ``configs`` has one entry (forward, or a
    go_backwards layer) or two (a Bidirectional's forward and backward layers).

    Args:
        x: the input, batch-first [batch, time, features].
        mask: the Keras mask [batch, time] in effect (None: every step valid).
        initial: per direction its initial states ([batch, H] each); None: zeros.
        zero_masked: override zero_output_for_mask (Bidirectional forces it).
    """
    b = ops.b
    rc = configs[0]
    bidir = len(configs) == 2
    if bidir:
        other = configs[1]
        if (other.op, other.units, other.use_bias, other.reset_after) != (rc.op, rc.units, rc.use_bias, rc.reset_after):
            raise KerasModelError(f"{where}: its forward and backward layers differ in kind, units, bias or reset_after",
                                  "use one layer for both directions (Bidirectional(layer))")
        if rc.go_backwards or not other.go_backwards:
            raise KerasModelError(f"{where}: only a forward layer with a go_backwards backward layer is supported")
    flip = (not bidir) and rc.go_backwards
    if x.rank != 3:
        raise KerasModelError(f"{where} expects a [batch, time, features] input, got rank {x.rank}")
    seq_in, mask_in = x.name, mask
    if flip:
        seq_in = ops.flip_time(x.name)
        mask_in = ops.flip_time(mask) if mask is not None else None

    # weights
    mats = [onnx_weights(c, w, x.last, f"{where}" + (f" ({'forward' if i == 0 else 'backward'})" if bidir else ""))
            for i, (c, w) in enumerate(zip(configs, weights))]
    W = b.const(np.stack([m[0] for m in mats]), f"{rc.name}_W")
    R = b.const(np.stack([m[1] for m in mats]), f"{rc.name}_R")
    B = b.const(np.stack([m[2] for m in mats]), f"{rc.name}_B") if rc.use_bias else ""
    act_names: List[str] = []
    for c in configs:
        act_names += ([c.recurrent_activation] if c.op != "RNN" else []) + [c.activation] * (2 if c.op == "LSTM" else 1)
    _, act_attrs = rnn_activations(act_names, keras_major, where)  # type: ignore[arg-type]

    # input: time-major, valid steps first under a mask
    idx = ops.mask_index(mask_in) if mask_in is not None else None
    if x.compact is not None and x.compact.mask == mask_in and not flip:
        X = x.compact.name
    else:
        packed = ops.pack(seq_in, idx) if idx is not None else seq_in
        X = ops.transpose(packed, [1, 0, 2])
    seq_lens = ""
    if idx is not None:
        seq_lens = b.op("Max", [idx.seq_lens, b.const(np.asarray(1, dtype=np.int32), "one_i32")], name="seq_lens")

    init_h = init_c = ""
    if initial is not None:
        hs = [ops.unsqueeze(st[0], [0]) for st in initial]
        init_h = hs[0] if len(hs) == 1 else b.op("Concat", hs, axis=0)
        if rc.op == "LSTM":
            cs = [ops.unsqueeze(st[1], [0]) for st in initial]
            init_c = cs[0] if len(cs) == 1 else b.op("Concat", cs, axis=0)

    inputs = [X, W, R, B, seq_lens, init_h] + ([init_c] if rc.op == "LSTM" else [])
    while inputs and inputs[-1] == "":
        inputs.pop()
    n_out = 3 if rc.op == "LSTM" else 2
    attrs: Dict[str, Any] = {"hidden_size": rc.units, "direction": "bidirectional" if bidir else "forward"}
    attrs.update(act_attrs)
    if rc.op == "GRU":
        attrs["linear_before_reset"] = 1 if rc.reset_after else 0
    outs = b.op(rc.op, inputs, name=rc.name, n_out=n_out, **attrs)
    Y, Y_h = outs[0], outs[1]
    Y_c = outs[2] if rc.op == "LSTM" else None
    dirs = 2 if bidir else 1

    # time-major compact sequence [T, B, dirs·H] (forward halves first, as Keras concatenates)
    compact_tm = b.op("Reshape", [ops.transpose(Y, [0, 2, 1, 3]), b.i64([0, 0, -1], "shape")], name=f"{rc.name}_seq")
    zero_out = rc.zero_output_for_mask if zero_masked is None else zero_masked

    sequences: List[Optional[str]] = [None] * dirs
    if rc.return_sequences:
        seq_bf = ops.transpose(compact_tm, [1, 0, 2])
        if idx is not None:
            seq_bf = ops.unpack(seq_bf, idx, zero_out)
        if dirs == 1:
            sequences = [seq_bf]
        else:
            h = rc.units
            sequences = [
                b.op("Slice", [seq_bf, b.i64([0], "starts"), b.i64([h], "ends"), b.i64([2], "axes")]),
                b.op("Slice", [seq_bf, b.i64([h], "starts"), b.i64([2 * h], "ends"), b.i64([2], "axes")]),
            ]

    has_steps = b.op("Greater", [idx.lengths, b.const(np.asarray(0, dtype=np.int64), "zero")]) if idx is not None else None
    has_steps_2d = ops.unsqueeze(has_steps, [1]) if has_steps is not None else None
    lasts: List[str] = []
    states: List[List[str]] = []
    for d in range(dirs):
        h_d = b.op("Gather", [Y_h, b.const(np.asarray(d, dtype=np.int64), "dir")], axis=0)
        c_d = b.op("Gather", [Y_c, b.const(np.asarray(d, dtype=np.int64), "dir")], axis=0) if Y_c else None
        if has_steps_2d is not None:
            zero = b.scalar(0.0)
            if zero_out and not rc.return_sequences:
                last_valid = ops.unsqueeze(b.op("Gather", [mask_in, b.const(np.asarray(-1, dtype=np.int64), "last")],
                                                axis=1), [1])
                last = b.op("Where", [last_valid, h_d, zero])
            else:
                last = b.op("Where", [has_steps_2d, h_d, zero])
            keep_h = initial[d][0] if initial is not None else zero
            st = [b.op("Where", [has_steps_2d, h_d, keep_h])]
            if c_d is not None:
                keep_c = initial[d][1] if initial is not None else zero
                st.append(b.op("Where", [has_steps_2d, c_d, keep_c]))
        else:
            last = h_d
            st = [h_d] + ([c_d] if c_d is not None else [])
        lasts.append(last)
        states.append(st)

    # a go_backwards layer's steps are in processing order: not reusable as the next layer's input
    compact = Compact(mask_in, compact_tm) if (not flip and rc.return_sequences) else None
    return RecurrentResult(sequences, lasts, states, compact, mask if rc.return_sequences else None)


def merge(ops: Ops, mode: Optional[str], a: str, c: str) -> List[str]:
    """A Bidirectional's two halves merged as Keras does (None keeps both)."""
    b = ops.b
    if mode == "concat":
        return [b.op("Concat", [a, c], axis=-1)]
    if mode == "sum":
        return [b.op("Add", [a, c])]
    if mode == "mul":
        return [b.op("Mul", [a, c])]
    if mode == "ave":
        return [b.op("Div", [b.op("Add", [a, c]), b.scalar(2.0)])]
    return [a, c]


__all__ = ["MERGE_MODES", "RNN_CLASSES", "RecurrentResult", "RnnConfig", "build_recurrent", "merge", "onnx_weights",
           "rnn_config", "activation_name"]
