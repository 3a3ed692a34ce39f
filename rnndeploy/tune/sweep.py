"""``run_tune``: the fastest correct CPU deployment of one ONNX model, per (batch, seq).

1. **Candidates**: every CPU runtime here (``runtimes``) × precision variant (FP32, the
   INT8 policies of rnndeploy.quantize, runtime precisions such as OpenVINO bf16) ×
   intra-op thread count; OpenVINO also with the batch split over one stream per core
   (``openvino:s2``); TensorRT engines (FP32, FP16) where a CUDA device is visible. ONNX Runtime with its defaults (``InferenceSession(path)``)
   is always a candidate and the baseline row.
2. **Accuracy, once per (runtime, variant)** (numerics do not depend on the thread
   count): run on the model's real test split when its metadata records the data
   (else on generated inputs), compared with the FP32 ONNX Runtime reference: tensor
   errors, argmax agreement, error versus timestep, and the recipe's task metric. An
   FP32 candidate passes within the model's FP32 tolerances; a reduced-precision one
   passes within ``max_accuracy_drop`` percent of the reference's task metric when
   that budget is given, else only within the model's reduced-precision (fp16)
   tolerances.
3. **Latency**: at each (batch, seq), every passing candidate side by side (the
   bench timing loop) in ``ROUNDS`` turns, the order rotated each turn and each block
   after a ``SETTLE_S`` pause (the previous runner's spinning worker threads would
   otherwise slow the next one down); the fastest median is chosen. ONNX Runtime's
   defaults are timed in the same turns, so "faster than the defaults" is a comparison
   made under the same conditions. Once ``budget`` seconds have passed since the start,
   no further accuracy check or measurement starts (each is listed as skipped).
4. **Floor**: rnndeploy.bench.floor's estimate per shape, reported as % of floor.
5. **Deploy**: with ``out_dir``, the chosen artefacts are copied there with
   ``deploy.json``: per shape, the file (sha256), backend label and runner settings.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.artefacts.naming import ENGINE_SUFFIXES, is_engine_path
from rnndeploy.backends import SPLIT_BATCH_BACKENDS, ModelSource, RunnerOptions, create_runner, runner_class
from rnndeploy.backends.base import Runner
from rnndeploy.bench.measurement import Measurement, merge_rounds
from rnndeploy.bench.timing import SETTLE_S, measure
from rnndeploy.errors import DataError, DeviceError, RnnDeployError, UsageError, first_line
from rnndeploy.inputs import generate_inputs, sizes_for
from rnndeploy.progress import progress
from rnndeploy.tune.deployment import DEPLOY_JSON
from rnndeploy.tune.deployment import FORMAT as DEPLOY_FORMAT
from rnndeploy.tune.results import BUDGET_SPENT, NOT_RUN, AccuracyCheck, Candidate, Choice, TuneResult, floor_seconds

BASELINE = "ort-cpu default"
FP32 = "fp32"
CPU_RUNTIMES = ("ort-cpu", "openvino")  # backends that run an ONNX file on the CPU
CPU_VARIANTS = (FP32, "int8", "int8-keep-recurrence", "int8-keep-head", "bf16")
GPU_RUNTIMES = ("trt",)  # tried when TensorRT is installed and a CUDA device is visible
# TensorRT builds one engine per precision; timings include the host<->device copies, so a GPU
# candidate is compared with the CPU ones on the same terms: numpy in, numpy out.
ENGINE_VARIANTS = {FP32: "trt:copies", "fp16": "trt:fp16:copies"}
# How a runtime label runs a precision that is a runtime setting rather than a file.
RUNTIME_PRECISIONS = {("openvino", "bf16"): "openvino:bf16"}
MAX_PROFILE_POINTS = 64  # error-vs-timestep points kept per output (evenly spaced)
# Every candidate is timed in this many turns per shape, the order rotated each turn, so that a
# drift of the machine (load, clocks) during one shape falls on all candidates alike.
ROUNDS = 3
MIN_SAMPLES = 6  # per candidate and shape, over all turns
MAX_SAMPLES = 198  # idem: enough for a stable median, small enough to keep the results file small

RunnerFactory = Callable[[str, ModelSource, RunnerOptions], Runner]
NOT_LOADED = object()  # check_accuracy's data argument when the caller did not load it
GENERATED_BATCH, GENERATED_SEQ = 8, 128  # the largest generated input of an accuracy check without data


@dataclass(frozen=True)
class TuneConfig:
    """What to try and how.

    Attributes:
        batches, seqs: the grid (every combination is a shape).
        runtimes: runtimes to try (default: ``cpu_runtimes()`` + ``gpu_runtimes()``: those installed,
            and TensorRT where a CUDA device is visible).
        variants: precision variants: "fp32", INT8 policies ("int8", "int8-keep-recurrence",
            "int8-keep-head"), "bf16" (OpenVINO), "fp16" (TensorRT); default (None): ``CPU_VARIANTS``,
            and "fp16" too where a TensorRT runtime is tried.
        threads: intra-op thread counts to try (default 1 and every core of the affinity mask).
        max_accuracy_drop: allowed worsening of the task metric in percent of the FP32
            reference's value (None: reduced precision must meet the model's tolerances).
        split / rows: the data split the accuracy check runs on, and rows of it at most.
        budget: seconds for the whole run; accuracy checks and measurements that would start
            later are skipped (and listed). Making the variants and the FP32 reference always run.
        min_time / warmup: timing per candidate and shape (seconds of calls; untimed calls).
        out_dir: where chosen artefacts and deploy.json go (None: nothing written).
        decoder: a seq2seq model's decoder-step ONNX (FP32; it gets the same INT8 variants as the
            encoder, and each variant's task metric decodes with its own decoder step).
    """

    batches: Tuple[int, ...] = (1, 32)
    seqs: Tuple[int, ...] = (16, 128)
    runtimes: Optional[Tuple[str, ...]] = None
    variants: Optional[Tuple[str, ...]] = None
    threads: Optional[Tuple[int, ...]] = None
    max_accuracy_drop: Optional[float] = None
    split: str = "test"
    rows: Optional[int] = 512
    budget: Optional[float] = None
    min_time: float = 0.3
    warmup: int = 5
    seed: int = 0
    out_dir: Optional[str] = None
    decoder: Optional[str] = None
    show_progress: Optional[bool] = None


def cpu_runtimes() -> List[str]:
    """CPU runtimes that run ONNX files and are installed here (TensorRT is a GPU matter)."""
    from rnndeploy.backends import BACKENDS
    from rnndeploy.optional import available

    return [n for n in CPU_RUNTIMES if n in BACKENDS and available(BACKENDS[n].module)]


def gpu_runtimes() -> List[str]:
    """``GPU_RUNTIMES`` when TensorRT is installed and a CUDA device is visible, else none."""
    from rnndeploy.backends import BACKENDS
    from rnndeploy.optional import available

    if not available(BACKENDS["trt"].module):
        return []
    try:
        from rnndeploy import cuda

        return list(GPU_RUNTIMES) if cuda.runtime().device_count() > 0 else []
    except Exception:  # no libcudart, no driver: no GPU here
        return []


def default_threads() -> Tuple[int, ...]:
    from rnndeploy.environment import usable_cores

    n = usable_cores()
    return tuple(sorted({1, n}))


# -- 1. candidates ------------------------------------------------------------------------------------
def make_variants(onnx_path: str, variants: Sequence[str], workdir: str) -> Tuple[Dict[str, str], List[str]]:
    """{variant: ONNX path} for the file-based variants (FP32 itself, INT8 policies), and warnings."""
    from rnndeploy.quantize import INT8_POLICIES, quantize_int8

    files: Dict[str, str] = {}
    warnings: List[str] = []
    for v in variants:
        if v == FP32:
            files[v] = onnx_path
        elif v in INT8_POLICIES:
            dst = os.path.join(workdir, f"{Path(onnx_path).stem}.{v}.onnx")
            try:
                report = quantize_int8(onnx_path, dst, v)
            except UsageError as exc:  # e.g. a GRU model under int8-keep-head: nothing left to quantize
                warnings.append(f"variant {v} not made: {exc.message}")
                continue
            files[v] = dst
            for k in report.kept:
                if k.op in ("GRU", "RNN"):
                    warnings.append(f"{v}: {k.name} stays FP32: {k.reason}")
    return files, list(dict.fromkeys(warnings))


def make_engines(onnx_path: str, variants: Sequence[str], workdir: str, batch_max: int, seq_max: int,
                 build: Optional[Callable[..., Any]] = None) -> Tuple[Dict[str, str], List[str]]:
    """{variant: engine path} for the TensorRT precisions among ``variants`` (``ENGINE_VARIANTS``),
    each built by ``rnndeploy build-engine``'s library call with one profile, batch 1..``batch_max``
    and seq 1..``seq_max`` (the grid and the accuracy check's data), and the warnings of builds
    TensorRT refused (a finding: the other candidates still run)."""
    from rnndeploy.engine.builder import BuildOptions, ShapeOptions, build_engine

    build = build or build_engine
    engines: Dict[str, str] = {}
    warnings: List[str] = []
    for v in ENGINE_VARIANTS:
        if v not in variants:
            continue
        dst = os.path.join(workdir, f"{Path(onnx_path).stem}.{v}{ENGINE_SUFFIXES[0]}")
        shapes = ShapeOptions(batch=f"1:{batch_max}:{batch_max}", seq=f"1:{seq_max}:{seq_max}")
        try:
            build(onnx_path, dst, BuildOptions(fp16=v != FP32, shapes=shapes, progress=False))
        except RnnDeployError as exc:
            warnings.append(f"trt {v}: no engine: {exc.message}")
            continue
        engines[v] = dst
    return engines, warnings


def make_candidates(files: Mapping[str, str], variants: Sequence[str], runtimes: Sequence[str],
                    threads: Sequence[int], decoders: Optional[Mapping[str, str]] = None,
                    engines: Optional[Mapping[str, str]] = None) -> Tuple[List[Candidate], List[str]]:
    """The baseline plus every runtime × variant × thread count that can exist, and why others cannot.
    ``decoders``: a seq2seq model's decoder-step file per variant (a variant without one uses FP32's).
    ``engines``: TensorRT engines per variant (``make_engines``): one candidate each, no thread count."""
    decoders = decoders or {}
    cands = [Candidate(BASELINE, "ort-cpu", FP32, files[FP32], None, decoders.get(FP32))]
    notes: List[str] = []
    for v, engine in (engines or {}).items():
        cands.append(Candidate(ENGINE_VARIANTS[v], ENGINE_VARIANTS[v], v, engine))
    for rt in (r for r in runtimes if r not in GPU_RUNTIMES):
        for v in variants:
            if (rt, v) in RUNTIME_PRECISIONS:
                backend, artefact = RUNTIME_PRECISIONS[(rt, v)], files[FP32]
            elif v in files:
                backend, artefact = rt, files[v]
            else:
                continue
            if rt != "ort-cpu" and v not in (FP32,) and (rt, v) not in RUNTIME_PRECISIONS:
                continue  # ONNX Runtime's INT8 contrib ops run on ONNX Runtime only
            suffix = "" if v == FP32 or (rt, v) in RUNTIME_PRECISIONS else f" {v}"
            for t in threads:
                cands.append(Candidate(f"{backend}:t{t}{suffix}", f"{backend}:t{t}", v, artefact, int(t),
                                       decoders.get(v, decoders.get(FP32))))
            if rt in SPLIT_BATCH_BACKENDS and max(threads, default=1) > 1:  # the batch over every core's stream
                n = max(threads)
                cands.append(Candidate(f"{backend}:s{n}{suffix}", f"{backend}:s{n}", v, artefact, int(n),
                                       decoders.get(v, decoders.get(FP32))))
    wanted_bf16 = "bf16" in variants
    if wanted_bf16 and "openvino" not in runtimes:
        notes.append("bf16 needs the openvino runtime, which is not installed (pip install openvino)")
    return cands, notes


# -- 2. accuracy -------------------------------------------------------------------------------------------
def _source_for(source: ModelSource, artefact: str) -> ModelSource:
    """The source a candidate's runner gets: its ONNX file, or its engine beside the FP32 ONNX."""
    if is_engine_path(artefact):
        return replace(source, engine=artefact)
    return replace(source, onnx=artefact, engine=None)


