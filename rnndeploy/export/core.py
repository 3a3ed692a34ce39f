"""Export orchestration: exporter choice and fallback, I/O dim checks, metadata,
validation, optional simplification, atomic writes, and the one-screen summary.

One ``GraphJob`` per ONNX file (a seq2seq model has two: encoder, decoder_step).
Nothing is written until every graph of the model exported and validated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy import __version__
from rnndeploy.artefacts.naming import graph_paths
from rnndeploy.errors import ExportError, UsageError
from rnndeploy.export import exporters as ex
from rnndeploy.export.inputs import example_sizes, long_seq_for, validation_sizes
from rnndeploy.export.validate import ValidationFailed, ValidationReport, check_onnx, validate_ort
from rnndeploy.fileio import check_parent_dir, write_files_atomic
from rnndeploy.inputs import generate_inputs
from rnndeploy.memory import check_graph_fits
from rnndeploy.onnx_info import OnnxInfo, describe_onnx
from rnndeploy.spec import GraphSpec, ModelSpec, write_onnx_metadata
from rnndeploy.validation import TORCH_EXPORT_OPSETS

FeedFn = Callable[[Dict[str, int], int], Dict[str, np.ndarray]]


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        exporter: "auto" (= TorchScript first, dynamo as fallback), "torchscript" or
            "dynamo".
        fallback: try the other exporter when the first fails or does not validate.
            None (default): only for "auto" — an exporter named explicitly is used alone.
        opset: default-domain ONNX opset (default 17: TensorRT 8.6 parses <= 17).
        with_state: streaming form (initial states in, final states out).
        simplify: run onnxslim; the result is kept only if it validates too.
        validate: checker + ORT-vs-torch runs (on unless explicitly turned off).
        longest_train_seq: the longest sequence seen in training; validation runs one
            at least twice as long (default when unknown: 128, so 256).
        example: sizes of the traced example per dynamic dim (default batch 2, seq 7).
        seed: seed of generated inputs.
    """

    exporter: str = "auto"
    fallback: Optional[bool] = None
    opset: int = ex.DEFAULT_OPSET
    with_state: bool = False
    simplify: bool = False
    validate: bool = True
    longest_train_seq: Optional[int] = None
    example: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.exporter not in ex.EXPORTER_CHOICES:
            raise UsageError(f"exporter {self.exporter!r} is unknown", f"use one of {', '.join(ex.EXPORTER_CHOICES)}")
        lo, hi = TORCH_EXPORT_OPSETS
        if not lo <= int(self.opset) <= hi:
            raise UsageError(
                f"--opset {self.opset} is outside what torch exports ({lo}..{hi})", "use 17 (TensorRT 8.6) or 18+"
            )

    @property
    def candidates(self) -> List[str]:
        """Exporters to try, in order."""
        first = "torchscript" if self.exporter == "auto" else self.exporter
        fallback = self.exporter == "auto" if self.fallback is None else self.fallback
        return [first] + ([e for e in ex.EXPORTERS if e != first] if fallback else [])


@dataclass
class GraphJob:
    """One graph to export.

    Attributes:
        spec: the model's full spec; ``graph`` names the graph in it.
        module: forward takes the graph's inputs positionally (spec order) and returns
            its outputs (spec order, nested tuples flattened).
        feeds: (sizes, seed) -> inputs keyed by name; default: generated from the spec.
        source: JSON-able description to rebuild ``module`` in a fresh process (dynamo).
        info: extra export facts for the metadata (checkpoint sha256, normalisation, ...).
    """

    spec: ModelSpec
    graph: str
    module: Any
    with_state: bool = False
    feeds: Optional[FeedFn] = None
    source: Optional[Dict[str, Any]] = None
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def graph_spec(self) -> GraphSpec:
        return self.spec.graph(self.graph).streaming(self.with_state)

    @property
    def file_spec(self) -> ModelSpec:
        """The spec written into the file: every graph with state tensors kept only when
        streaming, so the file's graph matches ``spec.graph(name)`` exactly."""
        return replace(self.spec, graphs={k: g.streaming(self.with_state) for k, g in self.spec.graphs.items()})

    def make_feeds(self, sizes: Dict[str, int], seed: int) -> Dict[str, np.ndarray]:
        if self.feeds is not None:
            return self.feeds(sizes, seed)
        return generate_inputs(self.graph_spec, sizes, seed)


