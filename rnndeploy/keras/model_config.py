"""A Keras model config (Sequential or Functional; Keras 2 or 3 dialect) as a call graph.

The converter needs, in an order where every input is ready before use: which
layer (or ``keras.ops`` operation) is applied, to which tensors, with which keyword
arguments (``mask``, ``initial_state``, ``training``, ...). Tensors are named by
``TensorRef(layer, node, index)`` exactly as Keras' ``keras_history`` does.

Dialects handled:
- Keras 3 functional: ``inbound_nodes = [{"args": [...], "kwargs": {...}}]`` with
  ``__keras_tensor__`` entries; mask computations appear as ``keras.src.ops`` nodes.
- Keras 2 functional: ``inbound_nodes = [[[layer, node, index, kwargs], ...]]``; a node
  with several entries calls the layer on a list.
- Sequential (both): a plain ``layers`` list; the input comes from an ``InputLayer``,
  a ``batch_input_shape`` / ``batch_shape`` on the first layer, or the model's
  ``build_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rnndeploy.errors import KerasModelError

MODEL_CLASSES = ("Sequential", "Functional", "Model")


@dataclass(frozen=True)
class TensorRef:
    """Output ``index`` of the ``node``-th call of layer ``layer``."""

    layer: str
    node: int = 0
    index: int = 0


@dataclass
class LayerSpec:
    """One entry of the model's ``layers`` list.

    Attributes:
        class_name: e.g. "LSTM"; for operations e.g. "NotEqual".
        module: "keras.layers", "keras.src.ops.numpy", a user module, ...
        registered_name: set by Keras for custom (registered) classes.
        config: the layer's own config dict.
        is_op: a ``keras.src.ops`` operation rather than a layer.
    """

    name: str
    class_name: str
    module: str
    registered_name: Optional[str]
    config: Dict[str, Any]
    is_op: bool = False


@dataclass
class Call:
    """One application of a layer: ``layer(*args, **kwargs)`` → outputs ``TensorRef(layer, node, i)``."""

    layer: LayerSpec
    node: int
    args: List[Any]
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def refs(self) -> List[TensorRef]:
        """Every tensor this call reads (args and kwargs, nested)."""
        out: List[TensorRef] = []
        _collect(self.args, out)
        _collect(self.kwargs, out)
        return out


@dataclass
class ModelGraph:
    """The call graph of a model.

    Attributes:
        kind: "Sequential" or "Functional".
        layers: every layer/op in config order (input layers included).
        calls: calls in an order where inputs come first.
        inputs: one TensorRef per model input (InputLayer outputs), in order.
        outputs: model outputs, in order; ``output_keys`` names them when the
            model returns a dict.
    """

    name: str
    kind: str
    layers: List[LayerSpec]
    calls: List[Call]
    inputs: List[TensorRef]
    outputs: List[TensorRef]
    output_keys: Optional[List[str]] = None

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KerasModelError(f"the model config references layer {name!r}, which it does not define")


def parse_model_config(config: Mapping[str, Any], path: str = "model") -> ModelGraph:
    """The call graph of a serialized model (``{"class_name": ..., "config": ...}``).

    Raises:
        KerasModelError: not a Sequential/Functional model, or a config that does not hang together.
    """
    cls = config.get("class_name")
    inner = config.get("config")
    if not isinstance(inner, dict):
        raise KerasModelError(f"{path}: the model config has no 'config' mapping")
    if cls == "Sequential":
        return _sequential(inner, path)
    if cls in ("Functional", "Model") or "input_layers" in inner:
        return _functional(inner, path)
    raise KerasModelError(
        f"{path} holds a {cls} model: subclassed models keep their architecture in Python code, not in the file",
        "rebuild it as a Sequential or functional model (keras.Model(inputs, outputs)) and save that",
    )


def _layer_spec(entry: Mapping[str, Any], path: str) -> LayerSpec:
    if not isinstance(entry, Mapping) or "class_name" not in entry:
        raise KerasModelError(f"{path}: a layer entry of the config has no class_name")
    cfg = entry.get("config") or {}
    name = entry.get("name") or (cfg.get("name") if isinstance(cfg, Mapping) else None)
    if not name:
        raise KerasModelError(f"{path}: a {entry['class_name']} layer of the config has no name")
    module = str(entry.get("module") or "")
    return LayerSpec(
        name=str(name),
        class_name=str(entry["class_name"]),
        module=module,
        registered_name=entry.get("registered_name"),
        config=dict(cfg) if isinstance(cfg, Mapping) else {},
        # (Keras 3's legacy .h5 config drops "module": the converter then tells operations by name)
        is_op=module.startswith(("keras.src.ops", "keras.ops")),
    )


# -- Sequential -----------------------------------------------------------------------------
def _sequential(inner: Mapping[str, Any], path: str) -> ModelGraph:
    entries = list(inner.get("layers") or [])
    if not entries:
        raise KerasModelError(f"{path}: the Sequential model has no layers")
    layers = [_layer_spec(e, path) for e in entries]
    calls: List[Call] = []
    if layers[0].class_name == "InputLayer":
        input_layer = layers[0]
        body = layers[1:]
    else:
        shape = layers[0].config.get("batch_input_shape") or layers[0].config.get("batch_shape")
        if shape is None:
            build = inner.get("build_input_shape") or (inner.get("build_config") or {}).get("input_shape")
            shape = build
        if shape is None:
            raise KerasModelError(
                f"{path}: the Sequential model declares no input shape",
                "start it with keras.Input(shape=...) and save it again",
            )
        dtype = layers[0].config.get("dtype") if isinstance(layers[0].config.get("dtype"), str) else "float32"
        input_layer = LayerSpec(
            name=_unique("input_layer", {lay.name for lay in layers}),
            class_name="InputLayer",
            module="keras.layers",
            registered_name=None,
            config={"batch_shape": list(shape), "dtype": dtype or "float32"},
        )
        body = layers
    prev = TensorRef(input_layer.name)
    for layer in body:
        calls.append(Call(layer, 0, [prev]))
        prev = TensorRef(layer.name)
    return ModelGraph(str(inner.get("name") or "sequential"), "Sequential", [input_layer] + body, calls,
                      [TensorRef(input_layer.name)], [prev])


# -- Functional -----------------------------------------------------------------------------
def _functional(inner: Mapping[str, Any], path: str) -> ModelGraph:
    entries = list(inner.get("layers") or [])
    layers = [_layer_spec(e, path) for e in entries]
    names = [lay.name for lay in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise KerasModelError(f"{path}: layer names used twice in the config: {', '.join(dup)}")
    calls: List[Call] = []
    for entry, layer in zip(entries, layers):
        for node, data in enumerate(entry.get("inbound_nodes") or []):
            args, kwargs = _decode_node(data, layer, path)
            calls.append(Call(layer, node, args, kwargs))
    inputs = _refs(inner.get("input_layers"), "input_layers", path)
    outputs_raw = inner.get("output_layers")
    keys: Optional[List[str]] = None
    if isinstance(outputs_raw, Mapping):
        keys = [str(k) for k in outputs_raw]
        outputs = [_ref(outputs_raw[k], "output_layers", path) for k in outputs_raw]
    else:
        outputs = _refs(outputs_raw, "output_layers", path)
    graph = ModelGraph(str(inner.get("name") or "functional"), "Functional", layers, [], inputs, outputs, keys)
    graph.calls = _schedule(calls, inputs, path)
    for ref in inputs:
        if graph.layer(ref.layer).class_name != "InputLayer":
            raise KerasModelError(f"{path}: model input {ref.layer!r} is not an InputLayer")
    return graph


def _decode_node(data: Any, layer: LayerSpec, path: str) -> Tuple[List[Any], Dict[str, Any]]:
    if isinstance(data, Mapping):  # Keras 3
        args = [_decode_value(a) for a in data.get("args", [])]
        kwargs = {str(k): _decode_value(v) for k, v in (data.get("kwargs") or {}).items()}
        return args, kwargs
    if isinstance(data, list):  # Keras 2: [[layer, node, index, kwargs], ...]
        refs = []
        kwargs: Dict[str, Any] = {}
        for item in data:
            if not (isinstance(item, list) and len(item) >= 3):
                raise KerasModelError(f"{path}: inbound node of layer {layer.name!r} is malformed")
            refs.append(TensorRef(str(item[0]), int(item[1]), int(item[2])))
            if len(item) > 3 and isinstance(item[3], Mapping):
                kwargs.update({str(k): _decode_value(v) for k, v in item[3].items()})
        return ([refs[0]] if len(refs) == 1 else [refs]), kwargs
    raise KerasModelError(f"{path}: inbound node of layer {layer.name!r} is malformed")


def _decode_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        if value.get("class_name") == "__keras_tensor__":
            hist = (value.get("config") or {}).get("keras_history")
            if not (isinstance(hist, list) and len(hist) == 3):
                raise KerasModelError("a tensor reference in the config has no keras_history")
            return TensorRef(str(hist[0]), int(hist[1]), int(hist[2]))
        if value.get("class_name") == "__tuple__":
            return [_decode_value(v) for v in (value.get("config") or {}).get("value", [])]
        return {k: _decode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and isinstance(value[0], str) and all(isinstance(v, int) for v in value[1:]):
            return value  # a literal list that merely looks like a reference stays literal
        return [_decode_value(v) for v in value]
    return value


def _ref(raw: Any, what: str, path: str) -> TensorRef:
    if isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str):
        return TensorRef(raw[0], int(raw[1]), int(raw[2]))
    raise KerasModelError(f"{path}: {what} entry {raw!r} is malformed")


def _refs(raw: Any, what: str, path: str) -> List[TensorRef]:
    if isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str):
        return [_ref(raw, what, path)]
    if isinstance(raw, list) and raw:
        return [_ref(r, what, path) for r in raw]
    raise KerasModelError(f"{path}: the model config lists no {what}")


def _schedule(calls: List[Call], inputs: List[TensorRef], path: str) -> List[Call]:
    """Calls reordered so every tensor is produced before it is read (config order kept where it already is)."""
    ready = {(r.layer, r.node) for r in inputs}
    pending = list(calls)
    out: List[Call] = []
    while pending:
        progressed = False
        rest = []
        for call in pending:
            if all((r.layer, r.node) in ready for r in call.refs()):
                out.append(call)
                ready.add((call.layer.name, call.node))
                progressed = True
            else:
                rest.append(call)
        if not progressed:
            missing = sorted({f"{r.layer}[{r.node}]" for c in rest for r in c.refs() if (r.layer, r.node) not in ready})
            raise KerasModelError(f"{path}: the config's layer graph cannot be ordered (inputs never produced: "
                                  f"{', '.join(missing[:5])})")
        pending = rest
    return out


def _collect(value: Any, out: List[TensorRef]) -> None:
    if isinstance(value, TensorRef):
        out.append(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            _collect(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, out)


def _unique(base: str, taken: set) -> str:
    name, i = base, 1
    while name in taken:
        name = f"{base}_{i}"
        i += 1
    return name
