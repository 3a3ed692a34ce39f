"""``rnndeploy export MODEL.keras`` (or ``.h5``): convert, check, validate against Keras, write.

The pipeline: read the file (h5py), convert (numpy + onnx), run the ONNX checker and
strict shape inference, validate against Keras itself when Keras is installed (see
``validate``), stamp the rnndeploy contract into the metadata, and only then write the
file atomically. Without Keras (a deployment box) the file is written unvalidated and
says so; ``validate=True`` makes Keras mandatory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from rnndeploy import __version__
from rnndeploy.errors import MissingDependencyError, UsageError
from rnndeploy.keras.archive import load_keras_file
from rnndeploy.keras.convert import Conversion, ConvertOptions, convert_keras

DEFAULT_LONGEST_SEQ = 128


@dataclass(frozen=True)
class KerasExportOptions:
    """How to export a Keras model.

    Attributes:
        opset: ONNX opset (default 17: TensorRT 8.6 parses <= 17).
        with_state: streaming form for every recurrent layer (stateful layers always stream).
        validate: None (default) validates when Keras is installed and notes it when not;
            True requires Keras; False skips validation.
        longest_train_seq: longest training sequence; validation runs one twice as long
            (default: the model's fixed time length if it declares one, else 128).
        name: model name in the spec (default: the file's stem).
        seed: seed of the validation inputs.
    """

    opset: int = 17
    with_state: bool = False
    validate: Optional[bool] = None
    longest_train_seq: Optional[int] = None
    name: Optional[str] = None
    seed: int = 0


def export_keras(path: str, out: str, options: Optional[KerasExportOptions] = None) -> Any:
    """Convert ``path`` and write ``out`` (a ``.onnx`` path or an existing directory).

    Returns:
        an ``export.core.ExportResult`` with one graph, "model".

    Raises:
        KerasModelError / UsageError: bad input (nothing written).
        ValidationFailed: the ONNX graph does not reproduce Keras (nothing written; the
            report holds every check).
        MissingDependencyError: ``validate=True`` without Keras, or no onnxruntime to validate with.
    """
    from rnndeploy.export.core import Attempt, ExportResult, GraphExport, output_paths
    from rnndeploy.export.validate import ValidationFailed, check_onnx
    from rnndeploy.fileio import write_bytes_atomic
    from rnndeploy.onnx_info import describe_onnx
    from rnndeploy.spec import write_onnx_metadata

    opts = options or KerasExportOptions()
    t0 = time.perf_counter()
    target = output_paths(out, ["model"])["model"]  # a bad output path fails before any work
    kfile = load_keras_file(path)
    conv = convert_keras(kfile, ConvertOptions(opset=opts.opset, with_state=opts.with_state, name=opts.name))
    check_onnx(conv.model, f"the ONNX graph converted from {path}")
    t_convert = time.perf_counter() - t0

    notes: List[str] = list(conv.notes)
    report = None
    long_seq = 2 * (opts.longest_train_seq or _fixed_time_length(conv) or DEFAULT_LONGEST_SEQ)
    graph = conv.spec.graph("model")
    if opts.validate is not False:
        from rnndeploy.keras.validate import keras_cases

        cases = keras_cases(graph, conv.padding, max(long_seq, 32), opts.seed)  # refuses sizes that cannot fit
    reference = _reference(conv, opts, notes)
    if reference is not None:
        from rnndeploy.keras.validate import validate_against_keras

        report = validate_against_keras(conv.model.SerializeToString(), reference, graph, cases)
        if not report.ok:
            raise ValidationFailed(
                f"the ONNX graph converted from {path} does not reproduce Keras: {report.failure_line()}",
                [report],
                "nothing was written; the table above lists each output at each shape",
            )

    info: Dict[str, Any] = {
        "exporter": "keras",
        "exporter_attempts": [],
        "opset": int(opts.opset),
        "with_state": conv.streaming,
        "family": conv.spec.family,
        "graph": "model",
        "recurrence": "native" if conv.recurrent else "none",
        "keras_file": str(path),
        "keras_sha256": kfile.sha256,
        "keras_version": kfile.keras_version,
        "keras_format": kfile.fmt,
        "validated": report is not None and report.ok,
        "rnndeploy_version": __version__,
        "onnx_version": _onnx_version(),
    }
    if report is not None:
        info["validation"] = {
            "reference": report.reference,
            "runtime": report.runtime,
            "cases": sorted({c.where for c in report.checks}),
            "max_abs_err": {k: float(f"{v:.3g}") for k, v in report.max_errors().items()},
        }
    write_onnx_metadata(conv.model, conv.spec, "model", info)
    data = conv.model.SerializeToString()
    write_bytes_atomic(target, data)
    onnx_info = describe_onnx(str(target))
    graph_export = GraphExport(
        graph="model", path=str(target), exporter="keras", opset=int(opts.opset), with_state=conv.streaming,
        recurrence=onnx_info.recurrence, attempts=(Attempt("keras", True, "", t_convert),), validation=report,
        info=onnx_info, notes=tuple(notes), seconds_export=t_convert,
        seconds_validate=report.seconds if report is not None else 0.0,
    )
    return ExportResult(conv.spec.name, conv.spec.family, (graph_export,), time.perf_counter() - t0)


def _reference(conv: Conversion, opts: KerasExportOptions, notes: List[str]) -> Any:
    """The Keras model to validate against, or None (with a note saying why)."""
    if opts.validate is False:
        notes.append("not validated against Keras (--no-validate)")
        return None
    from rnndeploy.keras.reference import KerasLoadError, KerasModel

    graph = conv.spec.graph("model")
    inputs = [t.name for t in graph.inputs if t.role != "state"]
    outputs = [t.name for t in graph.outputs if t.role != "state" or not t.optional]
    states = [(s.layer, s.direction, s.kind, s.input, s.output) for s in conv.states]
    try:
        return KerasModel(conv.keras.path, inputs, outputs, states, conv.graph.output_keys)
    except MissingDependencyError:
        if opts.validate:
            raise
        notes.append("not validated against Keras: Keras is not installed here "
                     "(pip install 'rnndeploy[keras-runtime]' to compare it with Keras before writing)")
        return None
    except KerasLoadError as err:
        if opts.validate:
            raise
        notes.append(f"not validated against Keras: {err} (save the model as .keras to validate the conversion)")
        return None


def _fixed_time_length(conv: Conversion) -> Optional[int]:
    """The time length the model's inputs declare, when they fix one (Input(shape=(40, n)))."""
    for ref in conv.graph.inputs:
        cfg = conv.graph.layer(ref.layer).config
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if isinstance(shape, (list, tuple)) and len(shape) >= 2 and isinstance(shape[1], int):
            return int(shape[1])
    return None


def _onnx_version() -> str:
    import onnx

    return str(onnx.__version__)


def keras_export_usage(exporter: Optional[str], simplify: bool, inputs: Any, outputs: Any) -> None:
    """Options of ``rnndeploy export`` that do not apply to a Keras file → UsageError."""
    if exporter:
        raise UsageError("--exporter applies to torch exports", "leave it out for a Keras model")
    if simplify:
        raise UsageError("--simplify applies to torch exports", "the Keras converter writes a compact graph already")
    if inputs or outputs:
        raise UsageError("--input/--output describe a --model torch module", "leave them out for a Keras model")
