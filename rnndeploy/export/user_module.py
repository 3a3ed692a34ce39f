"""Users' own modules: ``--model file.py:factory`` plus ``--input``/``--output`` declarations.

``--input NAME:DTYPE[DIMS][:ROLE][:LOW..HIGH]`` declares one positional input of
``forward``, in order. DIMS are integers (fixed) or names (dynamic axes; ``batch``
and ``seq`` are the conventional ones, ``seq`` marks the time axis). DTYPE is one
of float32, float16, int64, int32, bool (``NAME[DIMS]`` means float32). ROLE and
range are optional: float inputs default to ``features`` in [-1, 1], integer ones
to ``tokens`` in [0, V) where V is the smallest ``nn.Embedding`` of the module
(2 without one), an input called ``lengths`` to role ``lengths``.

``--output NAME[:ROLE]`` names the outputs in the order forward returns them
(nested tuples are flattened); their dims are found by running the module at two
different sizes, so every output axis that follows ``batch`` or ``seq`` is dynamic
under the same name. ``--output NAME:DTYPE[DIMS][:ROLE]`` declares them in full
and is checked against what the module returns. A declared axis name that no input
has is a *derived* axis: its size is the module's to decide (``rows`` of
``decoded.view(-1, ntoken)``, seq × batch); export validation checks it at every
validation shape (ONNX Runtime against torch, the same size wherever it appears).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import UsageError, first_line
from rnndeploy.spec import DTYPES, INPUT_ROLES, OUTPUT_ROLES, GraphSpec, ModelSpec, TensorSpec

_NAME = r"[A-Za-z_][A-Za-z0-9_.\-/]*"
_TENSOR_RE = re.compile(rf"^(?P<name>{_NAME})(?::(?P<dtype>[A-Za-z0-9]+))?\[(?P<dims>[^\]]*)\](?P<rest>(?::[^:]+)*)$")
_DTYPE_ALIASES = {
    "float": "float32",
    "f32": "float32",
    "fp32": "float32",
    "float32": "float32",
    "half": "float16",
    "f16": "float16",
    "fp16": "float16",
    "float16": "float16",
    "long": "int64",
    "int64": "int64",
    "i64": "int64",
    "int": "int32",
    "int32": "int32",
    "i32": "int32",
    "bool": "bool",
}
INPUT_FORMAT = "NAME:DTYPE[DIMS][:ROLE][:LOW..HIGH], e.g. x:float32[batch,seq,8] or ids:int64[batch,seq]:tokens:0..5000"
OUTPUT_FORMAT = "NAME[:ROLE] or NAME:DTYPE[DIMS][:ROLE], e.g. y or logits:logits or y:float32[batch,1]"
# Probe sizes: every named axis gets a different size in each probe and between probes,
# so an output axis's size says which input axis it follows.
_PROBES = ({"batch": 2, "seq": 7, "src_seq": 6}, {"batch": 3, "seq": 10, "src_seq": 9})


def parse_input(text: str) -> TensorSpec:
    """One ``--input`` value → TensorSpec. Raises UsageError naming the value on any mistake."""
    m = _TENSOR_RE.match(text.strip())
    if not m:
        raise UsageError(f"--input {text!r} is malformed", f"use {INPUT_FORMAT}")
    name, dims, role, low, high = _common(m, text, "--input", INPUT_ROLES)
    dtype = _dtype(m.group("dtype"), text, "--input")
    if role is None:
        if name == "lengths":
            role = "lengths"
        elif dtype in ("int64", "int32"):
            role = "tokens" if "seq" in dims else "token"
        elif dtype == "bool":
            role = "mask"
        else:
            role = "features"
    time_axis = dims.index("seq") if "seq" in dims else (dims.index("src_seq") if "src_seq" in dims else None)
    return TensorSpec(name=name, dtype=dtype, dims=tuple(dims), role=role, time_axis=time_axis, low=low, high=high)


def parse_output(text: str) -> Tuple[str, Optional[TensorSpec], Optional[str]]:
    """One ``--output`` value → (name, full TensorSpec or None, role or None)."""
    s = text.strip()
    if "[" in s:
        m = _TENSOR_RE.match(s)
        if not m:
            raise UsageError(f"--output {text!r} is malformed", f"use {OUTPUT_FORMAT}")
        name, dims, role, low, high = _common(m, text, "--output", OUTPUT_ROLES)
        if low is not None:
            raise UsageError(f"--output {text!r}: a value range makes no sense for an output", f"use {OUTPUT_FORMAT}")
        dtype = _dtype(m.group("dtype"), text, "--output")
        t = TensorSpec(name, dtype, tuple(dims), role or "prediction", time_axis=_time_axis(dims))
        return name, t, role
    parts = s.split(":")
    if len(parts) > 2 or not re.fullmatch(_NAME, parts[0]):
        raise UsageError(f"--output {text!r} is malformed", f"use {OUTPUT_FORMAT}")
    role = parts[1] if len(parts) == 2 else None
    if role is not None and role not in OUTPUT_ROLES:
        raise UsageError(f"--output {text!r}: role {role!r} is unknown", f"use one of {', '.join(OUTPUT_ROLES)}")
    return parts[0], None, role


def load_user_module(ref: str) -> Any:
    """``--model path/to/file.py:factory`` → the module, through the one user-module loader
    (rnndeploy.artefacts.user_module: its folder on sys.path, eval mode, one-line errors)."""
    from rnndeploy.artefacts.user_module import load_user_module as load

    return load(ref, option="--model")


def user_spec(
    module: Any,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[str] = (),
    name: Optional[str] = None,
    source: str = "",
) -> ModelSpec:
    """The ModelSpec of a user module (family "custom", one graph "model").

    Output dims are found by running ``module`` at two probe sizes (see module doc).

    Raises:
        UsageError: an input spec or output option does not fit what the module does.
    """
    if not inputs:
        raise UsageError("--model needs at least one --input", f"declare each forward argument: {INPUT_FORMAT}")
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise UsageError(f"--input names must be unique, got {', '.join(names)}")
    inputs = [_default_range(module, t) for t in inputs]
    probe_graph = GraphSpec("model", tuple(inputs), ())
    runs = []
    for i, base in enumerate(_PROBES):
        sizes = _probe_sizes(probe_graph, base, i)
        outs = run_module(module, probe_graph, sizes, seed=i)
        runs.append((sizes, outs))

    parsed = [parse_output(o) for o in outputs]
    n_out = len(runs[0][1])
    if parsed and len(parsed) != n_out:
        raise UsageError(
            f"the module returns {n_out} output(s) but --output was given {len(parsed)} time(s)",
            "give one --output per returned tensor, in order (nested tuples are flattened)",
        )
    if not parsed:
        parsed = [("output" if n_out == 1 else f"output_{i}", None, None) for i in range(n_out)]
    out_specs = []
    derived: List[Dict[str, int]] = [{} for _ in runs]  # derived axis sizes per probe, shared by all outputs
    for k, (oname, declared, role) in enumerate(parsed):
        if declared is not None:
            _check_declared(declared, k, runs, derived)
            out_specs.append(declared)
        else:
            out_specs.append(_infer_output(oname, k, runs, role))
    graph = GraphSpec("model", tuple(inputs), tuple(out_specs))
    return ModelSpec(name=name or "custom", family="custom", graphs={"model": graph}, attrs={"source": source})


def run_module(module: Any, graph: GraphSpec, sizes: Dict[str, int], seed: int = 0, feeds=None) -> List[np.ndarray]:
    """Run ``module`` on generated (or given) inputs; returns the flattened outputs as numpy."""
    torch = _torch()
    from rnndeploy.inputs import generate_inputs

    arrays = feeds if feeds is not None else generate_inputs(graph, sizes, seed)
    args = [torch.from_numpy(np.ascontiguousarray(arrays[t.name])) for t in graph.inputs]
    with torch.no_grad():
        try:
            out = module(*args)
        except Exception as exc:
            shapes = ", ".join(f"{t.name}{list(a.shape)}" for t, a in zip(graph.inputs, args))
            raise UsageError(
                f"the module's forward raised {type(exc).__name__} on inputs {shapes}: {first_line(exc)}",
                "check the --input declarations (order, dtype, dims) against forward's arguments",
            ) from exc
    flat = flatten_outputs(out)
    return [t.detach().cpu().numpy() for t in flat]


def flatten_outputs(out: Any) -> List[Any]:
    """Tensors of a forward result in order, nested tuples/lists flattened."""
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        flat: List[Any] = []
        for o in out:
            flat.extend(flatten_outputs(o))
        return flat
    raise UsageError(
        f"the module returned a {type(out).__name__}",
        "forward must return a tensor or a (nested) tuple of tensors",
    )


# -- helpers ------------------------------------------------------------------------------
def _torch() -> Any:
    from rnndeploy.optional import require

    return require("torch", "export")


def _common(m: re.Match[str], text: str, option: str, roles: Sequence[str]):
    name = m.group("name")
    dims: List[Any] = []
    raw = m.group("dims").strip()
    for d in [x.strip() for x in raw.split(",")] if raw else []:
        if re.fullmatch(r"\d+", d):
            if int(d) == 0:
                raise UsageError(f"{option} {text!r}: a fixed size of 0 makes the tensor empty",
                                 "give a positive size, or an axis name for a dynamic axis")
            dims.append(int(d))
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", d):
            dims.append(d)
        else:
            raise UsageError(
                f"{option} {text!r}: dimension {d!r} is neither a size nor an axis name",
                "use integers for fixed axes and names such as batch, seq for dynamic ones",
            )
    role = None
    low = high = None
    for piece in [p for p in (m.group("rest") or "").split(":") if p]:
        rm = re.fullmatch(r"(-?[0-9.eE+-]+)\.\.(-?[0-9.eE+-]+)", piece)
        if rm:
            try:
                low, high = float(rm.group(1)), float(rm.group(2))
            except ValueError:
                rm = None
            if rm is not None and not low < high:
                raise UsageError(f"{option} {text!r}: range {piece} is empty", "write LOW..HIGH with LOW < HIGH")
        if rm is None:
            if piece not in roles:
                raise UsageError(f"{option} {text!r}: role {piece!r} is unknown", f"use one of {', '.join(roles)}")
            role = piece
    return name, dims, role, low, high


def _dtype(text: Optional[str], whole: str, option: str) -> str:
    if text is None:
        return "float32"
    dtype = _DTYPE_ALIASES.get(text.lower())
    if dtype is None or dtype not in DTYPES:
        raise UsageError(f"{option} {whole!r}: dtype {text!r} is not supported", f"use one of {', '.join(DTYPES)}")
    return dtype


def _time_axis(dims: Sequence[Any]) -> Optional[int]:
    for name in ("seq", "src_seq"):
        if name in dims:
            return list(dims).index(name)
    return None


def _default_range(module: Any, t: TensorSpec) -> TensorSpec:
    if t.role in ("tokens", "token") and t.high is None:
        torch = _torch()
        vocab = [m.num_embeddings for m in module.modules() if isinstance(m, torch.nn.Embedding)]
        from dataclasses import replace

        return replace(t, low=0.0 if t.low is None else t.low, high=float(min(vocab)) if vocab else 2.0)
    return t


def _probe_sizes(graph: GraphSpec, base: Dict[str, int], probe: int) -> Dict[str, int]:
    from rnndeploy.export.inputs import distinct_sizes

    return distinct_sizes(graph.input_dims, base, 11 + probe * 6)


def _infer_output(name: str, k: int, runs, role: Optional[str]) -> TensorSpec:
    (sa, outs_a), (sb, outs_b) = runs
    a, b = outs_a[k], outs_b[k]
    dtype = str(a.dtype)  # numpy's names are the spec's names
    if dtype not in DTYPES:
        raise UsageError(
            f"output {name!r} has dtype {a.dtype}, which ONNX deployment here does not handle",
            f"cast it to one of {', '.join(DTYPES)} in forward",
        )
    if a.ndim != b.ndim:
        raise UsageError(f"output {name!r} has rank {a.ndim} at one input size and {b.ndim} at another")
    dims: List[Any] = []
    for axis, (x, y) in enumerate(zip(a.shape, b.shape)):
        if x == y:
            dims.append(int(x))
            continue
        match = [d for d in sa if sa[d] == x and sb.get(d) == y]
        if not match:
            raise UsageError(
                f"output {name!r} axis {axis} changes with the input sizes ({x} then {y}) but follows no input axis",
                "declare it with --output NAME:DTYPE[DIMS] naming a derived axis (e.g. logits:float32[rows,1000]), "
                "or make forward's output follow batch/seq",
            )
        dims.append(match[0])
    if role is None:
        role = "prediction" if dtype.startswith("float") else "other"
    return TensorSpec(name, dtype, tuple(dims), role, time_axis=_time_axis(dims))


def _check_declared(declared: TensorSpec, k: int, runs, derived: List[Dict[str, int]]) -> None:
    """A declared output against what the module returned at each probe: dtype, rank, fixed
    axes, input axes; a name no input has is a derived axis (one size per probe, the same
    wherever it appears)."""
    from rnndeploy.spec import shape_problem

    for (sizes, outs), seen in zip(runs, derived):
        arr = outs[k]
        dtype = str(arr.dtype)
        problem = None if dtype == declared.dtype else f"dtype {dtype}, declared {declared.dtype}"
        problem = problem or shape_problem(declared, arr.shape, sizes, seen)
        if problem:
            raise UsageError(
                f"--output {declared.name}: the module returns {dtype}{list(arr.shape)} at "
                f"{', '.join(f'{a}={n}' for a, n in sizes.items())}: {problem}",
                "fix the declaration (a name no input has declares a derived axis), or leave out [DIMS]",
            )

