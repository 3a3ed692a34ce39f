"""Golden files: inputs + reference outputs + a JSON manifest, checkable on another machine.

A golden directory made on a training box (torch reference) is checked later by any
backend on a deployment box, in another process or Python, without torch::

    GOLDEN/
      manifest.json              what, by whom, with which versions (schema below)
      b1-s16.inputs.npz          arrays keyed by input name  (usable as --inputs)
      b1-s16.outputs.npz         arrays keyed by output name (usable as --expected)
      ...

manifest.json::

    {"format": "rnndeploy.golden", "version": 1, "created": ISO-8601,
     "model": {"name", "family", "graph", "with_state", "onnx_sha256", "checkpoint_sha256", "spec"},
     "reference": {"backend", "description": {...RunDescription}},
     "seed": int, "versions": {"python", "numpy", "onnx", "torch", "onnxruntime", "tensorrt", "rnndeploy"},
     "cases": [{"id", "sizes": {"batch", "seq", ...}, "inputs": FILE, "outputs": FILE,
                "shapes": {name: [dims]}, "dtypes": {name: dtype}}]}

Files are written into a temporary directory and renamed into place (never half-written).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from rnndeploy import jsonio
from rnndeploy.errors import SpecError, UsageError
from rnndeploy.fileio import atomic_dir, load_npz, save_npz, sha256_bytes
from rnndeploy.inputs import Case
from rnndeploy.spec import GraphSpec, ModelSpec
from rnndeploy.validation import Fields

FORMAT = "rnndeploy.golden"
VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Golden:
    """A loaded golden directory."""

    path: Path
    manifest: Mapping[str, Any]
    cases: List[Case]
    outputs: List[Dict[str, np.ndarray]]

    @property
    def reference_backend(self) -> str:
        return str(self.manifest.get("reference", {}).get("backend", "unknown"))

    @property
    def spec(self) -> Optional[ModelSpec]:
        spec = self.manifest.get("model", {}).get("spec")
        return None if spec is None else ModelSpec.from_dict(spec)


def save_golden(
    path: str,
    spec: ModelSpec,
    graph: str,
    with_state: bool,
    cases: Sequence[Case],
    outputs: Sequence[Mapping[str, np.ndarray]],
    reference: Mapping[str, Any],
    seed: int,
    model_hashes: Optional[Mapping[str, Optional[str]]] = None,
    versions: Optional[Mapping[str, Optional[str]]] = None,
) -> Path:
    """Write a golden directory (replacing an existing one only once the new one is complete).

    Args:
        reference: {"backend": name, "description": RunDescription.to_dict()}.
        model_hashes: {"onnx_sha256": ..., "checkpoint_sha256": ...} (None values allowed).
    """
    if len(cases) != len(outputs):
        raise ValueError("one outputs mapping per case")
    check_golden_target(path)
    entries = []
    with atomic_dir(path) as tmp:
        for case, outs in zip(cases, outputs):
            ifile, ofile = f"{case.id}.inputs.npz", f"{case.id}.outputs.npz"
            save_npz(tmp / ifile, case.inputs)
            save_npz(tmp / ofile, outs)
            arrays = {**case.inputs, **outs}
            entries.append({
                "id": case.id,
                "sizes": dict(case.sizes),
                "inputs": ifile,
                "outputs": ofile,
                "shapes": {k: list(np.shape(v)) for k, v in arrays.items()},
                "dtypes": {k: str(np.asarray(v).dtype) for k, v in arrays.items()},
            })
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "name": spec.name,
                "family": spec.family,
                "graph": graph,
                "with_state": with_state,
                "spec": spec.to_dict(),
                "spec_sha256": sha256_bytes(spec.to_json().encode()),
                **{k: v for k, v in (model_hashes or {}).items()},
            },
            "reference": dict(reference),
            "seed": seed,
            "versions": dict(versions or {}),
            "cases": entries,
        }
        (tmp / MANIFEST).write_text(jsonio.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Path(path)


def check_golden_target(path: str) -> None:
    """Refuse to replace an existing directory that is not a golden (``--save-golden`` replaces
    the whole directory: a typo must not wipe something else).

    Raises:
        UsageError: a non-empty directory without a golden manifest, or a file.
    """
    p = Path(path)
    if not p.exists():
        return
    if not p.is_dir():
        raise UsageError(f"--save-golden {p} exists and is not a directory", "give a new directory name")
    if not any(p.iterdir()):
        return
    try:
        is_golden = jsonio.loads((p / MANIFEST).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        is_golden = False
    if not is_golden:
        raise UsageError(f"--save-golden {p} exists and is not a golden directory; refusing to replace it",
                         "choose a new directory (an existing golden there would be replaced)")


def load_golden(path: str) -> Golden:
    """Read a golden directory written by ``save_golden`` (any rnndeploy, any Python ≥ 3.9).

    The manifest is checked field by field; case files must be plain names inside the
    directory (a manifest cannot point elsewhere).

    Raises:
        UsageError: missing directory / manifest, unknown format, newer version, a field
            of the wrong type, missing or unreadable files.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"golden directory {p} does not exist", "make one with --save-golden DIR")
    if not p.is_dir():
        raise UsageError(f"golden {p} is not a directory", "give the directory written by --save-golden DIR")
    mf = p / MANIFEST
    if not mf.is_file():
        raise UsageError(f"golden directory {p} has no {MANIFEST}", "make one with --save-golden DIR")
    try:
        manifest = jsonio.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{mf} is not valid JSON: {exc}") from None
    f = Fields(manifest, str(mf))
    if manifest.get("format") != FORMAT:
        raise UsageError(f"{mf} is not an rnndeploy golden manifest (format {manifest.get('format')!r})")
    version = f.int("version", minimum=1)
    if version > VERSION:
        raise UsageError(f"{mf} has golden format version {version}, newer than this rnndeploy reads ({VERSION})",
                         "upgrade rnndeploy on this machine")
    model = f.record("model", required=False)
    if model is not None and model.has("spec"):
        ModelSpec.from_dict(model.mapping("spec"), model.path("spec"))
    reference = f.record("reference", required=False)
    if reference is not None:
        reference.str("backend", required=False)
    f.int("seed", required=False)
    cases, outputs = [], []
    for entry in f.records("cases"):
        case_id = entry.str("id")
        files = {}
        for key in ("inputs", "outputs"):
            name = entry.str(key)
            if Path(name).name != name or name in (".", ".."):
                raise entry.fail(key, "a file name inside the golden directory", name)
            files[key] = load_npz(str(p / name), f"golden {key} ({case_id})")
        cases.append(Case(case_id, entry.sizes("sizes", required=False), files["inputs"]))
        outputs.append(files["outputs"])
    if not cases:
        raise UsageError(f"golden directory {p} holds no cases", "make it again with --save-golden DIR")
    return Golden(p, manifest, cases, outputs)


