"""Ship a campaign and a software kit to an offline GPU machine in size-limited calls.

The machine is reached only through calls that carry at most ``limit`` bytes each (the source
tree included), and its time is counted from the first call's start to its return, transfers and
idle gaps included. So:

* the kit is one archive (``pack_kit``: a deterministic tar, xz-compressed), cut into parts
  sized to fill each call (``split_archive``); the first call also carries the prepared folder;
* ``plan_calls`` lays the calls out against a device-time budget and says what each carries,
  runs and may take; the last part travels with the call that does the TensorRT work;
* on the machine, ``stash`` checks each part's sha256 and moves it into place atomically, and
  ``assemble`` (a background process started by the first call) streams the parts, in order,
  as they arrive, through the xz decompressor into the kit folder — so the kit is unpacked a
  few seconds after its last part lands.

Torch-free; ``stash`` and ``assemble`` need only the standard library.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import math
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from rnndeploy.errors import UsageError
from rnndeploy.fileio import sha256_file, write_json_atomic

MIB = 2**20
CALL_LIMIT = 64 * MIB          # what one device call may carry, the working tree included
CALL_MARGIN = MIB              # kept free in every call (file-system rounding, a file that grew)
PARTS_FILE = "KIT-PARTS.txt"
SUMS_FILE = "SHA256SUMS"
PLAN_FILE = "plan.json"
PLAN_FORMAT = "rnndeploy.shipplan"


# -- the kit archive --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pruned:
    """A path (relative to the kit root) left out of the archive, and the proof that it is not needed."""

    path: str
    why: str


def _walk(root: Path) -> List[Path]:
    out: List[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            out.append(Path(dirpath) / name)
    return out


def pack_kit(stage: Path, archive: Path, prune: Sequence[Pruned] = (), preset: int = 6, threads: int = 0) -> Dict[str, Any]:
    """Tar ``stage`` (sorted, owner root; mtimes kept, so the kit's .pyc files stay valid) less
    ``prune`` into ``archive``, compressed with xz at ``preset`` (default -6; ``9 |
    lzma.PRESET_EXTREME`` is -9e) by the ``xz`` program with ``threads`` (0: one per core) when
    present, else by Python's lzma. Returns sizes, the sha256 and what was pruned."""
    stage = Path(stage)
    skip = [p.path.rstrip("/") for p in prune]

    def skipped(rel: str) -> bool:
        return any(rel == s or rel.startswith(s + "/") for s in skip)

    tar_path = archive.with_name(archive.name + ".tar.tmp")
    unpacked = 0
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tar:
        for p in _walk(stage):
            rel = p.relative_to(stage).as_posix()
            if skipped(rel):
                continue
            info = tar.gettarinfo(str(p), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                unpacked += info.size
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    level = f"-{preset & 0x1F}" + ("e" if preset & lzma.PRESET_EXTREME else "")
    t0 = time.perf_counter()
    if shutil.which("xz"):
        with open(archive, "wb") as out:
            subprocess.run(["xz", f"-T{threads}", level, "-c", str(tar_path)], stdout=out, check=True)
    else:
        with open(tar_path, "rb") as src, lzma.open(archive, "wb", preset=preset) as dst:
            shutil.copyfileobj(src, dst, 16 * MIB)
    seconds = time.perf_counter() - t0
    os.unlink(tar_path)
    return {"archive": str(archive), "bytes": archive.stat().st_size, "unpacked_bytes": unpacked,
            "sha256": sha256_file(archive), "xz": level, "compress_seconds": round(seconds, 1),
            "pruned": [asdict(p) for p in prune]}


def split_archive(archive: Path, out_dir: Path, sizes: Sequence[int], fmt: str = "tar.xz",
                  unpacked_bytes: Optional[int] = None) -> List[Path]:
    """Cut ``archive`` into ``out_dir/part-000 …`` of the given byte sizes (the last takes the
    rest), with SHA256SUMS and KIT-PARTS.txt (format, part count, bytes, sha256). Old parts go."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("part-*"):
        old.unlink()
    total = archive.stat().st_size
    parts: List[Path] = []
    sums = []
    with open(archive, "rb") as f:
        for i, size in enumerate(sizes):
            last = i == len(sizes) - 1
            data = f.read() if last else f.read(size)
            if not data:
                break
            p = out_dir / f"part-{i:03d}"
            p.write_bytes(data)
            parts.append(p)
            sums.append(f"{hashlib.sha256(data).hexdigest()}  {p.name}")
    if sum(p.stat().st_size for p in parts) != total:
        raise UsageError(f"splitting {archive} lost bytes", "rerun the preparation")
    (out_dir / SUMS_FILE).write_text("\n".join(sums) + "\n")
    lines = [f"format={fmt}", f"parts={len(parts)}", f"bytes={total}", f"sha256={sha256_file(archive)}"]
    if unpacked_bytes is not None:
        lines.append(f"unpacked_bytes={unpacked_bytes}")
    (out_dir / PARTS_FILE).write_text("\n".join(lines) + "\n")
    return parts


# -- the call plan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Device-time assumptions of a plan, in seconds. ``start_s``: the machine's start (1-2 min);
    ``call_s``: fixed cost of one call (the tool, the reply, the operator's next call);
    ``mib_per_s``: transfer rate to the machine; ``part_work_s``: a part call's own command;
    ``back_s``: kept for the last transfer back; ``max_command_s``: one command's limit."""

    budget_s: float = 900.0
    start_s: float = 120.0
    call_s: float = 10.0
    mib_per_s: float = 8.0
    part_work_s: float = 5.0
    back_s: float = 120.0
    max_command_s: float = 600.0
    slack_s: float = 40.0  # between a command's own budget and its timeout_s


@dataclass(frozen=True)
class Call:
    """One device call: what it carries, the command, its timeout, and when it should end."""

    index: int
    purpose: str
    carry: Tuple[str, ...]
    command: str
    timeout_s: int
    carry_bytes: int
    est_end_s: float

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "carry": list(self.carry)}


@dataclass(frozen=True)
class CallPlan:
    calls: Tuple[Call, ...]
    tree_bytes: int
    capacity_bytes: int
    part_sizes: Tuple[int, ...]
    finish_budget_s: int
    timing: Timing
    notes: Tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> Dict[str, Any]:
        return {"format": PLAN_FORMAT, "calls": [c.to_dict() for c in self.calls], "tree_bytes": self.tree_bytes,
                "capacity_bytes": self.capacity_bytes, "part_sizes": list(self.part_sizes),
                "finish_budget_s": self.finish_budget_s, "timing": asdict(self.timing), "notes": list(self.notes)}


def tree_bytes(repo: Path) -> int:
    """Bytes of what travels with every call: tracked files plus untracked files git does not ignore."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    total = 0
    for rel in out.decode().split("\0"):
        p = Path(repo) / rel
        if rel and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def part_sizes_for(kit_bytes: int, first_call_extra: int, capacity: int) -> List[int]:
    """Part sizes filling each call: the first call also carries ``first_call_extra`` bytes."""
    first = capacity - first_call_extra
    if first <= 0:
        raise UsageError(f"the first call's other files ({first_call_extra / MIB:.1f} MiB) leave no room for a kit part "
                         f"(a call carries {capacity / MIB:.1f} MiB beside the tree)", "shrink the prepared folder")
    sizes = [min(first, kit_bytes)]
    left = kit_bytes - sizes[0]
    while left > 0:
        sizes.append(min(capacity, left))
        left -= sizes[-1]
    return sizes


def plan_calls(tree: int, prep_bytes: int, kit_bytes: int, meta_bytes: int, prep_path: str, ship_dir: str,
               timing: Timing = Timing(), limit: int = CALL_LIMIT, extra_args: str = "") -> CallPlan:
    """Lay the calls out: call 1 carries the prepared folder and part 0 and starts the background
    work (torch side, kit assembly); each next call carries one part; the last also runs the
    TensorRT work with the device time left, keeping ``timing.back_s`` for the transfer back.
    ``extra_args`` are appended to every command (e.g. " --models sine-lstm")."""
    capacity = limit - tree - CALL_MARGIN - meta_bytes
    sizes = part_sizes_for(kit_bytes, prep_bytes, capacity)
    # the device script looks for .gpuprep and .gpuship unless told otherwise
    extra_args = (f" --prep {prep_path}" if prep_path != ".gpuprep" else "") \
        + (f" --ship {ship_dir}" if ship_dir != ".gpuship" else "") + extra_args
    meta = [f"{ship_dir}/{SUMS_FILE}", f"{ship_dir}/{PARTS_FILE}"]
    calls: List[Call] = []
    t = timing.start_s
    for i, size in enumerate(sizes):
        last = i == len(sizes) - 1
        carry = ([prep_path] if i == 0 else []) + [f"{ship_dir}/part-{i:03d}"] + meta
        nbytes = size + meta_bytes + (prep_bytes if i == 0 else 0)
        t += timing.call_s + (tree + nbytes) / MIB / timing.mib_per_s
        if not last:
            t += timing.part_work_s
            calls.append(Call(i + 1, "part" + (" + prepared folder; starts the torch side and the kit assembly"
                                                if i == 0 else ""), tuple(carry),
                              f"bash benchmarks/gpu_verify.sh arrive{extra_args}", 120, nbytes, round(t, 1)))
            continue
        budget = int(min(timing.max_command_s - timing.slack_s, timing.budget_s - t - timing.back_s))
        calls.append(Call(i + 1, "last part + TensorRT tiers + report", tuple(carry),
                          f"bash benchmarks/gpu_verify.sh finish --budget {budget}{extra_args}",
                          int(min(timing.max_command_s, budget + timing.slack_s)), nbytes, round(t + max(budget, 0), 1)))
    budget = int(calls[-1].command.split("--budget ")[1].split()[0])
    notes = []
    if budget < 180:
        notes.append(f"only {budget} s are left for the TensorRT work: shrink the kit or the prepared folder")
    left = timing.budget_s - calls[-1].est_end_s - timing.back_s
    if left >= 60:  # the machine is still warm right after the last call: no new start is needed
        notes.append(f"about {left:.0f} s would remain after the last call: continue with "
                     f"'bash benchmarks/gpu_verify.sh finish --budget B' (B from budget_left_s - {timing.back_s:.0f})")
    return CallPlan(tuple(calls), tree, capacity, tuple(sizes), budget, timing, tuple(notes))


def plan_markdown(plan: CallPlan) -> str:
    """The plan as the operator reads it: one line per call, then the assumptions."""
    t = plan.timing
    lines = [f"# Device call plan ({len(plan.calls)} calls, budget {t.budget_s:.0f} s)", "",
             f"Tree {plan.tree_bytes / MIB:.2f} MiB travels with every call; each call carries up to "
             f"{plan.capacity_bytes / MIB:.2f} MiB beside it. Kit parts: "
             + ", ".join(f"{s / MIB:.2f}" for s in plan.part_sizes) + " MiB.", "",
             "| call | carries | MiB | command | timeout_s | ends by (est., s) |", "|---:|---|---:|---|---:|---:|"]
    for c in plan.calls:
        lines.append(f"| {c.index} | {', '.join(f'`{x}`' for x in c.carry)} | {c.carry_bytes / MIB:.2f} | `{c.command}` | "
                     f"{c.timeout_s} | {c.est_end_s:.0f} |")
    lines += ["", f"Assumed: machine start {t.start_s:.0f} s, {t.call_s:.0f} s per call plus {t.mib_per_s:g} MiB/s "
              f"of transfer, {t.part_work_s:.0f} s per part call's command, {t.back_s:.0f} s kept for the transfer "
              "back. Before the last call, set its --budget to min(560, budget_left_s - "
              f"{t.back_s:.0f} - transfer) from the previous reply's lease."]
    lines += [f"- {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"


def write_plan(plan: CallPlan, ship_dir: Path) -> None:
    write_json_atomic(ship_dir / PLAN_FILE, plan.to_dict())
    (ship_dir / "PLAN.md").write_text(plan_markdown(plan))


# -- on the machine: stash and assemble ----------------------------------------------------------------
def read_sums(path: Path) -> List[Tuple[str, str]]:
    """[(sha256, name)] of a SHA256SUMS file, in part order."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(None, 1)
            out.append((digest, name.strip().lstrip("*")))
    return sorted(out, key=lambda x: x[1])


def read_parts_info(path: Path) -> Dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def stash(src: Path, dest: Path) -> Dict[str, Any]:
    """Check every part present in ``src`` against SHA256SUMS and move it into ``dest`` atomically
    (a part is either complete and verified in ``dest`` or absent). Returns what ``dest`` now holds.
    Raises UsageError on a checksum mismatch (that part is not stashed)."""
    sums_path = src / SUMS_FILE
    if not sums_path.is_file():
        raise UsageError(f"no {SUMS_FILE} beside the parts in {src}", "carry it with every part")
    dest.mkdir(parents=True, exist_ok=True)
    for meta in (SUMS_FILE, PARTS_FILE):
        if (src / meta).is_file():
            shutil.copyfile(src / meta, dest / f".{meta}.tmp")
            os.replace(dest / f".{meta}.tmp", dest / meta)
    got = []
    for digest, name in read_sums(sums_path):
        p = src / name
        if not p.is_file() or (dest / name).is_file():
            continue
        if sha256_file(p) != digest:
            raise UsageError(f"{p}: checksum mismatch (not stashed)", "send this part again")
        tmp = dest / f".{name}.tmp"
        shutil.copyfile(p, tmp)
        os.replace(tmp, dest / name)
        got.append(name)
    want = [n for _, n in read_sums(dest / SUMS_FILE)]
    have = [n for n in want if (dest / n).is_file()]
    return {"stashed": got, "have": len(have), "total": len(want), "missing": [n for n in want if n not in have]}


class PartsReader(io.RawIOBase):
    """The concatenation of ``parts`` (in order) as one stream, waiting for each part to appear
    (``stash`` renames it into place once verified); hashes what it reads. Raises TimeoutError
    when a part does not arrive within ``timeout_s`` of the previous one."""

    def __init__(self, folder: Path, parts: Sequence[str], timeout_s: float = 600.0, poll_s: float = 0.5,
                 on_part: Optional[Callable[[int, str], None]] = None):
        self.folder = Path(folder)
        self.parts = list(parts)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.on_part = on_part
        self.index = -1
        self.file: Optional[Any] = None
        self.sha = hashlib.sha256()
        self._next()

    def _next(self) -> bool:
        if self.file:
            self.file.close()
            self.file = None
        self.index += 1
        if self.index >= len(self.parts):
            return False
        p = self.folder / self.parts[self.index]
        t0 = time.time()
        while not p.is_file():
            if time.time() - t0 > self.timeout_s:
                raise TimeoutError(f"{p} did not arrive within {self.timeout_s:.0f} s")
            time.sleep(self.poll_s)
        self.file = open(p, "rb")
        if self.on_part:
            self.on_part(self.index, self.parts[self.index])
        return True

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while self.file is not None:
            n = self.file.readinto(buf)
            if n:
                self.sha.update(memoryview(buf)[:n])
                return n
            if not self._next():
                break
        return 0


def assemble(stash_dir: Path, dest: Path, timeout_s: float = 900.0, poll_s: float = 0.5) -> Dict[str, Any]:
    """Unpack the kit into ``dest`` while its parts arrive in ``stash_dir``; check the whole
    archive's sha256; replace ``dest`` only when complete. Progress and the outcome go to
    ``dest`` + ".status.json" (state: waiting | unpacking | done | failed, with the error line)."""
    status_path = Path(str(dest) + ".status.json")

    def status(**kw: Any) -> None:
        write_json_atomic(status_path, {"time": time.time(), **kw})

    t0 = time.time()
    status(state="waiting", parts_read=0)
    deadline = t0 + timeout_s
    while not (stash_dir / SUMS_FILE).is_file() or not (stash_dir / PARTS_FILE).is_file():
        if time.time() > deadline:
            status(state="failed", error=f"no {SUMS_FILE} / {PARTS_FILE} in {stash_dir} after {timeout_s:.0f} s")
            return json.loads(status_path.read_text())
        time.sleep(poll_s)
    info = read_parts_info(stash_dir / PARTS_FILE)
    names = [n for _, n in read_sums(stash_dir / SUMS_FILE)]
    partial = Path(str(dest) + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        reader = PartsReader(stash_dir, names, timeout_s=timeout_s, poll_s=poll_s,
                             on_part=lambda i, n: status(state="unpacking", parts_read=i, of=len(names), part=n,
                                                         seconds=round(time.time() - t0, 1)))
        kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}  # our own, checksummed
        with tarfile.open(fileobj=io.BufferedReader(reader, 8 * MIB), mode="r|xz") as tar:
            tar.extractall(str(partial), **kw)
        while reader.readinto(bytearray(1 << 16)):  # trailing bytes after the tar end, if any, count in the hash
            pass
        if info.get("sha256") and reader.sha.hexdigest() != info["sha256"]:
            raise ValueError(f"the joined parts' sha256 {reader.sha.hexdigest()[:16]}… is not the archive's "
                             f"{info['sha256'][:16]}…")
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(partial, dest)
    except Exception as exc:
        status(state="failed", error=f"{type(exc).__name__}: {exc}", seconds=round(time.time() - t0, 1))
        return json.loads(status_path.read_text())
    status(state="done", parts_read=len(names), of=len(names), seconds=round(time.time() - t0, 1), dest=str(dest))
    return json.loads(status_path.read_text())


def capacity_calls(total_bytes: int, capacity: int) -> int:
    """Calls needed to carry ``total_bytes`` at ``capacity`` bytes per call."""
    return max(1, math.ceil(total_bytes / capacity))


# -- the rehearsal ---------------------------------------------------------------------------------
def _copy_tree(repo: Path, dest: Path) -> None:
    """What the device tool sends: tracked files and untracked files git does not ignore."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    for rel in out.decode().split("\0"):
        src = repo / rel
        if rel and src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)


def _copy_carry(repo: Path, dest: Path, rel: str) -> None:
    """A carried path, as the device tool sends it (a path through a link travels as the file)."""
    src = repo / rel
    target = dest / rel
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, target, symlinks=False)
    else:
        shutil.copyfile(src, target)


def rehearse(plan: Dict[str, Any], repo: Path, root: Path, torch_python: str,
             say: Callable[[str], None] = print, keep: bool = False) -> Dict[str, Any]:
    """Run a plan's calls on this machine as the device would: a copy of the tree plus each call's
    carried paths, ``root`` standing for the machine's /tmp, a fresh OUT folder per call, and
    ``torch_python`` for the device's Python. ``ok`` when every call exited 0, the kit was unpacked,
    and every failed unit failed for want of a GPU (any other failure is a bug found here)."""
    from rnndeploy.campaign.steps import failed_for_want_of_gpu

    root = Path(root)
    device_repo = root / "repo"
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    calls_out = []
    try:
        for call in plan["calls"]:
            device_repo.mkdir(parents=True, exist_ok=True)
            _copy_tree(repo, device_repo)
            for rel in call["carry"]:
                _copy_carry(repo, device_repo, rel)
            out = root / f"out-{call['index']}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            env = {**os.environ, "CAMPAIGN_ROOT": str(tmp), "TORCH_PY": torch_python, "OUT": str(out),
                   "CAMPAIGN_REHEARSAL": "1"}
            env.pop("PYTHONPATH", None)
            say(f"call {call['index']}: {call['command']} (carry {', '.join(call['carry'])})")
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(["bash", "-c", call["command"]], cwd=str(device_repo), env=env,
                                      capture_output=True, text=True, timeout=call["timeout_s"])
                rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
            except subprocess.TimeoutExpired as exc:
                rc, tail = 124, f"killed after {call['timeout_s']} s: {str(exc.stdout or '')[-1500:]}"
            calls_out.append({"index": call["index"], "command": call["command"], "exit": rc,
                              "seconds": round(time.perf_counter() - t0, 1), "output_tail": tail,
                              "files": sorted(p.name for p in out.iterdir())})
            say(f"call {call['index']}: exit {rc} in {calls_out[-1]['seconds']} s")
        last_out = root / f"out-{plan['calls'][-1]['index']}"
        summary_path = last_out / "gpu_summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        units = summary.get("units", {})
        failed = {u: r for u, r in units.items() if r.get("status") == "failed"}
        other = {u: r.get("error") for u, r in failed.items() if not failed_for_want_of_gpu(r)}
        status_path = tmp / "trt86.status.json"
        kit = json.loads(status_path.read_text()) if status_path.is_file() else {"state": "never started"}
        smoke = (summary.get("tests", {}).get("kit-smoke") or {}).get("exit")
        result = {
            "ok": bool(summary) and all(c["exit"] == 0 for c in calls_out) and kit.get("state") == "done"
            and smoke == "2" and not other and summary.get("mode") == "rehearsal",
            "calls": calls_out, "kit": kit, "kit_smoke_exit": smoke, "units": len(units),
            "failed_for_want_of_gpu": len(failed) - len(other), "failed_otherwise": other,
            "done": sum(1 for r in units.values() if r.get("status") == "done"),
            "report": str(last_out / "gpu_report.md") if keep else None,
        }
        return result
    finally:
        for name in ("torch-side", "assemble"):  # the background processes this rehearsal started
            pid_file = tmp / "gpuverify" / f"{name}.pid"
            try:
                os.killpg(int(pid_file.read_text().strip()), 15)
            except (OSError, ValueError):
                pass
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
