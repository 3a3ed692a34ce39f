"""Converters for each supported Keras layer and for the ``keras.ops`` operations Keras 3
records in functional configs (mostly mask computations).

A converter is ``fn(cv, call, args, kwargs) -> [KT, ...]``: ``args``/``kwargs`` are the
call's arguments with every tensor reference resolved to a ``KT``; the outputs carry
the Keras mask each layer's ``compute_mask`` would give them. ``cv`` is the
``Converter`` (builder, ops, weights, options).

Mask rules follow Keras 3 (the file's Keras major decides where Keras 2 differed:
Concatenate and the merge layers AND the masks in Keras 2 and OR them in Keras 3).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from rnndeploy.errors import KerasModelError
from rnndeploy.keras.activations import activation_name, apply_activation
from rnndeploy.keras.recurrent import MERGE_MODES, RNN_CLASSES, build_recurrent, merge, rnn_config
from rnndeploy.keras.tensors import KT

Handler = Callable[..., List[KT]]
LAYERS: Dict[str, Handler] = {}
OPS: Dict[str, Handler] = {}
# Identity at inference; they pass the mask through.
IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                   "ActivityRegularization", "Identity")


def _registrar(table: Dict[str, Handler]) -> Callable[..., Callable[[Handler], Handler]]:
    """A decorator factory: ``@deco("A", "B")`` enters the function in ``table`` under each name."""

    def names_of(*names: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for n in names:
                table[n] = fn
            return fn

        return register

    return names_of


layer = _registrar(LAYERS)  # Keras layer class name → handler
op = _registrar(OPS)  # Keras op (functional-API call) name → handler


def _one(args: Sequence[Any], what: str) -> KT:
    if not args or not isinstance(args[0], KT):
        raise KerasModelError(f"{what} must be called on one tensor")
    return args[0]


def _many(args: Sequence[Any], what: str) -> List[KT]:
    if not args or not isinstance(args[0], (list, tuple)) or not all(isinstance(t, KT) for t in args[0]):
        raise KerasModelError(f"{what} must be called on a list of tensors")
    return list(args[0])


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# -- core layers -----------------------------------------------------------------------------
@layer(*IDENTITY_LAYERS)
def _identity(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    mask = cv.mask_of(x, kwargs)
    # the values are unchanged: a packed form under the same mask stays valid (LSTM → Dropout → LSTM)
    return [x.with_(compact=x.compact if mask == x.mask else None, mask=mask)]


@layer("Activation")
def _activation(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    name = activation_name(call.layer.config.get("activation"), cv.where(call))
    y = apply_activation(cv.b, x.name, name, cv.keras_major, cv.where(call))
    return [KT(y, x.dtype, x.dims, cv.mask_of(x, kwargs))]


@layer("Dense")
def _dense(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    return [_dense_on(cv, call.layer.config, cv.weights(call.layer), x, cv.where(call), cv.mask_of(x, kwargs))]


def _dense_on(cv: Any, cfg: Dict[str, Any], weights: List[np.ndarray], x: KT, where: str, mask: Optional[str]) -> KT:
    units = cfg.get("units")
    use_bias = bool(cfg.get("use_bias", True))
    if cfg.get("lora_rank"):
        raise KerasModelError(f"{where} uses LoRA weights", "merge them (layer.enable_lora is off) and save again")
    if cfg.get("quantization_config") or cfg.get("dtype") == "int8":
        raise KerasModelError(f"{where} is quantized", "save the float model")
    want = 2 if use_bias else 1
    if len(weights) != want:
        raise KerasModelError(f"{where}: the file holds {len(weights)} weight arrays, the config needs {want}",
                              "the weights do not belong to this architecture; save the model again")
    kernel = np.asarray(weights[0], dtype=np.float32)
    n_in = x.last if x.last is not None else kernel.shape[0]
    if kernel.shape != (n_in, units):
        raise KerasModelError(f"{where}: weight kernel has shape {list(kernel.shape)} but the config implies "
                              f"{[n_in, units]}", "the weights do not belong to this architecture; save the model again")
    y = cv.b.op("MatMul", [x.name, cv.b.const(kernel, "kernel")])
    if use_bias:
        bias = np.asarray(weights[1], dtype=np.float32)
        if bias.shape != (units,):
            raise KerasModelError(f"{where}: weight bias has shape {list(bias.shape)} but the config implies [{units}]",
                                  "the weights do not belong to this architecture; save the model again")
        y = cv.b.op("Add", [y, cv.b.const(bias, "bias")])
    y = apply_activation(cv.b, y, activation_name(cfg.get("activation"), where), cv.keras_major, where)
    return KT(y, "float32", tuple(x.dims[:-1]) + (int(units),), mask)


@layer("TimeDistributed")
def _time_distributed(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    inner = call.layer.config.get("layer") or {}
    cls = inner.get("class_name")
    where = cv.where(call)
    mask = cv.mask_of(x, kwargs)
    if cls == "Dense":
        return [_dense_on(cv, inner.get("config") or {}, cv.weights(call.layer, "inner"), x, f"{where} ({cls})", mask)]
    if cls in IDENTITY_LAYERS:
        return [x.with_(compact=None, mask=mask)]
    if cls == "Activation":
        name = activation_name((inner.get("config") or {}).get("activation"), where)
        return [KT(apply_activation(cv.b, x.name, name, cv.keras_major, where), x.dtype, x.dims, mask)]
    raise KerasModelError(f"{where} wraps a {cls} layer", "TimeDistributed converts with Dense, Activation or Dropout inside")


@layer("Embedding")
def _embedding(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    cfg = call.layer.config
    where = cv.where(call)
    if cfg.get("lora_rank") or cfg.get("quantization_config"):
        raise KerasModelError(f"{where} is quantized or uses LoRA weights", "save the float model")
    weights = cv.weights(call.layer)
    vocab, width = int(cfg.get("input_dim", -1)), int(cfg.get("output_dim", -1))
    if len(weights) != 1 or tuple(weights[0].shape) != (vocab, width):
        got = [list(w.shape) for w in weights]
        raise KerasModelError(f"{where}: weights {got} do not match the config's input_dim {vocab} × output_dim {width}",
                              "the weights do not belong to this architecture; save the model again")
    ids = x.name if x.dtype in ("int32", "int64") else cv.ops.cast(x.name, "int64")
    y = cv.b.op("Gather", [cv.b.const(np.asarray(weights[0], dtype=np.float32), "embeddings"), ids], axis=0)
    mask = cv.ops.not_equal(x, 0) if cfg.get("mask_zero") else None
    cv.note_tokens(x, vocab, bool(cfg.get("mask_zero")))
    return [KT(y, "float32", tuple(x.dims) + (width,), mask)]


@layer("Masking")
def _masking(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    value = float(call.layer.config.get("mask_value", 0.0))
    keep = cv.ops.any(cv.ops.not_equal(x, value), [x.rank - 1], keepdims=True)
    y = cv.b.op("Mul", [x.name, cv.ops.cast(keep, x.dtype)])
    mask = cv.ops.any(cv.ops.not_equal(x, value), [x.rank - 1], keepdims=False)
    cv.note_padding(x, value)
    return [KT(y, x.dtype, x.dims, mask)]


@layer("RepeatVector")
def _repeat_vector(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    n = int(call.layer.config.get("n", 1))
    y = cv.b.op("Expand", [cv.ops.unsqueeze(x.name, [1]), cv.b.i64([1, n, 1], "shape")])
    return [KT(y, x.dtype, (x.dims[0], n) + tuple(x.dims[1:]))]


# -- pooling and normalisation -----------------------------------------------------------------
def _channels_last(cv: Any, call: Any) -> None:
    if call.layer.config.get("data_format", "channels_last") != "channels_last":
        raise KerasModelError(f"{cv.where(call)} uses data_format=channels_first", "use channels_last")


@layer("GlobalAveragePooling1D")
def _gap1d(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    _channels_last(cv, call)
    keep = bool(call.layer.config.get("keepdims", False))
    mask = cv.mask_of(x, kwargs)
    if mask is None:
        y = cv.ops.reduce("ReduceMean", x.name, [1], keep)
    else:  # Keras: sum(x·m) / sum(m) over time (NaN for a row with no valid step, as Keras gives)
        m = cv.ops.unsqueeze(cv.ops.cast(mask, x.dtype), [2])
        num = cv.ops.reduce("ReduceSum", cv.b.op("Mul", [x.name, m]), [1], keep)
        den = cv.ops.reduce("ReduceSum", m, [1], keep)
        y = cv.b.op("Div", [num, den])
    dims = (x.dims[0], 1, x.dims[2]) if keep else (x.dims[0], x.dims[2])
    return [KT(y, x.dtype, dims)]


@layer("GlobalMaxPooling1D")
def _gmp1d(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    # Keras' GlobalMaxPooling1D does not support masking: it takes the max over every step.
    x = _one(args, cv.where(call))
    _channels_last(cv, call)
    keep = bool(call.layer.config.get("keepdims", False))
    y = cv.ops.reduce("ReduceMax", x.name, [1], keep)
    return [KT(y, x.dtype, (x.dims[0], 1, x.dims[2]) if keep else (x.dims[0], x.dims[2]))]


@layer("LayerNormalization")
def _layer_norm(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    cfg = call.layer.config
    where = cv.where(call)
    axes = cfg.get("axis", -1)
    axes = sorted(_axis(a, x.rank) for a in (axes if isinstance(axes, list) else [axes]))
    if axes != [x.rank - 1]:
        raise KerasModelError(f"{where} normalises over axes {axes}", "LayerNormalization converts with axis=-1")
    eps = float(cfg.get("epsilon", 1e-3))
    scale, center, rms = bool(cfg.get("scale", True)), bool(cfg.get("center", True)), bool(cfg.get("rms_scaling", False))
    weights = cv.weights(call.layer)
    expected = int(scale) + int(center and not rms)  # rms_scaling has no beta
    if len(weights) < expected:
        raise KerasModelError(f"{where}: the file holds {len(weights)} weight arrays, the config needs {expected}")
    b, o = cv.b, cv.ops
    mean = o.reduce("ReduceMean", x.name, axes, True)
    centred = b.op("Sub", [x.name, mean])
    var = o.reduce("ReduceMean", b.op("Mul", [centred, centred]), axes, True)
    inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [var, b.scalar(eps)])])])
    w = iter(weights)
    gamma = next(w) if scale else None
    beta = next(w) if center and not rms else None
    # Keras' rms_scaling: x · rsqrt(var + eps) · gamma (no centring, no beta)
    y = b.op("Mul", [x.name if rms else centred, inv])
    if gamma is not None:
        y = b.op("Mul", [y, b.const(_vec(gamma, x.last, where, "gamma"), "gamma")])
    if beta is not None:
        y = b.op("Add", [y, b.const(_vec(beta, x.last, where, "beta"), "beta")])
    return [KT(y, x.dtype, x.dims, cv.mask_of(x, kwargs))]


@layer("BatchNormalization")
def _batch_norm(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    cfg = call.layer.config
    where = cv.where(call)
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int) or _axis(axis, x.rank) != x.rank - 1:
        raise KerasModelError(f"{where} normalises axis {axis}", "BatchNormalization converts with axis=-1")
    scale, center = bool(cfg.get("scale", True)), bool(cfg.get("center", True))
    weights = list(cv.weights(call.layer))
    want = int(scale) + int(center) + 2
    if len(weights) != want:
        raise KerasModelError(f"{where}: the file holds {len(weights)} weight arrays, the config needs {want}",
                              "the weights do not belong to this architecture; save the model again")
    gamma = weights.pop(0) if scale else None
    beta = weights.pop(0) if center else None
    mean, var = weights
    eps = float(cfg.get("epsilon", 1e-3))
    # inference: (x - moving_mean) · rsqrt(moving_var + eps) · gamma + beta, folded into one scale and shift
    n = x.last
    inv = 1.0 / np.sqrt(_vec(var, n, where, "moving_variance").astype(np.float64) + eps)
    mul = inv * (_vec(gamma, n, where, "gamma") if gamma is not None else 1.0)
    add = (_vec(beta, n, where, "beta") if beta is not None else 0.0) - _vec(mean, n, where, "moving_mean") * mul
    y = cv.b.op("Add", [cv.b.op("Mul", [x.name, cv.b.const(mul.astype(np.float32), "bn_scale")]),
                        cv.b.const(np.asarray(add, dtype=np.float32), "bn_shift")])
    return [KT(y, x.dtype, x.dims, cv.mask_of(x, kwargs))]


def _vec(v: np.ndarray, n: Optional[int], where: str, what: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    if v.ndim != 1 or (n is not None and v.shape[0] != n):
        raise KerasModelError(f"{where}: weight {what} has shape {list(v.shape)} but the input has {n} features",
                              "the weights do not belong to this architecture; save the model again")
    return v


# -- merging ---------------------------------------------------------------------------------
@layer("Concatenate")
def _concatenate(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    xs = _many(args, cv.where(call))
    rank = xs[0].rank
    axis = _axis(int(call.layer.config.get("axis", -1)), rank)
    y = cv.b.op("Concat", [x.name for x in xs], axis=axis)
    _same_axes(cv, xs, skip=axis)
    dims = list(xs[0].dims)
    sizes = [x.dims[axis] for x in xs]
    dims[axis] = sum(sizes) if all(isinstance(s, int) for s in sizes) else (None if axis != 1 else xs[0].dims[1])
    masks = cv.masks_of(xs, kwargs)
    out_mask = None
    if any(m is not None for m in masks) and rank >= 2:
        b, o = cv.b, cv.ops
        full = []
        for x, m in zip(xs, masks):
            if m is None:
                full.append(o.ones_like(x.name, "bool"))
            else:  # the mask broadcast over the input's trailing axes
                mm = o.unsqueeze(m, list(range(2, rank))) if rank > 2 else m
                full.append(b.op("Or", [mm, o.zeros_like(x.name, "bool")]) if rank > 2 else mm)
        cat = b.op("Concat", full, axis=axis)
        if rank > 2:
            out_mask = o.any(cat, [rank - 1]) if cv.keras_major >= 3 else o.all(cat, [rank - 1])
        else:
            out_mask = cat
    return [KT(y, xs[0].dtype, tuple(dims), out_mask)]


def _same_axes(cv: Any, xs: Sequence[KT], skip: Optional[int] = None) -> None:
    """Axes that ``xs`` combine element by element (aligned from the last, as broadcasting
    does) must be equal: tell the converter, which then gives their time axes one name."""
    rank = max(x.rank for x in xs)
    for i in range(1, rank + 1):
        if skip is not None and rank - i == skip:
            continue
        cv.same_dims(*(x.dims[-i] for x in xs if x.rank >= i))


def _merge_mask(cv: Any, masks: Sequence[Optional[str]]) -> Optional[str]:
    if cv.keras_major >= 3:
        if any(m is None for m in masks):
            return None
        out = masks[0]
        for m in masks[1:]:
            out = cv.b.op("Or", [out, m])
        return out
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = cv.b.op("And", [out, m])
    return out


@layer("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
def _elementwise(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    xs = _many(args, cv.where(call))
    cls = call.layer.class_name
    if cls == "Subtract" and len(xs) != 2:
        raise KerasModelError(f"{cv.where(call)} needs exactly two inputs")
    _same_axes(cv, xs)
    onnx_op = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Average": "Add", "Maximum": "Max", "Minimum": "Min"}[cls]
    masks = cv.masks_of(xs, kwargs)
    if cls in ("Multiply", "Maximum", "Minimum") and cv.keras_major >= 3 and any(m is not None for m in masks):
        y = _masked_merge(cv, onnx_op, xs, masks)
    else:
        y = xs[0].name
        for x in xs[1:]:
            y = cv.b.op(onnx_op, [y, x.name])
    if cls == "Average":
        y = cv.b.op("Div", [y, cv.b.scalar(float(len(xs)))])
    dims = max((x.dims for x in xs), key=len)
    return [KT(y, xs[0].dtype, dims, _merge_mask(cv, masks))]


def _masked_merge(cv: Any, onnx_op: str, xs: Sequence[KT], masks: Sequence[Optional[str]]) -> str:
    """Keras 3's Multiply / Maximum / Minimum under masks (keras.layers.merging, 3.15): a masked
    step of an input does not take part — Multiply counts it as 1 and zeroes the steps every
    masked input masks (when all are masked); Maximum / Minimum take the other inputs' value there."""
    o = cv.ops
    if onnx_op == "Mul":
        y = None
        for x, m in zip(xs, masks):
            v = x.name if m is None else o.where_mask(m, x.name, x.rank, cv.b.scalar(1.0))
            y = v if y is None else cv.b.op("Mul", [y, v])
        if all(m is not None for m in masks):
            y = o.where_mask(_merge_mask(cv, masks), y, xs[0].rank)
        return y
    y, y_mask = xs[0].name, masks[0]
    for x, m in zip(xs[1:], masks[1:]):
        v = x.name if m is None else o.where_mask(m, x.name, x.rank, y)
        if y_mask is not None:
            y = o.where_mask(y_mask, y, x.rank, v)
        y_mask = cv.b.op("Or", [y_mask, m]) if (m is not None and y_mask is not None) else None
        y = cv.b.op(onnx_op, [y, v])
    return y


