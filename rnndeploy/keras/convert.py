"""Keras model file → ONNX graph + rnndeploy ModelSpec (numpy, onnx and h5py only).

``convert_keras(kfile, options)`` walks the model's call graph (``model_config``),
turns every layer into ONNX nodes (``layers``, ``recurrent``) and returns the graph
with the contract the rest of rnndeploy reads: input/output names, dtypes, dynamic
axes (batch and time), roles, value ranges (an Embedding's vocabulary), and — for
stateful layers or ``with_state`` — the streaming form's state inputs and outputs.

Unsupported layers are refused before anything is built, naming the layer's class
and name and listing what converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy import __version__
from rnndeploy.errors import KerasModelError, UsageError
from rnndeploy.keras.archive import KerasFile
from rnndeploy.keras.builder import GraphBuilder
from rnndeploy.keras.layers import LAYERS, OPS, supported_layers
from rnndeploy.keras.model_config import MODEL_CLASSES, Call, LayerSpec, ModelGraph, TensorRef, parse_model_config
from rnndeploy.keras.recurrent import RNN_CLASSES, RnnConfig
from rnndeploy.keras.tensors import KT, Ops
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec

OPSET_RANGE = (14, 21)
TIME_DIMS = ("seq", "src_seq")
# Keras dtypes of model inputs that convert (Keras' names are the spec's names).
_INPUT_DTYPES = ("float32", "int32", "int64", "bool")


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert.

    Attributes:
        opset: default-domain ONNX opset (default 17: TensorRT 8.6 parses <= 17).
        with_state: give every recurrent layer state inputs and outputs (the streaming
            form); layers saved with ``stateful=True`` always get them.
        name: model name in the spec (default: the file's stem).
    """

    opset: int = 17
    with_state: bool = False
    name: Optional[str] = None

    def __post_init__(self) -> None:
        lo, hi = OPSET_RANGE
        if not lo <= int(self.opset) <= hi:
            raise UsageError(f"--opset {self.opset} is outside what the Keras converter writes ({lo}..{hi})",
                             "use 17 (TensorRT 8.6) or 18+")


@dataclass(frozen=True)
class StateIO:
    """One state tensor of the streaming form (a layer's h or c, per direction)."""

    layer: str
    direction: str
    kind: str
    input: str
    output: str
    units: int


