"""Shipping a campaign to the offline GPU machine (rnndeploy.campaign.shipping and
benchmarks/gpu_verify.sh): parts sized to fill each call, the call plan against the device
budget, parts stashed and checked, the kit unpacked while its parts arrive, and the device calls
rehearsed end to end on the CPU with a stand-in kit (a shell script in place of the kit's
Python 3.9: it proves the procedure's plumbing, not TensorRT)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from rnndeploy.campaign import shipping
from rnndeploy.errors import UsageError
from tests.helpers import REPO

MIB = shipping.MIB


def test_plan_fills_each_call_and_keeps_time_for_the_transfer_back():
    tree, prep, kit, meta = int(2.4 * MIB), 20 * MIB, 480 * MIB, 4096
    plan = shipping.plan_calls(tree, prep, kit, meta, ".gpuprep", ".gpuship")
    assert sum(plan.part_sizes) == kit
    for call in plan.calls:  # nothing a call carries, with the tree, may pass the limit
        assert tree + call.carry_bytes <= shipping.CALL_LIMIT - shipping.CALL_MARGIN
    first, last = plan.calls[0], plan.calls[-1]
    assert first.carry[0] == ".gpuprep" and first.carry_bytes == plan.part_sizes[0] + prep + meta
    assert all(c.command.endswith("arrive") for c in plan.calls[:-1]) and "finish --budget" in last.command
    # every call but the first is full, so no plan with the same limit could use fewer calls
    assert all(s == plan.capacity_bytes for s in plan.part_sizes[1:-1])
    assert len(plan.calls) == shipping.capacity_calls(kit + prep, plan.capacity_bytes)
    t = plan.timing
    assert last.est_end_s + t.back_s <= t.budget_s + 1 and last.timeout_s <= t.max_command_s
    assert plan.finish_budget_s == int(last.command.split("--budget ")[1])


def test_plan_says_when_little_time_is_left_for_tensorrt():
    slow = shipping.Timing(mib_per_s=1.0)
    plan = shipping.plan_calls(int(2.4 * MIB), 20 * MIB, 480 * MIB, 4096, ".gpuprep", ".gpuship", slow)
    assert plan.finish_budget_s < 180 and any("shrink the kit" in n for n in plan.notes)
    with pytest.raises(UsageError, match="no room for a kit part"):
        shipping.plan_calls(int(2.4 * MIB), 70 * MIB, 480 * MIB, 4096, ".gpuprep", ".gpuship")


def _archive(tmp_path: Path, payload: bytes) -> Path:
    """A tar.xz holding one file ``kit/data`` and an executable ``bin/run``."""
    raw = tmp_path / "a.tar.xz"
    with tarfile.open(raw, "w:xz") as tar:
        for name, data, mode in (("data", payload, 0o644), ("bin/run", b"#!/bin/sh\necho hi\n", 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return raw


def test_parts_are_stashed_checked_and_unpacked_as_they_arrive(tmp_path):
    payload = os.urandom(300_000)
    archive = _archive(tmp_path, payload)
    src = tmp_path / "carried"
    parts = shipping.split_archive(archive, src, [100_000, 100_000, 10**9])
    assert [p.name for p in parts] == ["part-000", "part-001", "part-002"]
    assert b"".join(p.read_bytes() for p in parts) == archive.read_bytes()
    stash, dest = tmp_path / "stash", tmp_path / "kit"
    # the first part arrives, then the assembler starts and waits for the others
    for p in parts[1:]:
        os.rename(p, tmp_path / p.name)
    got = shipping.stash(src, stash)
    assert got["have"] == 1 and got["missing"] == ["part-001", "part-002"]
    result = {}
    worker = threading.Thread(target=lambda: result.update(shipping.assemble(stash, dest, timeout_s=30, poll_s=0.05)))
    worker.start()
    time.sleep(0.3)
    assert json.loads(Path(str(dest) + ".status.json").read_text())["state"] == "unpacking" and not dest.exists()
    for name in ("part-001", "part-002"):
        os.rename(tmp_path / name, src / name)
        shipping.stash(src, stash)
    worker.join(30)
    assert result["state"] == "done", result
    assert (dest / "data").read_bytes() == payload and os.access(dest / "bin" / "run", os.X_OK)


def test_a_corrupt_part_is_refused_and_a_wrong_archive_never_replaces_the_kit(tmp_path):
    archive = _archive(tmp_path, os.urandom(50_000))
    src = tmp_path / "carried"
    shipping.split_archive(archive, src, [20_000, 10**9])
    data = bytearray((src / "part-001").read_bytes())
    data[-1] ^= 1
    (src / "part-001").write_bytes(bytes(data))
    with pytest.raises(UsageError, match="part-001: checksum mismatch"):
        shipping.stash(src, tmp_path / "stash")
    assert not (tmp_path / "stash" / "part-001").exists()
    # parts whose checksums are right but whose archive is not the one announced: no kit
    (tmp_path / "stash" / shipping.PARTS_FILE).write_text("format=tar.xz\nparts=2\nsha256=" + "0" * 64 + "\n")
    shipping.split_archive(archive, tmp_path / "good", [20_000, 10**9])
    for name in ("part-000", "part-001"):
        (tmp_path / "stash" / name).write_bytes((tmp_path / "good" / name).read_bytes())
    out = shipping.assemble(tmp_path / "stash", tmp_path / "kit", timeout_s=5, poll_s=0.05)
    assert out["state"] == "failed" and "sha256" in out["error"] and not (tmp_path / "kit").exists()


def test_pack_kit_leaves_out_what_is_pruned_and_keeps_modes(tmp_path):
    stage = tmp_path / "stage"
    (stage / "site" / "pip").mkdir(parents=True)
    (stage / "site" / "pip" / "x.py").write_text("x")
    (stage / "site" / "keep.py").write_text("k")
    (stage / "bin").mkdir()
    (stage / "bin" / "python3.9").write_text("#!/bin/sh\n")
    os.chmod(stage / "bin" / "python3.9", 0o755)
    meta = shipping.pack_kit(stage, tmp_path / "kit.tar.xz", [shipping.Pruned("site/pip", "never run")], preset=1)
    with tarfile.open(tmp_path / "kit.tar.xz") as tar:
        names = set(tar.getnames())
        assert tar.getmember("bin/python3.9").mode & 0o111
    assert "site/keep.py" in names and not any(n.startswith("site/pip") for n in names)
    assert meta["pruned"] == [{"path": "site/pip", "why": "never run"}] and meta["sha256"]


@pytest.fixture
def stand_in_kit(tmp_path):
    """A kit whose python3.9 is this test's Python (no TensorRT) and whose smoke test says 'no GPU'."""
    import sys

    stage = tmp_path / "kitstage"
    (stage / "bin").mkdir(parents=True)
    (stage / "smoke").mkdir()
    (stage / "bin" / "python3.9").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    os.chmod(stage / "bin" / "python3.9", 0o755)
    (stage / "smoke" / "trt_smoke.py").write_text('print("[smoke] NO GPU (stand-in kit)")\nraise SystemExit(2)\n')
    (stage / "smoke" / "filler.bin").write_bytes(os.urandom(200_000))
    return stage


