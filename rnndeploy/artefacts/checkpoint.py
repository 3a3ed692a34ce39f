"""Checkpoint directories (``rnndeploy train --out``) as the deploy side sees them, torch-free.

The torch side loads a checkpoint with ``rnndeploy.checkpoint.load_model`` (hashes
verified by ``verify_checkpoint`` — which needs no torch and stays beside the writer —
weights from safetensors, never a pickle). The deploy side needs only two facts, read
here without torch: the model spec (``spec.json``) and the checkpoint's
identity, the sha256 of its ``manifest.json`` (which hashes every file of it) — the
value export records under ``rnndeploy.spec.EXPORT_CHECKPOINT_SHA256``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rnndeploy.errors import UsageError
from rnndeploy.fileio import PathLike, sha256_file
from rnndeploy.spec import ModelSpec

MANIFEST = "manifest.json"
SPEC = "spec.json"


def checkpoint_spec(path: PathLike) -> ModelSpec:
    """The ModelSpec a checkpoint stores in spec.json, after verifying every file's sha256
    against its manifest (rnndeploy.checkpoint.verify_checkpoint, torch-free): a damaged
    checkpoint fails here, not later inside torch.

    Raises:
        UsageError: not an rnndeploy checkpoint (no manifest.json, no spec.json), or spec.json unreadable.
        CheckpointError: a missing, pickled or altered file.
        SpecError: spec.json does not describe a model spec.
    """
    from rnndeploy.checkpoint import verify_checkpoint

    p = Path(path)
    if p.is_dir() and not (p / MANIFEST).is_file() and not (p / SPEC).is_file():
        raise UsageError(f"{path} is not an rnndeploy checkpoint (no {MANIFEST}, no {SPEC})",
                         "give a directory written by rnndeploy train --out, or an ONNX file")
    verify_checkpoint(p)
    spec_file = p / SPEC
    try:
        return ModelSpec.from_json(spec_file.read_text(encoding="utf-8"), str(spec_file))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {spec_file}: {exc}") from None


def manifest_sha256(path: PathLike) -> Optional[str]:
    """sha256 of the checkpoint's manifest.json (its identity), None when it has none."""
    manifest = Path(path) / MANIFEST
    return sha256_file(manifest) if manifest.is_file() else None
