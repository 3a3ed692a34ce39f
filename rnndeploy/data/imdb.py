"""Keras' ``imdb.npz`` (the seeds' sentiment tutorial data), read without unpickling code.

The file is an npz whose ``x_train``/``x_test`` members are numpy *object* arrays of
Python lists of word ranks; ``np.save`` stores object arrays as a pickle stream, so
``np.load`` refuses them unless ``allow_pickle=True`` — and a pickle can name any
callable (``os.system`` …) to run while loading. A user's npz may come from anywhere,
so we parse the .npy header ourselves and unpickle with an allow-list that admits only
what numpy needs to rebuild an array (``_reconstruct``, ``ndarray``, ``dtype``,
``scalar``) plus ``list``/``int``; any other global aborts the load. The result is then
checked to be exactly a 1-D array of integer sequences.

Word ids: Keras stores frequency ranks starting at 1 ("the" = 1). rnndeploy maps rank
r to id r + 1 (0 = pad, 1 = unk) and ids ≥ ``max_vocab`` to unk, like Keras' ``num_words``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from rnndeploy.data.base import UNK_ID, Dataset, Param, pad_sequences, user_file
from rnndeploy.data.sentiment import classification_info
from rnndeploy.errors import DataError

try:  # numpy >= 1.26 has numpy._core; older ones only numpy.core
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]

IMDB_MEMBERS = ("x_train", "y_train", "x_test", "y_test")
IMDB_CLASSES = ["negative", "positive"]

# The only globals an object array of int lists needs (names used by numpy 1.x and 2.x).
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "list"): list,
    ("builtins", "int"): int,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data file") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a data file")


def read_npz_member(zf: zipfile.ZipFile, member: str, path: Path) -> np.ndarray:
    """One array of an npz; object arrays go through the allow-list unpickler."""
    name = member + ".npy"
    if name not in zf.namelist():
        found = ", ".join(n[:-4] if n.endswith(".npy") else n for n in zf.namelist()) or "none"
        raise DataError(
            f"{path}: no array {member!r}; arrays found: {found}", f"an imdb.npz holds {', '.join(IMDB_MEMBERS)}"
        )
    raw = zf.read(name)
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except ValueError as exc:
        raise DataError(f"{path}: array {member!r} is not a valid .npy member ({exc})") from None
    if not dtype.hasobject:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    try:
        arr = _ArrayOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError, MemoryError) as exc:
        raise DataError(
            f"{path}: array {member!r} was refused: {exc}",
            "rnndeploy only reads object arrays of integer lists (Keras imdb.npz layout) and never unpickles code",
        ) from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or tuple(arr.shape) != tuple(shape):
        raise DataError(f"{path}: array {member!r} is not a 1-D object array of sequences")
    return arr


def _as_sequences(arr: np.ndarray, member: str, path: Path) -> List[List[int]]:
    out: List[List[int]] = []
    for i, seq in enumerate(arr):
        if isinstance(seq, np.ndarray) and seq.ndim == 1 and seq.dtype.kind in "iu":
            out.append([int(v) for v in seq])
        elif isinstance(seq, list) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in seq):
            out.append([int(v) for v in seq])
        else:
            raise DataError(f"{path}: {member}[{i}] is a {type(seq).__name__}, not a list of word ids")
    return out


def read_imdb_npz(path: Path) -> Dict[str, Tuple[List[List[int]], np.ndarray]]:
    """{"train": (sequences, labels), "test": (...)} from a Keras imdb.npz."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(
            f"{path} is not an npz (zip) file: {exc}", "give the imdb.npz that keras.datasets.imdb downloads"
        ) from None
    with zf:
        out = {}
        for split in ("train", "test"):
            x = _as_sequences(read_npz_member(zf, f"x_{split}", path), f"x_{split}", path)
            y = read_npz_member(zf, f"y_{split}", path)
            if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
                raise DataError(f"{path}: y_{split} must be {len(x)} integer labels, got shape {y.shape} {y.dtype}")
            out[split] = (x, y.astype(np.int64))
    return out


IMDB_PARAMS: Dict[str, Param] = {
    "path": Param("path", None, "your copy of Keras' imdb.npz (e.g. ~/.keras/datasets/imdb.npz)", required=True),
    "max_len": Param("int", 200, "word ids kept per review (longer reviews are truncated at the end)", minimum=1),
    "max_vocab": Param("int", 10000, "ids >= this become <unk> (Keras' num_words)", minimum=3),
    "val_fraction": Param("float", 0.1, "share of the npz's train split held out for validation", minimum=0.0),
    "seed": Param("int", 0, "seed of the train/val partition", minimum=0),
}


def load_imdb_npz(p: Dict[str, Any]) -> Dataset:
    path = user_file(p["path"], "imdb.npz", "the imdb.npz file Keras downloads (keras.datasets.imdb)")
    data = read_imdb_npz(path)
    max_vocab = p["max_vocab"]

    def ids(seq: List[int]) -> List[int]:
        return [r + 1 if 0 < r + 1 < max_vocab else UNK_ID for r in seq]

    x_train, y_train = data["train"]
    # The npz's own test split stays the test split; validation is carved from train.
    n_val = max(1, int(round(len(x_train) * p["val_fraction"])))
    if n_val >= len(x_train):
        raise DataError(f"{path}: {len(x_train)} training reviews leave none after holding out {n_val} for validation")
    perm = np.random.default_rng(p["seed"]).permutation(len(x_train))
    train_idx, val_idx = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    splits = {}
    for s, seqs, labels in (
        ("train", [x_train[i] for i in train_idx], y_train[train_idx]),
        ("val", [x_train[i] for i in val_idx], y_train[val_idx]),
        ("test", data["test"][0], data["test"][1]),
    ):
        tokens, lengths = pad_sequences([ids(s_) for s_ in seqs], p["max_len"])
        splits[s] = {"tokens": tokens, "lengths": lengths, "labels": labels}
    n_classes = int(max(y_train.max(), data["test"][1].max())) + 1
    names = IMDB_CLASSES if n_classes == 2 else [str(i) for i in range(n_classes)]
    info = classification_info("imdb", max_vocab, names, p["max_len"], None, "keras-imdb-rank+1")
    return Dataset("imdb", "classification", splits, info)
