"""Describe an ONNX file on one screen: I/O with symbolic dims, ops, recurrence, metadata.

Torch-free (deploy side). Used by ``rnndeploy export`` for its summary and by
``rnndeploy inspect model.onnx``. The description is a frozen dataclass that
serialises to JSON (``OnnxInfo.to_dict``); ``OnnxInfo.render`` formats it.

Recurrence forms (``OnnxInfo.recurrence``):
    native    ONNX ``LSTM``/``GRU``/``RNN`` nodes (what TensorRT and ORT have dedicated kernels for)
    loop      ``Loop``/``Scan`` nodes carry the time recursion
    unrolled  the exporter wrote one copy of the cell per timestep (the sequence length is baked in)
    cell      single-step cell maths with no time axis (e.g. a decoder step built on ``GRUCell``)
    none      no recurrence found
``unrolled`` and ``cell`` cannot be told from the graph alone; they come from the
export metadata (the exporter knew which torch modules it traced).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from rnndeploy.errors import UsageError
from rnndeploy.spec import (
    DTYPE_OF_ONNX,
    EXPORT_CHECKPOINT_SHA256,
    META_EXPORT,
    META_GRAPH,
    META_SPEC,
    ModelSpec,
    named_dims,
    read_onnx_metadata,
)

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
LOOP_OPS = ("Loop", "Scan")
RECURRENCE_FORMS = ("native", "loop", "unrolled", "cell", "none")
# The newest default-domain opset TensorRT 8.6's ONNX parser accepts.
TRT86_MAX_OPSET = 17

_RECURRENCE_TEXT = {
    "native": "native ONNX recurrent nodes",
    "loop": "Loop/Scan-based (time recursion in a subgraph)",
    "unrolled": "UNROLLED: one cell copy per timestep, sequence length baked in",
    "cell": "single-step cell maths (no time axis in this graph)",
    "none": "no recurrent op",
}

Dim = Union[int, str, None]


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output. ``dims``: int (fixed), str (named dynamic), None (unknown)."""

    name: str
    dtype: str
    dims: Tuple[Dim, ...]

    @property
    def shape_text(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}


@dataclass(frozen=True)
class RecurrentNodeInfo:
    """Facts about one LSTM/GRU/RNN node that matter to ORT and TensorRT."""

    op: str
    name: str
    direction: str
    hidden_size: int
    layout: int
    activations: Tuple[str, ...]
    uses_sequence_lens: bool
    uses_initial_state: bool
    clip: Optional[float] = None
    linear_before_reset: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        d = {
            "op": self.op,
            "name": self.name,
            "direction": self.direction,
            "hidden_size": self.hidden_size,
            "layout": self.layout,
            "activations": list(self.activations),
            "uses_sequence_lens": self.uses_sequence_lens,
            "uses_initial_state": self.uses_initial_state,
        }
        if self.clip is not None:
            d["clip"] = self.clip
        if self.linear_before_reset is not None:
            d["linear_before_reset"] = self.linear_before_reset
        return d


