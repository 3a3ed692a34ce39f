"""Number formatting — the only place results become text."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence


def err(x: Optional[float]) -> str:
    """An error magnitude: "0", "3.2e-07", or "—" for unknown."""
    if x is None:
        return "—"
    if x == 0:
        return "0"
    return f"{x:.2e}"


def ms(seconds: Optional[float]) -> str:
    """Seconds as milliseconds with 3 significant digits ("0.412", "12.3", "1,234")."""
    if seconds is None:
        return "—"
    v = seconds * 1e3
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.1f}"
    if v >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"


def rate(x: Optional[float]) -> str:
    """A throughput ("1.23k", "4.5M")."""
    if x is None:
        return "—"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def pct(x: Optional[float], digits: int = 2) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.{digits}f}%"


def ratio(x: Optional[float]) -> str:
    """"0.42×", "1.30×"; two significant digits below 0.1 ("0.031×")."""
    if x is None:
        return "—"
    return f"{x:.2g}×" if x < 0.1 else f"{x:.2f}×"


def tolerance(t: Any) -> str:
    """"atol 1e-04, rtol 1e-03, L2 1e-05" from a Tolerance or its dict."""
    d = t.to_dict() if hasattr(t, "to_dict") else dict(t)
    parts = [f"atol {d['atol']:.0e}", f"rtol {d['rtol']:.0e}"]
    if d.get("rel_l2") is not None:
        parts.append(f"L2 {d['rel_l2']:.0e}")
    return ", ".join(parts)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Optional[str] = None) -> str:
    """A plain-text table with columns padded; ``align`` is "l"/"r" per column (default: l then r)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: Sequence[str]) -> str:
        out: List[str] = []
        for i, c in enumerate(cells):
            out.append(c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i]))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Optional[str] = None) -> str:
    """A GitHub-flavoured Markdown table."""
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---:" if a == "r" else ":---" for a in align]
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)