def check_golden_matches(golden: Golden, graph: GraphSpec, onnx_sha256: Optional[str] = None,
                         checkpoint_sha256: Optional[str] = None) -> List[str]:
    """Warnings when the golden was made from a different model; errors when it cannot fit.

    Raises:
        SpecError: the golden's outputs are not this graph's outputs.
    """
    warnings: List[str] = []
    names = {t.name for t in graph.outputs}
    for i, outs in enumerate(golden.outputs):
        missing = sorted(names - set(outs))
        if missing:
            raise SpecError(f"golden case {golden.cases[i].id!r} lacks outputs {', '.join(missing)} of graph {graph.name!r}",
                            "make the golden from the same model (or pass --graph)")
    model = golden.manifest.get("model", {})
    same_onnx = onnx_sha256 is not None and model.get("onnx_sha256") == onnx_sha256
    same_ckpt = checkpoint_sha256 is not None and model.get("checkpoint_sha256") == checkpoint_sha256
    known = [k for k in ("onnx_sha256", "checkpoint_sha256") if model.get(k)]
    if known and not (same_onnx or same_ckpt):
        warnings.append(f"golden {golden.path} was made from a model with different hashes "
                        f"({', '.join(f'{k}={str(model[k])[:12]}' for k in known)}); comparing anyway")
    return warnings
