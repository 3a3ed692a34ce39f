"""The JSON sidecar written next to every engine (``model.plan`` → ``model.plan.json``).

A serialized TensorRT engine only runs on the TensorRT version and GPU architecture
that built it, and fails (or crashes) obscurely elsewhere. The sidecar records what
built it, so the runner and ``inspect`` can refuse a mismatched or damaged file with one
clear line *before* handing bytes to ``trt.Runtime`` — and so the parity/bench reports
can say what precision path and profiles were measured. It also carries the model spec,
so a deployment box needs only ``model.plan`` + ``model.plan.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from rnndeploy import jsonio
from rnndeploy.artefacts.naming import SIDECAR_SUFFIX, sidecar_path  # noqa: F401  (re-exported)
from rnndeploy.errors import EngineFileError
from rnndeploy.fileio import PathLike, sha256_file, write_json_atomic

SIDECAR_SCHEMA = "rnndeploy.engine/1"


@dataclass(frozen=True)
class Sidecar:
    """Facts about one engine file. ``data`` keeps every field (see ``engine.builder``);
    the properties below are the ones other code relies on."""

    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tensorrt_version(self) -> Optional[str]:
        return (self.data.get("tensorrt") or {}).get("version")

    @property
    def gpu(self) -> Mapping[str, Any]:
        return self.data.get("gpu") or {}

    @property
    def engine_bytes(self) -> Optional[int]:
        return (self.data.get("engine") or {}).get("bytes")

    @property
    def engine_sha256(self) -> Optional[str]:
        return (self.data.get("engine") or {}).get("sha256")

    @property
    def profiles(self) -> List[Dict[str, Any]]:
        return list(self.data.get("profiles") or [])

    @property
    def spec(self) -> Optional[Mapping[str, Any]]:
        return self.data.get("spec")

    @property
    def graph(self) -> Optional[str]:
        return self.data.get("graph")

    @property
    def precision(self) -> Mapping[str, Any]:
        return self.data.get("precision") or {}

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.data)


def write_sidecar(engine_path: PathLike, data: Mapping[str, Any]) -> str:
    """Write the sidecar atomically; returns its path."""
    path = sidecar_path(engine_path)
    write_json_atomic(path, {"schema": SIDECAR_SCHEMA, **dict(data)})
    return path


def read_sidecar(engine_path: PathLike, required: bool = False) -> Optional[Sidecar]:
    """The sidecar of ``engine_path``, or None when there is none (and not ``required``).

    Raises:
        EngineFileError: the sidecar is unreadable / not ours, or missing when required.
    """
    path = sidecar_path(engine_path)
    if not os.path.exists(path):
        if required:
            raise EngineFileError(f"engine {engine_path} has no sidecar {path}",
                                  "rebuild it with rnndeploy build-engine (the sidecar records TensorRT version, GPU and profiles)")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = jsonio.loads(f.read())
    except (OSError, ValueError) as exc:
        raise EngineFileError(f"engine sidecar {path} is unreadable: {exc}", "rebuild the engine with rnndeploy build-engine") from exc
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA:
        raise EngineFileError(f"{path} is not an rnndeploy engine sidecar (schema {data.get('schema') if isinstance(data, dict) else None!r})",
                              "rebuild the engine with rnndeploy build-engine")
    check_sidecar(data, f"engine sidecar {path}")
    return Sidecar(data)


def check_sidecar(data: Mapping[str, Any], where: str) -> None:
    """Check the types of every field other code reads (EngineFileError naming the field).

    Unknown fields are kept (newer rnndeploy versions add facts); known ones must have
    the type ``engine.builder`` writes.
    """
    from rnndeploy.validation import Fields

    f = Fields(data, where, EngineFileError)
    trt = f.record("tensorrt", required=False)
    if trt is not None:
        trt.str("version", required=False)
    gpu = f.record("gpu", required=False)
    if gpu is not None:
        gpu.str("name", required=False)
        cc = gpu.data.get("compute_capability")
        if cc is not None and not isinstance(cc, (str, int, float, list)):
            raise gpu.fail("compute_capability", "a version such as \"9.0\"", cc)
    engine = f.record("engine", required=False)
    if engine is not None:
        engine.int("bytes", required=False, minimum=0)
        engine.str("sha256", required=False)
        engine.str("file", required=False)
    onnx = f.record("onnx", required=False)
    if onnx is not None:
        onnx.str("sha256", required=False)
    for prof in f.records("profiles", required=False):
        for name in prof.data:
            rng = prof.record(name)
            for key in ("min", "opt", "max"):
                rng.ints(key, minimum=0)
    for rec in f.records("io", required=False):
        rec.str("name")
    f.record("precision", required=False)
    f.record("build", required=False)
    f.str("graph", required=False)
    f.bool("with_state", required=False)
    spec = f.record("spec", required=False)
    if spec is not None:
        from rnndeploy.spec import ModelSpec

        ModelSpec.from_dict(spec.data, spec.where)


def check_engine_bytes(engine_path: PathLike, sidecar: Optional[Sidecar], verify_hash: bool = True) -> int:
    """Check the engine file exists, is non-empty and matches the sidecar's size (and
    sha256). Returns its size in bytes. Never touches TensorRT.

    Raises:
        EngineFileError: missing, empty, truncated or altered file.
    """
    p = str(engine_path)
    if not os.path.isfile(p):
        raise EngineFileError(f"engine file {p} does not exist", "build one with rnndeploy build-engine model.onnx -o model.plan")
    size = os.path.getsize(p)
    if size == 0:
        raise EngineFileError(f"engine file {p} is empty", "rebuild it with rnndeploy build-engine")
    if sidecar is not None and sidecar.engine_bytes is not None:
        if size != sidecar.engine_bytes:
            raise EngineFileError(
                f"engine file {p} is {size} bytes but was built as {sidecar.engine_bytes} bytes (truncated or replaced)",
                "rebuild it with rnndeploy build-engine, or copy the file again",
            )
        if verify_hash and sidecar.engine_sha256 and sha256_file(p) != sidecar.engine_sha256:
            raise EngineFileError(f"engine file {p} does not match the sha256 in its sidecar (corrupt or replaced)",
                                  "rebuild it with rnndeploy build-engine, or copy the file again")
    return size


def check_compatible(sidecar: Optional[Sidecar], engine_path: PathLike, trt_version: Optional[str] = None,
                     gpu: Optional[Mapping[str, Any]] = None, allow_other_gpu: bool = False) -> None:
    """Refuse an engine built by another TensorRT version or for another GPU.

    ``gpu`` is {"name", "compute_capability"} of the device that would run it. A
    different compute capability is always refused (the kernels are compiled for it);
    a different GPU name with the same compute capability is refused unless
    ``allow_other_gpu``.

    Raises:
        EngineFileError: one line naming both sides and what to do.
    """
    if sidecar is None:
        return
    built_trt = sidecar.tensorrt_version
    if trt_version is not None and built_trt and built_trt != trt_version:
        raise EngineFileError(
            f"engine {engine_path} was built by TensorRT {built_trt}; this is TensorRT {trt_version}",
            "rebuild it here with rnndeploy build-engine (engines do not move between TensorRT versions)",
        )
    if gpu is None:
        return
    built_cc, built_name = sidecar.gpu.get("compute_capability"), sidecar.gpu.get("name")
    cc, name = gpu.get("compute_capability"), gpu.get("name")
    if built_cc and cc and built_cc != cc:
        raise EngineFileError(
            f"engine {engine_path} was built for {built_name} (compute capability {built_cc}); this GPU is {name} ({cc})",
            "rebuild it on this GPU with rnndeploy build-engine",
        )
    if not allow_other_gpu and built_name and name and built_name != name:
        raise EngineFileError(
            f"engine {engine_path} was built on {built_name}; this GPU is {name} (same compute capability {cc})",
            "rebuild it on this GPU, or allow it explicitly (runner option allow_other_gpu)",
        )
