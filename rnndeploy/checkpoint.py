"""Checkpoint directories: safe to write (atomic), safe to read (no pickle, hashes checked).

Layout of a checkpoint directory (``rnndeploy train --out DIR``)::

    weights.safetensors   the model's state_dict (safetensors: tensors only, no code)
    model.json            the zoo's resolved model config (build_model input)
    data_info.json        dataset facts: sizes, vocabularies, normalisation statistics
    spec.json             the ModelSpec (what export writes into the ONNX metadata)
    recipe.json           the resolved recipe (every default filled in)
    metrics.json          per-epoch history, best-epoch val/test metrics, quality verdict
    manifest.json         sha256 of every file above + versions (torch, rnndeploy, python)

The directory is built under a temporary name and renamed into place, so a crash
leaves either the previous checkpoint or nothing.

Reading (``load_model``) verifies every hash in the manifest before anything is
parsed, never unpickles (``.pt``/``.pth``/``.pkl``/``.bin`` files and pickle/zip
payloads are refused with a CheckpointError), and checks that the weights match the
model the config builds, naming missing, unexpected and mis-shaped tensors.

Stable interface for export and parity::

    ckpt = load_model("runs/sine")       # LoadedCheckpoint
    ckpt.model                           # ZooModel in eval mode, weights loaded
    ckpt.spec, ckpt.recipe, ckpt.data_info, ckpt.manifest, ckpt.metrics
    ckpt.weights_sha256, ckpt.manifest_sha256
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from rnndeploy import jsonio
from rnndeploy.artefacts.checkpoint import MANIFEST
from rnndeploy.errors import CheckpointError, RnnDeployError
from rnndeploy.fileio import atomic_dir, sha256_file
from rnndeploy.optional import require
from rnndeploy.recipe import Recipe
from rnndeploy.spec import ModelSpec
from rnndeploy.validation import Fields

FORMAT = "rnndeploy-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
JSON_FILES = ("model.json", "data_info.json", "spec.json", "recipe.json", "metrics.json")
REQUIRED = (WEIGHTS,) + JSON_FILES
# File types that are (or usually wrap) Python pickles: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib", ".tar")
EXPECTED = f"a checkpoint directory written by `rnndeploy train` ({WEIGHTS} + {MANIFEST})"


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A verified checkpoint with its model rebuilt and weights loaded (eval mode)."""

    path: str
    model: Any  # rnndeploy.models.ZooModel
    recipe: Recipe
    spec: ModelSpec
    model_config: Dict[str, Any]
    data_info: Dict[str, Any]
    metrics: Dict[str, Any]
    manifest: Dict[str, Any]
    weights_sha256: str
    manifest_sha256: str

    @property
    def name(self) -> str:
        return self.spec.name


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf floats become None (metrics of a diverged run)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def versions() -> Dict[str, Optional[str]]:
    """Versions recorded in a manifest (rnndeploy.environment.package_versions)."""
    from rnndeploy.environment import package_versions

    return package_versions(("rnndeploy", "torch", "numpy", "safetensors"))


def check_output_dir(out_dir: Union[str, Path]) -> Path:
    """``out_dir`` as a Path after checking a checkpoint may be written there.

    A new path, an empty directory, or an existing rnndeploy checkpoint (replaced
    atomically) are fine. Anything else is refused: replacing a directory means
    deleting it, and ``--out .`` or ``--out ~/data`` must never delete a user's files.
    """
    from rnndeploy.errors import UsageError
    from rnndeploy.fileio import check_parent_dir

    p = check_parent_dir(out_dir, "checkpoint")
    if not p.exists():
        return p
    if not p.is_dir():
        raise UsageError(f"checkpoint path {p} exists and is a file", "choose a directory name for --out")
    if not any(p.iterdir()):
        return p
    try:
        manifest = jsonio.loads((p / MANIFEST).read_text(encoding="utf-8"))
        is_checkpoint = isinstance(manifest, dict) and manifest.get("format") == FORMAT
    except (OSError, ValueError, UnicodeDecodeError):
        is_checkpoint = False
    if not is_checkpoint:
        raise UsageError(
            f"checkpoint path {p} exists and is not an rnndeploy checkpoint; refusing to replace it",
            "choose a new directory for --out (an existing checkpoint there would be replaced)",
        )
    return p


