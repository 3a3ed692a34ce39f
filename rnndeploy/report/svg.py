"""Line charts as inline SVG strings — no plotting library, no JavaScript, no external files.

``line_chart`` draws several series on linear or log axes with ticks, grid, axis
labels, a legend and a ``<title>`` tooltip on every point. Series colours come from
a fixed palette so a backend keeps its colour across charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import List, Optional, Sequence, Tuple

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass(frozen=True)
class Series:
    """One line: points (x, y), a legend name and a colour."""

    name: str
    xs: Tuple[float, ...]
    ys: Tuple[float, ...]
    color: str = PALETTE[0]
    dashed: bool = False


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def linear_ticks(lo: float, hi: float, target: int = 5) -> List[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    step = _nice_step(hi - lo, target)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def log_ticks(lo: float, hi: float) -> List[float]:
    """Powers of ten covering [lo, hi] (lo, hi > 0); adds 2 and 5 multiples when the range is short."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if b == a:
        b = a + 1
    ticks = [10.0 ** e for e in range(a, b + 1)]
    if b - a <= 2:
        ticks = sorted(ticks + [m * 10.0 ** e for e in range(a, b) for m in (2, 5)])
    return ticks


def tick_label(v: float, log: bool = False) -> str:
    if v == 0:
        return "0"
    if log and (abs(v) < 1e-3 or abs(v) >= 1e5):
        mant, _, exp = f"{v:.0e}".partition("e")
        return f"{mant}e{int(exp)}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


def line_chart(
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    *,
    log_x: bool = False,
    log_y: bool = False,
    width: int = 560,
    height: int = 320,
    chart_id: Optional[str] = None,
) -> str:
    """An ``<svg>`` element. Non-positive values are dropped on log axes; NaN everywhere."""
    pad_l, pad_r, pad_t, pad_b = 64, 16, 30, 46
    legend_h = 18 * ((len(series) + 2) // 3)
    h_plot = height - pad_t - pad_b
    w_plot = width - pad_l - pad_r
    total_h = height + legend_h

    def ok(v: float, log: bool) -> bool:
        return v == v and math.isfinite(v) and (v > 0 or not log)

    pts = [[(x, y) for x, y in zip(s.xs, s.ys) if ok(x, log_x) and ok(y, log_y)] for s in series]
    all_x = [x for p in pts for x, _ in p]
    all_y = [y for p in pts for _, y in p]
    cid = escape(chart_id or "chart")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" width="{width}" height="{total_h}" '
           f'viewBox="0 0 {width} {total_h}" role="img" aria-label="{escape(title)}">',
           f'<rect x="0" y="0" width="{width}" height="{total_h}" fill="#ffffff"/>',
           f'<text x="{width / 2:.1f}" y="18" text-anchor="middle" class="title">{escape(title)}</text>']
    if not all_x:
        out.append(f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" class="empty">no data</text></svg>')
        return "".join(out)

    def rng(vals: List[float], log: bool) -> Tuple[float, float, List[float]]:
        lo, hi = min(vals), max(vals)
        if log:
            if lo == hi:
                lo, hi = lo / 2, hi * 2
            ticks = log_ticks(lo, hi)
            ticks = [t for t in ticks if lo / 1.0001 <= t <= hi * 1.0001] or ticks
            return min(lo, ticks[0]), max(hi, ticks[-1]), ticks
        if lo == hi:
            lo, hi = lo - (abs(lo) * 0.1 or 1.0), hi + (abs(hi) * 0.1 or 1.0)
        ticks = linear_ticks(lo, hi)
        return min(lo, ticks[0]), max(hi, ticks[-1]), ticks

    x0, x1, xt = rng(all_x, log_x)
    y0, y1, yt = rng(all_y, log_y)

    def sx(v: float) -> float:
        if log_x:
            f = (math.log10(v) - math.log10(x0)) / ((math.log10(x1) - math.log10(x0)) or 1.0)
        else:
            f = (v - x0) / ((x1 - x0) or 1.0)
        return pad_l + f * w_plot

    def sy(v: float) -> float:
        if log_y:
            f = (math.log10(v) - math.log10(y0)) / ((math.log10(y1) - math.log10(y0)) or 1.0)
        else:
            f = (v - y0) / ((y1 - y0) or 1.0)
        return pad_t + (1 - f) * h_plot

    out.append(f'<rect x="{pad_l}" y="{pad_t}" width="{w_plot}" height="{h_plot}" fill="#fafafa" stroke="#999"/>')
    for t in yt:
        y = sy(t)
        out.append(f'<line x1="{pad_l}" x2="{pad_l + w_plot}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e2e2"/>')
        out.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick_label(t, log_y)}</text>')
    for t in xt:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad_t}" y2="{pad_t + h_plot}" stroke="#eeeeee"/>')
        out.append(f'<text x="{x:.1f}" y="{pad_t + h_plot + 16}" text-anchor="middle" class="tick">{tick_label(t, log_x)}</text>')
    out.append(f'<text x="{pad_l + w_plot / 2:.1f}" y="{pad_t + h_plot + 36}" text-anchor="middle" class="axis">'
               f'{escape(x_label)}</text>')
    out.append(f'<text transform="translate(14 {pad_t + h_plot / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis">'
               f'{escape(y_label)}</text>')
    for s, p in zip(series, pts):
        if not p:
            continue
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(p))
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(f'<path class="series" data-series="{escape(s.name)}" d="{path}" fill="none" stroke="{s.color}" '
                   f'stroke-width="2"{dash}/>')
        if len(p) <= 64:
            for x, y in p:
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{s.color}">'
                           f'<title>{escape(s.name)}: x={x:g}, y={y:.4g}</title></circle>')
    for i, s in enumerate(series):
        lx = pad_l + (i % 3) * (w_plot / 3)
        ly = height + 4 + 18 * (i // 3)
        out.append(f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{s.color}" stroke-width="3"/>')
        out.append(f'<text x="{lx + 24:.1f}" y="{ly + 4:.1f}" class="legend">{escape(s.name)}</text>')
    out.append("</svg>")
    return "".join(out)
