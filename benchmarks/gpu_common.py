"""Shared by benchmarks/gpu_prepare.py (CPU box, torch side) and benchmarks/gpu_verify.py
(GPU machine: the trt86 kit's Python 3.9 without torch, and the device's Python 3.12 with
torch): the sweep, the engine variants, the prepared-folder manifest, and the work units.

Python 3.9 compatible and torch-free at import time (the kit imports this module).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

MANIFEST = "manifest.json"
PREP_FORMAT = "rnndeploy.gpuprep"
PREP_VERSION = 1

# The latency sweep of issue 6 and the parity sweep around it.
BENCH_BATCHES: Tuple[int, ...] = (1, 32, 256)
BENCH_SEQS: Tuple[int, ...] = (16, 128, 512)
# Golden cases in priority order: what is cut first when a graph's golden budget runs out
# is the end of this list. (1, 2048) gives the error-vs-timestep curve up to 2048.
GOLDEN_CASES: Tuple[Tuple[int, int], ...] = (
    (1, 16), (1, 128), (1, 512), (1, 2048), (32, 16), (32, 128), (32, 512), (256, 16), (256, 128),
    (1, 1024), (8, 2048), (256, 512),
)
MAX_BATCH = 256
MAX_SEQ = 2048
# Two optimization profiles, both covering seq 1..2048: batch 1 (latency, streaming) and 1..256.
# Axes a graph does not have are ignored (decoder_step has only batch and src_seq).
PROFILES: Tuple[str, ...] = (
    "batch=1:1:1,seq=1:128:2048,src_seq=1:128:2048",
    "batch=1:32:256,seq=1:128:2048,src_seq=1:128:2048",
)

# Engine variants, in build order per graph: the first is built with a cold timing cache, so
# its build time is the honest "< 60 s per model" figure; the others reuse that model's cache.
ENGINE_VARIANTS: Dict[str, Dict[str, Any]] = {
    "fp16": {"precision": "fp16", "args": ["--fp16", "--policy", "fp16"], "policy": "fp16"},
    "fp32": {"precision": "fp32", "args": ["--fp32"], "policy": None},
    "fp16-keep": {"precision": "fp16", "args": ["--fp16", "--policy", "fp16-keep-recurrence"],
                  "policy": "fp16-keep-recurrence"},
    "fp16-hoist": {"precision": "fp16", "args": ["--fp16", "--policy", "fp16", "--hoist-input-projection"],
                   "policy": "fp16", "hoist": True},
}

BUILD_TARGET_S = 60.0
FP16_REL_L2_TARGET = 1e-3
FP16_TARGET_MAX_SEQ = 512
ARGMAX_TARGET = 0.999
LATENCY_TARGET = 0.8


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def profile_args(profiles: Sequence[str] = PROFILES) -> List[str]:
    out: List[str] = []
    for p in profiles:
        out += ["--profile", p]
    return out


# -- the prepared folder ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphPrep:
    """One ONNX graph of a prepared model and what was made for it (paths relative to the prep root)."""

    model: str
    graph: str
    form: str  # "default" (the recipe's export) or "stream" (--with-state, where the recipe exports without)
    onnx: str
    with_state: bool
    golden: Optional[str] = None
    golden_test: Optional[str] = None
    fp16_onnx: Mapping[str, str] = field(default_factory=dict)  # policy -> path
    # engine.rewrite's report for --hoist-input-projection ({"rewritten": {...}, "skipped": {...}});
    # None: not planned (the hoisted variant is left out when nothing would be rewritten)
    hoist: Optional[Mapping[str, Any]] = None

    @property
    def key(self) -> str:
        return f"{self.model}.{self.graph}" + (".stream" if self.form == "stream" else "")

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "graph": self.graph, "form": self.form, "onnx": self.onnx,
                "with_state": self.with_state, "golden": self.golden, "golden_test": self.golden_test,
                "fp16_onnx": dict(self.fp16_onnx), "hoist": None if self.hoist is None else dict(self.hoist)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraphPrep:
        return cls(d["model"], d["graph"], d["form"], d["onnx"], bool(d["with_state"]), d.get("golden"),
                   d.get("golden_test"), dict(d.get("fp16_onnx") or {}), d.get("hoist"))

    @property
    def hoistable(self) -> bool:
        return bool(self.hoist and self.hoist.get("rewritten"))


@dataclass(frozen=True)
class ModelPrep:
    """One zoo model: recipe, checkpoint, family, cell, its graphs and task references."""

    name: str
    recipe: str
    variant: Optional[str]
    family: str
    cell: str
    tier: int
    checkpoint: str
    graphs: Tuple[GraphPrep, ...]
    tasks: Optional[str] = None  # JSON file with sampling / decoding references
    train: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.recipe + (f"[{self.variant}]" if self.variant else "")

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "recipe": self.recipe, "variant": self.variant, "family": self.family,
                "cell": self.cell, "tier": self.tier, "checkpoint": self.checkpoint,
                "graphs": [g.to_dict() for g in self.graphs], "tasks": self.tasks, "train": dict(self.train)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelPrep:
        return cls(d["name"], d["recipe"], d.get("variant"), d["family"], d.get("cell", ""), int(d.get("tier", 2)),
                   d["checkpoint"], tuple(GraphPrep.from_dict(g) for g in d["graphs"]), d.get("tasks"),
                   dict(d.get("train") or {}))


def read_manifest(root: Path) -> Dict[str, Any]:
    p = Path(root) / MANIFEST
    if not p.is_file():
        raise SystemExit(f"{p} does not exist: run benchmarks/gpu_prepare.py first")
    doc = json.loads(p.read_text())
    if doc.get("format") != PREP_FORMAT or int(doc.get("version", 0)) > PREP_VERSION:
        raise SystemExit(f"{p} is not a gpu_prepare manifest this script reads (format {doc.get('format')!r})")
    return doc


def verify_manifest(root: Path, doc: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Problems with the prepared folder (missing or altered files); empty when intact."""
    doc = doc or read_manifest(root)
    problems = []
    for rel, digest in sorted(doc.get("files", {}).items()):
        p = Path(root) / rel
        if not p.is_file():
            problems.append(f"missing {rel}")
        elif sha256_file(p) != digest:
            problems.append(f"altered {rel}")
    return problems


