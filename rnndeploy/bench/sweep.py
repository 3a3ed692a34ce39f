"""``run_bench``: every backend over a batch × seq sweep, side by side in one process.

All runners are activated once; for each (batch, seq) every backend is measured in
turn on the same generated inputs, so a slow drift of the machine (thermal, other
load) hits all backends alike and the ratios stay meaningful. Torch is always a row
when it can run (a checkpoint or module is known and torch is installed): ratios
against it are the point of the table.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from rnndeploy.backends import BackendLabel, ModelSource, RunnerOptions, create_runner, natural_options
from rnndeploy.backends.base import Runner, Timer
from rnndeploy.bench.measurement import Measurement
from rnndeploy.bench.results import BenchResult
from rnndeploy.bench.timing import DEFAULT_MIN_TIME, DEFAULT_WARMUP, MAX_SAMPLES, SETTLE_S, measure
from rnndeploy.errors import UsageError
from rnndeploy.inputs import generate_inputs, sizes_for
from rnndeploy.memory import check_graph_fits, runtime_guard
from rnndeploy.optional import available
from rnndeploy.progress import progress


@dataclass(frozen=True)
class BenchConfig:
    """What to measure.

    Attributes:
        backends: runtimes to time; "torch" is added first when it can run and ``torch_row``.
        batches, seqs: the sweep (every combination).
        warmup: untimed calls per configuration.
        iters: timed calls per configuration (None: run for ``min_time`` seconds).
        min_time: seconds of timed calls per configuration when ``iters`` is None.
        number: calls per timed block.
        max_samples: stop a configuration after this many blocks even before ``min_time``.
        options / backend_options: RunnerOptions, each backend on its natural device
            (``BackendLabel.natural_options``); per backend overrides.
        seed: input generation seed.
        torch_row: add torch when possible.
        extra_dims: sizes of other dynamic axes (foreign models).
        baseline: the row ratios are taken against (default: "torch", else the first
            torch label such as "torch:fp16").
        settle: seconds to pause between backends (ORT and torch CPU worker threads
            spin for a while after a run and would steal cores from the next backend).
    """

    backends: Tuple[str, ...]
    batches: Tuple[int, ...] = (1,)
    seqs: Tuple[int, ...] = (16, 128)
    warmup: int = DEFAULT_WARMUP
    iters: Optional[int] = None
    min_time: Optional[float] = DEFAULT_MIN_TIME
    number: int = 1
    options: RunnerOptions = field(default_factory=RunnerOptions)
    backend_options: Mapping[str, RunnerOptions] = field(default_factory=dict)
    seed: int = 0
    torch_row: bool = True
    extra_dims: Mapping[str, int] = field(default_factory=dict)
    settle: float = SETTLE_S
    max_samples: int = MAX_SAMPLES
    baseline: Optional[str] = None
    show_progress: Optional[bool] = None

    def options_for(self, backend: str) -> RunnerOptions:
        if backend in self.backend_options:
            return self.backend_options[backend]
        return natural_options(backend, self.options)


RunnerFactory = Callable[[str, ModelSource, RunnerOptions], Runner]


def plan_backends(source: ModelSource, config: BenchConfig) -> Tuple[List[str], List[str]]:
    """(backends in measurement order, warnings) — torch first when it can be a row."""
    backends = list(dict.fromkeys(config.backends))
    warnings: List[str] = []
    if not any(_runs_torch(b) for b in backends) and config.torch_row:
        if (source.checkpoint or source.module) and available("torch"):
            backends.insert(0, "torch")
        else:
            why = "torch is not installed" if not available("torch") else "no checkpoint or module was given"
            warnings.append(f"no torch row ({why}): ratios against torch are not available")
    if not backends:
        raise UsageError("no backend to benchmark", "pass --backend NAME")
    return backends, warnings


def _runs_torch(label: str) -> bool:
    parsed = BackendLabel.lookup(label)
    return parsed is not None and parsed.runs_torch


def choose_baseline(backends: List[str], wanted: Optional[str] = None) -> Optional[str]:
    """The baseline row: ``wanted`` (must be measured), else "torch", else the first torch label,
    else "keras" (a Keras model's own framework)."""
    if wanted is not None:
        if wanted not in backends:
            raise UsageError(f"baseline {wanted!r} is not one of the measured backends", f"measured: {', '.join(backends)}")
        return wanted
    if "torch" in backends:
        return "torch"
    return next((b for b in backends if _runs_torch(b)), "keras" if "keras" in backends else None)


def run_bench(source: ModelSource, config: BenchConfig, command: str = "",
              runner_factory: RunnerFactory = create_runner,
              timer_factory: Optional[Callable[[Runner], Timer]] = None) -> BenchResult:
    """Measure every backend at every (batch, seq); see BenchConfig."""
    from rnndeploy.backends.source import model_hashes
    from rnndeploy.environment import describe_machine

    graph = source.graph_spec
    backends, warnings = plan_backends(source, config)
    baseline = choose_baseline(backends, config.baseline)  # before any work: a typo fails at once
    pad_id = source.spec.attrs.get("pad_id") if isinstance(source.spec.attrs.get("pad_id"), int) else None
    runners: Dict[str, Runner] = {}
    measurements: List[Measurement] = []
    configs = [(bt, s) for s in config.seqs for bt in config.batches]
    for batch, seq in configs:  # every configuration fits (and names only known axes) before any runner starts
        check_graph_fits(graph, sizes_for(graph, batch, seq, config.extra_dims),
                         f"bench b{batch} s{seq} (inputs and outputs of every runtime)", copies=len(backends) + 1,
                         attrs=source.spec.attrs)
    try:
        for b in backends:
            runners[b] = runner_factory(b, source, config.options_for(b)).activate()
        label = f"bench {source.spec.name}"
        for batch, seq in progress(configs, label, enabled=config.show_progress):
            sizes = sizes_for(graph, batch, seq, config.extra_dims)
            feed = generate_inputs(graph, sizes, config.seed, pad_id)
            for b in backends:
                if measurements and config.settle:
                    # let the previous backend's spinning worker threads go idle before the next one
                    time.sleep(config.settle)
                r = runners[b]
                with runtime_guard(f"bench {b} b{batch} s{seq}"):
                    measurements.append(measure(
                        r, feed, warmup=config.warmup, iters=config.iters, min_time=config.min_time,
                        number=config.number, timer=timer_factory(r) if timer_factory else None, sizes=sizes,
                        max_samples=config.max_samples, metadata={"model": source.spec.name, "graph": source.graph},
                    ))
    finally:
        for r in runners.values():
            r.deactivate()
    for m in measurements:
        for w in m.warnings:
            warnings.append(f"{m.backend} b{m.batch} s{m.seq}: {w}")
    return BenchResult(
        model={"name": source.spec.name, "family": source.spec.family, "graph": source.graph,
               "with_state": source.with_state, "onnx": source.onnx, "checkpoint": source.checkpoint,
               "engine": source.engine, "module": source.module, **model_hashes(source)},
        measurements=tuple(measurements),
        baseline=baseline,
        settings={"warmup": config.warmup, "iters": config.iters, "min_time": config.min_time, "number": config.number,
                  "seed": config.seed, "batches": list(config.batches), "seqs": list(config.seqs)},
        warnings=tuple(warnings),
        machine=describe_machine(),
        command=command,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )

