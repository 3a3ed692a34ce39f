"""Turn what the user named (an ONNX file, a checkpoint directory, an engine, a module) into a ModelSource.

The spec comes from, in order: the ONNX file's rnndeploy metadata; a best-effort spec
of a foreign ONNX file's declared inputs/outputs; the checkpoint's spec.json; the
engine's sidecar. The streaming form (``with_state``) follows the ONNX file: it is on
when the file takes the spec's optional state inputs. Every file is read through its
one loader (rnndeploy.artefacts, rnndeploy.engine.sidecar).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from rnndeploy.artefacts.checkpoint import checkpoint_spec, manifest_sha256
from rnndeploy.artefacts.naming import classify
from rnndeploy.artefacts.onnx_file import OnnxMetadata, load_metadata, load_onnx
from rnndeploy.artefacts.user_module import split_module_ref
from rnndeploy.backends.base import ModelSource
from rnndeploy.errors import UsageError
from rnndeploy.fileio import sha256_file
from rnndeploy.spec import EXPORT_CHECKPOINT, EXPORT_CHECKPOINT_SHA256, ModelSpec, spec_from_onnx_io

__all__ = ["check_exported_from", "classify", "model_hashes", "resolve_source"]


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
    if graph is not None and not graph.strip():
        raise UsageError("--graph is empty", "name a graph of the model (e.g. encoder, decoder_step), or leave it out")
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
    if arts["module"]:
        split_module_ref(arts["module"], "--module")
    if arts["engine"]:
        _check_engine_file(arts["engine"])
    ckpt_spec = checkpoint_spec(arts["checkpoint"]) if arts["checkpoint"] else None  # a damaged one fails now

    if arts["onnx"]:
        spec, meta_graph, state_default, info = _spec_from_onnx(arts["onnx"])
        if arts["checkpoint"]:
            check_exported_from(arts["onnx"], info, arts["checkpoint"])
        elif auto_checkpoint and not arts["module"]:
            arts["checkpoint"] = _exported_from(info)
    elif ckpt_spec is not None:
        spec, meta_graph, state_default = ckpt_spec, None, False
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
    if arts["onnx"] and with_state is False and state_default:
        states = ", ".join(t.name for t in spec.graph(g).inputs if t.optional)
        raise UsageError(f"--without-state: {arts['onnx']} takes its state inputs ({states}) as required inputs, "
                         "so no ONNX runtime can run it without them",
                         "drop --without-state (zero states are fed), or export the model without --with-state")
    if ws and not any(t.optional for t in spec.graph(g).inputs):
        raise UsageError(f"graph {g!r} of {spec.name!r} has no streaming (with-state) form", "drop --with-state")
    return ModelSource(spec=spec, graph=g, with_state=ws, **arts)


def model_hashes(source: ModelSource) -> Dict[str, Optional[str]]:
    """{"onnx_sha256", "checkpoint_sha256"} as far as they can be known without torch.

    The checkpoint hash is the one the ONNX file's export metadata records (key
    EXPORT_CHECKPOINT_SHA256), else the sha256 of the checkpoint's manifest.json (which
    hashes every file of it). An engine's sidecar records the ONNX file it was built from.
    """
    out: Dict[str, Optional[str]] = {"onnx_sha256": None, "checkpoint_sha256": None}
    if source.onnx:
        out["onnx_sha256"] = sha256_file(source.onnx)
        recorded = _export_info(source.onnx).get(EXPORT_CHECKPOINT_SHA256)
        if isinstance(recorded, str):
            out["checkpoint_sha256"] = recorded
    if source.engine and out["onnx_sha256"] is None:
        from rnndeploy.engine.sidecar import read_sidecar

        side = read_sidecar(source.engine)
        built_from = (side.data.get("onnx") if side is not None else None) or {}
        if isinstance(built_from, dict) and isinstance(built_from.get("sha256"), str):
            out["onnx_sha256"] = built_from["sha256"]
    if source.checkpoint and out["checkpoint_sha256"] is None:
        out["checkpoint_sha256"] = manifest_sha256(source.checkpoint)
    return out


# -- helpers -----------------------------------------------------------------------------------------
def _spec_from_onnx(path: str) -> Tuple[ModelSpec, Optional[str], bool, Dict[str, Any]]:
    """(spec, graph, streaming form, export info) of an ONNX file; a foreign file gets the
    spec of its declared inputs and outputs."""
    model = load_onnx(path, external_data=False)
    meta: Optional[OnnxMetadata] = load_metadata(model, path)
    if meta is None:
        return spec_from_onnx_io(model, name=Path(path).stem), "model", False, {}
    init = {i.name for i in model.graph.initializer}
    file_inputs = {i.name for i in model.graph.input if i.name not in init}
    optional = [t.name for t in meta.spec.graph(meta.graph).inputs if t.optional]
    with_state = bool(optional) and all(n in file_inputs for n in optional)
    return meta.spec, meta.graph, with_state, meta.export_info


def check_exported_from(onnx_path: str, info: Dict[str, Any], checkpoint: str) -> None:
    """Refuse a checkpoint that is not the one ``onnx_path`` records it was exported from.

    rnndeploy export writes the sha256 of the checkpoint's manifest.json (which hashes
    every file of it) into the ONNX metadata (``info``, key EXPORT_CHECKPOINT_SHA256); a
    different checkpoint would make torch a reference for another model. Files without
    that record (foreign, user modules) pass.

    Raises:
        UsageError: the hashes differ.
    """
    recorded = info.get(EXPORT_CHECKPOINT_SHA256)
    actual = manifest_sha256(checkpoint)
    if not isinstance(recorded, str) or actual is None:
        return
    if actual != recorded:
        raise UsageError(
            f"checkpoint {checkpoint} is not the model this ONNX file was exported from: {onnx_path} records "
            f"checkpoint sha256 {recorded[:12]}…, {checkpoint} has {actual[:12]}…",
            "give the checkpoint it was exported from, or export this checkpoint again (rnndeploy export)",
        )


def _exported_from(info: Dict[str, Any]) -> Optional[str]:
    """The checkpoint directory an ONNX file was exported from, if it is here and unchanged."""
    ck, digest = info.get(EXPORT_CHECKPOINT), info.get(EXPORT_CHECKPOINT_SHA256)
    if not isinstance(ck, str) or not isinstance(digest, str):
        return None
    return ck if manifest_sha256(ck) == digest else None


def _export_info(path: str) -> Dict[str, Any]:
    meta = load_metadata(load_onnx(path, external_data=False), path)
    return {} if meta is None else meta.export_info


def _spec_from_keras(path: str, with_state: bool) -> Tuple[ModelSpec, Optional[str], bool]:
    """The spec the Keras converter derives from a .keras / .h5 file (numpy, onnx and h5py only)."""
    from rnndeploy.keras import ConvertOptions, convert_keras, load_keras_file

    conv = convert_keras(load_keras_file(path), ConvertOptions(with_state=with_state))
    return conv.spec, "model", conv.streaming


def _check_engine_file(path: str) -> None:
    """An engine named with --engine, checked without TensorRT: a file, not an ONNX file or
    a directory, and its sidecar (when it has one) readable and typed."""
    from rnndeploy.engine.sidecar import read_sidecar

    p = Path(path)
    if p.is_dir():
        raise UsageError(f"engine {path} is a directory", "give the engine file (MODEL.plan)")
    if p.suffix.lower() == ".onnx":
        raise UsageError(f"--engine {path} is an ONNX file, not a TensorRT engine",
                         "build one with rnndeploy build-engine MODEL.onnx -o MODEL.plan, or pass the ONNX file as MODEL")
    if p.stat().st_size == 0:
        raise UsageError(f"engine {path} is empty (0 bytes)", "build it again with rnndeploy build-engine")
    read_sidecar(path)


def _spec_from_engine_sidecar(path: str) -> Tuple[ModelSpec, Optional[str], bool]:
    """The spec, graph and streaming form an engine's sidecar records."""
    from rnndeploy.engine.sidecar import read_sidecar

    side = read_sidecar(path, required=True)
    if not side.spec:
        raise UsageError(f"engine {path}'s sidecar carries no model spec",
                         "also pass the ONNX file it was built from (--onnx FILE), or rebuild with rnndeploy build-engine")
    return ModelSpec.from_dict(side.spec), side.graph, bool(side.data.get("with_state", False))
