"""Check that a rewritten ONNX model computes the same function as the original.

Both run on the same generated inputs; every output must agree within ``atol + rtol·|ref|``.
Evaluators, per model: ONNX Runtime (CPU) where it is installed and loads the file,
else onnx's reference evaluator with spec-complete recurrent operators
(``rnndeploy.graph.reference``) — so a layout=1 original that ONNX Runtime refuses is
still evaluated, by the reference.

Inputs come from the file's rnndeploy spec when it has one (roles and value ranges),
else from its declared inputs: every named dynamic axis gets its own size (so an axis
mix-up cannot pass by accident), and an integer input that reaches a recurrent node's
``sequence_lens`` holds lengths between 1 and that node's sequence length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import RnnDeployError, first_line
from rnndeploy.onnx_info import RECURRENT_OPS

# Sizes given to dynamic axes, in first-seen order: distinct, small, prime.
_AXIS_SIZES = (2, 5, 3, 7, 11, 13)


class VerificationError(RnnDeployError):
    """The rewritten model does not compute the original's function, or could not be checked (exit 1)."""


@dataclass(frozen=True)
class Verification:
    """Outcome of ``verify_same_function``.

    Attributes:
        evaluators: (original's, rewritten's) — "onnxruntime" or "onnx.reference".
        max_abs: largest |difference| over all outputs.
        sizes: the dynamic axis sizes used.
    """

    evaluators: Tuple[str, str]
    max_abs: float
    sizes: Mapping[str, int]

    def render(self) -> str:
        ev = self.evaluators[0] if self.evaluators[0] == self.evaluators[1] else " vs ".join(self.evaluators)
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        return f"verified: same outputs as the original ({ev}, {sizes or 'static shapes'}; max |diff| {self.max_abs:.1e})"


