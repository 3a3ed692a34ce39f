"""What a path names (``classify``) and where the graphs of one export live (the one
naming rule for multi-graph models).

``rnndeploy export -o NAME.onnx`` writes a single-graph model to ``NAME.onnx`` and each
graph of a multi-graph model to ``NAME.<graph>.onnx`` (a seq2seq model:
``NAME.encoder.onnx`` + ``NAME.decoder_step.onnx``); ``-o DIR`` writes ``DIR/<graph>.onnx``.
Export (writing), parity (finding the decoder beside the encoder) and OnnxSeq2Seq
(opening an export) all use these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from rnndeploy.errors import UsageError
from rnndeploy.fileio import PathLike

SEQ2SEQ_GRAPHS: Tuple[str, str] = ("encoder", "decoder_step")
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
SIDECAR_SUFFIX = ".json"  # model.plan → model.plan.json (rnndeploy.engine.sidecar)
_ONNX_FIRST_BYTE = b"\x08"  # an ONNX protobuf starts with field 1 (ir_version, varint)


def is_engine_path(path: PathLike) -> bool:
    """True for a file named as a TensorRT engine (``.plan/.engine/.trt``)."""
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def classify(model: str) -> str:
    """"onnx", "checkpoint", "engine", "module" or "keras" for a MODEL argument.

    By name first (a directory is a checkpoint, ``.onnx``, ``.keras/.h5``,
    ``.plan/.engine/.trt``, ``file.py:factory``); an existing file with another name is
    an engine when it has an engine sidecar, ONNX when its first byte is ONNX's.

    Raises:
        UsageError: the path does not exist, or what it is cannot be told.
    """
    p = Path(model)
    if p.is_dir():
        return "checkpoint"
    if p.suffix.lower() == ".onnx":
        return "onnx"
    from rnndeploy.keras.archive import is_keras_path

    if is_keras_path(model):
        return "keras"
    if is_engine_path(p):
        return "engine"
    if ".py:" in model:
        return "module"
    if not p.exists():
        raise UsageError(f"model {model} does not exist", "give an ONNX file, a checkpoint directory, an engine (.plan), "
                                                           "a Keras model (.keras/.h5) or a module as path/to/file.py:factory")
    if Path(sidecar_path(p)).is_file():
        return "engine"
    try:
        with open(p, "rb") as f:
            if f.read(1) == _ONNX_FIRST_BYTE:
                return "onnx"
    except OSError:
        pass
    raise UsageError(f"model {model}: cannot tell what it is from its name",
                     "ONNX files end in .onnx, engines in .plan/.engine, checkpoints are directories")


def sidecar_path(engine_path: PathLike) -> str:
    """Where an engine's JSON sidecar lives (read by rnndeploy.engine.sidecar.read_sidecar)."""
    return str(engine_path) + SIDECAR_SUFFIX


def graph_paths(out: PathLike, graphs: Sequence[str]) -> Dict[str, Path]:
    """Graph name → file for an export to ``out`` (a directory, or a NAME.onnx file)."""
    p = Path(out)
    if p.is_dir():
        return {g: p / f"{g}.onnx" for g in graphs}
    if len(graphs) == 1:
        return {graphs[0]: p}
    return {g: p.with_name(f"{p.stem}.{g}.onnx") for g in graphs}


def seq2seq_paths(out: PathLike) -> Tuple[Path, Path]:
    """(encoder, decoder_step) files of a seq2seq export to ``out``."""
    paths = graph_paths(out, SEQ2SEQ_GRAPHS)
    return paths["encoder"], paths["decoder_step"]


def sibling_graph(path: PathLike, graph: str, other: str) -> Optional[Path]:
    """The file of graph ``other`` written by the same export as ``path`` (which holds
    ``graph``), if it exists: NAME.encoder.onnx → NAME.decoder_step.onnx,
    DIR/encoder.onnx → DIR/decoder_step.onnx."""
    p = Path(path)
    if p.name == f"{graph}.onnx":
        candidate = p.with_name(f"{other}.onnx")
    elif p.name.endswith(f".{graph}.onnx"):
        candidate = p.with_name(p.name[: -len(f".{graph}.onnx")] + f".{other}.onnx")
    else:
        return None
    return candidate if candidate.is_file() else None
