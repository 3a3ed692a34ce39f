"""Feedback and bookkeeping while TensorRT builds: progress lines and peak memory.

Progress: TensorRT ≥ 10 reports build phases through ``IProgressMonitor``; 8.6 has no
such hook, so a thread prints the elapsed time instead. Both write to stderr only when
it is a terminal (or when forced), one updating line.

Memory: a sampler thread polls the process RSS (/proc/self/status) and the device's
used memory (cudaMemGetInfo) every ``interval`` seconds; peaks are reported relative to
the values before the build, plus ``ru_maxrss``.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, TextIO


def _write_line(stream: TextIO, text: str) -> None:
    stream.write("\r\x1b[2K" + text)
    stream.flush()


class ElapsedSpinner:
    """Prints "building engine … 12 s" once a second until stopped."""

    def __init__(self, label: str, stream: Optional[TextIO] = None, period: float = 1.0,
                 clock: Callable[[], float] = time.perf_counter):
        self.label, self.stream, self.period, self.clock = label, stream or sys.stderr, period, clock
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._t0 = 0.0

    def __enter__(self) -> ElapsedSpinner:
        self._t0 = self.clock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            _write_line(self.stream, f"{self.label} ... {self.clock() - self._t0:.0f} s")

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        _write_line(self.stream, "")


class PhaseTracker:
    """The state behind a TensorRT IProgressMonitor: nested phases with step counts,
    rendered as one line "Building engine > Tactic selection 12/40 (8 s)"."""

    def __init__(self, stream: Optional[TextIO] = None, clock: Callable[[], float] = time.perf_counter):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.t0 = clock()
        self.phases: List[List[Any]] = []  # [name, step, total]
        self.seen: List[str] = []

    def start(self, name: str, parent: Optional[str], total: int) -> None:
        if parent is None:
            self.phases = []
        else:
            while self.phases and self.phases[-1][0] != parent:
                self.phases.pop()
        self.phases.append([name, 0, int(total)])
        self.seen.append(name)
        self.render()

    def step(self, name: str, step: int) -> bool:
        for p in self.phases:
            if p[0] == name:
                p[1] = int(step) + 1
        self.render()
        return True  # never cancel the build

    def finish(self, name: str) -> None:
        while self.phases:
            if self.phases.pop()[0] == name:
                break
        self.render()

    def line(self) -> str:
        parts = [f"{n} {s}/{t}" if t else str(n) for n, s, t in self.phases]
        return f"{' > '.join(parts) or 'building'} ({self.clock() - self.t0:.0f} s)"

    def render(self) -> None:
        _write_line(self.stream, self.line())


def make_progress_monitor(trt: Any, tracker: PhaseTracker) -> Any:
    """A ``trt.IProgressMonitor`` forwarding to ``tracker`` (only call when the class exists)."""

    class _Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            tracker.start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return tracker.step(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            tracker.finish(phase_name)

    return _Monitor()


# -- memory --------------------------------------------------------------------------------------
def current_rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def max_rss_bytes() -> Optional[int]:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
    except (ImportError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class MemoryPeaks:
    """Bytes. ``*_before`` are the values when sampling started; ``peak_*`` the maxima seen.
    ``device_used`` is the whole device's used memory (cudaMemGetInfo), not only ours."""

    host_rss_before: Optional[int]
    peak_host_rss: Optional[int]
    max_rss: Optional[int]
    device_used_before: Optional[int]
    peak_device_used: Optional[int]
    samples: int

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        mib = 1 << 20
        d["peak_host_rss_mib"] = None if self.peak_host_rss is None else round(self.peak_host_rss / mib, 1)
        grew = None
        if self.peak_device_used is not None and self.device_used_before is not None:
            grew = round((self.peak_device_used - self.device_used_before) / mib, 1)
        d["peak_device_growth_mib"] = grew
        return d


class MemorySampler:
    """Context manager sampling host RSS and device used memory in a thread."""

    def __init__(self, device_used: Optional[Callable[[], int]] = None, interval: float = 0.05):
        self.device_used, self.interval = device_used, interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._rss0 = self._dev0 = self._rss = self._dev = None  # type: Optional[int]
        self._n = 0

    def _device(self) -> Optional[int]:
        if self.device_used is None:
            return None
        try:
            return int(self.device_used())
        except Exception:  # a failing probe must not break the build
            return None

    def _sample(self) -> None:
        r, d = current_rss_bytes(), self._device()
        if r is not None:
            self._rss = r if self._rss is None else max(self._rss, r)
        if d is not None:
            self._dev = d if self._dev is None else max(self._dev, d)
        self._n += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._rss0, self._dev0 = current_rss_bytes(), self._device()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def peaks(self) -> MemoryPeaks:
        return MemoryPeaks(self._rss0, self._rss, max_rss_bytes(), self._dev0, self._dev, self._n)
