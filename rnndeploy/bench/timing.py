"""Timing loop: warm-up, then a fixed count or a minimum duration of timed blocks.

The runner decides *how* time is read (``runner.timer()``: host clock for CPU
runners, CUDA events for GPU runners) and what a call includes (``prepare`` /
``run_prepared``, see rnndeploy.backends.base). A test passes its own Timer, which
makes every statistic deterministic.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from rnndeploy.backends.base import Runner, Timer
from rnndeploy.bench.measurement import Measurement
from rnndeploy.errors import UsageError

DEFAULT_WARMUP = 10
DEFAULT_MIN_TIME = 1.0  # seconds of timed calls per configuration
MIN_SAMPLES = 10  # a min-time run still takes at least this many samples
# ...and stops at this many even before min_time: 1000 samples pin the median and p99 well,
# and keep a results file of a whole sweep small enough to commit.
MAX_SAMPLES = 1000
# Seconds to pause before timing a runner that follows another one in the same process. ONNX
# Runtime's, OpenVINO's and torch's CPU worker threads keep spinning for a while after a run and
# take cores from the next runner: measured on this project's 2-core box (sine LSTM, batch 128 ×
# seq 16, three ORT sessions in turn; benchmarks/results/cpu_explore.md), a 2-thread session
# that followed another took 0.61-0.63 ms after a 0-20 ms pause and 0.27-0.32 ms after 50 ms or more.
SETTLE_S = 0.1


def measure(
    runner: Runner,
    feed: Mapping[str, Any],
    *,
    warmup: int = DEFAULT_WARMUP,
    iters: Optional[int] = None,
    min_time: Optional[float] = DEFAULT_MIN_TIME,
    number: int = 1,
    timer: Optional[Timer] = None,
    min_samples: int = MIN_SAMPLES,
    max_samples: int = MAX_SAMPLES,
    metadata: Optional[Mapping[str, Any]] = None,
    sizes: Optional[Mapping[str, int]] = None,
) -> Measurement:
    """Time ``runner`` on ``feed``.

    Args:
        warmup: untimed calls first (a CUDA graph is captured during these).
        iters: exact number of timed blocks; when None, blocks are taken until their
            total time reaches ``min_time`` seconds (and at least ``min_samples``) or
            ``max_samples`` blocks were taken, whichever comes first.
        number: calls per block (each sample is the block's mean per call).
        timer: defaults to ``runner.timer()``.
        sizes: the named axis sizes to record (default: read from ``feed``'s shapes).

    Returns:
        A Measurement with one sample (seconds per call) per block.
    """
    if iters is None and (min_time is None or min_time <= 0):
        raise UsageError("give a number of iterations or a positive minimum time", "e.g. --iters 100 or --min-time 1")
    if iters is not None and iters < 1:
        raise UsageError(f"iterations must be at least 1, got {iters}")
    if warmup < 0 or number < 1:
        raise UsageError("warm-up must be ≥ 0 and calls per block ≥ 1")
    prepared = runner.prepare(feed)
    clock = timer or runner.timer()
    call = runner.bind_prepared(prepared)
    for _ in range(warmup):
        call()
    times = []
    total = 0.0
    while True:
        elapsed = clock.measure(call, number)
        times.append(elapsed / number)
        total += elapsed
        if iters is not None:
            if len(times) >= iters:
                break
        elif (total >= float(min_time or 0) and len(times) >= min_samples) or len(times) >= max_samples:
            break
    if sizes is None:
        from rnndeploy.inputs import infer_sizes

        sizes = infer_sizes(runner.graph_spec, feed)
    return Measurement(
        backend=runner.label,
        sizes=dict(sizes),
        times=tuple(times),
        number=number,
        warmup=warmup,
        description=runner.describe().to_dict(),
        metadata=dict(metadata or {}),
    )
