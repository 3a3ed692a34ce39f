"""Where the graphs of one export live: the one naming rule for multi-graph models.

``rnndeploy export -o NAME.onnx`` writes a single-graph model to ``NAME.onnx`` and each
graph of a multi-graph model to ``NAME.<graph>.onnx`` (a seq2seq model:
``NAME.encoder.onnx`` + ``NAME.decoder_step.onnx``); ``-o DIR`` writes ``DIR/<graph>.onnx``.
Export (writing), parity (finding the decoder beside the encoder) and OnnxSeq2Seq
(opening an export) all use these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from rnndeploy.fileio import PathLike

SEQ2SEQ_GRAPHS: Tuple[str, str] = ("encoder", "decoder_step")


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
