"""ONNX's reference evaluator with spec-complete LSTM / GRU / RNN operators.

``onnx.reference``'s own recurrent operators (onnx 1.19 and 1.23, read and run) ignore
``sequence_lens``, ``clip``, ``input_forget`` and, for LSTM/GRU, the ``activations``
attribute; onnx 1.19's also fail on reverse, bidirectional and layout=1 nodes. Fed such a
model they raise, or return numbers that look plausible and are wrong. The classes here implement the operator equations of the
ONNX specification (operators.md: RNN-14, GRU-14, LSTM-14) in float64 and plug into the
same evaluator through its ``new_ops`` hook, so everything else in a graph is still
computed by onnx itself:

    outputs = reference_run(model, feed)      # {output name: np.ndarray}

Conventions where the specification is silent follow ONNX Runtime's CPU kernels (and
the ONNX backend tests): with ``sequence_lens``, ``Y`` is zero at steps past a row's
length and ``Y_h`` / ``Y_c`` are the states after its last valid step (for the reverse
direction: after step 0, having started at step ``length - 1``); ``clip`` bounds the
input of every activation, peephole terms included; ``input_forget=1`` sets the forget
gate to ``1 - input gate``.

Torch-free; runs on Python 3.9 with numpy 1.26 and onnx 1.19.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.onnx_info import node_attr

Activation = Callable[[np.ndarray], np.ndarray]

# name -> (function of (x, alpha, beta), default alpha, default beta); ONNX operators.md "activations"
_ACTIVATIONS: Dict[str, Tuple[Callable[[np.ndarray, float, float], np.ndarray], float, float]] = {
    "relu": (lambda x, a, b: np.maximum(x, 0.0), 0.0, 0.0),
    "tanh": (lambda x, a, b: np.tanh(x), 0.0, 0.0),
    "sigmoid": (lambda x, a, b: 1.0 / (1.0 + np.exp(-x)), 0.0, 0.0),
    "affine": (lambda x, a, b: a * x + b, 1.0, 0.0),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, 0.0),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0.0), 1.0, 0.0),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), 1.0, 1.0),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0.0, 1.0), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1.0)), 1.0, 0.0),
    "softsign": (lambda x, a, b: x / (1.0 + np.abs(x)), 0.0, 0.0),
    "softplus": (lambda x, a, b: np.log1p(np.exp(x)), 0.0, 0.0),
}
# Activations that take alpha / beta from activation_alpha / activation_beta, in order.
_TAKES_ALPHA = {"affine", "leakyrelu", "thresholdedrelu", "scaledtanh", "hardsigmoid", "elu"}
_TAKES_BETA = {"affine", "scaledtanh", "hardsigmoid"}
_NO_DEFAULT = {"affine", "thresholdedrelu", "scaledtanh"}
DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}


def activation_names(op: str, attrs: Mapping[str, Any], num_directions: int) -> List[str]:
    """The node's activations, one list entry per (direction, slot), defaults filled in."""
    per_dir = len(DEFAULT_ACTIVATIONS[op])
    acts = [a.decode() if isinstance(a, bytes) else str(a) for a in (attrs.get("activations") or [])]
    if not acts:
        acts = list(DEFAULT_ACTIVATIONS[op]) * num_directions
    elif len(acts) == per_dir and num_directions == 2:
        acts = acts * 2  # one set given for both directions
    if len(acts) != per_dir * num_directions:
        raise ValueError(f"{op}: {len(acts)} activations given, expected {per_dir * num_directions}")
    return acts


def _activations(op: str, attrs: Mapping[str, Any], num_directions: int) -> List[List[Activation]]:
    names = activation_names(op, attrs, num_directions)
    alphas = list(attrs.get("activation_alpha") or [])
    betas = list(attrs.get("activation_beta") or [])
    fns: List[Activation] = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"{op}: activation {name!r} is not an ONNX recurrent activation")
        fn, a, b = _ACTIVATIONS[key]
        if key in _NO_DEFAULT and not (alphas and (betas or key not in _TAKES_BETA)):
            # the specification gives these no defaults, and runtimes disagree on them
            raise ValueError(f"{op}: activation {name!r} needs activation_alpha"
                             f"{' and activation_beta' if key in _TAKES_BETA else ''}")
        if key in _TAKES_ALPHA and alphas:
            a = float(alphas.pop(0))
        if key in _TAKES_BETA and betas:
            b = float(betas.pop(0))
        fns.append(lambda x, fn=fn, a=a, b=b: fn(x, a, b))
    per_dir = len(DEFAULT_ACTIVATIONS[op])
    return [fns[d * per_dir:(d + 1) * per_dir] for d in range(num_directions)]


