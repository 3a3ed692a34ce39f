"""Validation of an exported graph: ONNX checker, strict shape inference, then ONNX
Runtime (CPU) against PyTorch at several shapes different from the export example.

Every output at every shape is compared and kept in a ``ValidationReport``; a
failure raises ``ValidationFailed`` only after all of them ran, so the table shows
every failing output. Per output the report keeps the max absolute error, the max
relative error (over elements with |ref| >= atol, where relative error means
something), the relative L2 error, and the smallest atol (at the spec's rtol) and
rtol (at the spec's atol) that would have passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import ExportError
from rnndeploy.spec import GraphSpec, Tolerance

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
        raise ExportError(f"{what} fails the ONNX checker: {_first_line(exc)}") from exc


def compare(actual: np.ndarray, ref: np.ndarray, tol: Tolerance, reference: str = "torch") -> Dict[str, Any]:
    """Error metrics of ``actual`` against ``ref`` (computed by ``reference``) and whether they pass ``tol``."""
    if actual.shape != ref.shape:
        return {"ok": False, "error": f"shape {list(actual.shape)} != {reference} {list(ref.shape)}"}
    if actual.dtype.kind in "biu" or ref.dtype.kind in "biu":
        diff = np.abs(actual.astype(np.float64) - ref.astype(np.float64))
        worst = float(diff.max()) if diff.size else 0.0
        return {"ok": worst == 0.0, "max_abs": worst, "atol_needed": worst}
    a = actual.astype(np.float64)
    r = ref.astype(np.float64)
    bad_ref = ~np.isfinite(r)
    bad_act = ~np.isfinite(a)
    if bad_ref.any():
        return {"ok": False, "error": f"{reference} output has {int(bad_ref.sum())} NaN/Inf values"}
    if bad_act.any():
        first = tuple(int(i) for i in np.argwhere(bad_act)[0])
        return {"ok": False, "error": f"{int(bad_act.sum())} NaN/Inf values (first at index {list(first)})"}
    d = np.abs(a - r)
    ar = np.abs(r)
    if d.size == 0:
        return {"ok": True, "max_abs": 0.0, "max_rel": 0.0, "rel_l2": 0.0, "atol_needed": 0.0, "rtol_needed": 0.0}
    max_abs = float(d.max())
    big = ar >= max(tol.atol, np.finfo(np.float32).tiny)
    max_rel = float((d[big] / ar[big]).max()) if big.any() else 0.0
    norm_r = float(np.linalg.norm(r))
    norm_d = float(np.linalg.norm(d))
    rel_l2 = norm_d / norm_r if norm_r > 0 else (0.0 if norm_d == 0 else float("inf"))
    atol_needed = float(max((d - tol.rtol * ar).max(), 0.0))
    over = d > tol.atol
    if not over.any():
        rtol_needed = 0.0
    elif (ar[over] == 0).any():
        rtol_needed = float("inf")
    else:
        rtol_needed = float(((d[over] - tol.atol) / ar[over]).max())
    ok = bool(np.all(d <= tol.atol + tol.rtol * ar))
    if tol.rel_l2 is not None and rel_l2 > tol.rel_l2:
        ok = False
    return {
        "ok": ok,
        "max_abs": max_abs,
        "max_rel": max_rel,
        "rel_l2": rel_l2,
        "atol_needed": atol_needed,
        "rtol_needed": rtol_needed,
    }


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
    from rnndeploy.optional import require

    ort = require("onnxruntime", "export validation")
    t0 = time.perf_counter()
    checks: List[OutputCheck] = []
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # ORT logs shape mismatches and failing kernels; every one is reported below
    opts.intra_op_num_threads = 1  # small graphs; spinning thread pools only fight torch and other jobs
    runtime = f"onnxruntime {ort.__version__} CPU"
    try:
        session = ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        err = f"onnxruntime cannot load it: {_first_line(exc)}"
        for sizes in size_sets:
            for t in graph.outputs:
                checks.append(OutputCheck(dict(sizes), t.name, False, graph.tolerance(t.name, "fp32"), error=err))
        return ValidationReport(graph.name, exporter, tuple(checks), time.perf_counter() - t0, runtime, label)
    for i, sizes in enumerate(size_sets):
        inputs = feeds(dict(sizes), 100 + i)
        try:
            refs = torch_outputs(module, graph, inputs)
        except ExportError:
            raise
        except Exception as exc:  # the module itself cannot run at a size its spec calls dynamic
            err = f"torch itself failed: {type(exc).__name__}: {_first_line(exc)}"
            for t in graph.outputs:
                checks.append(OutputCheck(dict(sizes), t.name, False, graph.tolerance(t.name, "fp32"), error=err))
            continue
        try:
            outs = session.run([t.name for t in graph.outputs], {t.name: inputs[t.name] for t in graph.inputs})
            err = ""
        except Exception as exc:
            outs, err = None, f"onnxruntime failed: {_ort_message(exc)}"
        for k, t in enumerate(graph.outputs):
            tol = graph.tolerance(t.name, "fp32")
            if outs is None:
                checks.append(OutputCheck(dict(sizes), t.name, False, tol, error=err))
                continue
            m = compare(np.asarray(outs[k]), refs[k], tol)
            checks.append(
                OutputCheck(
                    sizes=dict(sizes),
                    output=t.name,
                    ok=bool(m["ok"]),
                    tolerance=tol,
                    shape=tuple(int(s) for s in np.asarray(outs[k]).shape),
                    max_abs=m.get("max_abs"),
                    max_rel=m.get("max_rel"),
                    rel_l2=m.get("rel_l2"),
                    atol_needed=m.get("atol_needed"),
                    rtol_needed=m.get("rtol_needed"),
                    error=m.get("error", ""),
                )
            )
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

    text = _first_line(exc)
    node = re.search(r"running (\w+) node\. Name:'([^']*)'", text)
    status = text.split("Status Message:", 1)[-1]
    status = re.sub(r"\S*onnxruntime_src/\S+ ", "", status).strip()
    status = re.sub(r"onnxruntime::\w+::\w+\([^)]*\) ", "", status)
    return f"{node.group(1)} node {node.group(2)!r}: {status}" if node else status


def _first_line(exc: BaseException) -> str:
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()[:600]
    return type(exc).__name__