def accuracy_data(source: ModelSource, config: TuneConfig) -> Tuple[Any, List[str]]:
    """The task data the accuracy checks run on (None: generated inputs instead), and why not."""
    from rnndeploy.parity.task_eval import load_task_data

    try:
        data = load_task_data(source, config.split, config.rows)
    except DataError as exc:
        return None, [f"no task metric: {exc.message}; accuracy judged on generated inputs by tolerances"]
    if data.task == "seq2seq" and _decoder_source(source, config) is None:
        return None, ["no task metric: a seq2seq encoder needs its decoder step (--decoder FILE)"]
    return data, []


def accuracy_shapes(source: ModelSource, config: TuneConfig, data: Any) -> Tuple[int, int]:
    """(batch, seq) at most that an accuracy check feeds a runner: the task data in calls of
    ``run_task``'s rows, else the generated inputs (see ``check_accuracy``)."""
    from rnndeploy.parity.task_eval import DEFAULT_BATCH

    if data is None:
        return max(1, min(config.batches[-1], GENERATED_BATCH)), min(max(config.seqs), GENERATED_SEQ)
    seqs = [data.feeds[t.name].shape[t.dims.index("seq")] for t in source.graph_spec.inputs if "seq" in t.dims]
    return min(data.rows, DEFAULT_BATCH), max(seqs, default=1)


