"""Validation at the boundary: numbers, and typed reading of loaded documents.

Two tools, used everywhere a value enters rnndeploy from outside:

``check_number(value, what, ...)``
    The one rule for numbers: NaN is never a valid setting; infinity only where the
    caller says it means something (a tolerance of ``inf`` = "not checked"); bounds
    are inclusive (``minimum``) or exclusive (``above``). Raises ``UsageError`` naming
    ``what`` and the allowed range. The click types in ``rnndeploy.cli.types`` and the
    parsers of compound options (``--tol y:1e-3:1e-2``) both call it.

``Fields(data, where)``
    A reader over one JSON object loaded from a file (results, sidecars, manifests,
    specs). Each accessor checks one field's presence and type and returns it; a
    mismatch raises one line naming the file, the field path and what was expected::

        f = Fields(doc, "results file r.json: results[0]")
        cases = f.records("cases")                 # a list of objects
        atol = cases[0].record("tolerance").number("atol", minimum=0, allow_inf=True)
        # UsageError: results file r.json: results[0].cases[0].tolerance.atol must be
        #             a number >= 0 or inf, got 'big' (string)

    Numbers accept the strings ``rnndeploy.jsonio`` writes for non-finite floats.
    Pass ``error=`` a subclass of UsageError (SpecError, EngineFileError, ...) to keep
    the error family of the artefact kind.

Loaders of new artefact kinds should read through ``Fields`` rather than indexing
dicts, so a wrong type is one line with exit status 2, never a KeyError/TypeError.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Type

from rnndeploy.errors import UsageError
from rnndeploy.jsonio import to_float

_MISSING = object()

# Intra-op thread counts are bounded: torch segfaults creating 10^5 threads, and no CPU
# rnndeploy runs on has more than this many hardware threads.
MAX_THREADS = 1024
# A TensorRT builder workspace limit above 1 TiB (in MiB) is no limit any GPU has: a typo.
MAX_WORKSPACE_MIB = 1 << 20
# ONNX opsets torch.onnx exports (the recipe's [export] opset and export --opset).
TORCH_EXPORT_OPSETS = (7, 23)


def describe_range(minimum: Optional[float] = None, maximum: Optional[float] = None, above: Optional[float] = None,
                   allow_inf: bool = False, integer: bool = False) -> str:
    """"a number > 0", "an integer >= 1", "a number in [0, 1]", "a number >= 0 or inf"."""
    noun = "an integer" if integer else "a number"
    if minimum is not None and maximum is not None:
        text = f"{noun} in [{_g(minimum)}, {_g(maximum)}]"
    elif above is not None:
        text = f"{noun} > {_g(above)}" + (f" and <= {_g(maximum)}" if maximum is not None else "")
    elif minimum is not None:
        text = f"{noun} >= {_g(minimum)}"
    elif maximum is not None:
        text = f"{noun} <= {_g(maximum)}"
    else:
        text = f"a finite {noun[2:] if noun.startswith('a ') else noun[3:]}"
    return text + (" or inf" if allow_inf else "")


def _g(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def check_number(value: Any, what: str, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
                 above: Optional[float] = None, allow_inf: bool = False, integer: bool = False,
                 hint: Optional[str] = None, error: Type[UsageError] = UsageError) -> Any:
    """``value`` (a number, or text such as "1e-3", "inf") checked and converted.

    Returns an ``int`` when ``integer`` else a ``float``.

    Raises:
        error: not a number, NaN, an infinity that is not allowed, or out of range.
    """
    expected = describe_range(minimum, maximum, above, allow_inf, integer)
    shown = value if isinstance(value, str) else repr(value)
    number: Any
    if isinstance(value, bool):
        number = None
    elif integer:
        try:
            number = int(value) if not isinstance(value, float) or value.is_integer() else None
        except (TypeError, ValueError, OverflowError):
            number = None
    else:
        number = to_float(value)
        if number is None and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
    if number is None:
        raise error(f"{what} must be {expected}, got {shown}", hint)
    if isinstance(number, float) and math.isnan(number):
        raise error(f"{what} must be {expected}, got nan", hint or "NaN is not a setting")
    if isinstance(number, float) and math.isinf(number) and not (allow_inf and number > 0):
        raise error(f"{what} must be {expected}, got {shown}", hint)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum) \
            or (above is not None and number <= above):
        if not (allow_inf and number == math.inf and maximum is None):
            raise error(f"{what} must be {expected}, got {shown}", hint)
    return number


def type_name(value: Any) -> str:
    """JSON's name for the type of ``value`` (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Fields:
    """Typed, path-naming access to one JSON object (see the module docstring).

    Args:
        data: the object (must be a mapping, else ``error`` is raised at once).
        where: how to name it in messages: "results file r.json: results[0]".
        error: the UsageError subclass to raise.
    """

    def __init__(self, data: Any, where: str, error: Type[UsageError] = UsageError):
        self.where = where
        self.error = error
        if not isinstance(data, Mapping):
            raise error(f"{where} must be an object, got {_short(data)} ({type_name(data)})")
        self.data = data

    # -- plumbing ---------------------------------------------------------------------------------
    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, expected: str, value: Any = _MISSING, hint: Optional[str] = None) -> UsageError:
        """The error for field ``key`` (to raise): missing, or the wrong ``value``."""
        if value is _MISSING:
            return self.error(f"{self.path(key)} is missing (expected {expected})", hint)
        return self.error(f"{self.path(key)} must be {expected}, got {_short(value)} ({type_name(value)})", hint)

    def _get(self, key: str, required: bool, default: Any) -> Any:
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        if key in self.data and not required:
            return default
        if required:
            return _MISSING
        return default

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    # -- scalars ----------------------------------------------------------------------------------
    def str(self, key: str, required: bool = True, default: Optional[str] = None,
            choices: Optional[Sequence[str]] = None) -> Any:
        v = self._get(key, required, default)
        if v is _MISSING:
            raise self.fail(key, "a string")
        if v is default and not required:
            return v
        if not isinstance(v, str):
            raise self.fail(key, "a string", v)
        if choices is not None and v not in choices:
            raise self.fail(key, "one of " + ", ".join(repr(c) for c in choices), v)
        return v

    def bool(self, key: str, required: bool = True, default: Optional[bool] = None) -> Any:
        v = self._get(key, required, default)
        if v is _MISSING:
            raise self.fail(key, "true or false")
        if v is default and not required:
            return v
        if not isinstance(v, bool):
            raise self.fail(key, "true or false", v)
        return v

    def int(self, key: str, required: bool = True, default: Optional[int] = None, minimum: Optional[int] = None,
            maximum: Optional[int] = None) -> Any:
        v = self._get(key, required, default)
        expected = describe_range(minimum, maximum, integer=True)
        if v is _MISSING:
            raise self.fail(key, expected)
        if v is default and not required:
            return v
        if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None and v < minimum) \
                or (maximum is not None and v > maximum):
            raise self.fail(key, expected, v)
        return v

    def number(self, key: str, required: bool = True, default: Optional[float] = None,
               minimum: Optional[float] = None, maximum: Optional[float] = None, above: Optional[float] = None,
               allow_inf: bool = False, allow_nan: bool = False) -> Any:
        v = self._get(key, required, default)
        expected = describe_range(minimum, maximum, above, allow_inf)
        if v is _MISSING:
            raise self.fail(key, expected)
        if v is default and not required:
            return v
        return self._number(key, v, expected, minimum, maximum, above, allow_inf, allow_nan)

    def _number(self, key: str, v: Any, expected: str, minimum: Optional[float], maximum: Optional[float],
                above: Optional[float], allow_inf: bool, allow_nan: bool) -> float:
        x = to_float(v)
        if x is None:
            raise self.fail(key, expected, v)
        if math.isnan(x):
            if allow_nan:
                return x
            raise self.fail(key, expected, v)
        if math.isinf(x) and not (allow_inf and x > 0):
            raise self.fail(key, expected, v)
        if not math.isinf(x) and ((minimum is not None and x < minimum) or (maximum is not None and x > maximum)
                                  or (above is not None and x <= above)):
            raise self.fail(key, expected, v)
        return x

    # -- containers -------------------------------------------------------------------------------
    def mapping(self, key: str, required: bool = True, default: Any = None) -> Dict[str, Any]:
        v = self._get(key, required, default)
        if v is _MISSING:
            raise self.fail(key, "an object")
        if v is default and not required:
            return dict(v) if isinstance(v, Mapping) else v
        if not isinstance(v, Mapping):
            raise self.fail(key, "an object", v)
        return dict(v)

    def list(self, key: str, required: bool = True, default: Any = None, nonempty: bool = False) -> List[Any]:
        v = self._get(key, required, default)
        if v is _MISSING:
            raise self.fail(key, "a list")
        if v is default and not required:
            return list(v) if isinstance(v, (list, tuple)) else v
        if not isinstance(v, list):
            raise self.fail(key, "a list", v)
        if nonempty and not v:
            raise self.error(f"{self.path(key)} is empty: nothing to read")
        return list(v)

    def objects(self, key: str, required: bool = True) -> Dict[str, Dict[str, Any]]:
        """An object whose every value is an object (name → record), as plain dicts."""
        table = self.mapping(key, required, {})
        for k, v in table.items():
            if not isinstance(v, Mapping):
                raise self.fail(f"{key}.{k}", "an object", v)
        return {k: dict(v) for k, v in table.items()}

    def record(self, key: str, required: bool = True) -> Optional[Fields]:
        """The object at ``key`` as Fields (None when absent and not required)."""
        v = self._get(key, required, None)
        if v is _MISSING:
            raise self.fail(key, "an object")
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise self.fail(key, "an object", v)
        return Fields(v, self.path(key), self.error)

    def records(self, key: str, required: bool = True, nonempty: bool = False) -> List[Fields]:
        """The list of objects at ``key``, each as Fields (``where`` ends in ``key[i]``)."""
        items = self.list(key, required, [], nonempty)
        return [Fields(item, f"{self.path(key)}[{i}]", self.error) for i, item in enumerate(items)]

    def strs(self, key: str, required: bool = True, default: Any = ()) -> List[str]:
        items = self.list(key, required, list(default))
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.fail(f"{key}[{i}]", "a string", item)
        return items

    def numbers(self, key: str, required: bool = True, minimum: Optional[float] = None,
                above: Optional[float] = None, allow_inf: bool = False, nonempty: bool = False) -> List[float]:
        items = self.list(key, required, [], nonempty)
        expected = describe_range(minimum, None, above, allow_inf)
        return [self._number(f"{key}[{i}]", item, expected, minimum, None, above, allow_inf, False)
                for i, item in enumerate(items)]

    def sizes(self, key: str, required: bool = True) -> Dict[str, int]:
        """An object of axis name → size (integers >= 0)."""
        m = self.mapping(key, required, {})
        for k, v in m.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise self.fail(f"{key}.{k}", "an integer >= 0", v)
        return m

    def stamps(self) -> Dict[str, Any]:
        """The stamps every results-file result carries (rnndeploy.report.schema.Result):
        ``warnings``, ``machine``, ``command``, ``created``, all optional, read and checked;
        a result's ``from_dict`` passes them on as ``cls(..., **f.stamps())``."""
        return {"warnings": tuple(self.strs("warnings", required=False)),
                "machine": self.mapping("machine", required=False, default={}),
                "command": self.str("command", required=False, default=""),
                "created": self.str("created", required=False, default="")}

    def ints(self, key: str, required: bool = True, minimum: Optional[int] = None) -> List[int]:
        items = self.list(key, required, [])
        for i, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, int) or (minimum is not None and item < minimum):
                raise self.fail(f"{key}[{i}]", describe_range(minimum, integer=True), item)
        return items
