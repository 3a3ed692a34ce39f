"""Seeded inputs generated from a GraphSpec, and input/output files (.npz).

Generation follows each input's role (rnndeploy.spec.INPUT_ROLES):

- features / memory / other floats: uniform in [low, high] (default [-1, 1]);
- tokens / token / other ints: uniform integers in [low, high) (low defaults to 0;
  ``high`` is the vocabulary size; without it [0, 2));
- lengths: integers in 1..seq with the longest equal to seq (so padding matters
  and the full length is exercised);
- mask: 1 / True for positions < length (consistent with ``lengths`` when both exist);
- state: uniform in [low, high] (default [-1, 1]).

Every case draws from ``numpy.random.default_rng([seed, batch, seq])``, so a case is
reproducible on its own whatever other shapes run beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import SpecError, UsageError
from rnndeploy.memory import check_graph_fits
from rnndeploy.spec import GraphSpec, TensorSpec

NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}
DEFAULT_SHAPES: Tuple[Tuple[int, int], ...] = ((1, 1), (1, 16), (3, 37), (8, 128))


@dataclass(frozen=True)
class Case:
    """One input case: an id, the sizes of the named axes, and the arrays."""

    id: str
    sizes: Mapping[str, int]
    inputs: Mapping[str, np.ndarray]

    @property
    def batch(self) -> Optional[int]:
        return self.sizes.get("batch")

    @property
    def seq(self) -> Optional[int]:
        return self.sizes.get("seq", self.sizes.get("src_seq"))


def parse_shapes(text: str) -> List[Tuple[int, int]]:
    """"1x16,4x128" → [(1, 16), (4, 128)] (batch x seq)."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        parts = item.lower().split("x")
        try:
            b, s = (int(p) for p in parts)
        except ValueError:
            raise UsageError(f"shape {item!r} is not BATCHxSEQ", "write e.g. --shapes 1x16,4x128") from None
        if b < 1 or s < 1:
            raise UsageError(f"shape {item!r}: batch and seq must be at least 1")
        out.append((b, s))
    if not out:
        raise UsageError(f"--shapes {text!r} names no shape", "write e.g. --shapes 1x16,4x128")
    return out


def parse_int_list(text: str, what: str) -> List[int]:
    """"1,32,256" → [1, 32, 256] (all ≥ 1)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a comma-separated list of integers", f"write e.g. {what} 1,32") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what} {text!r}: give positive integers", f"write e.g. {what} 1,32")
    return values


def sizes_for(graph: GraphSpec, batch: int, seq: int, extra: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
    """Sizes for every dynamic axis of ``graph``: batch, seq (src_seq follows seq), plus ``extra``.

    Raises:
        SpecError: the graph has a dynamic axis we cannot size (foreign models): name it with --dim.
    """
    sizes = {"batch": batch, "seq": seq}
    if "src_seq" in graph.dynamic_dims:
        sizes["src_seq"] = seq
    unknown_extra = [d for d in (extra or {}) if d not in graph.dynamic_dims]
    if unknown_extra:
        raise UsageError(f"--dim {unknown_extra[0]}: graph {graph.name!r} has no dynamic axis {unknown_extra[0]!r}",
                         f"its dynamic axes: {', '.join(graph.dynamic_dims) or 'none'}")
    sizes.update(extra or {})
    unknown = [d for d in graph.dynamic_dims if d not in sizes]
    if unknown:
        raise SpecError(f"graph {graph.name!r} has dynamic axes {', '.join(repr(u) for u in unknown)} of unknown size",
                        "give their sizes with --dim NAME=SIZE, or pass --inputs FILE.npz")
    return sizes


def generate_inputs(graph: GraphSpec, sizes: Mapping[str, int], seed: int = 0,
                    pad_id: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Inputs for ``graph`` at ``sizes`` (see module docstring for the value rules).

    With ``pad_id`` (the spec's ``attrs["pad_id"]``) and a lengths input, token positions
    past a row's length hold the pad id, as real padded batches do.
    """
    batch = int(sizes.get("batch", 1))
    seq = int(sizes.get("seq", sizes.get("src_seq", 1)))
    check_graph_fits(graph, sizes, f"inputs and outputs of graph {graph.name!r}")
    rng = np.random.default_rng([int(seed), batch, seq])
    lengths = None
    out: Dict[str, np.ndarray] = {}
    # lengths first so a mask can follow them
    for t in sorted(graph.inputs, key=lambda t: t.role != "lengths"):
        shape = t.shape_for(sizes)
        if t.role == "lengths":
            lengths = _lengths(rng, shape, seq)
            out[t.name] = lengths.astype(NP_DTYPES[t.dtype])
        elif t.role == "mask":
            out[t.name] = _mask(rng, t, shape, lengths, seq)
        else:
            v = _values(rng, t, shape)
            if pad_id is not None and lengths is not None and t.dtype.startswith("int") and t.time_axis is not None:
                steps = np.arange(shape[t.time_axis]).reshape([-1 if i == t.time_axis else 1 for i in range(len(shape))])
                lens = np.asarray(lengths).reshape([-1 if i == 0 else 1 for i in range(len(shape))])
                v = np.where(steps < lens, v, np.asarray(pad_id, dtype=v.dtype))
            out[t.name] = v
    return {t.name: out[t.name] for t in graph.inputs}


