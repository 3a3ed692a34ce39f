"""Turn what the user named (an ONNX file, a checkpoint directory, an engine, a module) into a ModelSource.

The spec comes from, in order: the ONNX file's rnndeploy metadata; a best-effort spec
of a foreign ONNX file's declared inputs/outputs; the checkpoint (torch side, loaded
only when no ONNX file is given). The streaming form (``with_state``) follows the ONNX
file: it is on when the file takes the spec's optional state inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from rnndeploy.backends.base import ModelSource
from rnndeploy.errors import UsageError
from rnndeploy.fileio import sha256_file

ENGINE_SUFFIXES = (".plan", ".engine", ".trt")


def classify(model: str) -> str:
    """"onnx", "checkpoint", "engine", "module" or "keras" for a positional MODEL argument."""
    from rnndeploy.keras.archive import is_keras_path

    p = Path(model)
    if p.is_dir():
        return "checkpoint"
    if p.suffix == ".onnx":
        return "onnx"
    if is_keras_path(model):
        return "keras"
    if p.suffix in ENGINE_SUFFIXES:
        return "engine"
    if ".py:" in model:
        return "module"
    if not p.exists():
        raise UsageError(f"model {model} does not exist", "give an ONNX file, a checkpoint directory, an engine (.plan), "
                                                           "a Keras model (.keras/.h5) or a module as path/to/file.py:factory")
    raise UsageError(f"model {model}: cannot tell what it is from its name",
                     "ONNX files end in .onnx, engines in .plan/.engine, checkpoints are directories")


def resolve_source(
    model: Optional[str] = None,
    *,
    onnx: Optional[str] = None,
    checkpoint: Optional[str] = None,
    module: Optional[str] = None,
    engine: Optional[str] = None,
    graph: Optional[str] = None,
    with_state: Optional[bool] = None,
    auto_checkpoint: bool = True,
    keras: Optional[str] = None,
) -> ModelSource:
    """A ModelSource from the positional MODEL and/or the explicit artefact options.

    With ``auto_checkpoint``, an ONNX file exported by ``rnndeploy export`` from a
    checkpoint directory that still exists here, unchanged (its manifest hash equals the
    one the export recorded), brings that checkpoint along, so torch can be the
    reference without naming it.
    """
    arts: Dict[str, Optional[str]] = {"onnx": onnx, "checkpoint": checkpoint, "module": module, "engine": engine,
                                      "keras": keras}
    if model:
        kind = classify(model)
        if arts[kind] and arts[kind] != model:
            raise UsageError(f"MODEL {model} is a {kind}, and --{kind} {arts[kind]} names another one", "give one of them")
        arts[kind] = model
    if not any(arts.values()):
        raise UsageError("no model given", "pass MODEL (an ONNX file, checkpoint directory or engine)")
    for key in ("onnx", "engine", "checkpoint", "keras"):
        path = arts[key]
        if path and not Path(path).exists():
            raise UsageError(f"{key} {path} does not exist")
    if arts["module"] and not Path(arts["module"].rsplit(":", 1)[0]).is_file():
        raise UsageError(f"module file {arts['module'].rsplit(':', 1)[0]} does not exist", "write --module path/to/file.py:factory")

    if arts["checkpoint"]:
        _spec_from_checkpoint(arts["checkpoint"])  # a damaged checkpoint fails now, not inside torch
    if arts["onnx"]:
        spec, meta_graph, state_default = _spec_from_onnx(arts["onnx"])
        if arts["checkpoint"]:
            check_exported_from(arts["onnx"], arts["checkpoint"])
        elif auto_checkpoint and not arts["module"]:
            arts["checkpoint"] = _exported_from(arts["onnx"])
    elif arts["checkpoint"]:
        spec, meta_graph, state_default = _spec_from_checkpoint(arts["checkpoint"]), None, False
    elif arts["engine"]:
        spec, meta_graph, state_default = _spec_from_engine_sidecar(arts["engine"])
    elif arts["keras"]:
        spec, meta_graph, state_default = _spec_from_keras(arts["keras"], bool(with_state))
    else:
        raise UsageError("a user module (--module) carries no input/output spec",
                         "also pass the ONNX file exported from it (--onnx FILE)")
    g = graph or meta_graph
    if g is None:
        g = "model" if "model" in spec.graphs else next(iter(spec.graphs))
    spec.graph(g)  # raises with the list of graphs
    ws = state_default if with_state is None else with_state
    if ws and not any(t.optional for t in spec.graph(g).inputs):
        raise UsageError(f"graph {g!r} of {spec.name!r} has no streaming (with-state) form", "drop --with-state")
    return ModelSource(spec=spec, graph=g, with_state=ws, **arts)


def model_hashes(source: ModelSource) -> Dict[str, Optional[str]]:
    """{"onnx_sha256", "checkpoint_sha256"} as far as they can be known without torch.

    The checkpoint hash is the one the ONNX file's export metadata records, else the
    sha256 of the checkpoint's manifest.json (which hashes every file of it).
    """
    out: Dict[str, Optional[str]] = {"onnx_sha256": None, "checkpoint_sha256": None}
    if source.onnx:
        out["onnx_sha256"] = sha256_file(source.onnx)
        info = _export_info(source.onnx)
        for k, v in info.items():
            if "checkpoint" in k and "sha256" in k and isinstance(v, str):
                out["checkpoint_sha256"] = v
    if source.engine and out["onnx_sha256"] is None:
        # an engine's sidecar records the ONNX file it was built from
        import json

        side = Path(source.engine + ".json")
        try:
            onnx_info = json.loads(side.read_text()).get("onnx", {}) if side.is_file() else {}
        except (OSError, ValueError):
            onnx_info = {}
        if isinstance(onnx_info, dict) and isinstance(onnx_info.get("sha256"), str):
            out["onnx_sha256"] = onnx_info["sha256"]
    if source.checkpoint and out["checkpoint_sha256"] is None:
        manifest = Path(source.checkpoint) / "manifest.json"
        if manifest.is_file():
            out["checkpoint_sha256"] = sha256_file(manifest)
    return out


# -- helpers -----------------------------------------------------------------------------------------
def _load_onnx(path: str) -> Any:
    from rnndeploy.onnx_file import load_onnx

    return load_onnx(path, external_data=False)


def _spec_from_onnx(path: str) -> Tuple[Any, Optional[str], bool]:
    from rnndeploy.spec import has_rnndeploy_metadata, read_onnx_metadata, spec_from_onnx_io

    model = _load_onnx(path)
    if not has_rnndeploy_metadata(model):
        return spec_from_onnx_io(model, name=Path(path).stem), "model", False
    spec, graph, _info = read_onnx_metadata(model, path)
    init = {i.name for i in model.graph.initializer}
    file_inputs = {i.name for i in model.graph.input if i.name not in init}
    optional = [t.name for t in spec.graph(graph).inputs if t.optional]
    with_state = bool(optional) and all(n in file_inputs for n in optional)
    return spec, graph, with_state


def check_exported_from(onnx_path: str, checkpoint: str) -> None:
    """Refuse a checkpoint that is not the one ``onnx_path`` records it was exported from.

    rnndeploy export writes the sha256 of the checkpoint's manifest.json (which hashes
    every file of it) into the ONNX metadata; a different checkpoint would make torch a
    reference for another model. Files without that record (foreign, user modules) pass.

    Raises:
        UsageError: the hashes differ.
    """
    recorded = _export_info(onnx_path).get("checkpoint_sha256")
    manifest = Path(checkpoint) / "manifest.json"
    if not isinstance(recorded, str) or not manifest.is_file():
        return
    actual = sha256_file(manifest)
    if actual != recorded:
        raise UsageError(
            f"checkpoint {checkpoint} is not the model this ONNX file was exported from: {onnx_path} records "
            f"checkpoint sha256 {recorded[:12]}…, {checkpoint} has {actual[:12]}…",
            "give the checkpoint it was exported from, or export this checkpoint again (rnndeploy export)",
        )


def _exported_from(onnx_path: str) -> Optional[str]:
    """The checkpoint directory an ONNX file was exported from, if it is here and unchanged."""
    info = _export_info(onnx_path)
    ck, digest = info.get("checkpoint"), info.get("checkpoint_sha256")
    if not isinstance(ck, str) or not isinstance(digest, str):
        return None
    manifest = Path(ck) / "manifest.json"
    if not manifest.is_file() or sha256_file(manifest) != digest:
        return None
    return ck


def _export_info(path: str) -> Dict[str, Any]:
    from rnndeploy.spec import has_rnndeploy_metadata, read_onnx_metadata

    model = _load_onnx(path)
    return read_onnx_metadata(model, path)[2] if has_rnndeploy_metadata(model) else {}


def _spec_from_checkpoint(path: str) -> Any:
    """The ModelSpec a ``rnndeploy train`` checkpoint stores in spec.json (read without torch)."""

    from rnndeploy.checkpoint import verify_checkpoint
    from rnndeploy.spec import ModelSpec

    if Path(path).is_dir() and not (Path(path) / "manifest.json").is_file() and not (Path(path) / "spec.json").is_file():
        raise UsageError(f"{path} is not an rnndeploy checkpoint (no manifest.json, no spec.json)",
                         "give a directory written by rnndeploy train --out, or an ONNX file")
    verify_checkpoint(path)  # every file's sha256 (no torch needed)
    p = Path(path) / "spec.json"
    try:
        return ModelSpec.from_json(p.read_text(encoding="utf-8"), str(p))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {p}: {exc}") from None


def _spec_from_keras(path: str, with_state: bool) -> Tuple[Any, Optional[str], bool]:
    """The spec the Keras converter derives from a .keras / .h5 file (numpy, onnx and h5py only)."""
    from rnndeploy.keras import ConvertOptions, convert_keras, load_keras_file

    conv = convert_keras(load_keras_file(path), ConvertOptions(with_state=with_state))
    return conv.spec, "model", conv.streaming


def _spec_from_engine_sidecar(path: str) -> Tuple[Any, Optional[str], bool]:
    """The spec stored beside an engine (``model.plan.json`` with a "spec" key), if any."""
    import json

    from rnndeploy.spec import ModelSpec

    for side in (Path(path + ".json"), Path(path).with_suffix(".json")):
        if side.is_file():
            try:
                meta = json.loads(side.read_text())
            except json.JSONDecodeError as exc:
                raise UsageError(f"engine sidecar {side} is not valid JSON: {exc}") from exc
            if isinstance(meta, dict) and isinstance(meta.get("spec"), dict):
                spec = ModelSpec.from_dict(meta["spec"])
                return spec, meta.get("graph"), bool(meta.get("with_state", False))
    raise UsageError(f"engine {path} has no sidecar carrying the model spec",
                     "also pass the ONNX file it was built from (--onnx FILE)")
