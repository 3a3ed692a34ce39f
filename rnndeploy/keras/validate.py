"""A converted Keras model checked against Keras itself, output by output.

Cases (every one differs from the others in shape or padding):
- batch 1 × seq 1, batch 1 × seq 19, batch 5 × seq 3, batch 3 × twice the longest
  training sequence (``export.inputs.validation_sizes``), plus seq ≠ src_seq when a
  model has two time axes;
- for a model that masks (``Embedding(mask_zero=True)`` / ``Masking``): a pre-padded
  batch (``pad_sequences``' default), a post-padded batch, a pre-padded batch at the
  long length, and a batch with masked steps in the middle of rows. Rows keep at least
  one valid step (Keras itself returns NaN for an all-padding row under average pooling).

Streamed models get random initial states in every case. Nothing is written by this
module; ``rnndeploy.keras.export`` writes only when every check passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from rnndeploy.spec import GraphSpec


@dataclass(frozen=True)
class Case:
    """One validation run: sizes of the named axes, what else is special, the feed."""

    sizes: Dict[str, int]
    label: str
    feeds: Dict[str, np.ndarray]


def keras_cases(graph: GraphSpec, padding: Mapping[str, Mapping[str, Any]], long_seq: int, seed: int = 0) -> List[Case]:
    """The validation cases for ``graph`` (see module docstring)."""
    from rnndeploy.export.inputs import EXAMPLE_SIZES, validation_sizes
    from rnndeploy.inputs import generate_inputs

    example = {k: v for k, v in EXAMPLE_SIZES.items() if k in graph.dynamic_dims}
    plans: List[Tuple[Dict[str, int], str]] = [(s, "") for s in validation_sizes(graph, example, long_seq)]
    if "src_seq" in graph.dynamic_dims:  # the first input's time axis apart from the others'
        plans.append(({d: 2 if d == "batch" else 5 if d == "seq" else 9 for d in graph.dynamic_dims}, "seq != src_seq"))
    if padding:
        for sizes, label in (({"batch": 4, "seq": 12}, "pre-padded"), ({"batch": 4, "seq": 12}, "post-padded"),
                             ({"batch": 3, "seq": long_seq}, "pre-padded"), ({"batch": 3, "seq": 9}, "holes")):
            full = {d: sizes["batch"] if d == "batch" else sizes["seq"] for d in graph.dynamic_dims}
            plans.append((full, label))
    from rnndeploy.memory import check_graph_fits

    for sizes, _ in plans:  # every case must fit before the first is generated (or Keras loaded)
        check_graph_fits(graph, sizes, "export validation against Keras (Keras and ONNX Runtime outputs)", copies=3)
    cases = []
    for i, (sizes, label) in enumerate(plans):
        feeds = generate_inputs(graph, sizes, seed + 100 + i)
        rng = np.random.default_rng(seed + 1000 + i)
        for t in graph.inputs:
            pad = padding.get(t.name)
            if pad is None:
                continue
            feeds[t.name] = _padded(feeds[t.name], pad, label, rng)
        cases.append(Case(dict(sizes), label, feeds))
    return cases


def _padded(x: np.ndarray, pad: Mapping[str, Any], label: str, rng: np.random.Generator) -> np.ndarray:
    """``x`` with padding as ``label`` says; without a label, only rows left all-padding are fixed."""
    x = np.array(x, copy=True)
    value = np.asarray(pad["value"], dtype=x.dtype)
    if x.ndim < 2:
        return x
    batch, seq = x.shape[0], x.shape[1]
    if pad.get("kind") == "tokens":
        # a valid token is never the padding id (rnndeploy's generated tokens may be 0)
        x = np.where(x == value, np.asarray(1, dtype=x.dtype), x)
    if label in ("pre-padded", "post-padded"):
        lengths = [seq] + [int(n) for n in rng.integers(1, seq + 1, size=batch - 1)]
        if batch > 2:
            lengths[-1] = 1
        for row, n in enumerate(lengths):
            pad_steps = slice(0, seq - n) if label == "pre-padded" else slice(n, seq)
            x[row, pad_steps] = value
    elif label == "holes":
        for row in range(batch):
            holes = rng.random(seq) < 0.4
            holes[rng.integers(0, seq)] = False  # at least one valid step
            x[row, holes] = value
    return x


def validate_against_keras(model_bytes: bytes, reference: Any, graph: GraphSpec, cases: List[Case],
                           label: str = "keras") -> Any:
    """Run ``model_bytes`` in ONNX Runtime and ``reference`` (a ``reference.KerasModel``) on
    every case, output by output; an ``export.validate.ValidationReport`` (see ``validate_cases``)."""
    from rnndeploy.export.validate import validate_cases
    from rnndeploy.keras.reference import keras_version

    return validate_cases(model_bytes, graph, [(c.sizes, c.feeds, c.label) for c in cases], reference.run,
                          keras_version(), "keras", label)
