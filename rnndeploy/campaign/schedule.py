"""Run a campaign's units resumably, against a deadline, one GPU user at a time.

The state folder keeps one JSON record per finished unit: a unit that finished is never redone,
so each device call runs the next slice of work. A unit whose process died (a crash, not the
deadline) is retried once and then recorded as failed; a unit whose dependency failed is recorded
as skipped with the reason; an exception inside a unit is recorded with its first line (the
traceback goes to the logs) and the loop carries on. Every failure is a finding, never a stop.

Two processes share the GPU (the TensorRT side under the kit's Python, the torch side under a
Python with torch). ``GpuLock`` makes them take turns unit by unit, so no latency is measured
while the other side runs; the TensorRT side, once its kit is ready, has priority.

Torch-free and Python 3.9 compatible.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from rnndeploy.campaign.plan import Unit, slug
from rnndeploy.errors import first_line


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def error_line(exc: BaseException, limit: int = 600) -> str:
    """``Type: first line of the message`` (the error line a report shows for a failed unit)."""
    return f"{type(exc).__name__}: {first_line(exc, limit)}"


class DeadlineReached(Exception):
    """A unit was cut by the call's deadline; it is left for the next call (not a failure)."""


class State:
    """The state folder: unit records, engines, results, logs, commands (it survives between
    back-to-back device calls only)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for d in ("units", "engines", "results", "logs", "timing-cache"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def record_path(self, unit_id: str) -> Path:
        return self.root / "units" / f"{slug(unit_id)}.json"

    def marker(self, unit_id: str) -> Path:
        """Exists while a unit runs; holds the attempt count (a crash leaves it behind)."""
        return self.root / "units" / f"{slug(unit_id)}.started"

    def record(self, unit_id: str) -> Optional[Dict[str, Any]]:
        p = self.record_path(unit_id)
        return json.loads(p.read_text()) if p.is_file() else None

    def save(self, unit_id: str, rec: Mapping[str, Any]) -> None:
        p = self.record_path(unit_id)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=1, sort_keys=True, default=str) + "\n")
        os.replace(tmp, p)

    def records(self) -> Dict[str, Dict[str, Any]]:
        out = {}
        for p in sorted((self.root / "units").glob("*.json")):
            rec = json.loads(p.read_text())
            out[rec["id"]] = rec
        return out

    def status(self, unit_id: str) -> Optional[str]:
        return (self.record(unit_id) or {}).get("status")

    def engine(self, graph_key: str, variant: str, dry: bool) -> Path:
        d = self.root / "engines" / graph_key
        d.mkdir(parents=True, exist_ok=True)
        return d / (f"{variant}.onnx" if dry else f"{variant}.plan")

    def result_path(self, unit_id: str) -> Path:
        return self.root / "results" / f"{slug(unit_id)}.json"

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{slug(name)}.log"

    def command(self, line: str) -> None:
        """Append a command as run to commands.txt (the report lists them in order)."""
        with open(self.root / "commands.txt", "a") as f:
            f.write(f"{now_iso()}  {line}\n")

    def commands(self) -> str:
        p = self.root / "commands.txt"
        return p.read_text() if p.is_file() else ""


class GpuLock:
    """One GPU user at a time across processes (``flock`` on ``path``), with priority for the
    side that set ``prefer``: while the file ``<path>.want-<side>`` exists, the other side starts
    no new unit. Held for one unit at a time, so a waiting side waits at most one unit."""

    def __init__(self, path: Path, side: str, poll_s: float = 0.5):
        self.path = Path(path)
        self.side = side
        self.poll_s = poll_s
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def want_file(self, side: str) -> Path:
        return self.path.with_name(f"{self.path.name}.want-{side}")

    def prefer(self, on: bool = True) -> None:
        """Ask the other sides to let this one go first (until ``prefer(False)``)."""
        p = self.want_file(self.side)
        if on:
            p.write_text(str(os.getpid()))
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def others_preferred(self) -> bool:
        for p in self.path.parent.glob(f"{self.path.name}.want-*"):
            if p.name != self.want_file(self.side).name and _alive(p):
                return True
        return False

    @contextlib.contextmanager
    def held(self, deadline: Optional[float] = None) -> Iterator[bool]:
        """Yields True with the lock held; False when ``deadline`` passed first (nothing held)."""
        while self.others_preferred():
            if deadline is not None and time.time() >= deadline:
                yield False
                return
            time.sleep(self.poll_s)
        with open(self.path, "a+") as f:
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.time() >= deadline:
                        yield False
                        return
                    time.sleep(self.poll_s)
            try:
                yield True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _alive(want_file: Path) -> bool:
    """A preference file counts while the process that wrote it lives (a crash must not block)."""
    try:
        pid = int(want_file.read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_units(state: State, units: Sequence[Unit], do: Callable[[Unit], Dict[str, Any]],
              deadline: Optional[float] = None, retry_failed: bool = False, lock: Optional[GpuLock] = None,
              say: Callable[[str], None] = print) -> Dict[str, int]:
    """Run the pending ``units`` in order until ``deadline`` (epoch seconds); returns counts.

    ``do(unit)`` returns the unit's record (``status`` done / failed / skipped plus details) or
    raises: DeadlineReached leaves the unit pending, any other exception is recorded as failed
    with its first line."""
    counts = {"done": 0, "failed": 0, "skipped": 0, "pending": 0, "ran": 0}
    observed: Dict[str, List[float]] = {}
    for rec in state.records().values():
        if rec.get("status") == "done" and rec.get("seconds"):
            observed.setdefault(rec.get("kind", ""), []).append(float(rec["seconds"]))

    def remaining() -> float:
        return float("inf") if deadline is None else deadline - time.time()

    stop = False
    for u in units:
        rec = state.record(u.id)
        if rec and (rec.get("status") in ("done", "skipped") or (rec.get("status") == "failed" and not retry_failed)):
            counts[rec["status"]] += 1
            continue
        marker = state.marker(u.id)
        if marker.exists():  # the process running it died last time (the deadline clears the marker)
            attempts = int(marker.read_text().strip() or 1)
            if attempts >= 2 and not retry_failed:
                state.save(u.id, {**u.to_dict(), "status": "failed",
                                  "error": f"the process died during this unit {attempts} times (crash?)"})
                marker.unlink()
                counts["failed"] += 1
                continue
        missing = [n for n in u.needs if state.status(n) != "done"]
        if missing:
            bad = [n for n in missing if state.status(n) in ("failed", "skipped")]
            if bad:
                state.save(u.id, {**u.to_dict(), "status": "skipped",
                                  "error": f"needs {', '.join(bad)}, which did not finish"})
                counts["skipped"] += 1
            else:
                counts["pending"] += 1
            continue
        est = max(observed[u.kind]) if observed.get(u.kind) else u.est_s
        if stop or remaining() < est:
            stop = True
            counts["pending"] += 1
            continue
        with (lock.held(deadline) if lock else contextlib.nullcontext(True)) as got:
            if not got:
                stop = True
                counts["pending"] += 1
                continue
            attempts = int(marker.read_text().strip() or 0) + 1 if marker.exists() else 1
            marker.write_text(str(attempts))
            say(f"{u.id} (tier {u.tier}, ~{est:.0f} s; {remaining():.0f} s left)")
            t0 = time.perf_counter()
            try:
                out = do(u)
            except DeadlineReached as exc:
                say(f"{u.id}: {exc}; left for the next call")
                marker.unlink()
                counts["pending"] += 1
                stop = True
                continue
            except KeyboardInterrupt:
                marker.unlink()
                raise
            except Exception as exc:
                (state.root / "logs" / f"{slug(u.id)}.traceback.txt").write_text(traceback.format_exc())
                out = {"status": "failed", "error": error_line(exc)}
        seconds = round(time.perf_counter() - t0, 2)
        state.save(u.id, {**u.to_dict(), **out, "seconds": seconds, "finished": now_iso()})
        marker.unlink()
        counts["ran"] += 1
        counts[out["status"]] = counts.get(out["status"], 0) + 1
        observed.setdefault(u.kind, []).append(seconds)
        say(f"{u.id}: {out['status']} in {seconds:.1f} s" + (f" — {out.get('error')}" if out.get("error") else ""))
    return counts


def unit_counts(state: State, units: Sequence[Unit]) -> Dict[str, Any]:
    """done / failed / skipped / pending of ``units``, the failures' error lines and the pending ids."""
    recs = state.records()
    counts: Dict[str, Any] = {"total": len(units), "done": 0, "failed": 0, "skipped": 0, "pending": 0,
                              "problems": [], "pending_ids": []}
    for u in units:
        rec = recs.get(u.id)
        status = rec.get("status") if rec else "pending"
        counts[status] = counts.get(status, 0) + 1
        if status in ("failed", "skipped"):
            counts["problems"].append((u.id, f"{status}: {rec.get('error')}"))
        elif status == "pending":
            counts["pending_ids"].append(u.id)
    return counts
