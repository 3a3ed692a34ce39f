"""``run_parity``: the same inputs through every runtime, each output compared with the reference.

Three steps, as Polygraphy's comparator does them:

1. collect the cases (rnndeploy.parity.cases): a golden directory, --inputs/--expected
   files, a real data split, or inputs generated from the spec at each (batch, seq);
2. run the runners (rnndeploy.parity.run): the reference (unless a file holds its
   outputs), then every backend under test, one at a time → RunResults;
3. compare (rnndeploy.parity.compare): every output of every case through
   rnndeploy.metrics, plus argmax / sampling / decoding agreement and task metrics.

A backend that raises on a case (e.g. an ONNX file whose sequence length was frozen
at export) yields a failed CaseResult naming the exception; the other cases and
backends still run, so one report shows everything that is wrong. The decisions the
command line needs (default reference, per-family sampling default, where the decoder
of a seq2seq export is) are made here too.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from typing import Callable, List, Mapping, Optional, Tuple

from rnndeploy.backends import ModelSource, RunnerOptions, create_runner, natural_options
from rnndeploy.backends.base import Runner
from rnndeploy.errors import UsageError
from rnndeploy.inputs import DEFAULT_SHAPES
from rnndeploy.parity.cases import CaseSet, collect_cases
from rnndeploy.parity.compare import compare_runs
from rnndeploy.parity.golden import save_golden
from rnndeploy.parity.results import ParityResult
from rnndeploy.parity.run import RunResults, TaskPlan, file_reference, run_backend, run_reference
from rnndeploy.parity.tolerances import ToleranceOverrides, check_something_checked
from rnndeploy.spec import LanguageModelIO, ModelSpec, Seq2SeqIO


@dataclass(frozen=True)
class ParityConfig:
    """What to compare and how.

    Attributes:
        backends: runtimes under test (the reference is dropped from this list if present).
        reference: backend producing reference outputs (default "torch"); unused with
            ``expected_file`` or ``golden``.
        shapes: (batch, seq) cases for generated inputs.
        seed: generation seed.
        options: RunnerOptions for the runtimes under test (precision, device, ...), each
            on its natural device (``BackendLabel.natural_options``); ``backend_options``
            overrides them per backend.
        reference_options: RunnerOptions for the reference (default: ``options`` at FP32,
            without a CUDA graph, on the reference's natural device).
        overrides: tolerance overrides (--atol/--rtol/--tol).
        golden / save_golden: golden directory to check against / to write.
        inputs_file / expected_file: .npz files (any ONNX model).
        extra_dims: sizes for dynamic axes other than batch/seq (foreign models).
        sample_steps: char-LM sampling agreement: tokens to generate (0 = off).
        sample_temperature: softmax temperature for sampling.
        min_agreement: fail when any argmax / sampling / decoding agreement is below this fraction.
        decoder: the decoder-step graph of a seq2seq model (the source being the encoder):
            greedy decoding agreement is checked on every case with each backend.
        decode_max_len: decoding steps at most.
        bos_id / eos_id: special ids (default: the spec's attrs "bos_id" / "eos_id").
    """

    backends: Tuple[str, ...]
    reference: str = "torch"
    shapes: Tuple[Tuple[int, int], ...] = DEFAULT_SHAPES
    seed: int = 0
    options: RunnerOptions = field(default_factory=RunnerOptions)
    backend_options: Mapping[str, RunnerOptions] = field(default_factory=dict)
    reference_options: Optional[RunnerOptions] = None
    overrides: ToleranceOverrides = field(default_factory=ToleranceOverrides)
    golden: Optional[str] = None
    save_golden: Optional[str] = None
    inputs_file: Optional[str] = None
    expected_file: Optional[str] = None
    extra_dims: Mapping[str, int] = field(default_factory=dict)
    sample_steps: int = 0
    sample_temperature: float = 1.0
    min_agreement: Optional[float] = None
    decoder: Optional[ModelSource] = None
    decode_max_len: int = 64
    bos_id: Optional[int] = None
    eos_id: Optional[int] = None
    show_progress: Optional[bool] = None
    data_split: Optional[str] = None
    data_rows: Optional[int] = 256

    def options_for(self, backend: str) -> RunnerOptions:
        if backend in self.backend_options:
            return self.backend_options[backend]
        return natural_options(backend, self.options)

    def options_for_reference(self) -> RunnerOptions:
        if self.reference_options is not None:
            return self.reference_options
        return natural_options(self.reference, replace(self.options, precision="fp32", cuda_graph=False))


RunnerFactory = Callable[[str, ModelSource, RunnerOptions], Runner]


def run_parity(source: ModelSource, config: ParityConfig, command: str = "",
               runner_factory: RunnerFactory = create_runner) -> ParityResult:
    """Collect cases → run the reference and every backend → compare; a ParityResult
    (never raises for a numerical mismatch).

    Raises:
        UsageError: contradictory options (e.g. --expected without --inputs), files that do not fit.
        MissingDependencyError / DeviceError: a requested backend cannot run here.
        ParityError: the reference raised on a case.
    """
    from rnndeploy.backends.source import model_hashes
    from rnndeploy.report.machine import describe_machine, package_versions

    graph = source.graph_spec
    config.overrides.check_outputs(graph)
    _check_config(config)
    check_something_checked(graph, sorted({config.options_for(b).precision for b in config.backends} or {"fp32"}),
                            config.overrides)
    if config.sample_steps:
        LanguageModelIO.resolve(graph)  # a model that cannot be sampled fails now, not after every backend ran
    if config.decoder is not None:
        Seq2SeqIO.resolve(graph, config.decoder.graph_spec, source.spec.attrs)
    hashes = model_hashes(source)

    # 1. cases (and the reference's outputs when a file holds them)
    case_set = collect_cases(source, config, hashes)
    warnings = list(case_set.warnings)
    tests = [b for b in dict.fromkeys(config.backends)
             if not (case_set.reference_runs and b == config.reference)]
    if not tests and not config.save_golden:
        raise UsageError("nothing to compare: every backend given is the reference",
                         "add a --backend other than the reference, or --save-golden DIR")
    plan = task_plan(source, config, case_set, bool(tests), warnings)

    # 2. run: the reference, then every backend under test, one runner at a time
    reference = dict(case_set.reference)
    if case_set.reference_runs:
        ref_run = run_reference(config.reference, source, config.options_for_reference(), case_set, plan,
                                runner_factory, config.show_progress)
        reference["description"] = ref_run.description
    else:
        ref_run = file_reference(case_set)
    for case, outs in zip(case_set.cases, ref_run.outputs):
        missing = [t.name for t in graph.outputs if t.name not in (outs or {})]
        if missing:
            raise UsageError(f"reference case {case.id!r} lacks outputs {', '.join(missing)}")
    if config.save_golden:
        save_golden(config.save_golden, source.spec, source.graph, source.with_state, list(case_set.cases),
                    [o or {} for o in ref_run.outputs],
                    {"backend": reference["backend"], "description": reference.get("description", {})},
                    case_set.seed if case_set.seed is not None else -1, hashes, package_versions())
    runs = tuple(run_backend(b, source, config.options_for(b), case_set, plan, runner_factory, config.show_progress)
                 for b in tests)

    # 3. compare
    results, tasks, metrics = compare_runs(graph, case_set, RunResults(ref_run, runs), plan, config.overrides,
                                           config.min_agreement)
    return ParityResult(
        model={"name": source.spec.name, "family": source.spec.family, "graph": source.graph,
               "with_state": source.with_state, "onnx": source.onnx, "checkpoint": source.checkpoint,
               "engine": source.engine, "module": source.module, **hashes},
        reference=reference,
        backends={r.label: r.description for r in runs},
        seed=case_set.seed,
        cases=tuple(results),
        tasks=tuple(tasks),
        task_metrics=metrics,
        warnings=tuple(warnings),
        tolerance_overrides=config.overrides.to_dict(),
        machine=describe_machine(),
        command=command,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def task_plan(source: ModelSource, config: ParityConfig, case_set: CaseSet, any_tests: bool,
              warnings: List[str]) -> TaskPlan:
    """The task checks this run performs: sampling and decoding need backends under test
    and a reference that runs (a file holds no sampled or decoded tokens)."""
    steps = config.sample_steps if any_tests else 0
    decoder = config.decoder if any_tests else None
    if not case_set.reference_runs:
        if decoder is not None:
            warnings.append("decoding agreement needs a reference backend run (not a golden / expected file)")
            decoder = None
        if steps:
            warnings.append("sampling agreement needs a reference backend run (not a golden / expected file)")
            steps = 0
    bos, eos = _special_ids(source, config) if decoder is not None else (0, 0)
    return TaskPlan(steps, config.sample_temperature, config.seed, decoder, bos, eos, config.decode_max_len)


# -- decisions the command line used to make -----------------------------------------------------------
def default_reference(source: ModelSource) -> str:
    """The reference backend when none is named: torch when the source has a torch artefact
    (checkpoint or module), keras when it has a Keras model, else ort-cpu."""
    if source.checkpoint or source.module:
        return "torch"
    return "keras" if source.keras else "ort-cpu"


def default_sample_steps(spec: ModelSpec) -> int:
    """Sampled tokens per row when --sample-steps is not given: 32 for a char-LM, else 0 (off)."""
    return 32 if spec.family == "charlm" else 0


def find_decoder(source: ModelSource, decoder: Optional[str] = None) -> Optional[ModelSource]:
    """The decoder-step source of a seq2seq check: ``decoder`` (an ONNX file or engine), else
    the decoder_step file the same export wrote beside ``source``'s encoder file
    (rnndeploy.artefacts.naming.sibling_graph); None for a model that is not an encoder.

    Raises:
        UsageError: ``decoder`` is neither ONNX nor an engine, or ``source`` is not the encoder graph.
    """
    from rnndeploy.artefacts.naming import classify, sibling_graph
    from rnndeploy.backends.source import resolve_source

    if decoder is None and source.graph == "encoder" and source.onnx:
        found = sibling_graph(source.onnx, "encoder", "decoder_step")
        decoder = str(found) if found is not None else None
    if not decoder:
        return None
    kind = classify(decoder)
    if kind not in ("onnx", "engine"):
        raise UsageError(f"--decoder {decoder} is not an ONNX file or engine")
    found_source = resolve_source(onnx=decoder if kind == "onnx" else None, engine=decoder if kind == "engine" else None,
                                  checkpoint=source.checkpoint, module=source.module, graph="decoder_step")
    if source.graph != "encoder":
        raise UsageError(f"--decoder needs MODEL to be the encoder graph; {source.onnx or source.engine} "
                         f"holds {source.graph!r}")
    return found_source


def _check_config(config: ParityConfig) -> None:
    if config.data_split and (config.golden or config.inputs_file):
        raise UsageError("--inputs-from-recipe cannot be combined with --golden or --inputs",
                         "choose one source of inputs")
    if config.expected_file and not config.inputs_file:
        raise UsageError("--expected needs --inputs (the outputs must come from known inputs)",
                         "pass --inputs FILE.npz as well")
    if config.golden and (config.inputs_file or config.save_golden):
        raise UsageError("--golden cannot be combined with --inputs or --save-golden",
                         "a golden directory already holds the inputs and reference outputs")
    if config.min_agreement is not None and not 0.0 <= config.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement {config.min_agreement} is not a fraction in [0, 1]")
    if config.sample_steps < 0:
        raise UsageError("--sample-steps must not be negative")


def _special_ids(source: ModelSource, config: ParityConfig) -> Tuple[int, int]:
    attrs = source.spec.attrs
    bos = config.bos_id if config.bos_id is not None else attrs.get("bos_id")
    eos = config.eos_id if config.eos_id is not None else attrs.get("eos_id")
    if not isinstance(bos, int) or not isinstance(eos, int):
        raise UsageError(f"model {source.spec.name!r} declares no bos_id/eos_id for decoding",
                         "pass --bos-id and --eos-id")
    return bos, eos