@dataclass(frozen=True)
class OnnxInfo:
    """What an ONNX file is, as far as deployment cares.

    Attributes:
        path: the file described (None when given an in-memory model).
        file_size: bytes on disk (serialised size for an in-memory model).
        opset: default-domain opset; ``opsets`` lists every domain.
        op_histogram: op type → count, subgraphs included, most frequent first.
        n_parameters: total elements in initializers.
        recurrence: one of RECURRENCE_FORMS (see module docstring).
        spec: the rnndeploy ModelSpec as a dict, when the file carries one.
        graph: which of the spec's graphs this file holds.
        export_info: the rnndeploy export facts (exporter, opset, versions, ...).
        other_metadata: metadata_props keys rnndeploy did not write.
        notes: deployment caveats found in the graph (TensorRT parser limits, ...).
    """

    path: Optional[str]
    file_size: int
    ir_version: int
    opset: int
    opsets: Dict[str, int]
    producer: str
    graph_name: str
    inputs: Tuple[TensorInfo, ...]
    outputs: Tuple[TensorInfo, ...]
    op_histogram: Dict[str, int]
    n_nodes: int
    n_initializers: int
    n_parameters: int
    recurrence: str
    recurrent_nodes: Tuple[RecurrentNodeInfo, ...]
    external_data: bool
    spec: Optional[Dict[str, Any]] = None
    graph: Optional[str] = None
    export_info: Dict[str, Any] = field(default_factory=dict)
    other_metadata: Dict[str, str] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()

    @property
    def model_spec(self) -> Optional[ModelSpec]:
        """The embedded spec as a ModelSpec (None for a foreign file)."""
        return None if self.spec is None else ModelSpec.from_dict(self.spec)

    def dynamic_dims(self) -> Tuple[str, ...]:
        """Every named dynamic dim used by an input or output, first-seen order."""
        return named_dims(self.inputs + self.outputs)

    def render(self, width: int = 100) -> str:
        """Multi-line text for the terminal (``rnndeploy inspect``, export's summary)."""
        return _render(self, width)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "file_size": self.file_size,
            "ir_version": self.ir_version,
            "opset": self.opset,
            "opsets": dict(self.opsets),
            "producer": self.producer,
            "graph_name": self.graph_name,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "op_histogram": dict(self.op_histogram),
            "n_nodes": self.n_nodes,
            "n_initializers": self.n_initializers,
            "n_parameters": self.n_parameters,
            "recurrence": self.recurrence,
            "recurrent_nodes": [r.to_dict() for r in self.recurrent_nodes],
            "external_data": self.external_data,
            "spec": self.spec,
            "graph": self.graph,
            "export_info": dict(self.export_info),
            "other_metadata": dict(self.other_metadata),
            "notes": list(self.notes),
        }


def describe_onnx(path_or_model: Any) -> OnnxInfo:
    """Describe an ONNX file (path) or an ``onnx.ModelProto``.

    External weight files are not read (only noted), so this is fast on any size.

    Raises:
        UsageError: the path does not exist or is not an ONNX model.
        SpecError: the file carries rnndeploy metadata that does not parse.
    """
    import onnx

    path: Optional[str] = None
    if isinstance(path_or_model, (str, os.PathLike)):
        from rnndeploy.artefacts.onnx_file import load_onnx

        path = os.fspath(path_or_model)
        model = load_onnx(path, external_data=False)
        file_size = os.path.getsize(path)
    else:
        model = path_or_model
        if not hasattr(model, "graph"):
            raise UsageError(f"cannot describe a {type(model).__name__}: give a path or an onnx.ModelProto")
        file_size = model.ByteSize()

    g = model.graph
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    nodes = list(all_nodes(g))
    hist = Counter(n.op_type for n in nodes)
    init_names = {i.name for i in g.initializer}
    n_params = 0
    external = False
    for t in g.initializer:
        size = 1
        for d in t.dims:
            size *= int(d)
        n_params += size
        if t.data_location == onnx.TensorProto.EXTERNAL:
            external = True

    rec_nodes = tuple(_recurrent_node(n) for n in nodes if n.op_type in RECURRENT_OPS and n.domain in ("", "ai.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    spec_dict: Optional[Dict[str, Any]] = None
    graph_key: Optional[str] = None
    export_info: Dict[str, Any] = {}
    if META_SPEC in props:
        spec, graph_key, export_info = read_onnx_metadata(model, path or "the ONNX model")
        spec_dict = spec.to_dict()
    other = {k: v for k, v in props.items() if k not in (META_SPEC, META_GRAPH, META_EXPORT)}

    recurrence = _recurrence(hist, export_info)
    info = OnnxInfo(
        path=path,
        file_size=int(file_size),
        ir_version=int(model.ir_version),
        opset=opsets.get("ai.onnx", 0),
        opsets=opsets,
        producer=(model.producer_name + " " + model.producer_version).strip(),
        graph_name=g.name,
        inputs=tuple(_tensor(v) for v in g.input if v.name not in init_names),
        outputs=tuple(_tensor(v) for v in g.output),
        op_histogram=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        n_nodes=len(nodes),
        n_initializers=len(g.initializer),
        n_parameters=n_params,
        recurrence=recurrence,
        recurrent_nodes=rec_nodes,
        external_data=external,
        spec=spec_dict,
        graph=graph_key,
        export_info=export_info,
        other_metadata=other,
    )
    return _with_notes(info)


def _render(info: OnnxInfo, width: int = 100) -> str:
    """A one-screen text description of ``info`` (no trailing newline)."""
    lines: List[str] = []
    title = info.path or "(in-memory model)"
    lines.append(
        f"{title}  {_human_bytes(info.file_size)}  opset {info.opset}  IR {info.ir_version}  ({info.producer or '?'})"
    )
    if info.spec is not None:
        spec = info.spec
        lines.append(f"rnndeploy model {spec.get('name')!r}  family {spec.get('family')}  graph {info.graph}")
        ei = info.export_info
        if ei:
            facts = []
            for key in ("exporter", "opset", "with_state", "simplified", "torch_version", "rnndeploy_version"):
                if ei.get(key) is not None:
                    facts.append(f"{key}={ei[key]}")
            sha = ei.get(EXPORT_CHECKPOINT_SHA256)
            if sha:
                facts.append(f"checkpoint={str(sha)[:12]}")
            lines.append("  export: " + "  ".join(facts))
    roles = _roles(info)
    lines.append("inputs:")
    for t in info.inputs:
        lines.append(_tensor_line(t, roles.get(t.name)))
    lines.append("outputs:")
    for t in info.outputs:
        lines.append(_tensor_line(t, roles.get(t.name)))
    rec = _RECURRENCE_TEXT.get(info.recurrence, info.recurrence)
    if info.recurrent_nodes:
        kinds = Counter(f"{r.op}({r.direction})" for r in info.recurrent_nodes)
        rec += ": " + ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items()))
    lines.append(f"recurrence: {rec}")
    lines.append(
        f"graph: {info.n_nodes} nodes, {info.n_initializers} initializers, {info.n_parameters:,} parameters"
        + ("  (weights in external data)" if info.external_data else "")
    )
    lines.append("ops: " + _wrap_hist(info.op_histogram, width - 5))
    for note in info.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# -- helpers ------------------------------------------------------------------------------
def subgraphs(node: Any) -> List[Any]:
    """The graphs held in ``node``'s attributes (Loop / Scan bodies, If branches)."""
    out: List[Any] = []
    for a in node.attribute:
        if a.type == 5:  # GRAPH
            out.append(a.g)
        elif a.type == 10:  # GRAPHS
            out.extend(a.graphs)
    return out


def all_nodes(graph: Any) -> Iterator[Any]:
    """Every node, descending into Loop/Scan/If bodies."""
    for n in graph.node:
        yield n
        for sub in subgraphs(n):
            yield from all_nodes(sub)


def tensors_read(graph: Any) -> set:
    """Every tensor name read by a node of ``graph`` or of any subgraph inside it."""
    names = set()
    for n in graph.node:
        names.update(i for i in n.input if i)
        for sub in subgraphs(n):
            names |= tensors_read(sub)
    return names


def _dtype_name(elem_type: int) -> str:
    """The dtype name of an ONNX element type: the spec's name where rnndeploy handles it
    (FLOAT → "float32"), else ONNX's own name in lower case ("double" → "float64")."""
    import onnx

    if elem_type in DTYPE_OF_ONNX:
        return DTYPE_OF_ONNX[elem_type]
    if elem_type == onnx.TensorProto.DOUBLE:
        return "float64"
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"elem_type{elem_type}"


def _tensor(vi: Any) -> TensorInfo:
    tt = vi.type.tensor_type
    dims: List[Dim] = []
    if tt.HasField("shape"):
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(d.dim_param)
            else:
                dims.append(None)
    return TensorInfo(name=vi.name, dtype=_dtype_name(tt.elem_type), dims=tuple(dims))


