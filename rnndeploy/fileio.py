"""Small file helpers shared by every stage: atomic writes, output preflight, content hashes, .npz arrays.

Nothing rnndeploy writes is ever left half-written: files are written to a
temporary name in the destination directory and renamed into place, so a crash
or a failed validation leaves either the old file or nothing.

Outputs are checked before any work (``check_output_path``): the directory exists,
rnndeploy can create files in it (tried, not guessed from permission bits — root,
read-only mounts and /proc all answer differently), and the path is not a directory
(or, for a directory output, not a file). CLI options get this for free through
``rnndeploy.cli.types.OutputPath``; library entry points that write call it first.
A file-system error while writing is one line naming the path (``UsageError``,
exit status 2), never a traceback. ``transaction_dir`` makes a whole directory of
outputs all-or-nothing (the demo).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Mapping, Optional, Tuple, Union

import numpy as np

from rnndeploy.errors import UsageError, first_line

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
        if parent.exists():
            raise UsageError(f"{what} path {p}: {parent} is not a directory", "choose another path")
        raise UsageError(
            f"{what} path {p}: directory {parent} does not exist",
            f"create it first (mkdir -p {parent}) or choose another path",
        )
    return p


def check_output_path(path: PathLike, what: str = "output", kind: str = "file") -> Path:
    """Check, before any work, that ``path`` can be written; returns it as a Path.

    Args:
        what: how to name it in the message (an option such as "--json", or "engine").
        kind: "file" (the path must not be a directory), "dir" (it must not be a file;
            an existing directory is the caller's business: replaced, or refused), or
            "file_or_dir" (an existing directory receives files inside it).

    Raises:
        UsageError: missing or unwritable directory, a directory where a file goes (or
            the reverse), a path nothing can be created at (/proc, /sys, read-only mounts).
    """
    if not str(path).strip():
        raise UsageError(f"{what}: empty path")
    p = check_parent_dir(path, what)
    check_not_special(p, what)
    if kind == "file" and p.is_dir():
        raise UsageError(f"{what} {p} is a directory", "give a file name (e.g. inside it)")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise UsageError(f"{what} {p} exists and is a file", "give a directory name")
    parent = p if kind == "file_or_dir" and p.is_dir() else (p.parent if str(p.parent) else Path("."))
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=str(parent))
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot create files in {parent} ({exc.strerror or exc})",
                         "choose a directory you can write to") from None
    return p


def check_not_special(path: PathLike, what: str = "output") -> None:
    """Refuse a path that is a device, pipe or socket (or a link to one): writing rnndeploy's way
    (a new file renamed over it) would replace /dev/null itself rather than write to it."""
    p = Path(path)
    if p.exists() and not p.is_file() and not p.is_dir():
        raise UsageError(f"{what} {p} is not a regular file (a device, pipe or socket)",
                         "give the path of a file to create or replace")


def output_error(path: PathLike, exc: OSError) -> UsageError:
    """The one-line error for a file-system failure while writing ``path``."""
    reason = exc.strerror or str(exc)
    hint = "free some space or choose another place" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else \
        "choose a path you can write to"
    return UsageError(f"cannot write {path}: {reason}", hint)


def _temp_beside(path: PathLike) -> Tuple[Path, int, str]:
    """(path, fd, temporary name) of a new temporary file in ``path``'s folder, after the
    output checks (parent exists, not a device or fifo, not a directory)."""
    p = check_parent_dir(path)
    check_not_special(p)
    if p.is_dir():
        raise UsageError(f"cannot write {p}: it is a directory", "give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent))
    except OSError as exc:
        raise output_error(p, exc) from None
    return p, fd, tmp


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    p, fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; others in the team must read results
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.errno in _WRITE_ERRNOS:
            raise output_error(p, exc) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_files_atomic(files: Mapping[PathLike, Union[bytes, str]]) -> None:
    """Write several files all or nothing: every one goes to a temporary name first, and
    only when all are complete are they renamed into place (a report's HTML, Markdown and
    JSON; a seq2seq model's encoder and decoder). On failure no file is new or changed.

    Raises:
        UsageError: a file-system error, naming the path.
    """
    staged: list = []
    try:
        for path, data in files.items():
            p, fd, tmp = _temp_beside(path)
            staged.append((tmp, p))
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data.encode("utf-8") if isinstance(data, str) else data)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o666 & ~_umask())
            except OSError as exc:
                raise output_error(p, exc) from None
        for tmp, p in staged:
            os.replace(tmp, p)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable diffs; non-finite floats as
    strings, see rnndeploy.jsonio), atomically."""
    from rnndeploy.jsonio import dumps

    write_text_atomic(path, dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name; rename it onto ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete.
    """
    p = _absolute_dir(path, "output directory")
    check_parent_dir(p)
    check_not_special(p)
    if p.is_dir() and _contains_cwd(p):
        raise UsageError(f"cannot replace directory {path}: it is (or contains) the current directory",
                         "run from another directory, or write to a new one")
    if p.exists() and not p.is_dir():
        raise UsageError(f"cannot write directory {p}: a file of that name exists", "choose another path")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent)))
    except OSError as exc:
        raise output_error(p, exc) from None
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
    except OSError as exc:
        _rmtree(tmp)
        if exc.errno in _WRITE_ERRNOS:
            raise output_error(p, exc) from None
        raise
    except BaseException:
        _rmtree(tmp)
        raise


@contextlib.contextmanager
def transaction_dir(path: PathLike, parents: bool = False, what: str = "output directory") -> Iterator[Path]:
    """Let a multi-step job write into ``path`` in place, all or nothing.

    If the block raises, ``path`` is restored: removed when it did not exist before,
    else put back as it was (its entries are kept aside as hard links — rnndeploy's
    writers replace files by renaming, so the kept inodes are never modified). The
    paths the job records (in results, commands) are the final ones.

    Args:
        parents: create missing parent directories (removed again on failure).
    """
    p = _absolute_dir(path, what)
    created_top: Optional[Path] = None
    if parents and not p.parent.exists():
        top = p.parent
        while not top.parent.exists():
            top = top.parent
        check_output_path(top, what, kind="dir")
        try:
            p.parent.mkdir(parents=True)
        except OSError as exc:
            raise output_error(p.parent, exc) from None
        created_top = top
    try:
        with _transaction(check_output_path(p, what, kind="dir")) as out:
            yield out
    except BaseException:
        if created_top is not None:
            _rmtree(created_top)
        raise


@contextlib.contextmanager
def _transaction(p: Path) -> Iterator[Path]:
    existed = p.is_dir()
    backup: Path = p
    if existed:
        backup = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".keep", dir=str(p.parent))) / p.name
        try:
            shutil.copytree(p, backup, copy_function=_link_or_copy, symlinks=True)
        except OSError as exc:
            _rmtree(backup.parent)
            raise output_error(p, exc) from None
    else:
        try:
            p.mkdir()
        except OSError as exc:
            raise output_error(p, exc) from None
    try:
        yield p
    except BaseException:
        if existed:
            _restore_entries(p, backup)
            _rmtree(backup.parent)
        else:
            _rmtree(p)
        raise
    if existed:
        _rmtree(backup.parent)


def _restore_entries(p: Path, backup: Path) -> None:
    """Put ``p``'s entries back as ``backup`` holds them, entry by entry: the directory
    itself is never removed (it may be the current directory or a mount point), and
    nothing is deleted that ``backup`` does not hold a link or copy of."""
    for entry in list(p.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            _rmtree(entry)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    for entry in backup.iterdir():
        os.replace(entry, p / entry.name)


def _absolute_dir(path: PathLike, what: str) -> Path:
    """``path`` made absolute, so that "." and "sub/.." have a name and a parent; an empty
    path and the file-system root are refused (nothing can be built beside them)."""
    if not str(path).strip():
        raise UsageError(f"{what}: empty path", "give a directory name")
    p = Path(os.path.abspath(str(path)))
    if p.parent == p:
        raise UsageError(f"{what} {path} is the file-system root", "give a directory of its own")
    return p


def _contains_cwd(p: Path) -> bool:
    try:
        cwd = Path(os.getcwd())
    except OSError:
        return False
    return cwd == p or p in cwd.parents


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# errors of the file system, not of rnndeploy: reported as one line with the path
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT,
                 errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}


def load_npz(path: str, what: str) -> Dict[str, np.ndarray]:
    """Arrays from an .npz file: never unpickles (allow_pickle=False), checks the arrays'
    declared sizes against the machine's memory before reading them.

    Raises:
        UsageError: missing, a directory, not an .npz of plain arrays, or too large.
    """
    import zipfile

    from rnndeploy.memory import check_fits, tensor_bytes

    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} file {p} does not exist")
    if not p.is_file():
        raise UsageError(f"{what} {p} is not a file", "give an .npz written by numpy.savez")
    try:
        with zipfile.ZipFile(p) as zf:
            declared = 0
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    with zf.open(info) as f:
                        version = np.lib.format.read_magic(f)
                        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                           else np.lib.format.read_array_header_2_0(f))
                    declared += tensor_bytes(shape, "int8") * max(np.dtype(dtype).itemsize, 1)
        check_fits(declared, f"{what} file {p}")
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except UsageError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise UsageError(f"{what} file {p} is not a readable .npz of plain arrays ({first_line(exc, 200)})",
                         "save it with numpy.savez(path, name=array, ...)") from None


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
    shutil.rmtree(path, ignore_errors=True)