def run_recurrent(op: str, attrs: Mapping[str, Any], X: np.ndarray, W: np.ndarray, R: np.ndarray,
                  B: Optional[np.ndarray] = None, sequence_lens: Optional[np.ndarray] = None,
                  initial_h: Optional[np.ndarray] = None, initial_c: Optional[np.ndarray] = None,
                  P: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ...]:
    """(Y, Y_h[, Y_c]) of one ONNX RNN / GRU / LSTM node (see module docstring).

    Shapes follow the node's ``layout`` attribute; arithmetic is float64, results are
    cast back to ``X.dtype``.
    """
    dtype = X.dtype
    layout = int(attrs.get("layout", 0) or 0)
    if layout:
        X = np.swapaxes(X, 0, 1)
        initial_h = None if initial_h is None else np.swapaxes(initial_h, 0, 1)
        initial_c = None if initial_c is None else np.swapaxes(initial_c, 0, 1)
    X = X.astype(np.float64)
    W, R = W.astype(np.float64), R.astype(np.float64)
    T, N = X.shape[0], X.shape[1]
    D, H = W.shape[0], R.shape[-1]
    direction = attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if (direction == "bidirectional") != (D == 2):
        raise ValueError(f"{op}: direction {direction!r} with {D} weight direction(s)")
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    B = np.zeros((D, 2 * gates * H)) if B is None else B.astype(np.float64)
    h0 = np.zeros((D, N, H)) if initial_h is None else initial_h.astype(np.float64)
    c0 = np.zeros((D, N, H)) if initial_c is None else initial_c.astype(np.float64)
    P = np.zeros((D, 3 * H)) if P is None else P.astype(np.float64)
    lens = np.full(N, T, dtype=np.int64) if sequence_lens is None else np.asarray(sequence_lens, dtype=np.int64)
    clip = attrs.get("clip")
    acts = _activations(op, attrs, D)

    def clipped(x: np.ndarray) -> np.ndarray:
        return x if clip is None else np.clip(x, -float(clip), float(clip))

    Y = np.zeros((T, D, N, H))
    Yh = np.zeros((D, N, H))
    Yc = np.zeros((D, N, H))
    rows = np.arange(N)
    for d in range(D):
        reverse = direction == "reverse" or d == 1
        h, c = h0[d].copy(), c0[d].copy()
        w, r, wb, rb = W[d], R[d], B[d, : gates * H], B[d, gates * H:]
        for k in range(T):
            valid = k < lens  # rows still inside their sequence
            t = np.where(valid, lens - 1 - k, 0) if reverse else np.full(N, k)
            x = X[t, rows]  # [N, I]: row b's input at its own step
            if op == "RNN":
                (f,) = acts[d]
                h_new = f(clipped(x @ w.T + h @ r.T + wb + rb))
                c_new = c
            elif op == "GRU":
                f, g = acts[d]
                xw = x @ w.T + wb
                z = f(clipped(xw[:, :H] + h @ r[:H].T + rb[:H]))
                rt = f(clipped(xw[:, H:2 * H] + h @ r[H:2 * H].T + rb[H:2 * H]))
                if int(attrs.get("linear_before_reset", 0) or 0):
                    n = g(clipped(xw[:, 2 * H:] + rt * (h @ r[2 * H:].T + rb[2 * H:])))
                else:
                    n = g(clipped(xw[:, 2 * H:] + (rt * h) @ r[2 * H:].T + rb[2 * H:]))
                h_new = (1.0 - z) * n + z * h
                c_new = c
            else:
                f, g, hf = acts[d]
                z = x @ w.T + h @ r.T + wb + rb
                pi, po, pf = P[d, :H], P[d, H:2 * H], P[d, 2 * H:]
                i = f(clipped(z[:, :H] + pi * c))
                if int(attrs.get("input_forget", 0) or 0):
                    fg = 1.0 - i
                else:
                    fg = f(clipped(z[:, 2 * H:3 * H] + pf * c))
                cand = g(clipped(z[:, 3 * H:]))
                c_new = fg * c + i * cand
                o = f(clipped(z[:, H:2 * H] + po * c_new))
                h_new = o * hf(c_new)
            m = valid[:, None]
            h = np.where(m, h_new, h)
            c = np.where(m, c_new, c)
            Y[t[valid], d, rows[valid]] = h_new[valid]
        Yh[d], Yc[d] = h, c
    if layout:
        Y = np.transpose(Y, (2, 0, 1, 3))
        Yh = np.swapaxes(Yh, 0, 1)
        Yc = np.swapaxes(Yc, 0, 1)
    outs = (Y.astype(dtype), Yh.astype(dtype))
    return outs + (Yc.astype(dtype),) if op == "LSTM" else outs


def _op_class(op: str) -> Any:
    """An onnx.reference OpRun subclass named ``op`` computing ``run_recurrent``."""
    from onnx.reference.op_run import OpRun

    def _run(self: Any, *args: Any, **kwargs: Any) -> Tuple[np.ndarray, ...]:
        names = ["X", "W", "R", "B", "sequence_lens", "initial_h"] + (["initial_c", "P"] if op == "LSTM" else [])
        values = dict(zip(names, args))
        attrs = {a.name: node_attr(self.onnx_node, a.name) for a in self.onnx_node.attribute}
        outs = run_recurrent(op, attrs, **{k: v for k, v in values.items() if v is not None})
        return outs[: len(self.onnx_node.output)]

    return type(op, (OpRun,), {"op_domain": "", "_run": _run})


def recurrent_ops() -> List[Any]:
    """The three OpRun classes, for ``onnx.reference.ReferenceEvaluator(model, new_ops=...)``."""
    return [_op_class(op) for op in ("RNN", "GRU", "LSTM")]


def reference_run(model: Any, feed: Mapping[str, np.ndarray],
                  outputs: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
    """Run ``model`` (ModelProto or path) with onnx's reference evaluator and the recurrent
    operators above. Returns {output name: array} for ``outputs`` (default: all graph outputs)."""
    from onnx.reference import ReferenceEvaluator

    sess = ReferenceEvaluator(model, new_ops=recurrent_ops())
    names = list(outputs) if outputs is not None else list(sess.output_names)
    values = sess.run(names, dict(feed))
    return dict(zip(names, (np.asarray(v) for v in values)))
