"""Atomic writes: nothing half-written, normal permissions, clear error on a missing directory."""

from __future__ import annotations

import os

import pytest

from rnndeploy.errors import UsageError
from rnndeploy.fileio import atomic_dir, atomic_write, sha256_file, write_json_atomic


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_permissions_follow_umask(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert target.read_text() == '{\n  "a": 1\n}\n'


def test_missing_directory_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        write_json_atomic(tmp_path / "nope" / "x.json", {})
    assert not (tmp_path / "nope").exists()


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    out = tmp_path / "ck"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("1")
        os.chmod(d / "a.txt", 0o600)
    assert (out / "a.txt").read_text() == "1"
    assert (out / "a.txt").stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(ValueError):
        with atomic_dir(out) as d:
            (d / "b.txt").write_text("2")
            raise ValueError("fail")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert len(sha256_file(out / "a.txt")) == 64