@dataclass(frozen=True)
class Attempt:
    """One exporter tried on one graph."""

    exporter: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {"exporter": self.exporter, "ok": self.ok, "reason": self.reason, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class GraphExport:
    """The outcome for one ONNX file.

    Attributes:
        simplified: None (not asked), True (onnxslim result kept), False (dropped; see notes).
        seconds_export / seconds_validate: wall time (s) of the successful export and of
            its validation (simplification's validation included).
    """

    graph: str
    path: str
    exporter: str
    opset: int
    with_state: bool
    recurrence: str
    attempts: Tuple[Attempt, ...]
    validation: Optional[ValidationReport]
    info: OnnxInfo
    simplified: Optional[bool] = None
    notes: Tuple[str, ...] = ()
    seconds_export: float = 0.0
    seconds_validate: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "graph": self.graph,
            "path": self.path,
            "exporter": self.exporter,
            "opset": self.opset,
            "with_state": self.with_state,
            "recurrence": self.recurrence,
            "attempts": [a.to_dict() for a in self.attempts],
            "validation": None if self.validation is None else self.validation.to_dict(),
            "info": self.info.to_dict(),
            "simplified": self.simplified,
            "notes": list(self.notes),
            "seconds_export": self.seconds_export,
            "seconds_validate": self.seconds_validate,
        }


@dataclass(frozen=True)
class ExportResult:
    """Every file one export wrote."""

    model: str
    family: str
    graphs: Tuple[GraphExport, ...]
    seconds: float

    @property
    def paths(self) -> Dict[str, str]:
        return {g.graph: g.path for g in self.graphs}

    def to_dict(self) -> Dict[str, Any]:
        return {
            "model": self.model,
            "family": self.family,
            "graphs": [g.to_dict() for g in self.graphs],
            "seconds": self.seconds,
        }

    def render(self) -> str:
        """The one-screen export summary."""
        out: List[str] = []
        for g in self.graphs:
            if g.validation is not None:
                val = f"validated in {g.seconds_validate:.2f} s"
            elif any(n.startswith("not validated") for n in g.notes):
                val = "NOT validated (see note)"
            else:
                val = "NOT validated (--no-validate)"
            simp = {None: "", True: "; simplified with onnxslim", False: "; onnxslim result dropped"}[g.simplified]
            out.append(
                f"exported {self.model} [{self.family}] graph {g.graph!r} → {g.path}: {g.exporter} exporter, "
                f"opset {g.opset}, {g.seconds_export:.2f} s; {val}{simp}"
            )
            failed = [a for a in g.attempts if not a.ok]
            for a in failed:
                out.append(f"  fallback: {a.exporter} was tried first and failed: {a.reason}")
            out.append(_indent(g.info.render()))
            if g.validation is not None:
                out.append(_indent(g.validation.render()))
            out.extend(f"  note: {n}" for n in g.notes)
        return "\n".join(out)


# -- output paths -----------------------------------------------------------------------
def output_paths(out: str, graphs: Sequence[str]) -> Dict[str, Path]:
    """Where each graph goes.

    ``-o NAME.onnx``: one graph → that file; several → ``NAME.<graph>.onnx``
    (``g2p.onnx`` → ``g2p.encoder.onnx``, ``g2p.decoder_step.onnx``).
    ``-o DIR`` (an existing directory): ``DIR/<graph>.onnx`` (``model.onnx`` for a
    single-graph model; ``encoder.onnx`` and ``decoder_step.onnx`` for seq2seq).

    Raises:
        UsageError: the directory holding the output does not exist.
    """
    p = Path(out)
    if not p.is_dir():
        if p.suffix.lower() != ".onnx":
            raise UsageError(
                f"output {out}: neither an existing directory nor a .onnx file name",
                "give -o model.onnx, or -o DIR for an existing directory",
            )
        check_parent_dir(p, "output")
    return graph_paths(p, graphs)