@dataclass
class Conversion:
    """A converted model, not yet validated or written.

    Attributes:
        model: the onnx.ModelProto (rnndeploy metadata not yet written).
        spec: its contract; ``graph`` is "model".
        padding: model input → how Keras masks it: {"kind": "tokens"|"features", "value": pad}.
        states: the streaming form's state tensors (empty when not streaming).
        recurrent: one entry per recurrent layer (class, units, direction, ...).
        notes: facts the user should know (e.g. what was not streamed).
    """

    model: Any
    spec: ModelSpec
    keras: KerasFile
    graph: ModelGraph
    padding: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    states: List[StateIO] = field(default_factory=list)
    recurrent: List[Dict[str, Any]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def streaming(self) -> bool:
        return bool(self.states)


def convert_keras(kfile: KerasFile, options: Optional[ConvertOptions] = None) -> Conversion:
    """Convert a loaded Keras file (see ``archive.load_keras_file``).

    Raises:
        KerasModelError: an unsupported layer, weights that disagree with the config, ...
    """
    return Converter(kfile, options or ConvertOptions()).run()


class Converter:
    """State of one conversion; layer converters call back into it (see ``layers``)."""

    def __init__(self, kfile: KerasFile, options: ConvertOptions):
        self.kfile = kfile
        self.options = options
        self.graph = parse_model_config(kfile.config, kfile.path)
        for lay in self.graph.layers:
            lay.is_op = lay.is_op or _legacy_op(lay)
        self.keras_major = kfile.major if kfile.keras_version else (3 if _looks_keras3(kfile.config) else 2)
        self.b = GraphBuilder(_safe(options.name or Path(kfile.path).stem))
        self.ops = Ops(self.b, int(options.opset))
        self.tensors: Dict[TensorRef, KT] = {}
        self.input_specs: List[TensorSpec] = []
        self.padding: Dict[str, Dict[str, Any]] = {}
        self.token_inputs: Dict[str, Dict[str, Any]] = {}
        self.states: List[StateIO] = []
        self.recurrent: List[Dict[str, Any]] = []
        self.notes: List[str] = []
        self._input_by_name: Dict[str, str] = {}
        self._same_dims: Dict[str, str] = {}  # time axis name → one it must equal (union-find parent)
        self._weights = _WeightIndex(kfile, self.graph)

    # -- driver ---------------------------------------------------------------------------
    def run(self) -> Conversion:
        self._check_supported()
        self._add_inputs()
        self._output_names = self._plan_outputs()
        for call in self.graph.calls:
            self._convert(call)
        self._rename_dims()
        outputs = self._add_outputs()
        if self.options.with_state and not self.states:
            raise KerasModelError(f"{self.kfile.path} has no recurrent layer to stream", "leave out --with-state")
        self._prune()
        model = self.b.model(int(self.options.opset), __version__)
        spec = self._spec(outputs)
        return Conversion(model, spec, self.kfile, self.graph, dict(self.padding), list(self.states),
                          list(self.recurrent), list(self.notes))

    def _check_supported(self) -> None:
        for lay in self.graph.layers:
            if lay.class_name == "InputLayer":
                continue
            _check_layer(lay, self.kfile.path)

    def _convert(self, call: Call) -> None:
        if call.layer.class_name == "InputLayer":
            return
        args = _resolve(call.args, self.tensors, call)
        kwargs = {k: _resolve(v, self.tensors, call) for k, v in call.kwargs.items()}
        handler = OPS[call.layer.class_name] if call.layer.is_op else LAYERS[call.layer.class_name]
        outs = handler(self, call, args, kwargs)
        for i, kt in enumerate(outs):
            self.tensors[TensorRef(call.layer.name, call.node, i)] = kt
        if call.layer.class_name in RNN_CLASSES or call.layer.class_name == "Bidirectional":
            self._describe_recurrent(call.layer)

    # -- callbacks for layer converters ----------------------------------------------------------
    def where(self, call: Call) -> str:
        return f"{call.layer.class_name} layer {call.layer.name!r}"

    def weights(self, lay: LayerSpec, part: str = "") -> List[np.ndarray]:
        return self._weights.get(lay, part)

    def mask_of(self, x: KT, kwargs: Dict[str, Any]) -> Optional[str]:
        """The mask a layer sees: an explicit ``mask=`` argument, else the input's Keras mask."""
        if "mask" in kwargs:
            m = kwargs["mask"]
            if isinstance(m, (list, tuple)):
                m = m[0] if m else None
            return m.name if isinstance(m, KT) else None
        return x.mask

    def masks_of(self, xs: Sequence[KT], kwargs: Dict[str, Any]) -> List[Optional[str]]:
        m = kwargs.get("mask")
        if isinstance(m, (list, tuple)) and len(m) == len(xs):
            return [t.name if isinstance(t, KT) else None for t in m]
        return [x.mask for x in xs]

    def same_dims(self, *dims: Any) -> None:
        """Record that named axes must be equal (e.g. the time axes of two inputs that a
        Concatenate or an Add combines step by step): the ONNX file then gives them one name,
        so validation and the tools feed them one size, as the Keras model requires."""
        names = [self._dim_root(d) for d in dims if isinstance(d, str) and d != "batch"]
        for other in names[1:]:
            if other != names[0]:
                self._same_dims[other] = names[0]

    def _dim_root(self, d: str) -> str:
        while d in self._same_dims:
            d = self._same_dims[d]
        return d

    def streams(self, rc: RnnConfig) -> bool:
        return rc.stateful or self.options.with_state

    def state_inputs(self, layer: str, direction: str, rc: RnnConfig) -> List[str]:
        names = []
        for kind in ("h", "c")[: rc.n_states]:
            base = "_".join(p for p in (layer, direction, kind) if p)
            name = self._io_name(f"{base}_in")
            out = self._io_name(f"{base}_out")
            self.b.add_input(name, "float32", ["batch", rc.units])
            self.states.append(StateIO(layer, direction, kind, name, out, rc.units))
            names.append(name)
        return names

    def state_outputs(self, layer: str, direction: str, rc: RnnConfig, values: Sequence[str]) -> None:
        mine = [s for s in self.states if s.layer == layer and s.direction == direction]
        for st, value in zip(mine, values):
            self.b.identity(value, st.output)  # declared as graph outputs after the model's own (spec order)

    def note_tokens(self, x: KT, vocab: int, mask_zero: bool) -> None:
        name = self._input_by_name.get(x.name)
        if name is not None:
            self.token_inputs[name] = {"vocab": vocab}
            if mask_zero:
                self.padding[name] = {"kind": "tokens", "value": 0}

    def note_padding(self, x: KT, value: float) -> None:
        name = self._input_by_name.get(x.name)
        if name is not None:
            self.padding[name] = {"kind": "features", "value": value}

    # -- inputs and outputs ----------------------------------------------------------------------
    def _add_inputs(self) -> None:
        token_inputs = {c.args[0].layer for c in self.graph.calls
                        if c.layer.class_name == "Embedding" and c.args and isinstance(c.args[0], TensorRef)}
        time_names = iter(TIME_DIMS)
        extra = 3
        for ref in self.graph.inputs:
            lay = self.graph.layer(ref.layer)
            cfg = lay.config
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            if shape is None and cfg.get("shape") is not None:
                shape = [None] + list(cfg["shape"])
            if not isinstance(shape, (list, tuple)) or not shape:
                raise KerasModelError(f"{self.kfile.path}: input {lay.name!r} declares no shape")
            dtype = cfg.get("dtype") or "float32"
            if isinstance(dtype, dict):
                dtype = (dtype.get("config") or {}).get("name", "float32")
            if dtype not in _INPUT_DTYPES:
                raise KerasModelError(f"input {lay.name!r} has dtype {dtype}", "give the model float32 or int32/int64 inputs")
            if cfg.get("sparse") or cfg.get("ragged"):
                raise KerasModelError(f"input {lay.name!r} is sparse or ragged", "use dense (padded) inputs")
            dims: List[Any] = ["batch"]
            rest = list(shape[1:])
            is_seq = len(rest) >= 2 or (len(rest) == 1 and (rest[0] is None or lay.name in token_inputs))
            for i, d in enumerate(rest):
                if i == 0 and is_seq:
                    try:
                        dims.append(next(time_names))
                    except StopIteration:
                        dims.append(f"seq{extra}")
                        extra += 1
                elif d is None:
                    raise KerasModelError(f"input {lay.name!r} has an unknown size on axis {i + 1} ({list(shape)})",
                                          "give every axis but batch and time a size in keras.Input(shape=...)")
                else:
                    dims.append(int(d))
            name = self._io_name(_safe(lay.name))
            self.b.add_input(name, dtype, dims)
            self._input_by_name[name] = name
            self.tensors[TensorRef(ref.layer, 0, 0)] = KT(name, dtype, tuple(dims))

    def _rename_dims(self) -> None:
        """Merge the time axes ``same_dims`` found equal, then name the remaining ones seq,
        src_seq, seq3, ... in input order, in the graph inputs and in every tensor."""
        if not self._same_dims:
            return
        roots: List[str] = []
        for vi in self.b.inputs:
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param and d.dim_param != "batch" and self._dim_root(d.dim_param) not in roots:
                    roots.append(self._dim_root(d.dim_param))
        names = list(TIME_DIMS) + [f"seq{i}" for i in range(len(TIME_DIMS) + 1, len(roots) + len(TIME_DIMS) + 1)]
        new = {r: names[i] for i, r in enumerate(roots)}

        def rename(d: Any) -> Any:
            return new.get(self._dim_root(d), d) if isinstance(d, str) and d != "batch" else d

        for vi in self.b.inputs:
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param:
                    d.dim_param = rename(d.dim_param)
        self.tensors = {ref: kt.with_(dims=tuple(rename(d) for d in kt.dims)) for ref, kt in self.tensors.items()}

    def _plan_outputs(self) -> List[str]:
        """Output names (the output layer's name, "_N" for its N-th tensor), claimed before any node is named."""
        keys = self.graph.output_keys
        counts: Dict[str, int] = {}
        for r in self.graph.outputs:
            counts[r.layer] = counts.get(r.layer, 0) + 1
        names = []
        for i, ref in enumerate(self.graph.outputs):
            base = keys[i] if keys else (ref.layer if ref.index == 0 and counts[ref.layer] == 1 else f"{ref.layer}_{ref.index}")
            names.append(self._io_name(_safe(base)))
        return names

    def _add_outputs(self) -> List[Tuple[str, KT]]:
        outs: List[Tuple[str, KT]] = []
        for name, ref in zip(self._output_names, self.graph.outputs):
            kt = self.tensors.get(ref)
            if kt is None:
                raise KerasModelError(f"{self.kfile.path}: model output {ref.layer}[{ref.node}][{ref.index}] is never computed")
            for d in kt.dims:
                if d is None:
                    raise KerasModelError(f"output {name!r}: a size along one of its axes is unknown to the converter")
            self.b.identity(kt.name, name)
            self.b.add_output(name, kt.dtype, list(kt.dims))
            outs.append((name, kt))
        for st in self.states:
            self.b.add_output(st.output, "float32", ["batch", st.units])
        return outs

    def _io_name(self, base: str) -> str:
        name = self.b.fresh(base)
        return name

    def _prune(self) -> None:
        """Drop nodes and initializers no graph output depends on (e.g. an unpacked
        sequence the next recurrent layer read in packed form)."""
        needed = {o.name for o in self.b.outputs}
        kept = []
        for node in reversed(self.b.nodes):
            if any(o in needed for o in node.output if o):
                kept.append(node)
                needed.update(i for i in node.input if i)
        self.b.nodes = list(reversed(kept))
        self.b.initializers = [t for t in self.b.initializers if t.name in needed]

    def _describe_recurrent(self, lay: LayerSpec) -> None:
        cfg = lay.config
        if lay.class_name == "Bidirectional":
            inner = cfg.get("layer") or {}
            icfg = inner.get("config") or {}
            entry = {"name": lay.name, "class": inner.get("class_name"), "units": icfg.get("units"),
                     "direction": "bidirectional", "merge_mode": cfg.get("merge_mode", "concat"),
                     "stateful": bool(icfg.get("stateful"))}
        else:
            entry = {"name": lay.name, "class": lay.class_name, "units": cfg.get("units"),
                     "direction": "backward" if cfg.get("go_backwards") else "forward",
                     "stateful": bool(cfg.get("stateful"))}
        if all(e["name"] != lay.name for e in self.recurrent):
            self.recurrent.append(entry)

    # -- the contract ------------------------------------------------------------------------
    def _spec(self, outputs: List[Tuple[str, KT]]) -> ModelSpec:
        inputs = []
        for vi in self.b.inputs:
            name = vi.name
            if any(s.input == name for s in self.states):
                continue
            kt = next(t for t in self.tensors.values() if t.name == name)
            time_axis = 1 if len(kt.dims) > 1 and isinstance(kt.dims[1], str) else None
            tok = self.token_inputs.get(name)
            if tok is not None:
                low = 1 if name in self.padding else 0  # with mask_zero, 0 is padding rather than a token
                inputs.append(TensorSpec(name, kt.dtype, kt.dims, "tokens", time_axis, low=low, high=tok["vocab"],
                                         description="token ids (0 is padding)" if name in self.padding else "token ids"))
            else:
                pad = self.padding.get(name)
                desc = f"features; steps equal to {pad['value']} everywhere are masked" if pad else "features"
                inputs.append(TensorSpec(name, kt.dtype, kt.dims, "features" if kt.dtype.startswith("float") else "other",
                                         time_axis, description=desc))
        vocabs = {t["vocab"] for t in self.token_inputs.values()}
        out_specs = []
        for name, kt in outputs:
            role = self._output_role(name, kt, vocabs)
            time_axis = 1 if len(kt.dims) > 2 and isinstance(kt.dims[1], str) else None
            out_specs.append(TensorSpec(name, kt.dtype if kt.dtype != "int32" else "int32", kt.dims, role, time_axis))
        for st in self.states:
            inputs.append(TensorSpec(st.input, "float32", ("batch", st.units), "state", optional=True,
                                     description=f"{st.layer} {st.direction + ' ' if st.direction else ''}{st.kind} before the chunk"))
        for st in self.states:
            out_specs.append(TensorSpec(st.output, "float32", ("batch", st.units), "state", optional=True,
                                        description=f"{st.layer} {st.direction + ' ' if st.direction else ''}{st.kind} after the chunk: feed it back"))
        graph = GraphSpec("model", tuple(inputs), tuple(out_specs))
        name = self.options.name or Path(self.kfile.path).stem
        attrs: Dict[str, Any] = {
            "source": "keras",
            "keras_version": self.kfile.keras_version,
            "keras_format": self.kfile.fmt,
            "keras_sha256": self.kfile.sha256,
            "recurrent_layers": self.recurrent,
            "padding": self.padding,
        }
        if any(p["kind"] == "tokens" for p in self.padding.values()):
            attrs["pad_id"] = 0
        if self.graph.output_keys:
            attrs["keras_output_keys"] = list(self.graph.output_keys)
        if self.states:
            # which Keras layer (and direction) each state tensor belongs to: the keras runner
            # feeds them to Keras itself
            attrs["keras_states"] = [{"layer": s.layer, "direction": s.direction, "kind": s.kind, "input": s.input,
                                      "output": s.output} for s in self.states]
            attrs["state_inputs"] = [s.input for s in self.states]
            attrs["state_outputs"] = [s.output for s in self.states]
            attrs["state_batch_axis"] = 0
        if vocabs:
            attrs["vocab_size"] = max(vocabs)
        return ModelSpec(name=name, family=self._family(graph), graphs={"model": graph}, attrs=attrs)

    def _output_role(self, name: str, kt: KT, vocabs: set) -> str:
        ref_layer = None
        for r in self.graph.outputs:
            if self.tensors.get(r) is kt:
                ref_layer = self.graph.layer(r.layer)
        if ref_layer is None:
            return "other"
        cfg = ref_layer.config
        if ref_layer.class_name == "TimeDistributed":
            cfg = (cfg.get("layer") or {}).get("config") or {}
        act = cfg.get("activation")
        act = act if isinstance(act, str) else None
        if ref_layer.class_name in RNN_CLASSES or ref_layer.class_name == "Bidirectional":
            return "other"
        if act == "softmax":
            return "probs"
        if act in (None, "linear") and kt.last is not None and kt.last in vocabs and kt.last > 1:
            return "logits"
        return "prediction"

    def _family(self, graph: GraphSpec) -> str:
        roles = {t.role for t in graph.outputs}
        tokens = any(t.role == "tokens" for t in graph.inputs)
        if tokens and "logits" in roles and any(t.time_axis is not None for t in graph.outputs):
            return "charlm"
        if "probs" in roles or (tokens and "prediction" in roles):
            return "classifier"
        if not tokens and roles <= {"prediction", "state"}:
            return "regressor"
        return "custom"


# -- weights --------------------------------------------------------------------------------
class _WeightIndex:
    """A layer's weight arrays, in Keras' own order, from either file format.

    ``part``: "" (the layer's own variables), "cell" (an RNN's cell), "forward" /
    "backward" (a Bidirectional's two layers), "inner" (TimeDistributed's layer).
    """

    def __init__(self, kfile: KerasFile, graph: ModelGraph):
        self.kfile = kfile
        self.store = kfile.weights
        self.paths: Dict[str, str] = {}
        if kfile.fmt == "keras":
            self._index_keras3(graph)

    def _index_keras3(self, graph: ModelGraph) -> None:
        # saving_lib names each layer's group by its snake_case class, numbered in model.layers order
        # (Sequential leaves out its InputLayer); recent versions also record the layer's name.
        by_attr = {}
        for path, lname in self.store.group_names.items():
            parts = path.split("/")
            if len(parts) == 2 and parts[0] == "layers":
                by_attr[lname] = path
        used: Dict[str, int] = {}
        for lay in graph.layers:
            if lay.is_op or (graph.kind == "Sequential" and lay.class_name == "InputLayer"):
                continue
            base = _snake(lay.class_name)
            if base in used:
                used[base] += 1
                group = f"{base}_{used[base]}"
            else:
                used[base] = 0
                group = base
            self.paths[lay.name] = by_attr.get(lay.name, f"layers/{group}")

    def get(self, lay: LayerSpec, part: str) -> List[np.ndarray]:
        if self.kfile.fmt == "keras":
            top = self.paths.get(lay.name)
            if top is None:
                raise KerasModelError(f"{self.kfile.path}: no weights found for layer {lay.name!r}")
            sub = {"": "", "cell": "/cell", "forward": "/forward_layer/cell", "backward": "/backward_layer/cell",
                   "inner": "/layer"}[part]
            return list(self.store.groups.get(top + sub, []))
        arrays = list(self.store.by_layer.get(lay.name, []))
        names = list(self.store.weight_names.get(lay.name, []))
        if part in ("forward", "backward"):
            picked = [a for a, n in zip(arrays, names) if f"/{part}_" in n or n.startswith(f"{part}_")]
            if len(picked) * 2 == len(arrays):
                return picked
            half = len(arrays) // 2
            return arrays[:half] if part == "forward" else arrays[half:]
        return arrays


# -- helpers --------------------------------------------------------------------------------
_IDENTITY_NOTE = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout")


def _check_layer(lay: LayerSpec, path: str) -> None:
    supported = ", ".join(supported_layers())
    if lay.is_op:
        if lay.class_name not in OPS:
            raise KerasModelError(
                f"{path}: operation {lay.class_name} ({lay.name!r}) in the functional graph is not supported",
                f"the converter handles these keras.ops in a graph: {', '.join(sorted(OPS))}",
            )
        return
    if lay.class_name in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
        raise KerasModelError(
            f"{path}: layer {lay.name!r} is a {lay.class_name}, whose Python code is not in the file and cannot be converted",
            f"replace it with built-in layers; supported: {supported}",
        )
    if lay.class_name in MODEL_CLASSES:
        raise KerasModelError(f"{path}: layer {lay.name!r} is a nested {lay.class_name} model",
                              "flatten it into one Sequential or functional model before saving")
    custom = bool(lay.registered_name and lay.registered_name != lay.class_name) or \
        bool(lay.module and not lay.module.startswith("keras"))
    if lay.class_name not in LAYERS or custom:
        kind = "custom layer" if custom else "layer"
        raise KerasModelError(f"{path}: {kind} {lay.class_name} ({lay.name!r}) is not supported",
                              f"supported layers: {supported}")


def _legacy_op(lay: LayerSpec) -> bool:
    """A ``keras.ops`` operation in a config without ``module`` keys (Keras 3's .h5): known by its
    class name; Concatenate, also a layer's name, by its config lacking the layer's "trainable"."""
    if lay.module or lay.class_name not in OPS:
        return False
    return lay.class_name not in LAYERS or "trainable" not in lay.config


def _resolve(value: Any, tensors: Dict[TensorRef, KT], call: Call) -> Any:
    if isinstance(value, TensorRef):
        kt = tensors.get(value)
        if kt is None:
            raise KerasModelError(f"layer {call.layer.name!r} reads {value.layer}[{value.node}][{value.index}], "
                                  "which the model never computes")
        return kt
    if isinstance(value, list):
        return [_resolve(v, tensors, call) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, tensors, call) for k, v in value.items()}
    return value


def _snake(name: str) -> str:
    import re

    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _safe(name: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(name))
    return out or "t"


def _looks_keras3(config: Dict[str, Any]) -> bool:
    return "module" in config or "registered_name" in config
