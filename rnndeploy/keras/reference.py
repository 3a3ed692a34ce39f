"""Keras itself, as the reference a converted model is checked against (and the ``keras`` runner).

Keras 3 runs here on its torch backend (``KERAS_BACKEND=torch`` is set when the
variable is unset; TensorFlow is never needed). The model file is loaded with
``keras.saving.load_model(..., safe_mode=True)``, so a file with Python lambdas is
refused rather than executed.

The streaming form (state in, state out) is reproduced in Keras by giving each
streamed recurrent layer fresh state variables of the feed's batch size and marking
it stateful for the call; the final states are read back from those variables. This
works for layers saved with ``stateful=True`` (whose fixed batch size it lifts) and for
``--with-state`` exports of ordinary layers alike.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from rnndeploy.errors import MissingDependencyError, UsageError, first_line


def import_keras() -> Any:
    """Keras 3, on the torch backend unless KERAS_BACKEND says otherwise.

    Raises:
        MissingDependencyError: Keras (or its backend) is not installed.
    """
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError as exc:
        raise MissingDependencyError("keras", "keras-runtime", "running Keras models") from exc
    major = int(str(keras.__version__).split(".")[0])
    if major < 3:
        raise UsageError(f"Keras {keras.__version__} is installed; the Keras reference needs Keras 3",
                         "pip install 'keras>=3' (it reads Keras 2 .h5 files too)")
    return keras


def keras_version() -> str:
    keras = import_keras()
    return f"keras {keras.__version__} ({keras.backend.backend()} backend)"


class KerasModel:
    """A saved Keras model run by Keras on numpy feeds.

    Args:
        path: the ``.keras`` / ``.h5`` file.
        input_names: the model's inputs in Keras' order, as the ONNX file names them.
        output_names: the model's outputs in Keras' order, as the ONNX file names them.
        states: streamed state tensors, each ``(layer, direction, kind, input name,
            output name)`` with direction "" / "forward" / "backward" and kind "h" / "c".
    """

    def __init__(self, path: str, input_names: Sequence[str], output_names: Sequence[str],
                 states: Sequence[Sequence[str]] = (), output_keys: Optional[Sequence[str]] = None):
        keras = import_keras()
        self.keras = keras
        self.model = load_keras_model(keras, path)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.output_keys = list(output_keys) if output_keys else None
        self.states = [tuple(s) for s in states]

    def run(self, feeds: Mapping[str, np.ndarray], threads: Optional[int] = 1) -> Dict[str, np.ndarray]:
        """Outputs (and final states) by ONNX name for one feed.

        A streamed layer's initial states come from the feed when it holds them, else zeros.
        ``threads``: torch intra-op threads for the call (None: leave torch's setting).
        """
        keras = self.keras
        xs = [np.asarray(feeds[n]) for n in self.input_names]
        holders = self._install_states(feeds, int(xs[0].shape[0])) if self.states else []
        with torch_threads(threads):
            raw = self.model(xs if len(xs) > 1 else xs[0], training=False)
        outs = _flatten(raw, self.output_keys)
        result = {n: np.asarray(keras.ops.convert_to_numpy(o)) for n, o in zip(self.output_names, outs)}
        for state, (obj, idx) in zip(self.states, holders):
            result[state[4]] = np.asarray(keras.ops.convert_to_numpy(obj.states[idx]))
        if len(outs) != len(self.output_names):
            raise UsageError(f"Keras returned {len(outs)} outputs; the ONNX file declares {len(self.output_names)}")
        return result

    def _install_states(self, feeds: Mapping[str, np.ndarray], batch: int) -> List[Any]:
        keras = self.keras
        per_layer: Dict[Any, List[Any]] = {}
        holders = []
        for layer, direction, _kind, in_name, _ in self.states:
            obj = self.model.get_layer(layer)
            if direction:
                obj = getattr(obj, f"{direction}_layer")
            value = feeds.get(in_name)
            if value is None:
                value = np.zeros((batch, int(obj.cell.units)), dtype=np.float32)
            per_layer.setdefault(id(obj), [obj, []])[1].append(np.asarray(value, dtype=np.float32))
            holders.append((obj, len(per_layer[id(obj)][1]) - 1))
        for obj, values in per_layer.values():
            # Fresh variables sized for this batch; bypass Keras' attribute tracking, which is
            # locked once a layer is built.
            object.__setattr__(obj, "states", [keras.Variable(v, trainable=False) for v in values])
            object.__setattr__(obj, "stateful", True)
            object.__setattr__(obj, "_expected_batch_size", None)
        return holders


class KerasLoadError(UsageError):
    """Keras itself cannot rebuild the model from the file."""


# keras.ops operations Keras 3 records in functional configs. Its legacy .h5 loader forgets
# how to find them ("Unknown layer: 'NotEqual'"); they are handed over by name. Concatenate
# is left out: the name is also a layer's.
_H5_OPS = ("NotEqual", "Equal", "Any", "All", "ConvertToTensor", "ExpandDims", "Squeeze", "ZerosLike", "OnesLike",
           "LogicalOr", "LogicalAnd", "LogicalNot", "Cast")


def load_keras_model(keras: Any, path: str) -> Any:
    """``keras.saving.load_model`` with safe_mode on and no compile.

    Raises:
        KerasLoadError: Keras cannot rebuild the model (the message is Keras' first line).
    """
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for files it cannot rebuild
        first = exc
    if str(path).lower().endswith((".h5", ".hdf5")):
        from keras.src.ops import core
        from keras.src.ops import numpy as knp

        found = {n: getattr(m, n) for n in _H5_OPS for m in (knp, core) if hasattr(m, n)}
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True, custom_objects=found)
        except Exception:  # report the first error: it is the one about the file as saved
            pass
    raise KerasLoadError(f"Keras {keras.__version__} cannot load {path} itself: {first_line(first, 400)}") from first


def _flatten(raw: Any, keys: Optional[Sequence[str]]) -> List[Any]:
    if isinstance(raw, Mapping):
        return [raw[k] for k in (keys or list(raw))]
    if isinstance(raw, (list, tuple)):
        out: List[Any] = []
        for r in raw:
            out.extend(_flatten(r, None))
        return out
    return [raw]


class torch_threads:
    """torch on ``n`` intra-op threads for the duration (None: unchanged). Validation uses one:
    the models are small and spinning threads only fight onnxruntime and other jobs."""

    def __init__(self, n: Optional[int]):
        self.n = n
        self.torch: Any = None

    def __enter__(self) -> None:
        if self.n is None:
            return
        try:
            import torch
        except ImportError:
            return
        self.torch = torch
        self.before = torch.get_num_threads()
        torch.set_num_threads(int(self.n))

    def __exit__(self, *exc: Any) -> None:
        if self.torch is not None:
            self.torch.set_num_threads(self.before)
