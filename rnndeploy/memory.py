"""Refuse what cannot fit: memory estimates checked before anything is allocated.

A request such as ``--shapes 100000x100000`` or ``--set model.hidden_size=65536``
would otherwise end in a numpy/torch MemoryError traceback — or worse, the kernel's
OOM killer taking the machine's other jobs with it. Every place that allocates on the
user's behalf estimates the bytes first and calls ``check_fits``, which refuses
(``UsageError``, exit status 2) with the estimate and the machine's memory::

    check_fits(tensor_bytes((100000, 100000, 1), "float32") * 3, "parity case b100000-s100000")
    # UsageError: parity case b100000-s100000 needs about 112 GiB of memory; this machine has
    #             18.3 GiB available (23.5 GiB total) — use smaller sizes

Estimates are lower bounds (the tensors that must exist at once), so a refusal is
never wrong; what passes can still be tight. ``graph_bytes`` estimates one case of a
graph (inputs + outputs at given axis sizes); ``guard`` turns a MemoryError that an
estimate missed into the same one-line refusal.

"Available" is the smaller of /proc/meminfo's MemAvailable and the cgroup limit
minus its usage (containers); elsewhere the physical memory.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping, Optional, Sequence, Tuple

from rnndeploy.errors import UsageError

_ITEMSIZE = {"float32": 4, "float16": 2, "float64": 8, "int64": 8, "int32": 4, "int8": 1, "uint8": 1, "bool": 1}


def machine_memory() -> Tuple[int, int]:
    """(available, total) bytes of memory for this process."""
    from rnndeploy.environment import meminfo

    info = meminfo()
    total = info.get("MemTotal", 0)
    avail = info.get("MemAvailable", info.get("MemFree", 0))
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 0
        avail = total
    cgroup = _cgroup_limit()
    if cgroup is not None:
        limit, room = cgroup
        total = min(total, limit) if total else limit
        avail = min(avail, room) if avail else room
    return avail, total


def _cgroup_limit() -> Optional[Tuple[int, int]]:
    """(limit, bytes left under it) of a cgroup v2 / v1 memory limit, or None without one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as f:
                text = f.read().strip()
            if text == "max":
                return None
            limit = int(text)
            if limit >= 1 << 60:  # v1 writes a huge number for "no limit"
                return None
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
            return limit, max(0, limit - usage)
        except (OSError, ValueError):
            continue
    return None


def human_bytes(n: float) -> str:
    """1536 → "1.5 KiB" (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def tensor_bytes(shape: Sequence[int], dtype: str = "float32") -> int:
    """Bytes of a dense tensor (Python ints: no overflow for absurd shapes)."""
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    return n * _ITEMSIZE.get(str(dtype), 8)


def graph_bytes(graph: object, sizes: Mapping[str, int]) -> int:
    """Bytes of one case of ``graph`` (a GraphSpec): every input and output at ``sizes``.

    Axes not in ``sizes`` count as 1 (their size is not known yet).
    """
    total = 0
    for t in tuple(getattr(graph, "inputs", ())) + tuple(getattr(graph, "outputs", ())):
        shape = [d if isinstance(d, int) else int(sizes.get(d, 1)) for d in t.dims]
        total += tensor_bytes(shape, t.dtype)
    return total


def activation_bytes(attrs: Optional[Mapping[str, object]], sizes: Mapping[str, int]) -> int:
    """The recurrent layers' per-step outputs and gates a runtime keeps for one case (float32).

    From the spec's attrs (``hidden_size``, ``num_layers``, ``bidirectional``, ``cell``);
    0 when they are unknown (foreign models: their inputs and outputs are all we know).
    """
    attrs = attrs or {}
    hidden = attrs.get("hidden_size")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        return 0
    layers = attrs.get("num_layers", 1)
    layers = layers if isinstance(layers, int) and not isinstance(layers, bool) and layers > 0 else 1
    dirs = 2 if attrs.get("bidirectional") else 1
    gates = {"lstm": 4, "gru": 3}.get(str(attrs.get("cell", "")).split("_")[0], 1)
    batch = int(sizes.get("batch", 1))
    steps = max(int(sizes.get("seq", 1)), int(sizes.get("src_seq", 1)))
    return batch * steps * hidden * layers * dirs * (gates + 1) * 4


def check_graph_fits(graph: object, sizes: Mapping[str, int], what: str, copies: int = 2,
                     attrs: Optional[Mapping[str, object]] = None) -> None:
    """``check_fits`` for one case of ``graph`` at ``sizes``.

    The estimate: ``copies`` × (inputs + outputs) — the sets that exist at once, e.g.
    inputs + reference outputs + one runtime's outputs is about 3 — plus the float64
    temporaries of generated float inputs, plus ``activation_bytes(attrs, sizes)``.
    """
    floats_in = sum(tensor_bytes([d if isinstance(d, int) else int(sizes.get(d, 1)) for d in t.dims], t.dtype)
                    for t in getattr(graph, "inputs", ()) if str(t.dtype).startswith("float"))
    nbytes = graph_bytes(graph, sizes) * copies + 2 * floats_in + activation_bytes(attrs, sizes)
    shown = ", ".join(f"{k} {v}" for k, v in sizes.items())
    check_fits(nbytes, f"{what} ({shown})" if shown else what)


def check_fits(nbytes: int, what: str, hint: Optional[str] = None, fraction: float = 1.0) -> None:
    """Refuse (UsageError) when ``nbytes`` exceed ``fraction`` of the available memory.

    Args:
        nbytes: the estimate (a lower bound of what the work allocates at once).
        what: what needs it, e.g. "parity case b4-s128 (inputs and outputs of 3 runtimes)".
        hint: what would work instead (default: "use smaller sizes").
    """
    avail, total = machine_memory()
    if not avail or nbytes <= avail * fraction:
        return
    raise UsageError(f"{what} needs about {human_bytes(nbytes)} of memory; this machine has "
                     f"{human_bytes(avail)} available ({human_bytes(total)} total)", hint or "use smaller sizes")


# How runtimes say an allocation failed (onnxruntime's BFC arena, torch's CPU/CUDA allocators,
# TensorRT, C++ std::bad_alloc through pybind11): the request did not fit this machine.
_OUT_OF_MEMORY = ("failed to allocate memory", "out of memory", "can't allocate memory", "cannot allocate memory",
                  "bad_alloc", "outofmemory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` (a MemoryError, or a runtime's own error type) says an allocation failed."""
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(words in text for words in _OUT_OF_MEMORY)


def out_of_memory(what: str, hint: Optional[str] = None) -> UsageError:
    """The one-line refusal for work that ran out of memory (the estimate missed it)."""
    avail, total = machine_memory()
    return UsageError(f"{what} ran out of memory; this machine has {human_bytes(avail)} available "
                      f"({human_bytes(total)} total)", hint or "use smaller sizes")


@contextlib.contextmanager
def runtime_guard(what: str, hint: Optional[str] = None) -> Iterator[None]:
    """``guard`` for a runtime's call: its own allocation-failure errors become the one-line
    refusal too (is_out_of_memory); anything else passes through unchanged."""
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(what, hint) from None
        raise


@contextlib.contextmanager
def guard(what: str, hint: Optional[str] = None) -> Iterator[None]:
    """Turn a MemoryError inside the block into the one-line refusal (estimate unknown)."""
    try:
        yield
    except MemoryError:
        raise out_of_memory(what, hint) from None
