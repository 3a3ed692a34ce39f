"""Keras activations: as ONNX ops (any layer) and as ONNX recurrent-node activations.

Keras 3 changed ``hard_sigmoid`` from ``0.2·x + 0.5`` (Keras 2) to ``relu6(x + 3) / 6``,
so the file's Keras major version picks the slope.

Recurrent nodes accept only the activations the ONNX operator lists (Relu, Tanh,
Sigmoid, Affine, LeakyRelu, HardSigmoid, Elu, Softsign, Softplus, ...). Their
``activation_alpha`` / ``activation_beta`` lists are read differently by runtimes:
onnxruntime hands the values, in order, only to the activations that take them;
TensorRT's parser reads them by position. ``rnn_activation_attrs`` writes lists that
mean the same under both readings, or refuses.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import KerasModelError


def _rnn_table(keras_major: int) -> Dict[str, Tuple[str, Optional[float], Optional[float]]]:
    """Keras activation name → (ONNX recurrent activation, alpha, beta); None: takes no parameter."""
    hs = (1.0 / 6.0, 0.5) if keras_major >= 3 else (0.2, 0.5)
    return {
        "tanh": ("Tanh", None, None),
        "sigmoid": ("Sigmoid", None, None),
        "relu": ("Relu", None, None),
        "hard_sigmoid": ("HardSigmoid", hs[0], hs[1]),
        "linear": ("Affine", 1.0, 0.0),
        "leaky_relu": ("LeakyRelu", 0.2, None),
        "elu": ("Elu", 1.0, None),
        "softsign": ("Softsign", None, None),
        "softplus": ("Softplus", None, None),
    }


def activation_name(value: Any, where: str) -> str:
    """The Keras activation name of a config value ("tanh", {"class_name": "function", "config": "tanh"}, None)."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        return {"swish": "silu", "hard_swish": "hard_silu"}.get(value, value)
    if isinstance(value, dict):
        cfg = value.get("config")
        if isinstance(cfg, str):
            return activation_name(cfg, where)
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str) and value.get("class_name") in ("function",):
            return activation_name(cfg["name"], where)
        cls = value.get("class_name")
        if cls in ("ReLU", "LeakyReLU", "ELU", "Softmax", "Activation"):
            raise KerasModelError(f"{where}: an activation given as a {cls} layer object is not supported",
                                  "use the activation's name (e.g. activation='relu')")
        raise KerasModelError(f"{where}: custom activation {value.get('config') or cls!r} cannot be converted",
                              "use one of Keras' built-in activations")
    raise KerasModelError(f"{where}: activation {value!r} is not understood")


def rnn_activations(names: Sequence[str], keras_major: int, where: str) -> Tuple[List[str], Dict[str, Any]]:
    """(ONNX activation names, node attributes) for the activations of one recurrent node.

    Raises:
        KerasModelError: an activation ONNX recurrent nodes cannot express, or a mix whose
            parameters onnxruntime and TensorRT would read differently.
    """
    table = _rnn_table(keras_major)
    acts: List[Tuple[str, Optional[float], Optional[float]]] = []
    for n in names:
        if n not in table:
            raise KerasModelError(
                f"{where} uses activation {n!r}, which ONNX recurrent nodes cannot express",
                f"recurrent layers convert with {', '.join(sorted(table))}",
            )
        acts.append(table[n])
    attrs: Dict[str, Any] = {"activations": [a[0] for a in acts]}
    for key, idx in (("activation_alpha", 1), ("activation_beta", 2)):
        wanted = [a[idx] for a in acts]
        if all(w is None for w in wanted):
            continue
        values = _portable_params(wanted)
        if values is None:
            raise KerasModelError(
                f"{where}: activations {', '.join(names)} need {key} values that onnxruntime and TensorRT read differently",
                "use the same parametrised activation for every gate, or tanh/sigmoid/relu",
            )
        attrs[key] = values
    return [a[0] for a in acts], attrs


def _portable_params(wanted: Sequence[Optional[float]]) -> Optional[List[float]]:
    """A positional list whose in-order reading (onnxruntime: only parameter-taking
    activations consume a value) and positional reading (TensorRT) agree on ``wanted``."""
    needing = [w for w in wanted if w is not None]
    first = needing[0]
    candidate = [first if w is None else w for w in wanted]
    in_order = iter(candidate)
    for w in wanted:
        if w is None:
            continue
        if next(in_order) != w:
            return None
    return [float(v) for v in candidate]


# -- activations as ONNX ops ------------------------------------------------------------------
def apply_activation(b: Any, x: str, name: str, keras_major: int, where: str, axis: int = -1) -> str:
    """``x`` passed through Keras activation ``name`` as ONNX ops (``b``: a GraphBuilder)."""
    if name == "linear":
        return x
    simple = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "softsign": "Softsign", "softplus": "Softplus",
              "exponential": "Exp"}
    if name in simple:
        return b.op(simple[name], [x])
    if name == "softmax":
        return b.op("Softmax", [x], axis=axis)
    if name == "log_softmax":
        return b.op("LogSoftmax", [x], axis=axis)
    if name == "hard_sigmoid":
        alpha = 1.0 / 6.0 if keras_major >= 3 else 0.2
        return b.op("HardSigmoid", [x], alpha=alpha, beta=0.5)
    if name == "elu":
        return b.op("Elu", [x], alpha=1.0)
    if name == "selu":
        return b.op("Selu", [x], alpha=1.6732632423543772, gamma=1.0507009873554805)
    if name == "leaky_relu":
        return b.op("LeakyRelu", [x], alpha=0.2)
    if name == "relu6":
        return b.op("Clip", [x, b.scalar(0.0), b.scalar(6.0)])
    if name == "silu":
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    if name == "gelu":  # Keras' default is the exact (erf) form
        erf = b.op("Erf", [b.op("Mul", [x, b.scalar(1.0 / np.sqrt(2.0))])])
        return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5)]), b.op("Add", [erf, b.scalar(1.0)])])
    if name == "mish":
        return b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])])
    if name == "log_sigmoid":
        return b.op("Neg", [b.op("Softplus", [b.op("Neg", [x])])])
    if name == "hard_silu":
        return b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)])
    if name == "hard_tanh":
        return b.op("Clip", [x, b.scalar(-1.0), b.scalar(1.0)])
    if name == "tanh_shrink":
        return b.op("Sub", [x, b.op("Tanh", [x])])
    raise KerasModelError(
        f"{where} uses activation {name!r}, which the converter does not translate",
        "supported: linear, tanh, sigmoid, relu, softmax, log_softmax, hard_sigmoid, elu, selu, leaky_relu, relu6, "
        "silu/swish, gelu, mish, softsign, softplus, exponential, log_sigmoid, hard_silu, hard_tanh, tanh_shrink",
    )
