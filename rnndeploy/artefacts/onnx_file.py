"""ONNX files: the one reader, and what rnndeploy wrote into them.

Every ONNX file rnndeploy reads — to run it, inspect it, convert it, normalise it,
build an engine from it or find its spec — goes through ``load_onnx``, so a missing,
empty or damaged file is refused with the same one line everywhere (the checks are in
its docstring); the rnndeploy metadata inside is validated by
``rnndeploy.spec.read_onnx_metadata``. ``load_metadata`` reads the rnndeploy spec, graph
and export facts once (None for a foreign file, which callers describe from its
declared inputs and outputs instead).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

from rnndeploy.errors import UsageError, first_line
from rnndeploy.fileio import PathLike
from rnndeploy.spec import ModelSpec, has_rnndeploy_metadata, read_onnx_metadata


def load_onnx(source: Union[PathLike, bytes], external_data: bool = True, what: str = "ONNX file") -> Any:
    """An ``onnx.ModelProto`` from a path (or serialized bytes), checked before anything trusts it.

    ``onnx.load`` accepts an empty file (an empty ModelProto) and some byte soup without
    complaint, and hands back a model with no graph; downstream code would then describe
    "an empty model", plan an engine for it, or fail deep inside a runtime. Refused here,
    with one line naming the file: a missing path or a directory, an empty file, bytes
    that are not a ModelProto, or a ModelProto with no IR version, no opset or no graph
    outputs.

    Args:
        external_data: also load weights stored beside the file (``*.onnx.data``: needed
            to run or rewrite such a model); False reads the graph and the metadata only,
            fast on any size, which is all inspection needs.
        what: how to name the file in messages.

    Raises:
        UsageError: one line naming the file and what is wrong with it.
    """
    import onnx

    if isinstance(source, bytes):
        where = f"the in-memory {what}"
        try:
            model = onnx.load_from_string(source)
        except Exception as exc:  # protobuf DecodeError and friends
            raise UsageError(f"{where} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc, 200)})") from None
        check_structure(model, where)
        return model
    p = os.fspath(source)
    if not os.path.exists(p):
        raise UsageError(f"{what} {p} does not exist", "check the path")
    if os.path.isdir(p):
        raise UsageError(f"{what} {p} is a directory", "give the .onnx file")
    if os.path.getsize(p) == 0:
        raise UsageError(f"{what} {p} is empty (0 bytes)", "export it again (rnndeploy export) or copy it again")
    try:
        model = onnx.load(p, load_external_data=external_data)
    except Exception as exc:  # protobuf DecodeError, missing external data, ...: the file is not usable ONNX
        raise UsageError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {first_line(exc, 200)})",
                         "give the .onnx written by rnndeploy export or torch.onnx.export") from None
    check_structure(model, p)
    return model


def check_structure(model: Any, where: str) -> None:
    """Refuse a ModelProto that parsed but is not a model (no IR version, opset or outputs)."""
    problem = None
    if not getattr(model, "ir_version", 0):
        problem = "it has no IR version"
    elif not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        problem = "it imports no ONNX opset"
    elif not model.HasField("graph") or not len(model.graph.output):
        problem = "its graph has no outputs"
    if problem is not None:
        raise UsageError(f"{where} is not an ONNX model: {problem}",
                         "give the .onnx written by rnndeploy export or torch.onnx.export")


def check_graph(model: Any, where: str) -> None:
    """``onnx.checker`` on a loaded model, for the commands that hand the graph to something
    stricter than onnx.load (a TensorRT parser, a Triton server, a rewrite): a node reading
    a tensor nothing produces, a wrong attribute, an unknown op is refused here as one line
    naming the file, not accepted by a dry run or a repository that would never load.

    Raises:
        UsageError: the checker's first line, naming ``where``.
    """
    import onnx

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise UsageError(f"{where} is not a valid ONNX graph ({first_line(exc, 200)})",
                         "export it again, or fix what onnx.checker.check_model reports") from None
    except ValueError:  # over protobuf's 2 GiB: the in-memory checker cannot take it; runtimes check it
        return


def default_opset(model: Any) -> int:
    """The model's ai.onnx opset version (0 when it imports none)."""
    return max((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


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


def load_metadata(model: Any, where: str = "the ONNX file") -> Optional[OnnxMetadata]:
    """The rnndeploy metadata of an ``onnx.ModelProto``; None for a file rnndeploy did not write.

    Raises:
        SpecError: the metadata is there but malformed.
    """
    if not has_rnndeploy_metadata(model):
        return None
    spec, graph, info = read_onnx_metadata(model, where)
    return OnnxMetadata(spec, graph, dict(info))
