"""TuneResult: every candidate's accuracy check and latencies, the floor, and the choice per shape."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from rnndeploy.bench.measurement import Measurement, find

RESULT_VERSION = 1
NOT_RUN = "not run on this machine"  # the reason of a check whose runner refused this machine
BUDGET_SPENT = "not run: the --budget of"  # the reason of a check (or measurement) left for want of time


def floor_seconds(floors: Mapping[str, Mapping[str, Any]], batch: int, seq: int, variant: str = "fp32") -> Optional[float]:
    """The floor of ``variant`` at (batch, seq) from a floor table (``TuneResult.floors``); FP32's
    when the table has none for that variant (results written before floors per variant)."""
    f = floors.get(f"b{batch}-s{seq}")
    if not f:
        return None
    return float(dict(f.get("by_variant") or {}).get(variant, f["seconds"]))


@dataclass(frozen=True)
class Candidate:
    """One way to deploy the model: a runtime label on an artefact (a precision variant).

    Attributes:
        label: unique row name, e.g. "ort-cpu:t1 int8-keep-head".
        backend: backend label the runner is created with ("ort-cpu:t2", "openvino:bf16").
        variant: "fp32", or the precision variant ("int8", "int8-keep-recurrence", "bf16", ...).
        artefact: path of the ONNX file it runs.
        threads: intra-op threads (None: the runtime's default).
        decoder: a seq2seq model's decoder-step ONNX of the same variant (None: not seq2seq).
    """

    label: str
    backend: str
    variant: str
    artefact: str
    threads: Optional[int] = None
    decoder: Optional[str] = None

    @property
    def on_gpu(self) -> bool:
        """Its backend runs on a CUDA device (no CPU floor applies)."""
        from rnndeploy.backends import BackendLabel

        label = BackendLabel.lookup(self.backend)
        return bool(label and label.entry.gpu)

    @property
    def key(self) -> Tuple[str, str]:
        """Numerics do not depend on the thread count or the batch split: one accuracy check per
        (runtime, variant), the runtime being the backend label without ``tN`` / ``sN``."""
        return re.sub(r"(:[ts]\d+)+$", "", self.backend), self.variant

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        return cls(d["label"], d["backend"], d["variant"], d["artefact"], d.get("threads"), d.get("decoder"))


@dataclass(frozen=True)
class AccuracyCheck:
    """One (runtime, variant) against the FP32 reference on the real data (or generated inputs).

    Attributes:
        runtime / variant: what was checked.
        inputs: what it ran on ("test split, 512 rows" or "generated b4-s37").
        outputs: per output: max_abs, rel_l2, tolerance, within (bool), argmax_agreement,
            error_vs_timestep (rel L2 per timestep, when the output has a time axis).
        metric / value / reference_value: the task metric, when the data are known.
        change_pct: how much worse than the reference, in percent of it (negative: better).
        budget_pct: the allowed worsening (None: the model's tolerances decide).
        passed / reason: the verdict and why.
    """

    runtime: str
    variant: str
    inputs: str
    outputs: Mapping[str, Mapping[str, Any]]
    passed: bool
    reason: str
    metric: Optional[str] = None
    value: Optional[float] = None
    reference_value: Optional[float] = None
    change_pct: Optional[float] = None
    budget_pct: Optional[float] = None
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        """False when the runtime refused this machine (e.g. openvino:bf16 without native bf16)
        or the --budget was spent before this check."""
        return not self.reason.startswith((NOT_RUN, BUDGET_SPENT))

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["outputs"] = {k: dict(v) for k, v in self.outputs.items()}
        d["metrics"] = dict(self.metrics)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AccuracyCheck:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class Choice:
    """The fastest passing candidate at one (batch, seq), with the ORT-default latency beside it."""

    batch: int
    seq: int
    label: Optional[str]
    median: Optional[float]
    baseline_median: Optional[float]
    floor: Optional[float]

    @property
    def speedup(self) -> Optional[float]:
        """median / baseline median (< 1: faster than ONNX Runtime's defaults)."""
        if self.median is None or not self.baseline_median:
            return None
        return self.median / self.baseline_median

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Choice:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TuneResult:
    """Everything one ``rnndeploy tune`` run measured and chose.

    Attributes:
        model: {"name", "family", "graph", "onnx", "onnx_sha256", ...}.
        baseline: label of the ONNX Runtime defaults row (``InferenceSession(path)``).
        candidates: every candidate considered.
        accuracy: one check per (runtime, variant).
        measurements: latency of every passing candidate at every shape measured.
        floors: {"b32-s128": Floor.to_dict() of FP32, with "by_variant": {variant: seconds}} per shape.
        cpu: the CpuModel the floor assumed.
        choices: one per shape.
        skipped: "label @ b32-s128: why" for what was not measured (budget, failed check, error).
        deploy: what was written (paths, runner settings per shape).
    """

    model: Mapping[str, Any]
    baseline: str
    candidates: Tuple[Candidate, ...]
    accuracy: Tuple[AccuracyCheck, ...]
    measurements: Tuple[Measurement, ...]
    floors: Mapping[str, Mapping[str, Any]]
    cpu: Mapping[str, Any]
    choices: Tuple[Choice, ...]
    skipped: Tuple[str, ...] = ()
    deploy: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    warnings: Tuple[str, ...] = ()
    machine: Mapping[str, Any] = field(default_factory=dict)
    command: str = ""
    created: str = ""

    kind = "tune"

    def get(self, label: str, batch: int, seq: int) -> Optional[Measurement]:
        return find(list(self.measurements), label, batch, seq)

    def check_for(self, candidate: Candidate) -> Optional[AccuracyCheck]:
        runtime, variant = candidate.key
        return next((a for a in self.accuracy if a.runtime == runtime and a.variant == variant), None)

    def floor_seconds(self, batch: int, seq: int, variant: str = "fp32") -> Optional[float]:
        return floor_seconds(self.floors, batch, seq, variant)

    def percent_of_floor(self, m: Measurement) -> Optional[float]:
        """floor / median × 100 for a measurement, with the floor of its candidate's variant."""
        cand = next((c for c in self.candidates if c.label == m.backend), None)
        if cand is not None and cand.on_gpu:
            return None
        f = self.floor_seconds(m.batch, m.seq, cand.variant if cand else "fp32")
        return None if f is None or not m.median > 0 else 100.0 * f / m.median

    def labels(self) -> List[str]:
        return [c.label for c in self.candidates]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "kind": self.kind, "result_version": RESULT_VERSION, "model": dict(self.model), "baseline": self.baseline,
            "candidates": [c.to_dict() for c in self.candidates], "accuracy": [a.to_dict() for a in self.accuracy],
            "measurements": [m.to_dict() for m in self.measurements],
            "floors": {k: dict(v) for k, v in self.floors.items()}, "cpu": dict(self.cpu),
            "choices": [c.to_dict() for c in self.choices], "skipped": list(self.skipped), "deploy": dict(self.deploy),
            "settings": dict(self.settings), "warnings": list(self.warnings), "machine": dict(self.machine),
            "command": self.command, "created": self.created,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "tune result") -> TuneResult:
        from rnndeploy.validation import Fields

        f = Fields(d, where)  # the containers' types (a UsageError naming the field), then the values
        for key in ("candidates", "accuracy", "measurements", "choices"):
            f.records(key, required=False)
        for key in ("model", "floors", "cpu", "deploy", "settings"):
            f.mapping(key, required=False)
        f.strs("skipped", required=False)
        return cls(
            model=dict(d.get("model", {})), baseline=d.get("baseline", ""),
            candidates=tuple(Candidate.from_dict(c) for c in d.get("candidates", [])),
            accuracy=tuple(AccuracyCheck.from_dict(a) for a in d.get("accuracy", [])),
            measurements=tuple(Measurement.from_dict(m) for m in d.get("measurements", [])),
            floors={k: dict(v) for k, v in d.get("floors", {}).items()}, cpu=dict(d.get("cpu", {})),
            choices=tuple(Choice.from_dict(c) for c in d.get("choices", [])), skipped=tuple(d.get("skipped", [])),
            deploy=dict(d.get("deploy", {})), settings=dict(d.get("settings", {})), **f.stamps(),
        )