# -- attention -------------------------------------------------------------------------------
@layer("Attention", "AdditiveAttention")
def _attention(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    xs = _many(args, cv.where(call))
    where = cv.where(call)
    if len(xs) not in (2, 3):
        raise KerasModelError(f"{where} needs [query, value] or [query, value, key]")
    q, v = xs[0], xs[1]
    k = xs[2] if len(xs) == 3 else v
    cv.same_dims(v.dims[1], k.dims[1])  # a value per key
    cfg = call.layer.config
    b, o = cv.b, cv.ops
    additive = call.layer.class_name == "AdditiveAttention"
    use_scale = bool(cfg.get("use_scale", additive))
    score_mode = "additive" if additive else cfg.get("score_mode", "dot")
    causal = bool(kwargs.get("use_causal_mask", cfg.get("causal", False)))
    weights = list(cv.weights(call.layer))
    if score_mode == "dot":
        scores = b.op("MatMul", [q.name, o.transpose(k.name, [0, 2, 1])])
        if use_scale:
            scores = b.op("Mul", [scores, b.const(np.asarray(weights.pop(0), dtype=np.float32).reshape(()), "scale")])
    elif score_mode in ("concat", "additive"):
        qk = b.op("Add", [o.unsqueeze(q.name, [2]), o.unsqueeze(k.name, [1])])
        scale = np.asarray(weights.pop(0), dtype=np.float32) if use_scale else None
        if score_mode == "concat":  # Attention(score_mode="concat"): w · sum(tanh(scale · (q + k)))
            if scale is not None:
                qk = b.op("Mul", [qk, b.const(scale.reshape(()), "scale")])
            scores = o.reduce("ReduceSum", b.op("Tanh", [qk]), [3], False)
            w = np.asarray(weights.pop(0), dtype=np.float32).reshape(())
            scores = b.op("Mul", [b.const(w, "concat_score_weight"), scores])
        else:  # AdditiveAttention: sum(scale · tanh(q + k))
            t = b.op("Tanh", [qk])
            if scale is not None:
                t = b.op("Mul", [b.const(scale.reshape(-1), "scale"), t])
            scores = o.reduce("ReduceSum", t, [3], False)
    else:
        raise KerasModelError(f"{where}: score_mode {score_mode!r} is not supported", "use 'dot' or 'concat'")
    if weights:
        raise KerasModelError(f"{where}: the file holds {len(weights)} more weight arrays than the config uses",
                              "the weights do not belong to this architecture; save the model again")
    masks = kwargs.get("mask")
    if isinstance(masks, list):
        q_mask = masks[0].name if len(masks) > 0 and isinstance(masks[0], KT) else None
        v_mask = masks[1].name if len(masks) > 1 and isinstance(masks[1], KT) else None
    else:
        q_mask, v_mask = q.mask, v.mask
    score_mask = o.unsqueeze(v_mask, [1]) if v_mask is not None else None
    if causal:
        tri = b.op("Trilu", [o.ones_like(scores, "int64")], upper=0)
        causal_mask = o.cast(tri, "bool")
        score_mask = b.op("And", [score_mask, causal_mask]) if score_mask is not None else causal_mask
    if score_mask is not None:
        scores = b.op("Where", [score_mask, scores, b.op("Sub", [scores, b.scalar(1.0e9)])])
    dist = b.op("Softmax", [scores], axis=-1)
    out = b.op("MatMul", [dist, v.name])
    if q_mask is not None:
        out = o.where_mask(q_mask, out, 3)
    result = [KT(out, "float32", (q.dims[0], q.dims[1], v.dims[-1]), q_mask)]
    if kwargs.get("return_attention_scores"):
        result.append(KT(dist, "float32", (q.dims[0], q.dims[1], k.dims[1])))
    return result


# -- recurrent -------------------------------------------------------------------------------
@layer(*RNN_CLASSES)
def _rnn(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    where = cv.where(call)
    x, initial = _rnn_inputs(args, kwargs, where)
    rc = rnn_config(call.layer.class_name, call.layer.config, call.layer.name)
    mask = cv.mask_of(x, kwargs)
    states_in = _initial_states(initial, 1, rc.n_states, where)
    streaming = cv.streams(rc) and states_in is None
    if streaming:
        states_in = [cv.state_inputs(call.layer.name, "", rc)]
    res = build_recurrent(cv.ops, [rc], [cv.weights(call.layer, "cell")], x, mask, states_in, cv.keras_major, where)
    if streaming:
        cv.state_outputs(call.layer.name, "", rc, res.states[0])
    units = rc.units
    if rc.return_sequences:
        out = KT(res.sequences[0], "float32", (x.dims[0], x.dims[1], units), res.mask, res.compact)  # type: ignore[arg-type]
    else:
        out = KT(res.lasts[0], "float32", (x.dims[0], units))
    outs = [out]
    if rc.return_state:
        outs += [KT(s, "float32", (x.dims[0], units)) for s in res.states[0]]
    return outs


@layer("Bidirectional")
def _bidirectional(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    where = cv.where(call)
    cfg = call.layer.config
    inner = cfg.get("layer") or {}
    cls = inner.get("class_name")
    if cls not in RNN_CLASSES:
        raise KerasModelError(f"{where} wraps a {cls} layer", "Bidirectional converts with SimpleRNN, LSTM or GRU inside")
    mode = cfg.get("merge_mode", "concat")
    if mode not in MERGE_MODES:
        raise KerasModelError(f"{where}: merge_mode {mode!r} is unknown", "use concat, sum, mul, ave or None")
    fwd_cfg = dict(inner.get("config") or {})
    back = cfg.get("backward_layer")
    if back:
        if back.get("class_name") != cls:
            raise KerasModelError(f"{where}: its backward layer is a {back.get('class_name')}, its forward layer a {cls}")
        bwd_cfg = dict(back.get("config") or {})
    else:
        bwd_cfg = dict(fwd_cfg, go_backwards=not fwd_cfg.get("go_backwards", False))
    fwd = rnn_config(cls, fwd_cfg, call.layer.name)
    bwd = rnn_config(cls, bwd_cfg, call.layer.name)
    x, initial = _rnn_inputs(args, kwargs, where)
    mask = cv.mask_of(x, kwargs)
    states_in = _initial_states(initial, 2, fwd.n_states, where)
    streaming = cv.streams(fwd) and states_in is None
    if streaming:
        states_in = [cv.state_inputs(call.layer.name, "forward", fwd), cv.state_inputs(call.layer.name, "backward", bwd)]
    weights = [cv.weights(call.layer, "forward"), cv.weights(call.layer, "backward")]
    res = build_recurrent(cv.ops, [fwd, bwd], weights, x, mask, states_in, cv.keras_major, where,
                          zero_masked=fwd.return_sequences)
    if streaming:
        cv.state_outputs(call.layer.name, "forward", fwd, res.states[0])
        cv.state_outputs(call.layer.name, "backward", bwd, res.states[1])
    h = fwd.units
    if fwd.return_sequences:
        a, c = res.sequences[0], res.sequences[1]
        dims_one = (x.dims[0], x.dims[1], h)
    else:
        a, c = res.lasts[0], res.lasts[1]
        dims_one = (x.dims[0], h)
    merged = merge(cv.ops, mode, a, c)  # type: ignore[arg-type]
    out_mask = res.mask
    if mode == "concat":
        outs = [KT(merged[0], "float32", dims_one[:-1] + (2 * h,), out_mask,
                   res.compact if fwd.return_sequences else None)]
    else:
        outs = [KT(m, "float32", dims_one, out_mask) for m in merged]
    if fwd.return_state:
        outs += [KT(s, "float32", (x.dims[0], h)) for st in res.states for s in st]
    return outs


def _rnn_inputs(args: List[Any], kwargs: Dict[str, Any], where: str) -> Any:
    """(sequence input, initial states or None) from a call's arguments (Keras 2 passes
    initial states in the input list; Keras 3 as the ``initial_state`` keyword)."""
    first = args[0] if args else None
    initial = kwargs.get("initial_state")
    if len(args) > 1 and initial is None:
        initial = args[1]
    if isinstance(first, (list, tuple)):
        if not first or not isinstance(first[0], KT):
            raise KerasModelError(f"{where} must be called on a sequence tensor")
        if len(first) > 1:
            initial = list(first[1:])
        first = first[0]
    if not isinstance(first, KT):
        raise KerasModelError(f"{where} must be called on a sequence tensor")
    if isinstance(initial, KT):
        initial = [initial]
    return first, initial


def _initial_states(initial: Optional[List[Any]], dirs: int, n_states: int, where: str) -> Optional[List[List[str]]]:
    if initial is None:
        return None
    flat = [t.name for t in initial if isinstance(t, KT)]
    if len(flat) != dirs * n_states:
        raise KerasModelError(f"{where} was given {len(flat)} initial states; it takes {dirs * n_states}")
    return [flat[d * n_states:(d + 1) * n_states] for d in range(dirs)]


# -- keras.ops operations recorded in functional configs ---------------------------------------
@op("NotEqual", "Equal")
def _op_compare(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    a, other = args[0], args[1] if len(args) > 1 else kwargs.get("x2")
    if not isinstance(a, KT):
        a, other = other, a
    y = cv.ops.not_equal(a, other)
    if call.layer.class_name == "Equal":
        y = cv.b.op("Not", [y])
    dims = a.dims if not isinstance(other, KT) or len(other.dims) <= len(a.dims) else other.dims
    return [KT(y, "bool", dims)]


@op("Any", "All")
def _op_reduce_bool(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    cfg = call.layer.config
    axis = cfg.get("axis", kwargs.get("axis"))
    keep = bool(cfg.get("keepdims", kwargs.get("keepdims", False)))
    axes = list(range(x.rank)) if axis is None else [_axis(a, x.rank) for a in (axis if isinstance(axis, list) else [axis])]
    fn = cv.ops.any if call.layer.class_name == "Any" else cv.ops.all
    y = fn(cv.ops.cast(x.name, "bool") if x.dtype != "bool" else x.name, axes, keep)
    dims = tuple(1 if i in axes else d for i, d in enumerate(x.dims)) if keep else \
        tuple(d for i, d in enumerate(x.dims) if i not in axes)
    return [KT(y, "bool", dims)]


@op("ConvertToTensor", "Cast")
def _op_cast(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    dtype = call.layer.config.get("dtype") or kwargs.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype in (None, x.dtype):
        return [x.with_(compact=None, mask=None)]
    if dtype not in ("float32", "int32", "int64", "bool"):
        raise KerasModelError(f"{cv.where(call)} casts to {dtype}, which the converter does not handle")
    return [KT(cv.ops.cast(x.name, dtype), dtype, x.dims)]


@op("ExpandDims")
def _op_expand_dims(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    axis = call.layer.config.get("axis", kwargs.get("axis"))
    ax = _axis(int(axis), x.rank + 1)
    dims = list(x.dims)
    dims.insert(ax, 1)
    return [KT(cv.ops.unsqueeze(x.name, [ax]), x.dtype, tuple(dims))]


@op("Squeeze")
def _op_squeeze(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    axis = call.layer.config.get("axis", kwargs.get("axis"))
    if axis is None:
        raise KerasModelError(f"{cv.where(call)} squeezes without an axis", "give ops.squeeze an axis")
    axes = [_axis(a, x.rank) for a in (axis if isinstance(axis, list) else [axis])]
    return [KT(cv.ops.squeeze(x.name, axes), x.dtype, tuple(d for i, d in enumerate(x.dims) if i not in axes))]


@op("ZerosLike", "OnesLike")
def _op_fill_like(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    dtype = call.layer.config.get("dtype") or x.dtype
    fn = cv.ops.zeros_like if call.layer.class_name == "ZerosLike" else cv.ops.ones_like
    return [KT(fn(x.name, dtype), dtype, x.dims)]


@op("LogicalOr", "LogicalAnd")
def _op_logical(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    a, c = args[0], args[1]
    if not (isinstance(a, KT) and isinstance(c, KT)):
        raise KerasModelError(f"{cv.where(call)} must be called on two tensors")
    onnx_op = "Or" if call.layer.class_name == "LogicalOr" else "And"
    _same_axes(cv, [a, c])
    y = cv.b.op(onnx_op, [cv.ops.cast(a.name, "bool") if a.dtype != "bool" else a.name,
                          cv.ops.cast(c.name, "bool") if c.dtype != "bool" else c.name])
    dims = tuple(ca if not (isinstance(ca, int) and ca == 1) else cc for ca, cc in zip(a.dims, c.dims)) \
        if a.rank == c.rank else (a.dims if a.rank > c.rank else c.dims)
    return [KT(y, "bool", dims)]


@op("LogicalNot")
def _op_not(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    x = _one(args, cv.where(call))
    return [KT(cv.b.op("Not", [cv.ops.cast(x.name, "bool") if x.dtype != "bool" else x.name]), "bool", x.dims)]


@op("Concatenate")
def _op_concatenate(cv: Any, call: Any, args: List[Any], kwargs: Dict[str, Any]) -> List[KT]:
    xs = _many(args, cv.where(call))
    axis = _axis(int(call.layer.config.get("axis", kwargs.get("axis", 0))), xs[0].rank)
    _same_axes(cv, xs, skip=axis)
    dims = list(xs[0].dims)
    sizes = [x.dims[axis] for x in xs]
    dims[axis] = sum(sizes) if all(isinstance(s, int) for s in sizes) else None  # type: ignore[assignment]
    return [KT(cv.b.op("Concat", [x.name for x in xs], axis=axis), xs[0].dtype, tuple(dims))]


def supported_layers() -> List[str]:
    return sorted(LAYERS)


def supported_ops() -> List[str]:
    return sorted(OPS)
