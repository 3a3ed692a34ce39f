"""Normalise ONNX files: ``rnndeploy normalize`` and the automatic rewrite parity, bench
and build-engine apply to files that need it.

``normalize_file`` loads, rewrites (rnndeploy.graph.normalize), refuses a model that no
runtime could run after the rewrites (naming the node and what each runtime does with
it), verifies the rewritten model computes the original's function
(rnndeploy.graph.verify), and only then writes the file (atomically).

``auto_normalize`` is what the other commands call: a file with layout=1 recurrent
nodes (which ONNX Runtime refuses and TensorRT / OpenVINO compute wrongly) is rewritten
to a temporary copy — verified the same way — that the command runs instead, with one
line saying so.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from rnndeploy.artefacts.onnx_file import check_graph, load_onnx
from rnndeploy.errors import UsageError
from rnndeploy.graph.compat import RUNTIMES, CompatIssue, check_compat, unrunnable
from rnndeploy.graph.normalize import NormalizeOptions, Rewrite, needs_layout_rewrite, normalize
from rnndeploy.graph.verify import Verification, verify_same_function


@dataclass(frozen=True)
class NormalizeReport:
    """What ``normalize_file`` did.

    Attributes:
        source / output: the files read and written (output None when nothing was written).
        rewrites: one per rewrite, in order.
        notes: things worth knowing that are not rewrites.
        before / after: compatibility issues of the original and of the result.
        verification: the equivalence check (None with verify=False).
    """

    source: str
    output: Optional[str]
    rewrites: Tuple[Rewrite, ...]
    notes: Tuple[str, ...]
    before: Tuple[CompatIssue, ...]
    after: Tuple[CompatIssue, ...]
    verification: Optional[Verification] = None
    runtimes: Tuple[str, ...] = field(default=RUNTIMES)

    def render(self) -> str:
        """Multi-line text for the terminal (``rnndeploy normalize``)."""
        return _render(self)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "source": self.source, "output": self.output,
            "rewrites": [r.to_dict() for r in self.rewrites], "notes": list(self.notes),
            "compat_before": [i.to_dict() for i in self.before], "compat_after": [i.to_dict() for i in self.after],
            "verification": None if self.verification is None else {
                "evaluators": list(self.verification.evaluators), "max_abs": self.verification.max_abs,
                "sizes": dict(self.verification.sizes)},
        }


def normalize_model(model: Any, options: NormalizeOptions, verify: bool = True,
                    source: str = "model") -> Tuple[Any, NormalizeReport]:
    """Rewrite, refuse the unrunnable, verify: (rewritten model, report). Writes nothing.

    Raises:
        UsageError: after the rewrites a node is still refused or computed wrongly by every runtime.
        VerificationError: the rewritten model computes something else (a bug) or cannot be checked.
    """
    before = check_compat(model)
    result = normalize(model, options)
    after = check_compat(result.model)
    stuck = unrunnable(after)
    if stuck:
        node, issues = next(iter(stuck.items()))
        what = "; ".join(f"{i.runtime} {i.severity} ({i.problem})" for i in issues)
        raise UsageError(f"{source}: node {node!r} ({issues[0].op}) runs correctly on no runtime after normalisation: "
                         f"{what}; nothing written",
                         "replace that node in the exporter (ONNX default-domain ops only)")
    verification = None
    if verify and result.changed:
        verification = verify_same_function(model, result.model, result.io_perms())
    report = NormalizeReport(source, None, result.rewrites, result.notes, tuple(before), tuple(after), verification)
    return result.model, report


def normalize_file(path: str, output: str, options: Optional[NormalizeOptions] = None,
                   verify: bool = True) -> NormalizeReport:
    """``rnndeploy normalize PATH -o OUTPUT`` (see module docstring). The file is written
    even when no rewrite applied (a copy), so a pipeline step always has its output."""
    import onnx

    from rnndeploy.fileio import check_parent_dir, write_bytes_atomic

    if os.path.abspath(path) == os.path.abspath(output):
        raise UsageError(f"-o {output} is the input file", "write the normalised model to another path")
    check_parent_dir(output, "normalised model")
    model = load_onnx(path, external_data=True)
    try:
        new, report = normalize_model(model, options or NormalizeOptions(), verify, source=path)
        onnx.checker.check_model(new)
    except onnx.checker.ValidationError:
        check_graph(load_onnx(path, external_data=True), path)  # the input was invalid already: say so
        raise  # the input is valid: a rewrite broke it, a bug

    write_bytes_atomic(output, new.SerializeToString())
    return replace(report, output=output)


def _render(report: NormalizeReport) -> str:
    """Rewrites (one line each), notes, verification, then the compatibility table of the result."""
    from rnndeploy.graph.compat import render_compat

    lines: List[str] = []
    if report.rewrites:
        lines += [f"rewrite: {r.text}" for r in report.rewrites]
    else:
        lines.append("rewrite: none needed")
    lines += [f"note: {n}" for n in report.notes]
    if report.verification is not None:
        lines.append(report.verification.render())
    lines.append("")
    lines.append("what the " + ("written " if report.output else "") + "model still trips, per runtime:")
    lines.append(render_compat(report.after, report.runtimes))
    return "\n".join(lines)


# -- automatic normalisation for parity / bench / build-engine --------------------------------------------
_TEMP_DIRS: List[str] = []


def auto_normalize_path(path: str, use: str = "running") -> Tuple[str, Optional[str]]:
    """(path to run, one line or None): a verified layout=0 copy of ``path`` when it has
    layout=1 recurrent nodes, else ``path`` itself. The copy lives in a temporary
    directory removed when the process exits."""
    import onnx

    try:
        model = load_onnx(path)
    except UsageError:  # not ONNX: the command's own loading says so in its words
        return path, None
    nodes = needs_layout_rewrite(model)
    if not nodes:
        return path, None
    full = load_onnx(path, external_data=True)
    new, report = normalize_model(full, NormalizeOptions(layout=True, fold=False), verify=True, source=path)
    tmp = tempfile.mkdtemp(prefix="rnndeploy-normalized-")
    if not _TEMP_DIRS:
        atexit.register(_cleanup)
    _TEMP_DIRS.append(tmp)
    out = os.path.join(tmp, os.path.basename(path))
    onnx.save(new, out)
    names = ", ".join(repr(n) for n in nodes[:4]) + (f" and {len(nodes) - 4} more" if len(nodes) > 4 else "")
    checked = f"same outputs as the original, max |diff| {report.verification.max_abs:.1e}" \
        if report.verification else "unverified"
    line = f"normalised {path}: layout=1 → 0 on {names} with Transposes ({checked}); {use} that copy"
    return out, line


def auto_normalize(source: Any) -> Tuple[Any, Optional[str]]:
    """``source`` (a ModelSource) with its ONNX file replaced by a normalised copy when needed."""
    if not getattr(source, "onnx", None):
        return source, None
    path, line = auto_normalize_path(source.onnx)
    return (source if line is None else replace(source, onnx=path)), line


def _cleanup() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)