# -- the pipeline -----------------------------------------------------------------------
def export_jobs(jobs: Sequence[GraphJob], out: str, options: ExportOptions) -> ExportResult:
    """Export, validate and (only when all graphs pass) write every job's ONNX file."""
    t0 = time.perf_counter()
    if not jobs:
        raise ExportError("nothing to export")
    paths = output_paths(out, [j.graph for j in jobs])
    built = [(job, *export_graph(job, options)) for job in jobs]
    # every graph written, or none (an encoder without its decoder step is half a model)
    write_files_atomic({paths[job.graph]: model.SerializeToString() for job, model, _ in built})
    results = [replace(partial, path=str(paths[job.graph]), info=describe_onnx(paths[job.graph]))
               for job, _, partial in built]
    spec = jobs[0].spec
    return ExportResult(spec.name, spec.family, tuple(results), time.perf_counter() - t0)


def export_graph(job: GraphJob, options: ExportOptions) -> Tuple[Any, GraphExport]:
    """(validated ModelProto with metadata, its GraphExport without a path yet).

    torch runs single-threaded meanwhile: the models traced and validated here are
    small, and on a busy 2-core box OpenMP's spinning threads made one 3×256 LSTM call
    take 9 s instead of 0.04 s (measured).

    Raises:
        ExportError: every exporter tried failed (ValidationFailed when at least one
            produced a graph that ran but did not match torch).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _export_graph(job, options)
    finally:
        torch.set_num_threads(threads)


def _export_graph(job: GraphJob, options: ExportOptions) -> Tuple[Any, GraphExport]:
    graph = job.graph_spec
    ex.check_supported(job.module)
    facts = ex.torch_module_facts(job.module)
    ex_sizes = example_sizes(graph, options.example)
    val_sizes = validation_sizes(graph, ex_sizes, long_seq_for(options.longest_train_seq))
    check_graph_fits(graph, ex_sizes, f"the traced example of graph {graph.name!r} (recipe [export] example_batch, "
                     "example_seq)", copies=3, attrs=job.spec.attrs)
    for sizes in val_sizes:  # the validation shapes must fit before anything is exported
        check_graph_fits(graph, sizes, f"export validation of graph {graph.name!r} (torch and ONNX Runtime outputs)",
                         copies=3, attrs=job.spec.attrs)
    example = job.make_feeds(ex_sizes, options.seed)
    candidates = options.candidates

    attempts: List[Attempt] = []
    reports: List[ValidationReport] = []
    model = None
    notes: List[str] = []
    chosen = ""
    t_export = 0.0
    t_validate = 0.0
    for exporter in candidates:
        t1 = time.perf_counter()
        try:
            model = _run_exporter(exporter, job, graph, ex_sizes, example, options)
            notes = ex.conform_io_dims(model, graph, exporter)
            _stamp(model, job, exporter, options, facts, attempts, simplified=None, report=None)
            check_onnx(model, f"the {exporter} export of graph {graph.name!r}")
        except ex.ShapeDependentForward:
            raise
        except ExportError as err:
            attempts.append(Attempt(exporter, False, str(err), time.perf_counter() - t1))
            model = None
            continue
        t_export = time.perf_counter() - t1
        if options.validate:
            report = validate_ort(
                model.SerializeToString(), job.module, graph, val_sizes, job.make_feeds, exporter, label=exporter
            )
            t_validate = report.seconds
            reports.append(report)
            if not report.ok:
                attempts.append(Attempt(exporter, False, "validation failed: " + report.failure_line(), t_export))
                model = None
                continue
        attempts.append(Attempt(exporter, True, "", t_export))
        chosen = exporter
        break

    if model is None:
        _raise_all_failed(job, attempts, reports)
    if chosen == "dynamo" and options.opset < 18:
        notes.append(
            f"dynamo writes opset 18 and down-converted it to {options.opset} (such conversions can be invalid; "
            "this one passed the checker and validation)"
        )

    simplified: Optional[bool] = None
    report = reports[-1] if reports and options.validate else None
    if options.simplify:
        model, report, simplified, simp_note, t_simp = _try_simplify(
            model, job, graph, val_sizes, chosen, options, report
        )
        notes.append(simp_note)
        t_validate += t_simp
    _stamp(model, job, chosen, options, facts, attempts, simplified=simplified, report=report)
    info = describe_onnx(model)
    return model, GraphExport(
        graph=job.graph,
        path="",
        exporter=chosen,
        opset=options.opset,
        with_state=job.with_state,
        recurrence=info.recurrence,
        attempts=tuple(attempts),
        validation=report,
        info=info,
        simplified=simplified,
        notes=tuple(notes),
        seconds_export=t_export,
        seconds_validate=t_validate,
    )


def _run_exporter(
    exporter: str,
    job: GraphJob,
    graph: GraphSpec,
    ex_sizes: Dict[str, int],
    example: Dict[str, np.ndarray],
    options: ExportOptions,
) -> Any:
    if exporter == "torchscript":
        model = ex.export_torchscript(job.module, graph, example, options.opset)
        other = {k: (v + 3 if k != "batch" else v + 1) for k, v in ex_sizes.items()}
        if other:
            ex.check_shape_independent(
                job.module,
                graph,
                [(ex_sizes, example), (other, job.make_feeds(other, options.seed + 1))],
                options.opset,
            )
        return model
    if job.source is not None:
        return ex.export_dynamo_subprocess(job.source, graph, example, options.opset)
    return ex.export_dynamo_in_process(job.module, graph, example, options.opset)


def _try_simplify(model, job, graph, val_sizes, exporter, options, report):
    from rnndeploy.export.simplify import simplify

    t0 = time.perf_counter()
    try:
        slim, tool = simplify(model)
        ex.conform_io_dims(slim, graph, exporter)
        check_onnx(slim, f"the onnxslim result for graph {graph.name!r}")
    except ExportError as err:
        return model, report, False, f"onnxslim result dropped: {err}", time.perf_counter() - t0
    if options.validate:
        rep = validate_ort(
            slim.SerializeToString(),
            job.module,
            graph,
            val_sizes,
            job.make_feeds,
            exporter,
            label=f"{exporter}+onnxslim",
        )
        if not rep.ok:
            return (
                model,
                report,
                False,
                f"onnxslim result dropped: validation failed: {rep.failure_line()}",
                rep.seconds,
            )
        before, after = len(list(model.graph.node)), len(list(slim.graph.node))
        return slim, rep, True, f"{tool} kept: {before} → {after} top-level nodes, validation still passes", rep.seconds
    return slim, report, True, f"{tool} applied without validation (--no-validate)", time.perf_counter() - t0


def _raise_all_failed(job: GraphJob, attempts: Sequence[Attempt], reports: Sequence[ValidationReport]) -> None:
    what = f"graph {job.graph!r} of {job.spec.name}"
    detail = " | ".join(f"{a.exporter}: {a.reason}" for a in attempts)
    if reports:
        errors = [c.error for r in reports for c in r.failures if c.error]
        if any(e.startswith("torch itself failed") for e in errors):
            hint = "the module itself does not run at every size its spec calls dynamic; the table above shows where"
        elif errors:
            hint = "the graph does not run at other sizes: an axis was frozen during export"
        else:
            hint = "the numbers differ from torch beyond the spec's fp32 tolerance; the table above lists each output"
        raise ValidationFailed(f"export of {what} did not validate: {detail}", reports, hint)
    raise ExportError(f"export of {what} failed: {detail}")


def _stamp(model, job, exporter, options, facts, attempts, simplified, report) -> None:
    """Write spec, graph name and export facts into ``model.metadata_props``."""
    import onnx
    import torch

    from rnndeploy.onnx_info import recurrence_form

    info: Dict[str, Any] = {
        "exporter": exporter,
        "exporter_attempts": [a.to_dict() for a in attempts if not a.ok],
        "opset": options.opset,
        "with_state": job.with_state,
        "family": job.spec.family,
        "graph": job.graph,
        "recurrence": recurrence_form(model, facts),
        "torch_recurrent_modules": facts,
        "simplified": simplified,
        "validated": report is not None and report.ok,
        "rnndeploy_version": __version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
    }
    if report is not None:
        info["validation"] = {
            "runtime": report.runtime,
            "sizes": report.sizes,
            "max_abs_err": {k: float(f"{v:.3g}") for k, v in report.max_errors().items()},
        }
    info.update(job.info)
    write_onnx_metadata(model, job.file_spec, job.graph, info)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
