"""Validation of an exported graph: ONNX checker, strict shape inference, then ONNX
Runtime (CPU) against PyTorch at several shapes different from the export example.

Every output at every shape is compared and kept in a ``ValidationReport``; a
failure raises ``ValidationFailed`` only after all of them ran, so the table shows
every failing output. Per output the report keeps the max absolute error, the max
relative error, the relative L2 error, and the smallest atol (at the spec's rtol)
and rtol (at the spec's atol) that would have passed — as rnndeploy.metrics defines
them, so these are the numbers parity prints for the same outputs. ONNX Runtime
runs through the ``ort-cpu`` runner, like everywhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import ExportError, SpecError, first_line
from rnndeploy.metrics import compare_output
from rnndeploy.spec import GraphSpec, Tolerance, shape_problem

FeedFn = Callable[[Dict[str, int], int], Dict[str, np.ndarray]]


@dataclass(frozen=True)
class OutputCheck:
    """One output at one set of sizes. Errors are None when the comparison could not run
    (``error`` then says why: ORT failed, shape differs, non-finite values)."""

    sizes: Dict[str, int]
    output: str
    ok: bool
    tolerance: Tolerance
    shape: Tuple[int, ...] = ()
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    rel_l2: Optional[float] = None
    atol_needed: Optional[float] = None
    rtol_needed: Optional[float] = None
    error: str = ""
    case: str = ""  # what else sets this run apart, e.g. "pre-padded"

    @property
    def where(self) -> str:
        text = " ".join(f"{k}={v}" for k, v in self.sizes.items()) or "fixed"
        return f"{text} {self.case}" if self.case else text

    def reason(self) -> str:
        """Why it failed, in a few words (empty when ok)."""
        if self.ok:
            return ""
        if self.error:
            return self.error
        tol = self.tolerance
        parts = []
        if self.atol_needed is not None and self.atol_needed > tol.atol:
            parts.append(f"max abs err {_g(self.max_abs)} needs atol {_g(self.atol_needed)} > {_g(tol.atol)}")
        if tol.rel_l2 is not None and self.rel_l2 is not None and self.rel_l2 > tol.rel_l2:
            parts.append(f"rel L2 {_g(self.rel_l2)} > {_g(tol.rel_l2)}")
        return "; ".join(parts) or "outside tolerance"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "sizes": dict(self.sizes),
            "output": self.output,
            "ok": self.ok,
            "tolerance": self.tolerance.to_dict(),
            "shape": list(self.shape),
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "rel_l2": self.rel_l2,
            "atol_needed": self.atol_needed,
            "rtol_needed": self.rtol_needed,
            "error": self.error,
            **({"case": self.case} if self.case else {}),
        }


@dataclass(frozen=True)
class ValidationReport:
    """All checks of one exported graph.

    Attributes:
        exporter: which exporter produced the graph checked.
        checks: one per output per size set, in run order.
        seconds: wall time of checker + shape inference + all runs (s).
        runtime: e.g. "onnxruntime 1.32.0 CPUExecutionProvider".
    """

    graph: str
    exporter: str
    checks: Tuple[OutputCheck, ...]
    seconds: float
    runtime: str = ""
    label: str = ""
    notes: Tuple[str, ...] = field(default_factory=tuple)
    reference: str = "torch"

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> Tuple[OutputCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)

    @property
    def sizes(self) -> List[Dict[str, int]]:
        seen: List[Dict[str, int]] = []
        for c in self.checks:
            if c.sizes not in seen:
                seen.append(c.sizes)
        return seen

    def failure_line(self) -> str:
        """Every failing output in one line: how many size sets it failed at, and its worst case."""
        n_sizes = len({c.where for c in self.checks})
        parts = []
        for name in dict.fromkeys(c.output for c in self.failures):
            fails = [c for c in self.failures if c.output == name]
            worst = max(fails, key=lambda c: (bool(c.error), c.max_abs or 0.0))
            parts.append(f"{name} fails at {len(fails)} of {n_sizes} shapes (worst at {worst.where}: {worst.reason()})")
        return "; ".join(parts)

    def max_errors(self) -> Dict[str, float]:
        """Output → worst max abs error over all sizes (for metadata and summaries)."""
        worst: Dict[str, float] = {}
        for c in self.checks:
            if c.max_abs is not None:
                worst[c.output] = max(worst.get(c.output, 0.0), c.max_abs)
        return worst

    def render(self) -> str:
        tols = {c.tolerance for c in self.checks}
        n_runs = len({c.where for c in self.checks})
        head = f"validation [{self.label or self.exporter}]: {self.runtime or 'onnxruntime'} vs {self.reference} at {n_runs} shapes"
        if len(tols) == 1:
            head += f" (fp32 tolerance {_tol_text(next(iter(tols)))})"
        rows = [["sizes", "output", "shape", "max abs", "max rel", "rel L2", "atol needed", "rtol needed", "result"]]
        if len(tols) > 1:
            rows[0].insert(-1, "tolerance")
        for c in self.checks:
            row = [
                c.where,
                c.output,
                "[" + ",".join(str(s) for s in c.shape) + "]" if c.shape else "-",
                _g(c.max_abs),
                _g(c.max_rel),
                _g(c.rel_l2),
                _g(c.atol_needed),
                _g(c.rtol_needed),
                "ok" if c.ok else "FAIL" + (f": {c.error}" if c.error else ""),
            ]
            if len(tols) > 1:
                row.insert(-1, _tol_text(c.tolerance))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head]
        for r in rows:
            cells = [cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])] + [r[-1]]
            lines.append("  " + "  ".join(cells))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "graph": self.graph,
            "exporter": self.exporter,
            "label": self.label,
            "ok": self.ok,
            "runtime": self.runtime,
            "seconds": self.seconds,
            "checks": [c.to_dict() for c in self.checks],
            "notes": list(self.notes),
            "reference": self.reference,
        }


class ValidationFailed(ExportError):
    """The exported graph did not reproduce PyTorch. ``reports`` hold every table."""

    def __init__(self, message: str, reports: Sequence[ValidationReport], hint: Optional[str] = None):
        self.reports = tuple(reports)
        super().__init__(message, hint)


def check_onnx(model: Any, what: str) -> None:
    """onnx.checker (full check) and strict shape inference on ``model``.

    Raises:
        ExportError: naming ``what`` and the checker's first line.
    """
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ExportError(f"{what} fails the ONNX checker: {first_line(exc)}") from exc


def output_check(sizes: Mapping[str, int], output: str, actual: np.ndarray, ref: np.ndarray, tol: Tolerance,
                 reference: str = "torch", case: str = "") -> OutputCheck:
    """One output at one size set, measured by rnndeploy.metrics (the figures parity prints);
    ``reference`` names what computed ``ref``, ``case`` what else sets the run apart."""
    c = compare_output(output, actual, ref, tol, backend="onnxruntime", reference=reference)
    s = c.stats
    return OutputCheck(
        sizes=dict(sizes), output=output, ok=c.passed, tolerance=tol, shape=c.shape,
        max_abs=None if s is None else s.max_abs, max_rel=None if s is None else s.max_rel,
        rel_l2=None if s is None else s.rel_l2, atol_needed=None if s is None else s.atol_needed,
        rtol_needed=None if s is None else s.rtol_needed,
        # a shape or NaN/Inf problem leaves nothing to measure: its one line is the reason
        error=(c.failure or "") if s is None else "",
        case=case,
    )


def validate_ort(
    model_bytes: bytes,
    module: Any,
    graph: GraphSpec,
    size_sets: Sequence[Dict[str, int]],
    feeds: FeedFn,
    exporter: str,
    label: str = "",
) -> ValidationReport:
    """Run ``model_bytes`` in ONNX Runtime (CPU) and ``module`` in torch at every size set.

    A session that cannot be created, or a run that raises, becomes a failing check
    for every output at that size (the graph froze a shape, an op is missing, ...).
    """
    from rnndeploy.backends import ModelSource, RunnerOptions, create_runner

    t0 = time.perf_counter()
    checks: List[OutputCheck] = []
    # one thread: small graphs, and spinning thread pools only fight torch and other jobs;
    # ORT's own log is silenced: every shape mismatch or failing kernel is reported below
    runner = create_runner("ort-cpu", ModelSource.for_graph(graph, onnx_bytes=model_bytes),
                           RunnerOptions(threads=1, extra={"log_severity_level": 4}))
    runtime = f"onnxruntime {runner.describe().details.get('onnxruntime')} CPU"
    try:
        runner.activate()
    except SpecError as exc:  # ORT cannot load the graph (or it lacks a declared tensor)
        for sizes in size_sets:
            for t in graph.outputs:
                checks.append(OutputCheck(dict(sizes), t.name, False, graph.tolerance(t.name, "fp32"), error=exc.message))
        return ValidationReport(graph.name, exporter, tuple(checks), time.perf_counter() - t0, runtime, label)
    try:
        for i, sizes in enumerate(size_sets):
            inputs = feeds(dict(sizes), 100 + i)
            try:
                refs = torch_outputs(module, graph, inputs)
            except ExportError:
                raise
            except Exception as exc:  # the module itself cannot run at a size its spec calls dynamic
                err = f"torch itself failed: {type(exc).__name__}: {first_line(exc)}"
                for t in graph.outputs:
                    checks.append(OutputCheck(dict(sizes), t.name, False, graph.tolerance(t.name, "fp32"), error=err))
                continue
            try:
                outs: Optional[Dict[str, np.ndarray]] = runner.infer(inputs)
                err = ""
            except Exception as exc:
                outs, err = None, f"onnxruntime failed: {_ort_message(exc)}"
            derived: Dict[str, int] = {}  # derived output axes: one size per shape, from torch
            for k, t in enumerate(graph.outputs):
                tol = graph.tolerance(t.name, "fp32")
                spec_err = shape_problem(t, refs[k].shape, sizes, derived)
                if spec_err:
                    checks.append(OutputCheck(dict(sizes), t.name, False, tol, error=f"torch output {spec_err}"))
                elif outs is None:
                    checks.append(OutputCheck(dict(sizes), t.name, False, tol, error=err))
                else:
                    checks.append(output_check(sizes, t.name, outs[t.name], refs[k], tol))
    finally:
        runner.deactivate()
    return ValidationReport(graph.name, exporter, tuple(checks), time.perf_counter() - t0, runtime, label)


def torch_outputs(module: Any, graph: GraphSpec, inputs: Mapping[str, np.ndarray]) -> List[np.ndarray]:
    """The module's outputs (flattened, numpy) on ``inputs``."""
    import torch

    from rnndeploy.export.user_module import flatten_outputs

    args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in graph.inputs]
    with torch.no_grad():
        out = flatten_outputs(module(*args))
    if len(out) != len(graph.outputs):
        raise ExportError(f"the module returns {len(out)} outputs; graph {graph.name!r} declares {len(graph.outputs)}")
    return [o.detach().cpu().numpy() for o in out]


def _tol_text(t: Tolerance) -> str:
    s = f"atol {_g(t.atol)}, rtol {_g(t.rtol)}"
    return s + (f", rel_l2 {_g(t.rel_l2)}" if t.rel_l2 is not None else "")


def _g(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if x == float("inf"):
        return "inf"
    return f"{x:.2g}" if abs(x) >= 1e-3 and abs(x) < 1e4 else f"{x:.1e}"


def _ort_message(exc: BaseException) -> str:
    """The useful part of an onnxruntime error: node and status message, without source paths."""
    import re

    text = first_line(exc)
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    status = text.split("Status Message:", 1)[-1]
    status = re.sub(r"\S*onnxruntime_src/\S+ ", "", status).strip()
    status = re.sub(r"onnxruntime::\w+::\w+\([^)]*\) ", "", status)
    return f"{node.group(1)} node {node.group(2)!r}: {status}" if node else status