def check_accuracy(source: ModelSource, candidates: Sequence[Candidate], config: TuneConfig,
                   runner_factory: RunnerFactory = create_runner,
                   spent: Callable[[], bool] = lambda: False,
                   data: Any = NOT_LOADED) -> Tuple[List[AccuracyCheck], List[str]]:
    """One AccuracyCheck per (runtime, variant) against FP32 ONNX Runtime (see module docstring).
    Once ``spent()`` (the --budget) is true, the remaining checks are skipped, not run; the
    reference always runs. ``data``: what ``accuracy_data`` gave (loaded here when not given)."""
    from rnndeploy.parity.task_eval import metric_change, run_task, score_task

    warnings: List[str] = []
    graph = source.graph_spec
    if data is NOT_LOADED:
        data, warnings = accuracy_data(source, config)
    decoder_src = _decoder_source(source, config)

    def outputs_of(backend: str, artefact: str, decoder: Optional[str]) -> Dict[str, np.ndarray]:
        with runner_factory(backend, _source_for(source, artefact), RunnerOptions()) as r:
            if data is None:
                sizes = sizes_for(graph, *accuracy_shapes(source, config, None))
                return r.infer(generate_inputs(graph, sizes, config.seed, _pad_id(source)))
            if decoder_src is not None:  # the decoder step runs on the same runtime, in the same variant
                dec_src = _source_for(decoder_src, decoder or str(decoder_src.onnx))
                with runner_factory(backend, dec_src, RunnerOptions()) as dec:
                    return run_task(r, data, decoder=dec)
            return run_task(r, data)

    fp32 = next(c for c in candidates if c.variant == FP32)
    reference = outputs_of("ort-cpu", fp32.artefact, fp32.decoder)
    ref_scores = score_task(data, reference, graph) if data is not None else None
    inputs = data.render() if data is not None else "generated inputs (no data recorded in the model)"
    checks: List[AccuracyCheck] = []
    unique = list({c.key: c for c in reversed(candidates)}.values())[::-1]  # first candidate per (runtime, variant)
    for c in progress(unique, "accuracy", enabled=config.show_progress):
        runtime, variant = c.key
        if not (runtime == "ort-cpu" and variant == FP32) and spent():
            checks.append(AccuracyCheck(runtime, variant, inputs, {}, False, f"{BUDGET_SPENT} {config.budget:g} s was spent"))
            continue
        try:
            outs = reference if (runtime == "ort-cpu" and variant == FP32) else outputs_of(runtime, c.artefact,
                                                                                             c.decoder)
        except DeviceError as exc:  # the runner refuses this machine (openvino:bf16 without native bf16)
            checks.append(AccuracyCheck(runtime, variant, inputs, {}, False, f"{NOT_RUN}: {exc.message}"))
            warnings.append(f"{runtime} {variant} skipped: {exc.message}")
            continue
        except RnnDeployError:
            raise
        except Exception as exc:  # a runtime that cannot run this variant is a finding, not a crash
            checks.append(AccuracyCheck(runtime, variant, inputs, {}, False,
                                        f"raised {type(exc).__name__}: {first_line(exc, 300)}"))
            continue
        per_output, within = _compare(graph, outs, reference, variant)
        scores = score_task(data, outs, graph) if data is not None else None
        metric = data.metric if data is not None else None
        value = ref_value = change = None
        if scores is not None and ref_scores is not None and metric in scores:
            value, ref_value = float(scores[metric]), float(ref_scores[metric])
            change = metric_change(ref_value, value, data.higher_is_better)  # type: ignore[union-attr]
        passed, reason = _verdict(variant, within, change, config.max_accuracy_drop)
        checks.append(AccuracyCheck(runtime, variant, inputs, per_output, passed, reason, metric, value, ref_value,
                                    change, config.max_accuracy_drop if variant != FP32 else None,
                                    {k: float(v) for k, v in (scores or {}).items()}))
    return checks, warnings