def models_of(doc: Mapping[str, Any]) -> List[ModelPrep]:
    return [ModelPrep.from_dict(m) for m in doc.get("models", [])]


# -- work units -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """One resumable piece of GPU work. ``side``: "trt" (kit Python, no torch) or "torch"
    (Python 3.12 with torch). ``kind``: build | parity | bench | tasks | profile | bench-torch
    | parity-torch | tasks-torch. ``est_s``: rough seconds, to decide whether it still fits before the deadline."""

    id: str
    side: str
    kind: str
    tier: int
    model: str
    graph_key: Optional[str] = None
    variant: Optional[str] = None
    est_s: float = 20.0
    needs: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "side": self.side, "kind": self.kind, "tier": self.tier, "model": self.model,
                "graph": self.graph_key, "variant": self.variant, "est_s": self.est_s, "needs": list(self.needs)}


def engine_variants_for(g: GraphPrep, tier: int) -> List[Tuple[str, int]]:
    """(variant, tier) pairs for a graph: fp16 + fp32 in the model's tier, the second FP16 policy
    and the hoisted rewrite (where it rewrites something) one tier later; streaming forms get
    fp16 + fp32 only."""
    if g.form == "stream":
        return [("fp16", tier), ("fp32", tier)]
    out = [("fp16", tier), ("fp32", tier), ("fp16-keep", tier + 1)]
    return out + ([("fp16-hoist", tier + 1)] if g.hoistable else [])


def plan_units(models: Sequence[ModelPrep], variants: Optional[Sequence[str]] = None,
               only: Optional[Sequence[str]] = None) -> List[Unit]:
    """Every unit, ordered by (tier, model order, graph, step). ``only``: model names to keep."""
    units: List[Unit] = []
    for m in models:
        if only and m.name not in only:
            continue
        for g in m.graphs:
            gtier = m.tier + (2 if g.form == "stream" else 0)
            for variant, tier in engine_variants_for(g, gtier):
                if variants and variant not in variants:
                    continue
                base = f"{g.key}.{variant}"
                build = Unit(f"trt.build.{base}", "trt", "build", tier, m.name, g.key, variant, 30.0)
                units.append(build)
                units.append(Unit(f"trt.parity.{base}", "trt", "parity", tier, m.name, g.key, variant, 15.0, (build.id,)))
                units.append(Unit(f"trt.bench.{base}", "trt", "bench", tier, m.name, g.key, variant, 25.0, (build.id,)))
            # where the FP16 engine's time goes (LSTM/GRU models, the latency target's subjects)
            if g.form == "default" and m.cell in ("lstm", "gru") and (not variants or "fp16" in variants):
                units.append(Unit(f"trt.profile.{g.key}.fp16", "trt", "profile", gtier + 1, m.name, g.key, "fp16", 15.0,
                                  (f"trt.build.{g.key}.fp16",)))
            units.append(Unit(f"torch.parity.{g.key}", "torch", "parity-torch", gtier, m.name, g.key, None, 20.0))
            units.append(Unit(f"torch.bench.{g.key}", "torch", "bench-torch", gtier, m.name, g.key, None, 45.0))
        if m.tasks and (not variants or "fp16" in variants):
            default = [g for g in m.graphs if g.form == "default"]
            needs = tuple(f"trt.build.{g.key}.fp16" for g in default)
            units.append(Unit(f"trt.tasks.{m.name}", "trt", "tasks", m.tier + 1, m.name, None, "fp16", 20.0, needs))
            units.append(Unit(f"torch.tasks.{m.name}", "torch", "tasks-torch", m.tier + 1, m.name, None, None, 20.0))
    order = {m.name: i for i, m in enumerate(models)}
    return sorted(units, key=lambda u: (u.tier, order.get(u.model, 0)))
