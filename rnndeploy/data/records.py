"""Readers for users' record files: CSV/TSV with a header row, or JSONL."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List

from rnndeploy.data.base import require_columns
from rnndeploy.errors import DataError


def format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".tsv":
        return "tsv"
    return "csv"


def read_records(path: Path, fmt: str, wanted: Dict[str, str]) -> List[Dict[str, Any]]:
    """Rows of a CSV/TSV (with header) or JSONL file as dicts; checks ``wanted`` fields exist."""
    records: List[Dict[str, Any]] = []
    try:
        if fmt == "jsonl":
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"{path}: line {lineno} is not JSON ({exc.msg})", "write one JSON object per line"
                        ) from None
                    if not isinstance(obj, dict):
                        raise DataError(f"{path}: line {lineno} is a JSON {type(obj).__name__}, not an object")
                    if not records or any(c not in obj for c in wanted.values()):
                        require_columns(list(obj), wanted, Path(f"{path} line {lineno}"))
                    records.append(obj)
        else:
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
                require_columns([c.strip() for c in reader.fieldnames or []], wanted, path)
                for row in reader:
                    records.append({k.strip(): v for k, v in row.items() if k is not None})
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason})", "save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV: {exc}") from None
    if not records:
        raise DataError(f"{path} holds no records", "give a file with at least a few labelled rows")
    for i, r in enumerate(records):
        for c in wanted.values():
            if r.get(c) is None:
                raise DataError(f"{path}: record {i + 1} has no value in {c!r}", "fill or drop incomplete rows")
    return records
