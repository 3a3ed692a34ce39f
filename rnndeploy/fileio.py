"""Small file helpers shared by every stage: atomic writes, content hashes, .npz arrays.

Nothing rnndeploy writes is ever left half-written: files are written to a
temporary name in the destination directory and renamed into place, so a crash
or a failed validation leaves either the old file or nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Mapping, Union

import numpy as np

from rnndeploy.errors import UsageError

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20  # 1 MiB reads keep hashing of GB-sized engines flat in memory


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def check_parent_dir(path: PathLike, what: str = "output") -> Path:
    """Return ``path`` as a Path after checking its directory exists.

    Raises:
        UsageError: the parent directory is missing (we never create it silently:
            a typo in a path should not scatter directories around).
    """
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(
            f"{what} path {p}: directory {parent} does not exist",
            f"create it first (mkdir -p {parent}) or choose another path",
        )
    return p


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    p = check_parent_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; others in the team must read results
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable diffs), atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; rename it onto ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete.
    """
    p = check_parent_dir(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent)))
    try:
        yield tmp
        _normal_permissions(tmp)
        if p.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".old", dir=str(p.parent)))
            os.replace(p, old / p.name)
            os.replace(tmp, p)
            _rmtree(old)
        else:
            os.replace(tmp, p)
    except BaseException:
        _rmtree(tmp)
        raise


def load_npz(path: str, what: str) -> Dict[str, np.ndarray]:
    """Arrays from an .npz file (never unpickles: allow_pickle=False)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} file {p} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise UsageError(f"{what} file {p} is not a readable .npz of plain arrays: {exc}",
                         "save it with numpy.savez(path, name=array, ...)") from exc


def save_npz(path: PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays uncompressed (golden files are small; diffs stay byte-stable)."""
    with open(path, "wb") as f:
        np.savez(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _normal_permissions(directory: Path) -> None:
    """Permissions of a normally created tree: mkdtemp makes 0700 and some writers
    (safetensors) 0600, which would hide checkpoints and goldens from teammates."""
    mask = _umask()
    os.chmod(directory, 0o777 & ~mask)
    for root, dirs, files in os.walk(directory):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~mask)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
