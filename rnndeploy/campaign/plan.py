"""What a campaign runs, in which order: the prepared folder's manifest and the work units.

The prepared folder (made by ``rnndeploy.campaign.prepare`` on a CPU box with torch) holds, per
model, its checkpoint, ONNX graphs, FP16 ONNX files and torch FP32 goldens, plus
``manifest.json`` with the sha256 of every file. ``plan_units`` turns it into resumable units,
ordered by value: the GPU time of a device session is short, so what matters most runs first.

Torch-free and Python 3.9 compatible: the trt86 kit's interpreter imports this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rnndeploy.errors import UsageError
from rnndeploy.fileio import sha256_file

MANIFEST = "manifest.json"
PREP_FORMAT = "rnndeploy.gpuprep"
PREP_VERSION = 1

# The latency sweep and the parity sweep around it.
BENCH_BATCHES: Tuple[int, ...] = (1, 32, 256)
BENCH_SEQS: Tuple[int, ...] = (16, 128, 512)
# Golden cases in priority order: what is cut first when a graph's golden budget runs out is the
# end of this list. (1, 2048) gives the error-versus-timestep curve up to 2048.
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

# Engine variants, in build order per graph: the first is built with a cold timing cache, so its
# build time is the honest "< 60 s per model" figure; the others reuse that model's cache.
ENGINE_VARIANTS: Dict[str, Dict[str, Any]] = {
    "fp16": {"precision": "fp16", "args": ["--fp16", "--policy", "fp16"], "policy": "fp16"},
    "fp32": {"precision": "fp32", "args": ["--fp32"], "policy": None},
    "fp16-keep": {"precision": "fp16", "args": ["--fp16", "--policy", "fp16-keep-recurrence"],
                  "policy": "fp16-keep-recurrence"},
    "fp16-hoist": {"precision": "fp16", "args": ["--fp16", "--policy", "fp16", "--hoist-input-projection"],
                   "policy": "fp16", "hoist": True},
}
FIRST_VARIANTS = ("fp16", "fp32")

# Targets (issue 14).
BUILD_TARGET_S = 60.0
FP16_REL_L2_TARGET = 1e-3
FP16_TARGET_MAX_SEQ = 512
ARGMAX_TARGET = 0.999
LATENCY_TARGET = 0.8

# Tier of each zoo model, by value: the first LSTM and the char-LM (GRU) give the first answers
# on every target; then the classifier, the real series and seq2seq; the remaining sine variants
# last. Keys are "recipe" or "recipe:variant".
MODEL_TIERS: Dict[str, int] = {"sine": 1, "charlm": 1, "sentiment": 2, "sunspots": 2, "g2p": 2}
OTHER_TIER = 4


def model_tier(recipe: str, variant: Optional[str]) -> int:
    """Tier of a zoo model (1 first); variants of a recipe come after every named model."""
    key = recipe if variant is None else f"{recipe}:{variant}"
    return MODEL_TIERS.get(key, OTHER_TIER)


def extra_tier(tier: int) -> int:
    """Tier of a model's second FP16 policy, hoisted rewrite, layer timing and task checks: after
    the FP16/FP32 engines of every tier-1 and tier-2 model (3), else the tier after the model's."""
    return max(3, tier + 1)


def slug(text: str) -> str:
    """``text`` as a file name: runs of other characters become one underscore."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def profile_args(profiles: Sequence[str] = PROFILES) -> List[str]:
    """``--profile P`` for each profile, as build-engine takes them."""
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

    @property
    def hoistable(self) -> bool:
        return bool(self.hoist and self.hoist.get("rewritten"))

    def to_dict(self) -> Dict[str, Any]:
        return {"model": self.model, "graph": self.graph, "form": self.form, "onnx": self.onnx,
                "with_state": self.with_state, "golden": self.golden, "golden_test": self.golden_test,
                "fp16_onnx": dict(self.fp16_onnx), "hoist": None if self.hoist is None else dict(self.hoist)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GraphPrep:
        return cls(d["model"], d["graph"], d["form"], d["onnx"], bool(d["with_state"]), d.get("golden"),
                   d.get("golden_test"), dict(d.get("fp16_onnx") or {}), d.get("hoist"))


@dataclass(frozen=True)
class ModelPrep:
    """One zoo model: recipe, checkpoint, family, cell, tier, its graphs and task references."""

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
    """The prepared folder's manifest. Raises UsageError when it is missing or of another format."""
    p = Path(root) / MANIFEST
    if not p.is_file():
        raise UsageError(f"{p} does not exist", "prepare the folder first: benchmarks/gpu_prepare.py --out DIR")
    doc = json.loads(p.read_text())
    if doc.get("format") != PREP_FORMAT or int(doc.get("version", 0)) > PREP_VERSION:
        raise UsageError(f"{p} is not a prepared-folder manifest this version reads (format {doc.get('format')!r})",
                         "prepare the folder again with this checkout")
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
    """One resumable piece of work. ``side``: "trt" (the kit's Python, no torch) or "torch" (a
    Python with torch). ``kind``: build | parity | bench | tasks | profile | bench-torch |
    parity-torch | tasks-torch. ``est_s``: rough seconds, to decide whether it still fits before
    the deadline (replaced by the longest observed unit of its kind once one has run)."""

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
    """(variant, tier) pairs for a graph: FP16 + FP32 in the graph's tier; the second FP16 policy
    and the hoisted rewrite (where it rewrites something) in ``extra_tier``. Streaming forms get
    FP16 + FP32 only."""
    out = [(v, tier) for v in FIRST_VARIANTS]
    if g.form == "stream":
        return out
    out.append(("fp16-keep", extra_tier(tier)))
    return out + ([("fp16-hoist", extra_tier(tier))] if g.hoistable else [])


def plan_units(models: Sequence[ModelPrep], variants: Optional[Sequence[str]] = None,
               only: Optional[Sequence[str]] = None) -> List[Unit]:
    """Every unit, ordered by (tier, model order, graph, step). ``only``: model names to keep;
    ``variants``: engine variants to keep (default all)."""
    units: List[Unit] = []
    for m in models:
        if only and m.name not in only:
            continue
        for g in m.graphs:
            # streaming forms come with the model's extras: the default form answers the targets
            gtier = extra_tier(m.tier) if g.form == "stream" else m.tier
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
                units.append(Unit(f"trt.profile.{g.key}.fp16", "trt", "profile", extra_tier(m.tier), m.name, g.key,
                                  "fp16", 15.0, (f"trt.build.{g.key}.fp16",)))
            units.append(Unit(f"torch.parity.{g.key}", "torch", "parity-torch", gtier, m.name, g.key, None, 20.0))
            units.append(Unit(f"torch.bench.{g.key}", "torch", "bench-torch", gtier, m.name, g.key, None, 45.0))
        if m.tasks and (not variants or "fp16" in variants):
            default = [g for g in m.graphs if g.form == "default"]
            needs = tuple(f"trt.build.{g.key}.fp16" for g in default)
            units.append(Unit(f"trt.tasks.{m.name}", "trt", "tasks", extra_tier(m.tier), m.name, None, "fp16", 20.0, needs))
            units.append(Unit(f"torch.tasks.{m.name}", "torch", "tasks-torch", extra_tier(m.tier), m.name, None, None,
                              20.0))
    order = {m.name: i for i, m in enumerate(models)}
    return sorted(units, key=lambda u: (u.tier, order.get(u.model, 0)))
