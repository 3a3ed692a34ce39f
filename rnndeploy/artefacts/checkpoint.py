"""Checkpoint directories (``rnndeploy train --out``) as the deploy side sees them, torch-free.

The torch side loads a checkpoint with ``rnndeploy.checkpoint.load_model`` (hashes
verified, weights from safetensors, never a pickle). The deploy side needs only two
facts, read here without torch: the model spec (``spec.json``) and the checkpoint's
identity, the sha256 of its ``manifest.json`` (which hashes every file of it) — the
value export records under ``rnndeploy.spec.EXPORT_CHECKPOINT_SHA256``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rnndeploy.errors import UsageError
from rnndeploy.fileio import PathLike, sha256_file
from rnndeploy.spec import ModelSpec

MANIFEST = "manifest.json"
SPEC = "spec.json"


def checkpoint_spec(path: PathLike) -> ModelSpec:
    """The ModelSpec a checkpoint stores in spec.json.

    Raises:
        UsageError: not an rnndeploy checkpoint (no spec.json), or spec.json is not JSON.
        SpecError: spec.json does not describe a model spec.
    """
    p = Path(path) / SPEC
    if not p.is_file():
        raise UsageError(f"{path} is not an rnndeploy checkpoint (no {SPEC})",
                         "give a directory written by rnndeploy train --out, or an ONNX file")
    try:
        return ModelSpec.from_dict(json.loads(p.read_text()))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p} is not valid JSON: {exc}") from exc


def manifest_sha256(path: PathLike) -> Optional[str]:
    """sha256 of the checkpoint's manifest.json (its identity), None when it has none."""
    manifest = Path(path) / MANIFEST
    return sha256_file(manifest) if manifest.is_file() else None