def verify_same_function(original: Any, rewritten: Any, io_perms: Optional[Mapping[str, Sequence[int]]] = None,
                         atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> Verification:
    """Run both models on generated inputs and compare every output.

    ``io_perms`` maps graph tensors whose layout the rewrite changed to the permutation
    taking the original's array to the rewritten's (inputs are permuted before feeding
    the rewritten model, its outputs permuted back before comparing).

    Raises:
        VerificationError: an output differs, is missing, or neither evaluator can run a model.
    """
    perms = {k: tuple(v) for k, v in (io_perms or {}).items()}
    feed, sizes = generate_feed(original, seed)
    ref, ev0 = _evaluate(original, feed, "the original")
    feed2 = {k: (np.transpose(v, perms[k]) if k in perms else v) for k, v in feed.items()}
    got, ev1 = _evaluate(rewritten, feed2, "the rewritten model")
    worst = 0.0
    for name, want in ref.items():
        if name not in got:
            raise VerificationError(f"the rewritten model lacks output {name!r}")
        have = got[name]
        if name in perms:
            have = np.transpose(have, np.argsort(perms[name]))
        if have.shape != want.shape:
            raise VerificationError(f"output {name!r}: shape {list(have.shape)} after the rewrite, {list(want.shape)} "
                                    "before", "this is a bug in the rewrite: please report it with the model")
        if want.dtype.kind in "fc":
            diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
            bad = ~(diff <= atol + rtol * np.abs(want.astype(np.float64)))
            if np.isnan(want).any() or np.isnan(have).any():
                bad |= np.isnan(want) != np.isnan(have)
            err = float(np.nanmax(diff)) if diff.size else 0.0
            if bad.any():
                raise VerificationError(f"output {name!r} differs after the rewrite: max |diff| {err:.3g} "
                                        f"(allowed {atol:g} + {rtol:g}·|ref|; {ev0} vs {ev1})",
                                        "nothing was written; this is a bug in the rewrite: please report it with the model")
            worst = max(worst, err)
        elif not np.array_equal(have, want):
            raise VerificationError(f"output {name!r} differs after the rewrite ({ev0} vs {ev1})",
                                    "nothing was written; this is a bug in the rewrite: please report it with the model")
    return Verification((ev0, ev1), worst, sizes)


def generate_feed(model: Any, seed: int = 0) -> Tuple[Dict[str, np.ndarray], Dict[str, int]]:
    """Inputs for ``model`` (see module docstring) and the axis sizes used."""
    from rnndeploy.errors import SpecError
    from rnndeploy.inputs import generate_inputs
    from rnndeploy.spec import read_onnx_metadata, spec_from_onnx_io

    try:
        spec, graph_name, _ = read_onnx_metadata(model)
        graph = spec.graph(graph_name)
        init = {i.name for i in model.graph.initializer}
        file_inputs = {vi.name for vi in model.graph.input if vi.name not in init}
        graph = graph.streaming(any(t.optional and t.name in file_inputs for t in graph.inputs))
        from_spec = True
    except SpecError:
        graph = spec_from_onnx_io(model).graph("model")
        from_spec = False
    sizes: Dict[str, int] = {}
    for d in graph.input_dims:
        if from_spec and d == "batch":
            sizes[d] = 2
        elif from_spec and d in ("seq", "src_seq"):
            sizes[d] = 5
        else:
            sizes[d] = _AXIS_SIZES[len(sizes) % len(_AXIS_SIZES)]
    feed = generate_inputs(graph, sizes, seed)
    if not from_spec:
        rng = np.random.default_rng(seed)
        for name, steps in _sequence_lens_inputs(model, feed).items():
            arr = feed[name]
            lens = rng.integers(1, steps + 1, size=arr.shape)
            lens.flat[0] = steps
            feed[name] = lens.astype(arr.dtype)
    return feed, sizes


def _sequence_lens_inputs(model: Any, feed: Mapping[str, np.ndarray]) -> Dict[str, int]:
    """Graph inputs feeding a recurrent node's sequence_lens (directly or through Cast) → that
    node's sequence length at ``feed``'s shapes (from the graph input behind its X)."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    out: Dict[str, int] = {}
    for n in graph.node:
        if n.op_type not in RECURRENT_OPS or len(n.input) < 5 or not n.input[4]:
            continue
        src = n.input[4]
        while src in producer and producer[src].op_type in ("Cast", "Identity"):
            src = producer[src].input[0]
        if src not in feed:
            continue
        x, chain = n.input[0], []
        while x in producer and producer[x].op_type in ("Cast", "Identity", "Transpose"):
            chain.append(producer[x])
            x = producer[x].input[0]
        if x not in feed:
            continue
        layout = 0
        for a in n.attribute:
            if a.name == "layout":
                layout = int(a.i)
        axis = 1 if layout else 0
        for t in chain:  # undo the Transposes between the graph input and X
            if t.op_type == "Transpose":
                perm = [int(p) for a in t.attribute if a.name == "perm" for p in a.ints]
                axis = perm[axis] if perm else len(np.shape(feed[x])) - 1 - axis
        out[src] = int(np.shape(feed[x])[axis])
    return out


def _evaluate(model: Any, feed: Mapping[str, np.ndarray], what: str) -> Tuple[Dict[str, np.ndarray], str]:
    names = [o.name for o in model.graph.output]
    errors: List[str] = []
    from rnndeploy.backends import RunnerOptions, run_onnx_model
    from rnndeploy.optional import available

    if available("onnxruntime"):
        try:
            outs = run_onnx_model(model, feed, "ort-cpu", RunnerOptions(extra={"log_severity_level": 4}))
            return {n: outs[n] for n in names}, "onnxruntime"
        except Exception as exc:  # refuses the model (e.g. layout=1): fall back to the reference
            errors.append(f"onnxruntime: {first_line(exc, 300)}")
    from rnndeploy.graph.reference import reference_run

    try:
        return reference_run(model, feed, names), "onnx.reference"
    except Exception as exc:
        errors.append(f"onnx.reference: {type(exc).__name__}: {first_line(exc, 300)}")
    raise VerificationError(f"could not evaluate {what} to verify the rewrite ({'; '.join(errors)})",
                            "pass --no-verify to write it unchecked")
