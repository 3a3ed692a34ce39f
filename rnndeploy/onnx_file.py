"""The one way rnndeploy reads an ONNX file: checked before anything trusts it.

``onnx.load`` accepts an empty file (an empty ModelProto) and some byte soup without
complaint, and hands back a model with no graph; downstream code then describes "an
empty model", plans an engine for it, or fails deep inside a runtime. ``load_onnx``
refuses, with one line naming the file: a missing path or a directory, an empty file,
bytes that are not a ModelProto, or a ModelProto with no IR version, no opset or no
graph outputs. Everything that reads ONNX (inspect, build-engine, parity, bench, the
runners) goes through it; the rnndeploy metadata inside is validated by
``rnndeploy.spec.read_onnx_metadata``.
"""

from __future__ import annotations

import os
from typing import Any

from rnndeploy.errors import UsageError
from rnndeploy.fileio import PathLike


def load_onnx(path: PathLike, external_data: bool = True, what: str = "ONNX file") -> Any:
    """``onnx.ModelProto`` from ``path`` after the checks in the module docstring.

    Args:
        external_data: also load weights stored in external ``.data`` files (False is
            fast on any size: structure and metadata only).

    Raises:
        UsageError: one line naming the file and what is wrong with it.
    """
    import onnx

    p = os.fspath(path)
    if not os.path.exists(p):
        raise UsageError(f"{what} {p} does not exist", "check the path")
    if os.path.isdir(p):
        raise UsageError(f"{what} {p} is a directory", "give the .onnx file")
    if os.path.getsize(p) == 0:
        raise UsageError(f"{what} {p} is empty (0 bytes)", "export it again (rnndeploy export) or copy it again")
    try:
        model = onnx.load(p, load_external_data=external_data)
    except Exception as exc:  # protobuf DecodeError, missing external data, ...: the file is not usable ONNX
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"{p} is not a readable ONNX model ({type(exc).__name__}: {first})",
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


def default_opset(model: Any) -> int:
    """The model's ai.onnx opset version (0 when it imports none)."""
    return max((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