def _verdict(variant: str, within: bool, change: Optional[float], budget: Optional[float]) -> Tuple[bool, str]:
    if variant == FP32:
        return (True, "within the model's FP32 tolerances") if within else (
            False, "outside the model's FP32 tolerances")
    if budget is not None and change is not None:
        if change <= budget:
            return True, f"task metric {change:+.3g}% vs FP32, within the {budget:g}% budget"
        return False, f"task metric {change:+.3g}% vs FP32, beyond the {budget:g}% budget"
    if within:
        return True, "within the model's reduced-precision (fp16) tolerances"
    hint = "" if budget is not None else "; give --max-accuracy-drop PCT to judge it by the task metric"
    return False, f"outside the model's reduced-precision (fp16) tolerances{hint}"


def _compare(graph: Any, outs: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
             variant: str) -> Tuple[Dict[str, Dict[str, Any]], bool]:
    from rnndeploy.metrics import compare_output
    from rnndeploy.parity.tolerances import ToleranceOverrides, resolve_tolerance

    per: Dict[str, Dict[str, Any]] = {}
    ok = True
    for t in graph.outputs:
        tol = resolve_tolerance(graph, t.name, variant if variant in (FP32, "bf16", "fp16") else "int8", ToleranceOverrides())
        time_axis = t.time_axis if t.time_axis is not None else (t.dims.index("seq") if "seq" in t.dims else None)
        comp = compare_output(t.name, outs[t.name], ref[t.name], tol, backend=variant, reference="fp32",
                              time_axis=time_axis, role=t.role)
        s = comp.stats
        prof = comp.time_profile
        curve = None
        if prof is not None:
            idx = np.unique(np.linspace(0, len(prof.rel_l2) - 1, min(MAX_PROFILE_POINTS, len(prof.rel_l2))).astype(int))
            curve = {"timesteps": [int(i) for i in idx], "rel_l2": [float(f"{prof.rel_l2[i]:.4g}") for i in idx]}
        per[t.name] = {"max_abs": s.max_abs if s else None, "rel_l2": s.rel_l2 if s else None,
                       "tolerance": {"atol": tol.atol, "rtol": tol.rtol}, "within": bool(comp.passed),
                       "argmax_agreement": comp.argmax_agreement, "error_vs_timestep": curve}
        ok = ok and comp.passed
    return per, ok


