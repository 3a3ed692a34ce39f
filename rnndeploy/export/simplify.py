"""Optional graph simplification with onnxslim (kept by the caller only if validation still passes)."""

from __future__ import annotations

from typing import Any, Tuple

from rnndeploy.errors import ExportError, first_line
from rnndeploy.optional import require


def simplify(model: Any) -> Tuple[Any, str]:
    """(simplified ModelProto, "onnxslim <version>").

    Raises:
        MissingDependencyError: onnxslim is not installed (extra ``simplify``).
        ExportError: onnxslim itself failed.
    """
    import contextlib
    import io

    import onnx

    slim = require("onnxslim", "--simplify")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            out = slim.slim(copy)
    except Exception as exc:
        raise ExportError(f"onnxslim failed: {first_line(exc)}") from exc
    if out is None:
        raise ExportError("onnxslim returned no model")
    return out, f"onnxslim {getattr(slim, '__version__', '?')}"
