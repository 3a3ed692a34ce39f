"""Where a result was measured, as reports show it: a short label per machine and the
distinct machines behind several results. The description itself is measured by
rnndeploy.environment.describe_machine (stamped into every result).
"""

from __future__ import annotations

from typing import Any, Dict, List


def machine_label(machine: Dict[str, Any]) -> str:
    """Short label, e.g. "NVIDIA H100 80GB HBM3" or "AMD EPYC (2 cores)"."""
    gpus = machine.get("gpus") or []
    if gpus:
        return str(gpus[0].get("name", "GPU"))
    return f"{machine.get('cpu', 'CPU')} ({machine.get('cpu_affinity') or machine.get('cpu_count')} cores)"


def distinct_machines(results: Any) -> List[Dict[str, Any]]:
    """The machines behind ``results`` (objects with a ``.machine`` dict), each once, in order."""
    seen = set()
    out = []
    for r in results:
        m = dict(r.machine)
        key = (m.get("hostname"), m.get("cpu"), str(m.get("gpus")))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out
