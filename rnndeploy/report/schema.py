"""The one JSON results format for parity and bench results, mergeable across machines.

    {
      "format": "rnndeploy.results",
      "schema_version": 1,
      "results": [ {"kind": "parity", ...ParityResult.to_dict()},
                   {"kind": "bench",  ...BenchResult.to_dict()}, ... ]
    }

Every result carries its own ``machine`` and ``command``, so documents written on a
CPU box and a GPU box merge by concatenating their ``results`` (``merge``). A reader
refuses documents with a newer schema version rather than misreading them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Union

from rnndeploy.errors import UsageError
from rnndeploy.fileio import write_text_atomic

FORMAT = "rnndeploy.results"
SCHEMA_VERSION = 1

Result = Any  # ParityResult | BenchResult | TuneResult (each has .kind and .to_dict())
KINDS = ("parity", "bench", "tune")


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
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
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
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"results file {p} is not valid JSON: {exc}", "give the JSON written by parity/bench --json FILE") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"{p} is not an rnndeploy results file", "write one with parity/bench --json FILE")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise UsageError(f"{p} has results schema version {version!r}; this rnndeploy reads up to {SCHEMA_VERSION}",
                         "upgrade rnndeploy on this machine")
    if not isinstance(doc.get("results"), list):
        raise UsageError(f"{p} has no results list")
    return doc


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


def load_results(doc: Dict[str, Any]) -> List[Result]:
    """Typed results (ParityResult / BenchResult) from a document."""
    from rnndeploy.bench.results import BenchResult
    from rnndeploy.parity.results import ParityResult

    out: List[Result] = []
    for r in doc["results"]:
        kind = r.get("kind")
        if kind == "parity":
            out.append(ParityResult.from_dict(r))
        elif kind == "bench":
            out.append(BenchResult.from_dict(r))
        elif kind == "tune":
            from rnndeploy.tune.results import TuneResult

            out.append(TuneResult.from_dict(r))
        else:
            raise UsageError(f"results document holds a result of unknown kind {kind!r}")
    return out