def test_rehearsal_runs_the_device_calls_and_sorts_failures(tmp_path, stand_in_kit):
    """The plan's calls run here as on the device: parts arrive over three calls while the torch
    side works in the background, the kit is unpacked from them, its smoke test and the TensorRT
    side run, the report says REHEARSAL. Torch units fail for want of a GPU (expected); the
    stand-in kit has no TensorRT, so its builds fail for another reason and the rehearsal is
    not ok, listing them."""
    pytest.importorskip("torch")
    import sys

    from rnndeploy.campaign.prepare import PrepareOptions, prepare

    repo = tmp_path / "repo"  # a copy of the tree in its own repository, beside which the carried folders live
    repo.mkdir()
    shipping._copy_tree(REPO, repo)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    prepare(repo / ".gpuprep", PrepareOptions(models=("sine",), quick=True, epochs=1), "test", lambda m: None)
    ship = repo / ".gpuship"
    ship.mkdir()
    meta = shipping.pack_kit(stand_in_kit, ship / "kit.tar.xz", preset=1)
    tree, prep_bytes = shipping.tree_bytes(repo), shipping.folder_bytes(repo / ".gpuprep")
    limit = tree + shipping.CALL_MARGIN + 4096 + prep_bytes + meta["bytes"] // 3 + 10
    plan = shipping.plan_calls(tree, prep_bytes, meta["bytes"], 4096, ".gpuprep", ".gpuship", limit=limit,
                               extra_args=" --no-pytest")
    assert len(plan.calls) == 3
    shipping.split_archive(ship / "kit.tar.xz", ship, plan.part_sizes, unpacked_bytes=meta["unpacked_bytes"])
    result = shipping.rehearse(plan.to_dict(), repo, tmp_path / "device", sys.executable, say=lambda m: None, keep=True)
    assert [c["exit"] for c in result["calls"]] == [0, 0, 0], result["calls"]
    assert result["kit"]["state"] == "done" and result["kit_smoke_exit"] == "2"
    assert result["failed_for_want_of_gpu"] >= 2  # torch.parity / torch.bench: "no CUDA GPU"
    assert result["failed_otherwise"] and all("tensorrt is not installed" in e for e in result["failed_otherwise"].values())
    assert result["ok"] is False
    md = Path(result["report"]).read_text()
    assert "REHEARSAL" in md.splitlines()[0] and "failed for another reason" in md
    assert not (tmp_path / "device" / "tmp" / "trt86.partial").exists()