def generate_cases(graph: GraphSpec, shapes: Sequence[Tuple[int, int]], seed: int = 0,
                   extra_dims: Optional[Mapping[str, int]] = None, pad_id: Optional[int] = None,
                   attrs: Optional[Mapping[str, Any]] = None) -> List[Case]:
    """One Case per (batch, seq); ids look like "b4-s128".

    Every case's memory (rnndeploy.memory.check_graph_fits, with the spec's ``attrs``
    for the recurrent layers) is checked before the first one is generated.
    """
    all_sizes = [sizes_for(graph, b, s, extra_dims) for b, s in shapes]
    for (b, s), sizes in zip(shapes, all_sizes):  # every case checked before the first is made
        check_graph_fits(graph, sizes, f"parity case b{b}-s{s} (inputs, reference and runtime outputs)", copies=3,
                         attrs=attrs)
    return [Case(f"b{b}-s{s}", sizes, generate_inputs(graph, sizes, seed, pad_id))
            for (b, s), sizes in zip(shapes, all_sizes)]


def infer_sizes(graph: GraphSpec, feed: Mapping[str, np.ndarray]) -> Dict[str, int]:
    """Sizes of the named axes as found in ``feed`` (for cases read from files)."""
    sizes: Dict[str, int] = {}
    for t in graph.inputs:
        if t.name not in feed:
            continue
        shape = np.shape(feed[t.name])
        for d, n in zip(t.dims, shape):
            if isinstance(d, str):
                sizes.setdefault(d, int(n))
    return sizes


# -- files -------------------------------------------------------------------------------------------
def load_npz(path: str, what: str) -> Dict[str, np.ndarray]:
    """Arrays from an .npz file: never unpickles (allow_pickle=False), checks the arrays'
    declared sizes against the machine's memory before reading them.

    Raises:
        UsageError: missing, a directory, not an .npz of plain arrays, or too large.
    """
    import zipfile

    from rnndeploy.memory import check_fits, tensor_bytes

    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} file {p} does not exist")
    if not p.is_file():
        raise UsageError(f"{what} {p} is not a file", "give an .npz written by numpy.savez")
    try:
        with zipfile.ZipFile(p) as zf:
            declared = 0
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    with zf.open(info) as f:
                        version = np.lib.format.read_magic(f)
                        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                           else np.lib.format.read_array_header_2_0(f))
                    declared += tensor_bytes(shape, "int8") * max(np.dtype(dtype).itemsize, 1)
        check_fits(declared, f"{what} file {p}")
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except UsageError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"{what} file {p} is not a readable .npz of plain arrays ({first})",
                         "save it with numpy.savez(path, name=array, ...)") from None


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays uncompressed (golden files are small; diffs stay byte-stable)."""
    with open(path, "wb") as f:
        np.savez(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})


# -- helpers ------------------------------------------------------------------------------------------
def _lengths(rng: np.random.Generator, shape: Tuple[int, ...], seq: int) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    lens = rng.integers(1, seq + 1, size=n)
    lens[rng.integers(0, n)] = seq  # the longest is exactly seq
    return lens.reshape(shape)


def _mask(rng: np.random.Generator, t: TensorSpec, shape: Tuple[int, ...], lengths: Optional[np.ndarray],
          seq: int) -> np.ndarray:
    if len(shape) != 2:
        raise SpecError(f"mask input {t.name!r} must be [batch, seq], spec says {list(t.dims)}")
    if lengths is None:
        lengths = _lengths(rng, (shape[0],), shape[1])
    m = np.arange(shape[1])[None, :] < np.asarray(lengths).reshape(-1, 1)
    return m.astype(NP_DTYPES[t.dtype])


def _values(rng: np.random.Generator, t: TensorSpec, shape: Tuple[int, ...]) -> np.ndarray:
    dtype = NP_DTYPES[t.dtype]
    if t.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if t.dtype.startswith("int"):
        low = int(t.low) if t.low is not None else 0
        high = int(t.high) if t.high is not None else low + 2
        if high <= low:
            raise SpecError(f"input {t.name!r}: integer range [{low}, {high}) is empty")
        return rng.integers(low, high, size=shape).astype(dtype)
    low = -1.0 if t.low is None else float(t.low)
    high = 1.0 if t.high is None else float(t.high)
    return rng.uniform(low, high, size=shape).astype(dtype)