def save_checkpoint(
    out_dir: Union[str, Path], model: Any, recipe: Recipe, data_info: Mapping[str, Any], result: Any
) -> Path:
    """Write ``model`` (+ recipe, data facts, metrics) as a checkpoint directory, atomically.

    ``result`` is a rnndeploy.train.TrainResult (its ``to_dict()`` becomes metrics.json).
    An existing directory at ``out_dir`` is replaced only once the new one is complete.
    """
    require("safetensors", "writing checkpoints")
    import safetensors.torch as st

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    out = check_output_dir(out_dir)
    with atomic_dir(out) as tmp:
        # One metadata key only: safetensors writes the metadata map in hash order, so
        # several keys would make the bytes (and the manifest hash) differ run to run.
        st.save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        _json(tmp / "model.json", model.config)
        _json(tmp / "data_info.json", dict(data_info))
        _json(tmp / "spec.json", model.spec().to_dict())
        _json(tmp / "recipe.json", _finite(recipe.to_dict()))
        _json(tmp / "metrics.json", _finite(result.to_dict()))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": model.config["name"],
            "recipe": recipe.name,
            "files": {name: sha256_file(tmp / name) for name in REQUIRED},
            "versions": versions(),
        }
        _json(tmp / MANIFEST, manifest)
    return out


def _refuse_pickle(path: Path) -> None:
    raise CheckpointError(
        f"{path} is a pickle-based file, not a checkpoint directory; rnndeploy never loads pickles "
        "(unpickling can run arbitrary code)",
        f"give {EXPECTED}; to convert a PyTorch state_dict you trust, re-train with `rnndeploy train` "
        "or save it with safetensors",
    )


