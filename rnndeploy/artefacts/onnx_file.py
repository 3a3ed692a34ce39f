"""ONNX files: the one reader, and what rnndeploy wrote into them.

Every ONNX file rnndeploy reads — to run it, inspect it, convert it, normalise it or
find its spec — goes through ``load_onnx``, so a missing or damaged file is refused
with the same one line everywhere. ``load_metadata`` reads the rnndeploy spec, graph
and export facts once (None for a foreign file, which callers describe from its
declared inputs and outputs instead).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

from rnndeploy.errors import UsageError, first_line
from rnndeploy.fileio import PathLike
from rnndeploy.spec import ModelSpec, has_onnx_metadata, read_onnx_metadata


def load_onnx(source: Union[PathLike, bytes], external_data: bool = False) -> Any:
    """An ``onnx.ModelProto`` from a path (or serialized bytes).

    Args:
        external_data: also load weights stored beside the file (needed to run or rewrite
            a model whose weights live in ``*.onnx.data``); False reads the graph and the
            metadata only, which is all inspection needs.

    Raises:
        UsageError: the file does not exist, or is not a readable ONNX model.
    """
    import onnx

    if isinstance(source, bytes):
        try:
            return onnx.load_from_string(source)
        except Exception as exc:  # protobuf DecodeError and friends
            raise UsageError(f"the in-memory ONNX model is not readable: {first_line(exc)}") from exc
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise UsageError(f"ONNX file {path} does not exist", "check the path")
    try:
        return onnx.load(path, load_external_data=external_data)
    except Exception as exc:  # protobuf DecodeError and friends: the file is not ONNX
        raise UsageError(f"{path} is not a readable ONNX model: {first_line(exc)}",
                         "give the .onnx written by rnndeploy export or torch.onnx.export") from exc


@dataclass(frozen=True)
class OnnxMetadata:
    """What ``rnndeploy export`` wrote into an ONNX file's metadata_props.

    Attributes:
        spec: the model contract; graph: which of its graphs the file holds;
        export_info: exporter, opset, checkpoint and its hash (keys EXPORT_* in rnndeploy.spec), ...
    """

    spec: ModelSpec
    graph: str
    export_info: Dict[str, Any] = field(default_factory=dict)


def load_metadata(model: Any) -> Optional[OnnxMetadata]:
    """The rnndeploy metadata of an ``onnx.ModelProto``; None for a file rnndeploy did not write.

    Raises:
        SpecError: the metadata is there but malformed.
    """
    if not has_onnx_metadata(model):
        return None
    spec, graph, info = read_onnx_metadata(model)
    return OnnxMetadata(spec, graph, dict(info))
