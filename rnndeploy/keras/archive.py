"""Read a saved Keras model — architecture JSON and weights — with h5py alone.

Two formats:
- ``.keras`` (Keras 3): a zip holding ``config.json``, ``metadata.json`` and
  ``model.weights.h5``. Weights live under ``layers/<snake_case class>[_N]/...vars/<i>``,
  named by class and position (not by layer name), recursing into sub-objects such
  as an RNN's ``cell`` or a Bidirectional's ``forward_layer`` / ``backward_layer``.
- ``.h5`` (legacy: Keras 2 / tf.keras, and Keras 3's ``model.save("m.h5")``): the
  config is the root attribute ``model_config``; weights are ``model_weights/<layer
  name>/<weight name>`` listed, in the layer's own order, by ``weight_names``.

Nothing here imports Keras, TensorFlow or torch; everything is read into numpy
arrays up front so no HDF5 handle outlives ``load_keras_file``. Pickled objects are
never read (h5py datasets and JSON only).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from rnndeploy import jsonio
from rnndeploy.errors import KerasModelError, UsageError, first_line
from rnndeploy.fileio import sha256_bytes

# The newest Keras major version whose file format this converter knows.
KNOWN_MAJOR = 3
SUFFIXES = (".keras", ".h5", ".hdf5")
# Cap on what is read from a zip member: a hostile archive must not exhaust memory.
_MAX_MEMBER_BYTES = 4 << 30


@dataclass(frozen=True)
class WeightStore:
    """The weights of a saved model, read into memory.

    ``groups`` (``.keras``): group path → its ``vars`` datasets in index order, e.g.
    ``"layers/lstm/cell" → [kernel, recurrent_kernel, bias]``; ``group_names`` holds
    the ``name`` attribute Keras writes on each ``vars`` group (the layer's name).
    ``by_layer`` (``.h5``): layer name → arrays in ``weight_names`` order, with
    ``weight_names`` keeping those names.
    """

    groups: Mapping[str, List[np.ndarray]] = field(default_factory=dict)
    group_names: Mapping[str, str] = field(default_factory=dict)
    by_layer: Mapping[str, List[np.ndarray]] = field(default_factory=dict)
    weight_names: Mapping[str, List[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class KerasFile:
    """A saved Keras model.

    Attributes:
        path: the file read.
        fmt: "keras" (Keras 3 zip) or "h5" (legacy HDF5).
        config: the serialized model ``{"class_name": ..., "config": {...}}``.
        keras_version: as recorded in the file ("3.15.1", "2.15.0", ...).
        backend: the backend that saved it ("torch", "tensorflow", "jax"; "" if unrecorded).
        weights: see WeightStore.
        sha256: hex digest of the file's bytes.
    """

    path: str
    fmt: str
    config: Dict[str, Any]
    keras_version: str
    backend: str
    weights: WeightStore
    sha256: str

    @property
    def major(self) -> int:
        return version_tuple(self.keras_version)[0]


def version_tuple(text: str) -> Tuple[int, ...]:
    """"3.15.1" → (3, 15, 1); "2.15.0-tf" → (2, 15, 0); unparseable parts stop the tuple."""
    out: List[int] = []
    for part in str(text).split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
        if digits != part:
            break
    return tuple(out) or (0,)


def is_keras_path(path: str) -> bool:
    """True when ``path`` names a Keras model file by its suffix."""
    return str(path).lower().endswith(SUFFIXES)


def load_keras_file(path: str) -> KerasFile:
    """Read ``path`` (``.keras`` or ``.h5``).

    Raises:
        UsageError: the file does not exist.
        KerasModelError: the file is truncated or corrupt, holds weights only, or was
            written by a Keras newer than this converter knows.
    """
    if not os.path.isfile(path):
        raise UsageError(f"Keras model file {path} does not exist", "check the path")
    with open(path, "rb") as f:
        data = f.read()
    digest = sha256_bytes(data)
    if zipfile.is_zipfile(io.BytesIO(data)):
        kf = _read_keras_zip(path, data, digest)
    elif data[:8] == b"\x89HDF\r\n\x1a\n":
        kf = _read_legacy_h5(path, data, digest)
    elif path.lower().endswith(".keras") and data[:2] == b"PK":
        raise KerasModelError(f"{path} is not a readable .keras archive (truncated or corrupt zip)",
                              "save the model again with model.save('model.keras')")
    else:
        raise KerasModelError(
            f"{path} is neither a .keras archive nor an HDF5 file (truncated, corrupt, or another format)",
            "give a model saved with model.save('model.keras') or model.save('model.h5')",
        )
    _check_version(kf)
    return kf


# -- .keras ---------------------------------------------------------------------------------
def _read_keras_zip(path: str, data: bytes, digest: str) -> KerasFile:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                if any(n.endswith(".weights.h5") or n == "model.weights.h5" for n in names):
                    raise _weights_only(path)
                raise KerasModelError(f"{path} is a zip without config.json: not a Keras 3 model archive",
                                      "save the model with model.save('model.keras')")
            config = _json(z.read("config.json"), f"{path}: config.json")
            meta = _json(z.read("metadata.json"), f"{path}: metadata.json") if "metadata.json" in names else {}
            if "model.weights.h5" not in names:
                extra = sorted(n for n in names if "weights" in n)
                raise KerasModelError(
                    f"{path} holds no model.weights.h5" + (f" (found {', '.join(extra)})" if extra else ""),
                    "save the model with model.save('model.keras') without sharding the weights",
                )
            info = z.getinfo("model.weights.h5")
            if info.file_size > _MAX_MEMBER_BYTES:
                raise KerasModelError(f"{path}: model.weights.h5 is {info.file_size} bytes, more than this converter reads")
            weights_bytes = z.read("model.weights.h5")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError) as exc:
        raise KerasModelError(f"{path} is not a readable .keras archive (truncated or corrupt: {first_line(exc, 300)})",
                              "save the model again with model.save('model.keras')") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasModelError(f"{path}: config.json does not describe a model (no class_name)")
    store = _read_keras3_weights(path, weights_bytes)
    return KerasFile(path, "keras", config, str(meta.get("keras_version", "")), "", store, digest)


def _read_keras3_weights(path: str, weights_bytes: bytes) -> WeightStore:
    h5py = _h5py()
    groups: Dict[str, List[np.ndarray]] = {}
    names: Dict[str, str] = {}
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as f:

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars":
                    owner = name[: -len("vars")].rstrip("/")
                    groups[owner] = [_array(obj[k]) for k in sorted(obj.keys(), key=_index_key)]
                    if "name" in obj.attrs:
                        names[owner] = _text(obj.attrs["name"])

            f.visititems(visit)
    except OSError as exc:
        raise KerasModelError(f"{path}: model.weights.h5 is not readable HDF5 ({first_line(exc, 300)})",
                              "save the model again with model.save('model.keras')") from exc
    return WeightStore(groups=groups, group_names=names)


# -- legacy .h5 -----------------------------------------------------------------------------
def _read_legacy_h5(path: str, data: bytes, digest: str) -> KerasFile:
    h5py = _h5py()
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            attrs = dict(f.attrs)
            if "model_config" not in attrs:
                if "layer_names" in attrs or "layers" in f or "vars" in f:
                    raise _weights_only(path)
                raise KerasModelError(f"{path} is an HDF5 file without a Keras model config",
                                      "save the model with model.save('model.keras') or model.save('model.h5')")
            config = _json(attrs["model_config"], f"{path}: model_config")
            version = _text(attrs.get("keras_version", ""))
            backend = _text(attrs.get("backend", ""))
            by_layer: Dict[str, List[np.ndarray]] = {}
            weight_names: Dict[str, List[str]] = {}
            if "model_weights" in f:
                mw = f["model_weights"]
                layer_names = [_text(n) for n in mw.attrs.get("layer_names", [])] or list(mw.keys())
                version = version or _text(mw.attrs.get("keras_version", ""))
                backend = backend or _text(mw.attrs.get("backend", ""))
                for lname in layer_names:
                    if lname not in mw:
                        raise KerasModelError(f"{path}: weights of layer {lname!r} are listed but missing (truncated file?)")
                    g = mw[lname]
                    wn = [_text(n) for n in g.attrs.get("weight_names", [])]
                    try:
                        by_layer[lname] = [_array(g[n]) for n in wn]
                    except KeyError as exc:
                        raise KerasModelError(f"{path}: weight {exc} of layer {lname!r} is missing (truncated file?)") from exc
                    weight_names[lname] = wn
    except OSError as exc:
        raise KerasModelError(f"{path} is not a readable HDF5 file (truncated or corrupt: {first_line(exc, 300)})",
                              "save the model again with model.save('model.keras')") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasModelError(f"{path}: model_config does not describe a model (no class_name)")
    return KerasFile(path, "h5", config, version, backend, WeightStore(by_layer=by_layer, weight_names=weight_names),
                     digest)


# -- helpers --------------------------------------------------------------------------------
def _check_version(kf: KerasFile) -> None:
    if not kf.keras_version:
        return  # very old tf.keras files did not record it; the config decides what converts
    major = kf.major
    if major > KNOWN_MAJOR:
        raise KerasModelError(
            f"{kf.path} was saved by Keras {kf.keras_version}, newer than this converter knows (Keras 2 and {KNOWN_MAJOR})",
            "upgrade rnndeploy, or save the model with Keras 3",
        )
    if major < 2:
        raise KerasModelError(f"{kf.path} was saved by Keras {kf.keras_version}; the converter reads Keras 2 and 3 files",
                              "load it in Keras 2 or 3 and save it again")


def _weights_only(path: str) -> KerasModelError:
    return KerasModelError(
        f"{path} holds weights only (no model config), so the architecture is unknown",
        "rebuild the model in Keras, load these weights, then save the whole model with model.save('model.keras')",
    )


def _h5py() -> Any:
    from rnndeploy.optional import require

    return require("h5py", "reading Keras model files")


def _json(raw: Any, what: str) -> Any:
    try:
        return jsonio.loads(_text(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise KerasModelError(f"{what} is not valid JSON ({first_line(exc, 300)})",
                              "save the model again with model.save('model.keras')") from exc


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _array(ds: Any) -> np.ndarray:
    arr = np.asarray(ds[()])
    if arr.dtype.kind not in "fiub":
        raise KerasModelError(f"weight {ds.name} has dtype {arr.dtype}, which is not a numeric tensor")
    return arr


def _index_key(name: str) -> Tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)
