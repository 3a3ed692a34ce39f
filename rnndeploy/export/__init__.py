"""torch → ONNX export with validation (torch side).

Entry points (each returns an ``ExportResult`` and writes files only when every
graph validated):

    export_checkpoint(directory, out, **overrides)     a ``rnndeploy train`` checkpoint
    export_zoo_model(model, out, options)              an in-memory zoo model (build_model)
    export_user_module(ref, inputs, out, options, outputs=...)   --model file.py:factory
    export_module(module, spec, out, options)          any module + a hand-written ModelSpec

``out`` is ``NAME.onnx`` or an existing directory (see ``core.output_paths``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from rnndeploy.export.core import (
    Attempt,
    ExportOptions,
    ExportResult,
    GraphExport,
    GraphJob,
    export_jobs,
    output_paths,
)
from rnndeploy.export.validate import ValidationFailed, ValidationReport
from rnndeploy.spec import ModelSpec

__all__ = [
    "Attempt",
    "ExportOptions",
    "ExportResult",
    "GraphExport",
    "GraphJob",
    "ValidationFailed",
    "ValidationReport",
    "export_checkpoint",
    "export_module",
    "export_user_module",
    "export_zoo_model",
    "output_paths",
    "zoo_jobs",
]


def export_module(
    module: Any,
    spec: ModelSpec,
    out: str,
    options: ExportOptions,
    graph: str = "model",
    info: Optional[Dict[str, Any]] = None,
) -> ExportResult:
    """Export a module whose forward matches ``spec.graph(graph)`` (dynamo, if used, runs in-process)."""
    job = GraphJob(spec=spec, graph=graph, module=module.eval(), with_state=options.with_state, info=dict(info or {}))
    return export_jobs([job], out, options)


def export_user_module(
    ref: str,
    inputs: Sequence[str],
    out: str,
    options: ExportOptions,
    outputs: Sequence[str] = (),
    name: Optional[str] = None,
) -> ExportResult:
    """Export ``--model file.py:factory`` with ``--input``/``--output`` declarations (see user_module)."""
    from rnndeploy.export.exporters import check_supported
    from rnndeploy.export.sources import user_source
    from rnndeploy.export.user_module import load_user_module, parse_input, user_spec

    in_specs = [parse_input(s) for s in inputs]
    out_parsed = list(outputs)
    from rnndeploy.export.core import output_paths as _paths

    _paths(out, ["model"])  # a bad output path fails before any work
    module = load_user_module(ref)
    check_supported(module)
    stem = Path(ref.rsplit(":", 1)[0]).stem
    spec = user_spec(module, in_specs, out_parsed, name=name or stem, source=ref)
    job = GraphJob(
        spec=spec,
        graph="model",
        module=module,
        with_state=False,
        source=user_source(ref),
        info={"source": ref},
    )
    return export_jobs([job], out, options)


def zoo_jobs(
    model: Any, with_state: bool, info: Optional[Mapping[str, Any]] = None, checkpoint: Optional[str] = None
) -> list:
    """One GraphJob per graph of a zoo model (``encoder`` and ``decoder_step`` for seq2seq).

    With ``checkpoint`` the dynamo worker reloads that directory; otherwise it gets the
    model's config, data_info and weights.
    """
    from rnndeploy.export.sources import checkpoint_source, zoo_source

    model.eval()
    spec = model.spec()
    di = model.data_info
    extra: Dict[str, Any] = {
        "model_name": spec.name,
        # z-score statistics a deployment must apply to inputs / undo on predictions (None: raw units)
        "normalisation": {
            "input": di.get("normalization", di.get("normalisation")),
            "target": di.get("target_normalization", di.get("target_normalisation")),
        },
    }
    extra.update(dict(info or {}))
    jobs = []
    for g in spec.graphs:
        ws = bool(with_state) and _supports_state(model, g)
        if with_state and len(spec.graphs) == 1 and not ws:
            model.graph_spec(g, True)  # raises the zoo's clear "no streaming form" error
        source = checkpoint_source(checkpoint, g, ws) if checkpoint else zoo_source(model, g, ws)
        jobs.append(
            GraphJob(
                spec=spec,
                graph=g,
                module=model.graph_module(g, with_state=ws).eval(),
                with_state=ws,
                source=source,
                info=extra,
            )
        )
    return jobs


def export_zoo_model(
    model: Any, out: str, options: ExportOptions, info: Optional[Mapping[str, Any]] = None
) -> ExportResult:
    """Export every graph of an in-memory zoo model (from ``rnndeploy.models.build_model``)."""
    return export_jobs(zoo_jobs(model, options.with_state, info), out, options)


def export_checkpoint(
    directory: str,
    out: str,
    exporter: Optional[str] = None,
    opset: Optional[int] = None,
    with_state: Optional[bool] = None,
    simplify: bool = False,
    validate: bool = True,
    longest_train_seq: Optional[int] = None,
) -> ExportResult:
    """Export a checkpoint directory written by ``rnndeploy train``.

    Options left as None come from the recipe's [export] section (opset, with_state,
    example sizes, longest training sequence), else the defaults of ExportOptions. The
    recipe's exporter is tried first with the other as fallback; an ``exporter`` given
    here is used alone ("auto": TorchScript with dynamo as fallback).
    """
    from rnndeploy.checkpoint import load_model
    from rnndeploy.export.checkpoints import checkpoint_defaults
    from rnndeploy.spec import EXPORT_CHECKPOINT, EXPORT_CHECKPOINT_SHA256

    output_paths(out, ["model"])  # a bad output path fails before any work
    loaded = load_model(directory)
    defaults = checkpoint_defaults(loaded)
    options = ExportOptions(
        exporter=exporter or defaults.get("exporter", "auto"),
        fallback=None if exporter else True,
        opset=int(opset if opset is not None else defaults.get("opset", ExportOptions.opset)),
        with_state=bool(with_state if with_state is not None else defaults.get("with_state", False)),
        simplify=simplify,
        validate=validate,
        longest_train_seq=longest_train_seq or defaults.get("longest_train_seq"),
        example=defaults.get("example", {}),
    )
    info = {
        EXPORT_CHECKPOINT: str(directory),
        EXPORT_CHECKPOINT_SHA256: defaults.get("sha256"),
        "weights_sha256": defaults.get("weights_sha256"),
        # the recipe's [engine] table: build-engine reads its profiles and precision from here
        "engine": defaults.get("engine"),
        "recipe": defaults.get("recipe"),
        "quality": defaults.get("quality"),
    }
    jobs = zoo_jobs(loaded.model, options.with_state, info, checkpoint=str(directory))
    return export_jobs(jobs, out, options)


def _supports_state(model: Any, graph: str) -> bool:
    g = model.spec().graph(graph)
    return any(t.optional for t in g.inputs + g.outputs)
