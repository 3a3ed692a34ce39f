"""``run_parity``: the same inputs through every runtime, each output compared with the reference.

Where inputs come from (first that applies): ``inputs_file`` (.npz keyed by input
name), a golden directory, or generation from the spec at each (batch, seq) shape.
Where reference outputs come from: ``expected_file`` (.npz keyed by output name), the
golden, or running the ``reference`` backend on the same inputs.

A backend that raises on a case (e.g. an ONNX file whose sequence length was frozen
at export) yields a failed CaseResult naming the exception; the other cases and
backends still run, so one report shows everything that is wrong.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.backends import ModelSource, RunnerOptions, create_runner, natural_options
from rnndeploy.backends.base import Runner, check_feed
from rnndeploy.errors import ParityError, RnnDeployError, UsageError, first_line
from rnndeploy.fileio import load_npz
from rnndeploy.input_checks import axis_sizes, check_expected, check_input_values
from rnndeploy.inputs import DEFAULT_SHAPES, Case, generate_cases, infer_sizes
from rnndeploy.metrics import OutputComparison, compare_output
from rnndeploy.parity.golden import check_golden_matches, load_golden, save_golden
from rnndeploy.parity.results import CaseResult, ParityResult, TaskAgreement
from rnndeploy.parity.task import (
    greedy_tokens,
    sample_tokens,
    sequence_agreement,
    token_agreement,
)
from rnndeploy.parity.tolerances import ToleranceOverrides, check_something_checked, resolve_tolerance
from rnndeploy.progress import progress
from rnndeploy.spec import GraphSpec, LanguageModelIO, Seq2SeqIO


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
    """Run the comparison and return a ParityResult (never raises for a numerical mismatch).

    Raises:
        UsageError: contradictory options (e.g. --expected without --inputs), files that do not fit.
        MissingDependencyError / DeviceError: a requested backend cannot run here.
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
    warnings: List[str] = []
    hashes = model_hashes(source)
    pad_id = source.spec.attrs.get("pad_id") if isinstance(source.spec.attrs.get("pad_id"), int) else None

    # 1. cases and (maybe) reference outputs from files
    task_data: Any = None
    ref_outputs: Optional[List[Dict[str, np.ndarray]]] = None
    reference: Dict[str, Any]
    if config.golden:
        golden = load_golden(config.golden)
        warnings += check_golden_matches(golden, graph, hashes.get("onnx_sha256"), hashes.get("checkpoint_sha256"))
        for case, outs in zip(golden.cases, golden.outputs):
            who = f"golden {golden.path} case {case.id!r}"
            check_feed(graph, case.inputs, f"{who} inputs")
            check_input_values(graph, case.inputs, f"{who} inputs")
            check_expected(graph, outs, axis_sizes(graph.inputs, case.inputs), f"{who} outputs")
        cases = golden.cases
        ref_outputs = golden.outputs
        reference = {"backend": golden.reference_backend, "source": "golden", "path": str(golden.path),
                     "description": golden.manifest.get("reference", {}).get("description", {}),
                     "versions": golden.manifest.get("versions", {}), "created": golden.manifest.get("created")}
        seed: Optional[int] = golden.manifest.get("seed")
    elif config.inputs_file:
        feed = load_npz(config.inputs_file, "--inputs")
        check_feed(graph, feed, f"--inputs {config.inputs_file}")
        check_input_values(graph, feed, f"--inputs {config.inputs_file}")
        cases = [Case("inputs", infer_sizes(graph, feed), feed)]
        seed = None
        if config.expected_file:
            expected = load_npz(config.expected_file, "--expected")
            check_expected(graph, expected, cases[0].sizes, f"--expected {config.expected_file}")
            ref_outputs = [{t.name: expected[t.name] for t in graph.outputs}]
            reference = {"backend": "expected", "source": "expected", "path": config.expected_file}
        else:
            reference = {"backend": config.reference, "source": "run"}
    elif config.data_split:
        from rnndeploy.parity.task_eval import load_task_data

        task_data = load_task_data(source, config.data_split, config.data_rows)
        feed = dict(task_data.feeds)
        cases = [Case(f"{config.data_split}[:{task_data.rows}]", infer_sizes(graph, feed), feed)]
        seed = None
        reference = {"backend": config.reference, "source": "run", "inputs": task_data.describe()}
    else:
        cases = generate_cases(graph, config.shapes, config.seed, config.extra_dims, pad_id, source.spec.attrs)
        seed = config.seed
        reference = {"backend": config.reference, "source": "run"}

    tests = [b for b in dict.fromkeys(config.backends) if not (reference["source"] == "run" and b == config.reference)]
    if not tests and not config.save_golden:
        raise UsageError("nothing to compare: every backend given is the reference",
                         "add a --backend other than the reference, or --save-golden DIR")

    descriptions: Dict[str, Dict[str, Any]] = {}
    # 2. reference outputs by running the reference backend
    ref_runner: Optional[Runner] = None
    if ref_outputs is None:
        ref_runner = runner_factory(config.reference, source, config.options_for_reference())
        ref_runner.activate()
        try:
            ref_outputs = []
            for case in progress(cases, f"reference {config.reference}", enabled=config.show_progress):
                ref_outputs.append(_reference_case(ref_runner, config.reference, case))
            reference["description"] = ref_runner.describe().to_dict()
        finally:
            if not ((config.sample_steps or config.decoder) and tests):
                ref_runner.deactivate()
    task_metrics: Dict[str, Dict[str, Any]] = {}
    if task_data is not None and task_data.task != "seq2seq":
        task_metrics[f"{config.reference} (reference)"] = _task_metrics(task_data, ref_outputs[0], graph)
    for i, outs in enumerate(ref_outputs):
        check = [t.name for t in graph.outputs if t.name not in outs]
        if check:
            raise UsageError(f"reference case {cases[i].id!r} lacks outputs {', '.join(check)}")

    if config.save_golden:
        save_golden(config.save_golden, source.spec, source.graph, source.with_state, cases, ref_outputs,
                    {"backend": reference["backend"], "description": reference.get("description", {})},
                    seed if seed is not None else -1, hashes, package_versions())

    # 3. every backend under test on every case
    results: List[CaseResult] = []
    tasks: List[TaskAgreement] = []
    ref_decoder: Optional[Runner] = None
    if config.decoder is not None and tests:
        if ref_runner is None:
            warnings.append("decoding agreement needs a reference backend run (not a golden / expected file)")
        else:
            ref_decoder = runner_factory(config.reference, config.decoder, config.options_for_reference()).activate()
    bos_eos = _special_ids(source, config) if ref_decoder is not None else None
    if config.sample_steps and tests and ref_runner is None:
        warnings.append("sampling agreement needs a reference backend run (not a golden / expected file)")
    try:
        for backend in tests:
            runner = runner_factory(backend, source, config.options_for(backend))
            with runner:
                desc = runner.describe()
                descriptions[backend] = desc.to_dict()
                label = f"{backend} vs {reference['backend']}"
                for case, ref in progress(list(zip(cases, ref_outputs)), label, enabled=config.show_progress):
                    results.append(_run_case(runner, backend, desc.precision, case, ref, graph, config, reference))
                    if task_data is not None and task_data.task != "seq2seq" and results[-1].error is None:
                        task_metrics[backend] = _task_metrics(task_data, runner.infer(case.inputs), graph)
                tasks += _argmax_tasks(results, backend, graph, config.min_agreement)
                if config.sample_steps and ref_runner is not None:
                    tasks.append(_guarded("sampling", backend, config, _sampling_task,
                                          ref_runner, runner, backend, cases, config))
                if ref_decoder is not None and ref_runner is not None and bos_eos is not None:
                    with runner_factory(backend, config.decoder, config.options_for(backend)) as dec:
                        tasks.append(_guarded("decoding", backend, config, _decoding_task, (ref_runner, ref_decoder),
                                              (runner, dec), backend, cases, bos_eos[0], bos_eos[1], config))
    finally:
        if ref_runner is not None:
            ref_runner.deactivate()
        if ref_decoder is not None:
            ref_decoder.deactivate()

    return ParityResult(
        model={"name": source.spec.name, "family": source.spec.family, "graph": source.graph,
               "with_state": source.with_state, "onnx": source.onnx, "checkpoint": source.checkpoint,
               "engine": source.engine, "module": source.module, **hashes},
        reference=reference,
        backends=descriptions,
        seed=seed,
        cases=tuple(results),
        tasks=tuple(tasks),
        task_metrics=task_metrics,
        warnings=tuple(warnings),
        tolerance_overrides=config.overrides.to_dict(),
        machine=describe_machine(),
        command=command,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _task_metrics(data: Any, outputs: Mapping[str, np.ndarray], graph: GraphSpec) -> Dict[str, Any]:
    from rnndeploy.parity.task_eval import score_task

    scores = score_task(data, outputs, graph)
    return {"metric": data.metric, "value": scores.get(data.metric), "split": data.split, "rows": data.rows,
            "metrics": {k: float(v) for k, v in scores.items()}}


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


def _reference_case(runner: Runner, backend: str, case: Case) -> Dict[str, np.ndarray]:
    try:
        return runner.infer(case.inputs)
    except RnnDeployError:
        raise
    except Exception as exc:  # without reference outputs nothing can be compared
        first = first_line(exc, 400)
        raise ParityError(f"reference backend {backend!r} failed on case {case.id!r}: {type(exc).__name__}: {first}",
                          "check the reference runs at this shape, or choose another --reference") from exc


def _run_case(runner: Runner, backend: str, precision: str, case: Case, ref: Mapping[str, np.ndarray],
              graph: GraphSpec, config: ParityConfig, reference: Mapping[str, Any]) -> CaseResult:
    try:
        out = runner.infer(case.inputs)
    except RnnDeployError:
        raise
    except Exception as exc:  # a runtime failing on this case is a finding, not a crash
        first = first_line(exc, 400)
        return CaseResult(case.id, case.sizes, backend, (), f"{backend} raised {type(exc).__name__}: {first}")
    lengths = next((np.asarray(case.inputs[t.name]) for t in graph.inputs if t.role == "lengths"), None)
    comps: List[OutputComparison] = []
    for t in graph.outputs:
        tol = resolve_tolerance(graph, t.name, precision, config.overrides)
        batch_axis = t.dims.index("batch") if "batch" in t.dims else None
        # foreign models have no declared time axis; a dimension named "seq" is one
        time_axis = t.time_axis if t.time_axis is not None else (t.dims.index("seq") if "seq" in t.dims else None)
        comps.append(compare_output(
            t.name, out[t.name], ref[t.name], tol, backend=backend, reference=str(reference.get("backend")),
            time_axis=time_axis, role=t.role, lengths=lengths, batch_axis=batch_axis,
        ))
    return CaseResult(case.id, case.sizes, backend, tuple(comps))


def _argmax_tasks(results: Iterable[CaseResult], backend: str, graph: GraphSpec,
                  threshold: Optional[float]) -> List[TaskAgreement]:
    tasks = []
    for t in graph.outputs:
        if t.role not in ("logits", "probs"):
            continue
        num = den = 0
        for c in results:
            if c.backend != backend:
                continue
            for o in c.outputs:
                if o.output == t.name and o.argmax_agreement is not None:
                    n = int(np.prod(o.shape[:-1])) if len(o.shape) > 1 else 1
                    num += o.argmax_agreement * n
                    den += n
        if den:
            tasks.append(TaskAgreement("argmax", backend, t.name, num / den, den, {}, threshold))
    return tasks


def _sampling_task(ref_runner: Runner, runner: Runner, backend: str, cases: Sequence[Case],
                   config: ParityConfig) -> TaskAgreement:
    io = LanguageModelIO.resolve(runner.graph_spec)
    base = np.asarray(cases[0].inputs[io.tokens.name])
    prompt = base[:, : max(1, min(8, base.shape[1]))]
    ref_tokens = sample_tokens(ref_runner, prompt, config.sample_steps, config.seed, config.sample_temperature)
    test_tokens = sample_tokens(runner, prompt, config.sample_steps, config.seed, config.sample_temperature)
    agree, first = token_agreement(ref_tokens, test_tokens)
    return TaskAgreement("sampling", backend, io.scores.name, agree, int(ref_tokens.size),
                         {"steps": config.sample_steps, "rows": int(prompt.shape[0]), "prompt_len": int(prompt.shape[1]),
                          "seed": config.seed, "temperature": config.sample_temperature, "first_divergence": first,
                          "stateful": io.stateful},
                         config.min_agreement)


def _guarded(kind: str, backend: str, config: ParityConfig, fn: Callable[..., TaskAgreement], *args: Any) -> TaskAgreement:
    """``fn(*args)``: a task check; a runtime that raises during it fails the check instead of the run."""
    try:
        return fn(*args)
    except RnnDeployError:
        raise
    except Exception as exc:
        first = first_line(exc, 400)
        return TaskAgreement(kind, backend, "", 0.0, 0, {"error": f"{type(exc).__name__}: {first}"},
                             config.min_agreement if config.min_agreement is not None else 1.0)


def _special_ids(source: ModelSource, config: ParityConfig) -> Tuple[int, int]:
    attrs = source.spec.attrs
    bos = config.bos_id if config.bos_id is not None else attrs.get("bos_id")
    eos = config.eos_id if config.eos_id is not None else attrs.get("eos_id")
    if not isinstance(bos, int) or not isinstance(eos, int):
        raise UsageError(f"model {source.spec.name!r} declares no bos_id/eos_id for decoding",
                         "pass --bos-id and --eos-id")
    return bos, eos


def _decoding_task(ref_pair: Tuple[Runner, Runner], pair: Tuple[Runner, Runner], backend: str,
                   cases: Sequence[Case], bos: int, eos: int, config: ParityConfig) -> TaskAgreement:
    ref_seqs: List[Tuple[int, ...]] = []
    test_seqs: List[Tuple[int, ...]] = []
    for case in cases:
        ref_seqs += greedy_tokens(ref_pair[0], ref_pair[1], dict(case.inputs), bos, eos, config.decode_max_len)
        test_seqs += greedy_tokens(pair[0], pair[1], dict(case.inputs), bos, eos, config.decode_max_len)
    agree, exact, total = sequence_agreement(ref_seqs, test_seqs)
    first = next((i for i, (r, t) in enumerate(zip(ref_seqs, test_seqs)) if r != t), None)
    details: Dict[str, Any] = {"sequences": len(ref_seqs), "exact_sequences": exact, "max_len": config.decode_max_len,
                               "decoder_graph": pair[1].source.graph}
    if first is not None:
        details["first_mismatch"] = {"row": first, "reference": list(ref_seqs[first]), "test": list(test_seqs[first])}
    return TaskAgreement("decoding", backend, "", agree, total, details, config.min_agreement)

