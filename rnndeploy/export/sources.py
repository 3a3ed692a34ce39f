"""Where a module to export comes from, as plain JSON-able data, so a fresh process
(the dynamo worker) can rebuild exactly the same module.

Kinds:
    {"kind": "user", "ref": "/abs/file.py:factory"}
    {"kind": "checkpoint", "dir": "/abs/ckpt", "graph": "model", "with_state": false}
    {"kind": "zoo", "config": {...}, "data_info": {...}, "weights": "/abs/w.safetensors",
     "graph": "model", "with_state": false}
A zoo source made from an in-memory model carries its weights under ``"_state"``
(tensors) until ``persist`` writes them to a safetensors file.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping


def user_source(ref: str) -> Dict[str, Any]:
    path, _, factory = ref.rpartition(":")
    return {"kind": "user", "ref": f"{os.path.abspath(path)}:{factory}"}


def checkpoint_source(directory: str, graph: str, with_state: bool) -> Dict[str, Any]:
    return {"kind": "checkpoint", "dir": os.path.abspath(directory), "graph": graph, "with_state": bool(with_state)}


def zoo_source(model: Any, graph: str, with_state: bool) -> Dict[str, Any]:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return {
        "kind": "zoo",
        "config": dict(model.config),
        "data_info": dict(model.data_info),
        "_state": state,
        "graph": graph,
        "with_state": bool(with_state),
    }


def persist(source: Mapping[str, Any], directory: str) -> Dict[str, Any]:
    """A JSON-able copy of ``source``: in-memory weights written to ``directory``."""
    out = {k: v for k, v in source.items() if k != "_state"}
    if "_state" in source:
        from safetensors.torch import save_file

        path = os.path.join(directory, "weights.safetensors")
        save_file(dict(source["_state"]), path)
        out["weights"] = path
    return out


def build_from_source(source: Mapping[str, Any]) -> Any:
    """The module (in eval mode) that ``source`` describes: the exported graph's forward."""
    kind = source.get("kind")
    if kind == "user":
        from rnndeploy.export.user_module import load_user_module

        return load_user_module(source["ref"])
    if kind == "checkpoint":
        from rnndeploy.checkpoint import load_model

        loaded = load_model(source["dir"])
        return loaded.model.eval().graph_module(source["graph"], with_state=source["with_state"]).eval()
    if kind == "zoo":
        from safetensors.torch import load_file

        from rnndeploy.models import build_model

        model = build_model(source["config"], source["data_info"])
        model.load_state_dict(load_file(source["weights"]))
        return model.eval().graph_module(source["graph"], with_state=source["with_state"]).eval()
    raise ValueError(f"unknown module source kind {kind!r}")
