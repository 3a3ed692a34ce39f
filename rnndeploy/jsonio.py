"""The one JSON codec: rnndeploy never writes NaN or Infinity into a JSON file.

JSON has no NaN or Infinity; Python's ``json`` writes the bare tokens ``NaN`` and
``Infinity`` anyway (other readers reject them) or, with ``allow_nan=False``, raises
in the middle of writing a report. Every JSON rnndeploy writes goes through ``dumps``
here, which writes a non-finite float as one of the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"``; readers turn them back into floats with ``to_float`` (the typed
loaders in ``rnndeploy.validation`` do it for every numeric field, and decide there
whether a non-finite value makes sense for the field).

    >>> dumps({"atol": float("inf")})
    '{"atol": "Infinity"}'
    >>> to_float("Infinity")
    inf

Use it for anything new that writes JSON (results, sidecars, manifests, --json output).
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

NONFINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _spell(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def encode(obj: Any) -> Any:
    """``obj`` with every non-finite float (numpy floats included) replaced by its string."""
    if isinstance(obj, float) or (hasattr(obj, "dtype") and getattr(obj, "ndim", None) == 0
                                  and getattr(obj.dtype, "kind", "") == "f"):
        x = float(obj)
        return x if math.isfinite(x) else _spell(x)
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``encode(obj)``; never emits NaN/Infinity tokens (``allow_nan`` is fixed)."""
    kwargs.pop("allow_nan", None)
    return json.dumps(encode(obj), allow_nan=False, **kwargs)


def loads(text: str) -> Any:
    """``json.loads``. Bare NaN/Infinity tokens written by other tools are read as floats;
    the typed loaders reject them where a finite number is required. Nesting deeper than
    Python's recursion limit (``[[[[...]]]]``, a hostile or damaged file) is a
    ``json.JSONDecodeError`` like any other malformed document, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to read", str(text)[:0], 0) from None


def to_float(value: Any) -> Optional[float]:
    """A JSON number, or one of the strings ``encode`` writes, as a float; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in NONFINITE:
        return NONFINITE[value]
    return None
