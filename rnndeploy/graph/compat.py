"""What in an ONNX model trips which runtime: a per-runtime compatibility table.

Every rule names its source. "measured" rules were run here on single-node models of
every recurrent kind (tests/onnx_rnn_cases.py) against the spec-complete reference
(rnndeploy.graph.reference): ONNX Runtime 1.32 CPU and OpenVINO 2026.4.1 CPU. "docs"
rules come from the runtimes' documentation and sources (ONNX Runtime's CUDA RNN
kernels, onnx-tensorrt's operator support notes; FINDINGS §4–5) and were not run here.

Severities:
    refuses        the runtime will not load or build the model
    wrong          it runs and returns wrong values (or shapes) without a warning
    cpu-fallback   it runs correctly, but that node leaves the GPU for the CPU

``unrunnable`` finds nodes that no runtime computes correctly (refuses or wrong on all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Sequence, Tuple

from rnndeploy.onnx_info import RECURRENT_OPS, TRT86_MAX_OPSET, all_nodes, node_attr

RUNTIMES: Tuple[str, ...] = ("ort-cpu", "ort-cuda", "trt-8.6", "trt-10", "openvino")
SEVERITIES = ("refuses", "wrong", "cpu-fallback")
# Activations OpenVINO's recurrent nodes accept (others: "Unknown activation function", measured).
_OV_ACTIVATIONS = {"relu", "tanh", "sigmoid"}
_DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
# Custom domains a runtime implements (ORT's contrib ops).
_RUNTIME_DOMAINS = {"ort-cpu": ("com.microsoft",), "ort-cuda": ("com.microsoft",)}


@dataclass(frozen=True)
class CompatIssue:
    """One thing one runtime does with one node.

    Attributes:
        runtime: one of RUNTIMES.
        node: node name ("" for a model-wide issue).
        op: the node's op ("domain::op" outside the default domain).
        severity: one of SEVERITIES.
        problem: what the runtime does, in a few words.
        fix: what gets past it ("" when nothing in rnndeploy does).
        source: "measured" or "docs".
    """

    runtime: str
    node: str
    op: str
    severity: str
    problem: str
    fix: str = ""
    source: str = "measured"

    def line(self) -> str:
        where = f"{self.op} node {self.node!r}" if self.node else "model"
        fix = f" — {self.fix}" if self.fix else ""
        return f"{self.runtime}: {where}: {self.severity}: {self.problem}{fix} [{self.source}]"

    def to_dict(self) -> Dict[str, str]:
        return {"runtime": self.runtime, "node": self.node, "op": self.op, "severity": self.severity,
                "problem": self.problem, "fix": self.fix, "source": self.source}


def check_compat(model: Any) -> List[CompatIssue]:
    """Every known issue of ``model`` (an onnx.ModelProto), main graph and subgraphs."""
    issues: List[CompatIssue] = []
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    if opset > TRT86_MAX_OPSET:
        issues.append(CompatIssue("trt-8.6", "", "", "refuses", f"opset {opset} > {TRT86_MAX_OPSET} (its ONNX parser's newest)",
                                  "export with --opset 17", "docs"))
    for idx, node in enumerate(all_nodes(model.graph)):
        name = node.name or f"{node.op_type}_{idx}"
        if node.domain not in ("", "ai.onnx"):
            op = f"{node.domain}::{node.op_type}"
            for rt in RUNTIMES:
                if node.domain not in _RUNTIME_DOMAINS.get(rt, ()):
                    issues.append(CompatIssue(rt, name, op, "refuses", f"no implementation of domain {node.domain!r}",
                                              "", "docs"))
            continue
        if node.op_type in RECURRENT_OPS:
            issues += _recurrent_issues(node, name)
    return issues


def _recurrent_issues(node: Any, name: str) -> List[CompatIssue]:
    op = node.op_type
    out: List[CompatIssue] = []

    def add(runtimes: Iterable[str], severity: str, problem: str, fix: str = "", source: str = "measured") -> None:
        out.extend(CompatIssue(rt, name, op, severity, problem, fix, source) for rt in runtimes)

    ins = list(node.input) + [""] * 8
    direction = str(node_attr(node, "direction", "forward"))
    dirs = 2 if direction == "bidirectional" else 1
    if int(node_attr(node, "layout", 0) or 0) == 1:
        add(["ort-cpu"], "refuses", "layout=1 (batch-first) is not supported", "rnndeploy normalize")
        add(["ort-cuda"], "refuses", "layout=1 (batch-first) is not supported", "rnndeploy normalize", "docs")
        add(["trt-8.6", "trt-10"], "wrong", "its ONNX parser ignores layout=1", "rnndeploy normalize", "docs")
        add(["openvino"], "wrong", "ignores layout=1: wrong values and shapes", "rnndeploy normalize")
    if op == "LSTM" and int(node_attr(node, "input_forget", 0) or 0):
        add(["trt-8.6", "trt-10"], "refuses", "input_forget=1 is rejected by its ONNX parser", "", "docs")
        add(["ort-cuda"], "cpu-fallback", "input_forget=1", "", "docs")
        add(["openvino"], "wrong", "ignores input_forget=1")
    if op == "LSTM" and ins[7]:
        add(["ort-cuda"], "cpu-fallback", "peepholes", "", "docs")
        add(["openvino"], "wrong", "ignores the LSTM peepholes P (prunes a P graph input): max abs error 0.09–0.16 "
                                   "on unit-range weights")
    clip = node_attr(node, "clip")
    if clip is not None:
        add(["ort-cuda"], "cpu-fallback", "clip", "", "docs")
    if op == "GRU" and int(node_attr(node, "linear_before_reset", 0) or 0) == 0:
        add(["ort-cuda"], "cpu-fallback", "linear_before_reset=0 (cuDNN computes the =1 form)", "", "docs")
    if ins[4] and clip is None:
        add(["openvino"], "wrong", "ignores sequence_lens on nodes without clip",
            "the openvino runner adds a no-op clip itself; normalize --for openvino writes it")
    acts = [str(a) for a in (node_attr(node, "activations") or [])]
    defaults = _DEFAULT_ACTS[op]
    per_dir = [acts[d * len(defaults):(d + 1) * len(defaults)] for d in range(dirs)] if len(acts) == len(defaults) * dirs \
        else [acts or defaults] * dirs
    if acts and any(p != defaults for p in per_dir):
        add(["ort-cuda"], "cpu-fallback", f"non-default activations {acts}", "", "docs")
    unknown = sorted({a for a in acts if a.lower() not in _OV_ACTIVATIONS})
    if unknown:
        add(["openvino"], "refuses", f"activations {', '.join(unknown)} (only Relu, Tanh, Sigmoid)")
    elif dirs == 2 and len(per_dir) == 2 and per_dir[0] != per_dir[1]:
        add(["openvino"], "wrong", "uses the forward direction's activations for both directions")
    if dirs == 2 and len(per_dir) == 2 and per_dir[0] != per_dir[1]:
        add(["trt-8.6", "trt-10"], "refuses", "different activations per direction (its parser takes one set)", "", "docs")
    return out


def unrunnable(issues: Sequence[CompatIssue], runtimes: Sequence[str] = RUNTIMES) -> Dict[str, List[CompatIssue]]:
    """Node → its issues, for nodes that every one of ``runtimes`` refuses or computes wrongly."""
    by_node: Dict[str, Dict[str, CompatIssue]] = {}
    for i in issues:
        if i.node and i.severity in ("refuses", "wrong"):
            by_node.setdefault(i.node, {}).setdefault(i.runtime, i)
    return {node: [per[rt] for rt in runtimes] for node, per in by_node.items() if all(rt in per for rt in runtimes)}


def render_compat(issues: Sequence[CompatIssue], runtimes: Sequence[str] = RUNTIMES) -> str:
    """The per-runtime table: one row per runtime, "ok" or its issues (one per line)."""
    width = max(len(r) for r in runtimes)
    lines = [f"{'runtime':<{width}}  status"]
    for rt in runtimes:
        mine = [i for i in issues if i.runtime == rt]
        worst = next((s for s in SEVERITIES if any(i.severity == s for i in mine)), None)
        if worst is None:
            lines.append(f"{rt:<{width}}  ok")
            continue
        head = {"refuses": "REFUSES", "wrong": "WRONG VALUES", "cpu-fallback": "runs (CPU fallback)"}[worst]
        lines.append(f"{rt:<{width}}  {head}")
        for i in mine:
            where = f"{i.op} {i.node!r}" if i.node else "model"
            fix = f" — fix: {i.fix}" if i.fix else ""
            lines.append(f"{'':<{width}}    {i.severity}: {where}: {i.problem}{fix} [{i.source}]")
    return "\n".join(lines)