def node_attr(node: Any, name: str, default: Any = None) -> Any:
    """Value of attribute ``name`` of an ONNX node (strings decoded), or ``default``."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                return v.decode()
            if isinstance(v, list):
                return [x.decode() if isinstance(x, bytes) else x for x in v]
            return v
    return default


def _recurrent_node(n: Any) -> RecurrentNodeInfo:
    ins = list(n.input)
    # inputs: X, W, R, B, sequence_lens, initial_h[, initial_c, P]; "" marks an omitted one
    seq_lens = len(ins) > 4 and bool(ins[4])
    init_state = len(ins) > 5 and bool(ins[5])
    clip = node_attr(n, "clip")
    return RecurrentNodeInfo(
        op=n.op_type,
        name=n.name,
        direction=str(node_attr(n, "direction", "forward")),
        hidden_size=int(node_attr(n, "hidden_size", 0) or 0),
        layout=int(node_attr(n, "layout", 0) or 0),
        activations=tuple(str(a) for a in (node_attr(n, "activations", []) or [])),
        uses_sequence_lens=seq_lens,
        uses_initial_state=init_state,
        clip=None if clip is None else float(clip),
        linear_before_reset=None if n.op_type != "GRU" else int(node_attr(n, "linear_before_reset", 0) or 0),
    )


def _recurrence(hist: Counter, export_info: Dict[str, Any]) -> str:
    if any(hist.get(op) for op in RECURRENT_OPS):
        return "native"
    if any(hist.get(op) for op in LOOP_OPS):
        return "loop"
    claimed = export_info.get("recurrence")
    if claimed in ("unrolled", "cell"):
        return str(claimed)
    return "none"


def recurrence_form(model: Any, torch_modules: Optional[Dict[str, int]] = None) -> str:
    """The recurrence form of ``model`` (an ``onnx.ModelProto``) given which recurrent torch
    modules were traced into it (``{"LSTM": 2, "GRUCell": 1}``; see RECURRENCE_FORMS)."""
    hist = Counter(n.op_type for n in all_nodes(model.graph))
    if any(hist.get(op) for op in RECURRENT_OPS):
        return "native"
    if any(hist.get(op) for op in LOOP_OPS):
        return "loop"
    mods = torch_modules or {}
    if any(mods.get(k) for k in RECURRENT_OPS):
        return "unrolled"
    if any(n for k, n in mods.items() if k.endswith("Cell")):
        return "cell"
    return "none"


def _with_notes(info: OnnxInfo) -> OnnxInfo:
    notes: List[str] = []
    if info.opset > TRT86_MAX_OPSET:
        notes.append(f"opset {info.opset} > {TRT86_MAX_OPSET}: TensorRT 8.6 cannot parse it (export with --opset 17)")
    for r in info.recurrent_nodes:
        if r.layout != 0:
            notes.append(f"{r.op} node {r.name!r} has layout={r.layout}: TensorRT's ONNX parser ignores layout")
        if r.clip is not None:
            notes.append(f"{r.op} node {r.name!r} uses clip: ORT's CUDA EP falls back to CPU for it")
        if r.op == "GRU" and r.linear_before_reset != 1:
            notes.append(f"GRU node {r.name!r} has linear_before_reset=0: ORT's CUDA EP falls back to CPU for it")
    if info.recurrence == "unrolled":
        notes.append("the recurrence is unrolled: the graph only works at the exported sequence length")
    if info.external_data:
        notes.append("weights live in an external .data file next to the model: ship both")
    for t in info.inputs + info.outputs:
        if any(d is None for d in t.dims):
            notes.append(f"{t.name} has axes of unknown size {t.shape_text}: name them for TensorRT profiles")
            break
    return OnnxInfo(**{**{f: getattr(info, f) for f in info.__dataclass_fields__}, "notes": tuple(notes)})


def _roles(info: OnnxInfo) -> Dict[str, str]:
    if info.spec is None or info.graph is None:
        return {}
    g = info.spec.get("graphs", {}).get(info.graph, {})
    return {t["name"]: t.get("role", "") for t in g.get("inputs", []) + g.get("outputs", [])}


def _tensor_line(t: TensorInfo, role: Optional[str]) -> str:
    r = f"  ({role})" if role else ""
    return f"  {t.name:<18} {t.dtype:<8} {t.shape_text}{r}"


def _wrap_hist(hist: Dict[str, int], width: int) -> str:
    parts = [f"{k} x{v}" for k, v in hist.items()]
    lines: List[str] = []
    cur = ""
    for p in parts:
        if cur and len(cur) + 2 + len(p) > width:
            lines.append(cur)
            cur = p
        else:
            cur = f"{cur}, {p}" if cur else p
    lines.append(cur)
    return "\n     ".join(lines)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