# -- 3. latency and the choice -----------------------------------------------------------------------------
def run_tune(source: ModelSource, config: TuneConfig, command: str = "",
             runner_factory: RunnerFactory = create_runner,
             clock: Callable[[], float] = time.monotonic) -> TuneResult:
    """Try every candidate, choose per shape; see the module docstring.

    Raises:
        UsageError: a model that is not an ONNX file, an empty grid or unknown variant.
    """
    from rnndeploy.backends.source import model_hashes
    from rnndeploy.bench.floor import probe_cpu
    from rnndeploy.environment import describe_machine

    start = clock()
    if not source.onnx:
        raise UsageError("tune needs an ONNX model", "export one first: rnndeploy export CHECKPOINT -o model.onnx")
    _check_config(config)
    if config.out_dir:
        check_out_dir(config.out_dir)
    _decoder_source(source, config)  # a --decoder that cannot be read stops here, before any work
    runtimes = list(config.runtimes) if config.runtimes is not None else cpu_runtimes() + gpu_runtimes()
    if "ort-cpu" not in runtimes:
        runtimes.insert(0, "ort-cpu")  # the baseline and the reference run on it
    for name in runtimes:
        runner_class(name)  # a runtime that is not installed stops here (exit 3, naming the extra)
    asked_gpu = [r for r in runtimes if r in GPU_RUNTIMES]
    if asked_gpu and not gpu_runtimes():
        raise DeviceError(f"--runtime {', '.join(asked_gpu)}: no CUDA device is visible to this process",
                          "run tune on a GPU machine, or leave --runtime out to try the CPU runtimes")
    threads = config.threads or default_threads()
    warnings: List[str] = []
    skipped: List[str] = []
    on_gpu = any(r in GPU_RUNTIMES for r in runtimes)
    variants = list(config.variants or CPU_VARIANTS + (("fp16",) if on_gpu else ()))
    for v in variants:
        if v in ENGINE_VARIANTS and v != FP32 and not on_gpu:
            warnings.append(f"variant {v}: a TensorRT precision, and no TensorRT runtime is tried here: no candidate")
    work = tempfile.mkdtemp(prefix="rnndeploy-tune-")
    try:
        files, notes = make_variants(source.onnx, variants, work)
        warnings += notes
        decoder = _decoder_path(source, config)
        decoders: Dict[str, str] = {}
        if decoder:  # seq2seq: the decoder step gets the same variants, scored with its encoder
            decoders, notes = make_variants(decoder, variants, work)
            warnings += [f"decoder step: {n}" for n in notes]
        data, notes = accuracy_data(source, config)
        warnings += notes
        engines: Dict[str, str] = {}
        if on_gpu:
            if decoder:
                warnings.append("trt: not tried for a seq2seq model (its decoder step would need an engine too)")
            else:
                b_max, s_max = accuracy_shapes(source, config, data)
                engines, notes = make_engines(source.onnx, variants, work, max(b_max, *config.batches),
                                              max(s_max, *config.seqs))
                warnings += notes
        candidates, notes = make_candidates(files, variants, runtimes, threads, decoders, engines)
        warnings += notes
        checks, notes = check_accuracy(source, candidates, config, runner_factory,
                                       lambda: config.budget is not None and clock() - start > config.budget, data)
        warnings += notes
        passed = {(a.runtime, a.variant) for a in checks if a.passed}
        not_run = {(a.runtime, a.variant): a.reason for a in checks if not a.ran}
        timed = [c for c in candidates if c.key in passed or c.label == BASELINE]
        for c in candidates:
            if c not in timed:
                skipped.append(f"{c.label}: {not_run.get(c.key, 'failed the accuracy check')}")
        measurements, skip_t = _measure_all(source, timed, config, runner_factory, clock, start)
        skipped += skip_t
        cpu = probe_cpu()
        floors = floor_table(source.onnx, files, variants, config, cpu)
        choices = choose(measurements, config.batches, config.seqs, floors,
                         {c.label: None if c.on_gpu else c.variant for c in candidates})
        deploy = write_deploy(config.out_dir, source, candidates, choices, measurements) if config.out_dir else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TuneResult(
        model={"name": source.spec.name, "family": source.spec.family, "graph": source.graph, "onnx": source.onnx,
               **model_hashes(source)},
        baseline=BASELINE, candidates=tuple(candidates), accuracy=tuple(checks), measurements=tuple(measurements),
        floors=floors, cpu=cpu.to_dict(), choices=tuple(choices), skipped=tuple(skipped), deploy=deploy,
        settings={"batches": list(config.batches), "seqs": list(config.seqs), "threads": list(threads),
                  "runtimes": runtimes, "variants": variants, "max_accuracy_drop": config.max_accuracy_drop,
                  "split": config.split, "rows": config.rows, "budget": config.budget, "min_time": config.min_time,
                  "warmup": config.warmup, "seconds": round(clock() - start, 3)},
        warnings=tuple(warnings), machine=describe_machine(), command=command,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _measure_all(source: ModelSource, timed: Sequence[Candidate], config: TuneConfig, runner_factory: RunnerFactory,
                 clock: Callable[[], float], start: float) -> Tuple[List[Measurement], List[str]]:
    """Every candidate at every shape: ``ROUNDS`` turns per shape, each a block of ``min_time / ROUNDS``
    seconds after a ``SETTLE_S`` pause, the order rotated each turn; one Measurement per
    (candidate, shape) with the samples of all its turns."""
    graph = source.graph_spec
    runners: Dict[str, Runner] = {}
    skipped: List[str] = []
    parts: Dict[Tuple[str, int, int], List[Measurement]] = {}
    failed: Dict[Tuple[str, int, int], str] = {}
    shapes = [(b, s) for s in config.seqs for b in config.batches]
    try:
        for c in timed:
            try:
                r = runner_factory(c.backend if c.label != BASELINE else "ort-cpu", _source_for(source, c.artefact),
                                   RunnerOptions())
                r.label = c.label  # measurements are labelled by candidate
                runners[c.label] = r.activate()
            except RnnDeployError:
                raise
            except Exception as exc:
                skipped.append(f"{c.label}: could not start: {type(exc).__name__}: {first_line(exc, 200)}")
        labels = list(runners)
        per_round = max(2, -(-MIN_SAMPLES // ROUNDS))
        work = [(b, s, turn) for b, s in shapes for turn in range(ROUNDS)] if labels else []
        feed: Dict[str, np.ndarray] = {}
        for b, s, turn in progress(work, f"tune {source.spec.name}", enabled=config.show_progress):
            if turn == 0:  # a shape's turns follow each other: its inputs are made once
                feed = generate_inputs(graph, sizes_for(graph, b, s), config.seed, _pad_id(source))
            k = turn % len(labels)
            for label in labels[k:] + labels[:k]:
                key = (label, b, s)
                if key in failed:
                    continue
                if config.budget is not None and clock() - start > config.budget:
                    if key not in parts:  # what got a turn before the budget ran out is kept
                        failed[key] = f"{BUDGET_SPENT} {config.budget:g} s was spent"
                    continue
                time.sleep(SETTLE_S)
                try:
                    parts.setdefault(key, []).append(measure(
                        runners[label], feed, warmup=config.warmup, min_time=config.min_time / ROUNDS,
                        min_samples=per_round, max_samples=MAX_SAMPLES // ROUNDS,
                        metadata={"model": source.spec.name}))
                except RnnDeployError:
                    raise
                except Exception as exc:
                    parts.pop(key, None)
                    failed[key] = f"raised {type(exc).__name__}: {first_line(exc, 200)}"
    finally:
        for r in runners.values():
            r.deactivate()
    measurements = [merge_rounds(parts[(label, b, s)]) for b, s in shapes for label in runners if (label, b, s) in parts]
    skipped += [f"{label} @ b{b}-s{s}: {why}" for (label, b, s), why in failed.items()]
    return measurements, skipped


def floor_table(fp32: str, files: Mapping[str, str], variants: Sequence[str], config: TuneConfig,
                cpu: Any) -> Dict[str, Dict[str, Any]]:
    """Per shape ("b32-s128"): the FP32 floor (``Floor.to_dict()``) and ``by_variant``, {variant:
    seconds}: an INT8 variant's floor from its own file (INT8 weights where the quantizer put
    them), a runtime precision's (bf16) from the FP32 file computed at that precision."""
    from rnndeploy.artefacts.onnx_file import load_onnx
    from rnndeploy.bench.floor import model_shape

    shapes = {v: model_shape(load_onnx(path)) for v, path in {**files, FP32: fp32}.items()}
    at_runtime = [v for (_, v) in RUNTIME_PRECISIONS if v in variants]
    out: Dict[str, Dict[str, Any]] = {}
    for s in config.seqs:
        for b in config.batches:
            row = shapes[FP32].floor(b, s, cpu).to_dict()
            by = {v: shape.floor(b, s, cpu).seconds for v, shape in shapes.items()}
            by.update({v: shapes[FP32].floor(b, s, cpu, compute=v).seconds for v in at_runtime})
            row["by_variant"] = by
            out[f"b{b}-s{s}"] = row
    return out


def choose(measurements: Sequence[Measurement], batches: Sequence[int], seqs: Sequence[int],
           floors: Mapping[str, Mapping[str, Any]], variants: Optional[Mapping[str, Optional[str]]] = None
           ) -> List[Choice]:
    """The fastest measured candidate per shape (only passing candidates are measured), with the
    floor of its variant (``variants``: candidate label → variant, None for a GPU candidate, which
    has no CPU floor; FP32's floor for a label not in it)."""
    out = []
    for s in seqs:
        for b in batches:
            here = [m for m in measurements if m.batch == b and m.seq == s]
            best = min(here, key=lambda m: m.median) if here else None
            base = next((m for m in here if m.backend == BASELINE), None)
            variant = (variants or {}).get(best.backend, FP32) if best else FP32
            out.append(Choice(b, s, best.backend if best else None, best.median if best else None,
                              base.median if base else None,
                              floor_seconds(floors, b, s, variant) if variant is not None else None))
    return out


# -- 5. deploy -----------------------------------------------------------------------------------------
def write_deploy(out_dir: str, source: ModelSource, candidates: Sequence[Candidate], choices: Sequence[Choice],
                 measurements: Sequence[Measurement]) -> Dict[str, Any]:
    """Write the chosen artefacts (``artefacts/``) and ``deploy.json`` into ``out_dir``, all or nothing:
    the directory is built under a temporary name and renamed into place (replacing an earlier
    tune output there; ``check_out_dir`` refuses anything else). Returns what was written."""
    from rnndeploy.artefacts.naming import sidecar_path
    from rnndeploy.fileio import atomic_dir, sha256_file, write_json_atomic

    by_label = {c.label: c for c in candidates}
    chosen = [by_label[c.label] for c in choices if c.label in by_label]
    out = Path(out_dir)
    names: Dict[str, str] = {}
    for c in chosen:
        for path in (c.artefact, c.decoder):
            if path and path not in names:
                # the source's own name, or the variant's file name (both name the graph: .encoder / .decoder_step)
                names[path] = Path(path).name
    with atomic_dir(out) as tmp:
        (tmp / "artefacts").mkdir()
        for src, name in names.items():
            shutil.copyfile(src, tmp / "artefacts" / name)
            if is_engine_path(src):  # an engine travels with its sidecar (profiles, GPU, sha256)
                shutil.copyfile(sidecar_path(src), sidecar_path(str(tmp / "artefacts" / name)))
        entries = []
        for ch in choices:
            c = by_label.get(ch.label or "")
            if c is None:
                continue
            rel = Path("artefacts") / names[c.artefact]
            m = next((x for x in measurements if x.backend == c.label and x.batch == ch.batch and x.seq == ch.seq),
                     None)
            dec = {}
            if c.decoder:
                dec_rel = Path("artefacts") / names[c.decoder]
                dec = {"decoder_artefact": dec_rel.as_posix(), "decoder_sha256": sha256_file(tmp / dec_rel)}
            entries.append({
                "batch": ch.batch, "seq": ch.seq, "candidate": c.label, "variant": c.variant,
                "artefact": rel.as_posix(), "sha256": sha256_file(tmp / rel), **dec,
                "runner": {"backend": c.backend if c.label != BASELINE else "ort-cpu", "threads": c.threads,
                           "description": dict(m.description) if m else {}},
                "median_s": ch.median, "ort_default_median_s": ch.baseline_median,
            })
        doc = {"format": DEPLOY_FORMAT, "model": source.spec.name, "source_onnx": source.onnx,
               "source_sha256": sha256_file(source.onnx) if source.onnx else None, "choices": entries,
               "how": "run each shape with the named backend label and artefact, e.g. "
                      "rnndeploy bench ARTEFACT --backend LABEL; ONNX Runtime: intra_op_num_threads = threads; "
                      "OpenVINO :sN: the batch cut into N parts run at once on N streams (THROUGHPUT hint, "
                      "NUM_STREAMS = N, one infer request per part); TensorRT: the engine with its sidecar"}
        write_json_atomic(tmp / DEPLOY_JSON, doc)
    return {"dir": str(out), "deploy_json": str(out / DEPLOY_JSON), "artefacts": sorted(names.values())}


def check_out_dir(out_dir: str) -> None:
    """Refuse, before any work, an ``--out`` that tune could not replace safely: its parent must
    exist, and it must be absent, empty, or an earlier tune output (holding deploy.json).

    Raises:
        UsageError: one line naming the path and what would work.
    """
    from rnndeploy.fileio import check_output_path

    p = check_output_path(out_dir, "--out", "dir")
    if p.is_dir() and any(p.iterdir()) and not (p / DEPLOY_JSON).is_file():
        raise UsageError(f"--out {p} holds other files (no {DEPLOY_JSON} of an earlier tune)",
                         "give a new or empty directory; tune replaces the whole directory")


# -- helpers ---------------------------------------------------------------------------------------------
def _check_config(config: TuneConfig) -> None:
    from rnndeploy.quantize import INT8_POLICIES

    unknown = [r for r in (config.runtimes or ()) if r not in CPU_RUNTIMES + GPU_RUNTIMES]
    if unknown:
        raise UsageError(f"--runtime {', '.join(unknown)}: tune tries ONNX files on the CPU and TensorRT engines",
                         f"use any of {', '.join(CPU_RUNTIMES + GPU_RUNTIMES)}")
    if not config.batches or not config.seqs:
        raise UsageError("tune needs at least one batch size and one sequence length", "e.g. --batch 1,32 --seq 128")
    known = (FP32, "bf16") + INT8_POLICIES + tuple(v for v in ENGINE_VARIANTS if v != FP32)
    bad = [v for v in config.variants or () if v not in known]
    if bad or (config.variants is not None and FP32 not in config.variants):
        raise UsageError(f"variants {', '.join(bad) or '(none)'}: unknown, or fp32 missing",
                         f"use fp32 plus any of {', '.join(known[1:])}")
    if config.max_accuracy_drop is not None and config.max_accuracy_drop < 0:
        raise UsageError(f"--max-accuracy-drop {config.max_accuracy_drop:g} is negative", "give a percentage ≥ 0")
    if config.budget is not None and config.budget <= 0:
        raise UsageError(f"--budget {config.budget:g} is not a positive number of seconds")
    if config.min_time <= 0:
        raise UsageError("--min-time must be positive")


def _pad_id(source: ModelSource) -> Optional[int]:
    pad = source.spec.attrs.get("pad_id")
    return pad if isinstance(pad, int) else None


def _decoder_source(source: ModelSource, config: TuneConfig) -> Optional[ModelSource]:
    """A seq2seq encoder's decoder step: --decoder, else the decoder_step file its export wrote
    beside it (rnndeploy.parity.harness.find_decoder); None for other models.

    Raises:
        UsageError: the decoder step is not an ONNX file (tune makes ONNX variants of it).
    """
    from rnndeploy.parity.harness import find_decoder

    found = find_decoder(source, config.decoder)
    if found is not None and not found.onnx:
        raise UsageError(f"--decoder {config.decoder} is not an ONNX file", "tune needs the decoder step as ONNX")
    return found


def _decoder_path(source: ModelSource, config: TuneConfig) -> Optional[str]:
    found = _decoder_source(source, config)
    return found.onnx if found is not None else None
