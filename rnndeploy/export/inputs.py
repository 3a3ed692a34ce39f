"""The sizes export traces and validates at (the values come from rnndeploy.inputs).

Export traces the module at ``EXAMPLE_SIZES``; validation then runs the ONNX file
at shapes that all differ from it (``validation_sizes``), including batch 1, seq 1
and a sequence longer than any seen in training — a graph that froze an axis
during export fails there.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

from rnndeploy.spec import GraphSpec

# Example sizes for tracing: distinct from each other and from 1, so an axis the
# exporter confused with another (or specialised) shows up at validation.
EXAMPLE_SIZES: Dict[str, int] = {"batch": 2, "seq": 7, "src_seq": 6}
# Used when neither the recipe nor the user says how long training sequences were.
DEFAULT_LONGEST_SEQ = 128


def example_sizes(graph: GraphSpec, overrides: Optional[Mapping[str, int]] = None) -> Dict[str, int]:
    """Sizes of every dynamic dim of ``graph`` for the export example."""
    return {**distinct_sizes(graph.input_dims, EXAMPLE_SIZES, 11), **(overrides or {})}


def distinct_sizes(names: Sequence[str], known: Mapping[str, int], first: int) -> Dict[str, int]:
    """A size for each axis name: ``known[name]`` where given, else distinct odd sizes from
    ``first`` up (first, first + 2, ...), so that no two unknown axes are confused."""
    sizes = {}
    extra = first
    for name in names:
        if name in known:
            sizes[name] = known[name]
        else:
            sizes[name] = extra
            extra += 2
    return sizes


def long_seq_for(longest_train_seq: Optional[int]) -> int:
    """A sequence length longer than any seen in training: twice the longest (default
    2 × 128), and at least 32 so it is also the longest of the validation shapes."""
    longest = int(longest_train_seq) if longest_train_seq else DEFAULT_LONGEST_SEQ
    return max(2 * longest, 32)


def validation_sizes(graph: GraphSpec, example: Mapping[str, int], long_seq: int) -> List[Dict[str, int]]:
    """At least four size sets, none equal to ``example``: batch 1 × seq 1, batch 1 ×
    a medium seq, a bigger batch × a short seq, and a sequence of ``long_seq``.

    Every time-like dim (anything but "batch") takes the same value in a set, so a
    decoder step sees ``src_seq`` of 1 and of ``long_seq`` too.
    """
    plans = [(1, 1), (1, 19), (5, 3), (3, long_seq)]
    out: List[Dict[str, int]] = []
    for batch, seq in plans:
        sizes = {name: (batch if name == "batch" else seq) for name in graph.input_dims}
        if sizes == dict(example):  # cannot happen with the plans above unless overridden
            sizes = {k: v + 1 for k, v in sizes.items()}
        if sizes not in out:
            out.append(sizes)
    if not graph.input_dims:  # a fully static graph: one run is all there is
        return [{}]
    return out