def _looks_pickled(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    # pickle protocol 2+ starts with 0x80; torch.save's zip format with "PK\x03\x04".
    return head[:1] == b"\x80" or head == b"PK\x03\x04"


def verify_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """The manifest of the checkpoint at ``path`` after checking every file's sha256.

    Needs no torch. Raises CheckpointError for a missing directory, a pickle, a missing
    or malformed manifest, a missing file, or a file whose hash differs.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist", f"give {EXPECTED}")
    if p.is_file():
        if p.suffix.lower() in PICKLE_SUFFIXES or _looks_pickled(p):
            _refuse_pickle(p)
        if p.suffix.lower() == ".safetensors":
            raise CheckpointError(f"{p} is a bare weights file without its config", f"give its directory: {EXPECTED}")
        raise CheckpointError(f"{p} is a file, not a checkpoint directory", f"give {EXPECTED}")
    mpath = p / MANIFEST
    if not mpath.is_file():
        pickles = sorted(f.name for f in p.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            _refuse_pickle(p / pickles[0])
        raise CheckpointError(f"{p} is not an rnndeploy checkpoint: it has no {MANIFEST}", f"give {EXPECTED}")
    try:
        manifest = jsonio.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{mpath} is not valid JSON ({exc})", "the checkpoint is damaged; re-train it") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        raise CheckpointError(f"{mpath} is not an rnndeploy checkpoint manifest", f"give {EXPECTED}")
    version = Fields(manifest, str(mpath), CheckpointError).int("format_version", required=False, default=0, minimum=0)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {manifest.get('format_version')}, "
            f"newer than this rnndeploy reads ({FORMAT_VERSION})",
            "upgrade rnndeploy",
        )
    files = manifest["files"]
    missing_entries = [f for f in REQUIRED if f not in files]
    if missing_entries:
        raise CheckpointError(
            f"{mpath} does not list {', '.join(missing_entries)}", "the checkpoint is damaged; re-train it"
        )
    for name, expected in sorted(files.items()):
        fp = p / name
        if Path(name).name != name:
            raise CheckpointError(f"{mpath} lists {name!r}, which is not a file name inside the checkpoint")
        if not fp.is_file():
            raise CheckpointError(
                f"checkpoint {p} lacks {name}, listed in its manifest", "the checkpoint is incomplete; re-train it"
            )
        actual = sha256_file(fp)
        if actual != expected:
            raise CheckpointError(
                f"{fp} does not match the manifest (sha256 {actual[:16]}…, manifest {str(expected)[:16]}…)",
                "the file was modified or corrupted after training; re-train, or restore the original file",
            )
    return manifest


def _read_json(p: Path, name: str) -> Any:
    try:
        return jsonio.loads((p / name).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p / name} is not valid JSON ({exc})") from None


def load_model(path: Union[str, Path], device: str = "cpu") -> LoadedCheckpoint:
    """Verify, rebuild and load a checkpoint directory (see the module docstring).

    Raises:
        CheckpointError: missing/pickled/tampered files, or weights that do not fit
            the model the config describes.
    """
    torch = require("torch", "loading checkpoints")
    require("safetensors", "loading checkpoints")
    import safetensors.torch as st

    from rnndeploy.models import build_model

    p = Path(path)
    manifest = verify_checkpoint(p)
    model_cfg = _read_json(p, "model.json")
    data_info = _read_json(p, "data_info.json")
    try:
        recipe = Recipe.from_dict(_read_json(p, "recipe.json"), origin=str(p / "recipe.json"))
        spec = ModelSpec.from_dict(_read_json(p, "spec.json"), str(p / "spec.json"))
    except RnnDeployError as err:
        raise CheckpointError(f"{p}: {err.message}", err.hint) from None
    try:
        model = build_model(model_cfg, data_info)
    except RnnDeployError as err:
        raise CheckpointError(
            f"{p / 'model.json'} does not describe a model this rnndeploy can build: {err.message}", err.hint
        ) from None
    try:
        weights = st.load_file(str(p / WEIGHTS), device=device)
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError types
        raise CheckpointError(f"{p / WEIGHTS} is not a readable safetensors file ({exc})") from None
    _check_tensors(p, model.state_dict(), weights)
    model.load_state_dict(weights, strict=True)
    model.to(torch.device(device))
    model.eval()
    return LoadedCheckpoint(
        path=str(p),
        model=model,
        recipe=recipe,
        spec=spec,
        model_config=model_cfg,
        data_info=data_info,
        metrics=_read_json(p, "metrics.json"),
        manifest=manifest,
        weights_sha256=manifest["files"][WEIGHTS],
        manifest_sha256=sha256_file(p / MANIFEST),
    )


def _check_tensors(p: Path, expected: Mapping[str, Any], found: Mapping[str, Any]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped: List[str] = [
        f"{k} {tuple(found[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    wrong_dtype = [
        f"{k} {found[k].dtype} vs {expected[k].dtype}"
        for k in sorted(set(expected) & set(found))
        if found[k].dtype != expected[k].dtype
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:5]) + (" …" if len(missing) > 5 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:5]) + (" …" if len(unexpected) > 5 else ""))
    if misshaped:
        problems.append(
            "mis-shaped (weights vs config) " + "; ".join(misshaped[:5]) + (" …" if len(misshaped) > 5 else "")
        )
    if wrong_dtype:
        problems.append("wrong dtype " + "; ".join(wrong_dtype[:5]))
    if problems:
        raise CheckpointError(
            f"{p / WEIGHTS} does not match the model in {p / 'model.json'}: {' | '.join(problems)}",
            "model.json and the weights come from different models; re-train, or restore the matching model.json",
        )
