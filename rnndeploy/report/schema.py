"""The one JSON results format for parity and bench results, mergeable across machines.

    {
      "format": "rnndeploy.results",
      "schema_version": 1,
      "results": [ {"kind": "parity", ...ParityResult.to_dict()},
                   {"kind": "bench",  ...BenchResult.to_dict()},
                   {"kind": "loadtest", ...LoadTestResult.to_dict()}, ... ]
    }

Every result carries its own ``machine`` and ``command``, so documents written on a
CPU box and a GPU box merge by concatenating their ``results`` (``merge``). A reader
refuses documents with a newer schema version rather than misreading them.

Reading checks every field (``rnndeploy.validation.Fields``: one line naming the file
and the field path, e.g. ``results file r.json: results[0].cases must be a list``), and
the verdicts a result records must follow from its numbers. ``load_verified`` also
refuses results that compared or measured nothing: a report never says PASSED for a
result it cannot verify. Non-finite numbers are written as strings (rnndeploy.jsonio)
and read back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Protocol, Sequence, Tuple, Union

from rnndeploy import jsonio
from rnndeploy.errors import UsageError, first_line
from rnndeploy.fileio import write_text_atomic
from rnndeploy.jsonio import dumps
from rnndeploy.validation import Fields, type_name

FORMAT = "rnndeploy.results"
SCHEMA_VERSION = 1



class Result(Protocol):
    """The result protocol: what a results file holds (ParityResult, BenchResult,
    TuneResult, LoadTestResult) — a ``kind`` (one of KINDS), ``to_dict()`` and
    ``from_dict(d, where)`` that round-trip through JSON, and ``machine`` / ``command``
    stamps. Rendering is rnndeploy.report's job (``render_text``, ``render_markdown``,
    ``render_html``): numbers are formatted only there. Operation reports that are not
    results files (ValidationReport, PrecisionReport, BuildResult, NormalizeReport, ...)
    follow the same naming: ``to_dict()`` for JSON, ``render()`` for terminal text;
    ``describe()`` is reserved for data that says what something is (a runner's
    RunDescription).
    """

    kind: str
    machine: Mapping[str, Any]
    command: str

    def to_dict(self) -> Dict[str, Any]: ...
KINDS = ("parity", "bench", "tune", "loadtest")


def to_document(results: Sequence[Result]) -> Dict[str, Any]:
    """A results document holding ``results`` (objects with ``to_dict`` or plain dicts)."""
    items = [r if isinstance(r, dict) else r.to_dict() for r in results]
    for item in items:
        if item.get("kind") not in KINDS:
            raise ValueError(f"result of unknown kind {item.get('kind')!r}")
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "results": items}


_NUMBER_LIST = re.compile(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]")


def dumps_results(doc: Dict[str, Any]) -> str:
    """Indented, key-sorted JSON (stable diffs) with every list of numbers on one line
    (raw latency samples and error curves would otherwise take a line per number)."""
    text = dumps(doc, indent=1, sort_keys=True)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def write_results(path: str, results: Sequence[Result]) -> None:
    """Write a results document atomically (see ``dumps_results``; no NaN)."""
    write_text_atomic(path, dumps_results(to_document(results)))


def read_document(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate one results document.

    Raises:
        UsageError: missing file, invalid JSON, another format, or a newer schema version.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"results file {p} does not exist")
    try:
        doc = jsonio.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"results file {p} is not valid JSON: {exc}", "give the JSON written by parity/bench --json FILE") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"{p} is not an rnndeploy results file", "write one with parity/bench --json FILE")
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(f"results file {p}: schema_version must be an integer >= 1, got {version!r}",
                         "give the JSON written by parity/bench --json FILE")
    if version > SCHEMA_VERSION:
        raise UsageError(f"{p} has results schema version {version!r}; this rnndeploy reads up to {SCHEMA_VERSION}",
                         "upgrade rnndeploy on this machine")
    if not isinstance(doc.get("results"), list):
        raise UsageError(f"results file {p}: results must be a list, got {type_name(doc.get('results'))}",
                         "write one with parity/bench --json FILE")
    for i, r in enumerate(doc["results"]):
        parse_result(r, f"results file {p}: results[{i}]")
    return doc


def parse_result(r: Any, where: str) -> Result:
    """A typed result (ParityResult / BenchResult / TuneResult / LoadTestResult) from one entry of a document, checked.

    Raises:
        UsageError: not an object, an unknown kind, or a field of the wrong type.
    """
    from rnndeploy.bench.results import BenchResult
    from rnndeploy.parity.results import ParityResult

    f = Fields(r, where)
    kind = f.str("kind", choices=KINDS)
    if kind == "parity":
        return ParityResult.from_dict(r, where)
    if kind == "bench":
        return BenchResult.from_dict(r, where)
    if kind == "loadtest":
        from rnndeploy.triton.results import LoadTestResult

        return LoadTestResult.from_dict(r, where)
    from rnndeploy.tune.results import TuneResult

    try:  # its loader checks the containers; anything deeper that does not fit is the file's fault too
        return TuneResult.from_dict(r, where)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{where} is malformed ({type(exc).__name__}: {first_line(exc)})",
                         "give results written by rnndeploy tune --json FILE") from None


def merge(paths: Iterable[Union[str, Path]]) -> Dict[str, Any]:
    """One document with the results of every file, in order; exact duplicates dropped."""
    seen = set()
    results: List[Dict[str, Any]] = []
    for p in paths:
        for r in read_document(p)["results"]:
            key = json.dumps(r, sort_keys=True)
            if key not in seen:
                seen.add(key)
                results.append(r)
    return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "results": results}


def load_verified(paths: Sequence[Union[str, Path]]) -> Tuple[Dict[str, Any], List[Result]]:
    """(merged document, typed results) of ``paths``, refusing what a report cannot vouch for.

    Raises:
        UsageError: no results at all, or a result that compared / measured nothing
            (status "invalid"), named by file and index.
    """
    doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "results": []}
    typed: List[Result] = []
    seen = set()
    for p in paths:
        for i, r in enumerate(read_document(p)["results"]):
            key = json.dumps(r, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            result = parse_result(r, f"results file {p}: results[{i}]")
            if result.status == "invalid":
                raise UsageError(f"results file {p}: results[{i}] ({result.kind}) cannot be verified: "
                                 f"{result.invalid_reason()}", "give results written by parity/bench --json FILE")
            doc["results"].append(r)
            typed.append(result)
    if not typed:
        raise UsageError(f"no results in {', '.join(str(p) for p in paths)}: nothing to report",
                         "give results written by parity/bench --json FILE")
    return doc, typed


def load_results(doc: Dict[str, Any]) -> List[Result]:
    """Typed results (ParityResult / BenchResult) from a document (each checked)."""
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, list):
        raise UsageError("results document has no results list")
    return [parse_result(r, f"results[{i}]") for i, r in enumerate(results)]
