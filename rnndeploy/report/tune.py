"""Renderings of a TuneResult: the choice per shape (with % of floor), the accuracy checks, every
latency, and for HTML the latency-versus-task-metric trade-off per shape."""

from __future__ import annotations

from html import escape
from typing import Any, Callable, List, Optional, Sequence

from rnndeploy.report import fmt
from rnndeploy.report.machine import machine_label

TableFn = Callable[[Sequence[str], Sequence[Sequence[str]], Any], str]

CHOICE_HEADERS = ["batch", "seq", "chosen", "median ms", "% of floor", "ORT default ms", "chosen / default",
                  "floor ms"]
ACCURACY_HEADERS = ["runtime", "variant", "task metric", "vs FP32", "worst max abs", "argmax agree", "result", "why"]
LATENCY_HEADERS = ["candidate", "batch", "seq", "median ms", "IQR", "% of floor", "vs ORT default", "note"]


def choice_rows(r: Any) -> List[List[str]]:
    rows = []
    for c in r.choices:
        pct = None if not (c.floor and c.median) else c.floor / c.median
        rows.append([str(c.batch), str(c.seq), c.label or "— (nothing measured)", fmt.ms(c.median), fmt.pct(pct, 1),
                     fmt.ms(c.baseline_median), fmt.ratio(c.speedup), fmt.ms(c.floor)])
    return rows


def accuracy_rows(r: Any) -> List[List[str]]:
    rows = []
    for a in r.accuracy:
        worst = max((o.get("max_abs") or 0.0 for o in a.outputs.values()), default=None) if a.outputs else None
        agree = [o["argmax_agreement"] for o in a.outputs.values() if o.get("argmax_agreement") is not None]
        metric = "—" if a.value is None else f"{a.metric} {a.value:.5g}"
        change = "—" if a.change_pct is None else f"{a.change_pct:+.3g}%"
        rows.append([a.runtime, a.variant, metric, change, fmt.err(worst), fmt.pct(min(agree), 2) if agree else "—",
                     "ok" if a.passed else ("FAIL" if a.ran else "skip"), a.reason])
    return rows


def latency_rows(r: Any) -> List[List[str]]:
    rows = []
    order = {label: i for i, label in enumerate(r.labels())}
    for m in sorted(r.measurements, key=lambda m: (m.seq, m.batch, order.get(m.backend, 0))):
        base = r.get(r.baseline, m.batch, m.seq)
        ratio = m.median / base.median if base is not None and base.median > 0 else None
        pof = r.percent_of_floor(m)
        rows.append([m.backend, str(m.batch), str(m.seq), fmt.ms(m.median), fmt.pct(m.iqr_rel, 0),
                     fmt.pct(pof / 100 if pof is not None else None, 1), fmt.ratio(ratio), "; ".join(m.warnings)])
    return rows


def _cache_rates(cpu: Any) -> str:
    """"L1 332 GB/s, L2 166 GB/s, ..., DRAM 21 GB/s" (all cores), as the floor used them."""
    parts = []
    for c in cpu.get("caches") or []:
        total = c["bytes_per_s"] * (cpu.get("cores") or 1)  # per core, as CpuModel.read_level scales it
        parts.append(f"L{c['level']} {total / 1e9:.0f}")
    parts.append(f"DRAM {cpu.get('dram_bytes_per_s', 0) / 1e9:.0f}")
    return ", ".join(parts) + " GB/s"


def render_tune(r: Any, table: TableFn, heading: Callable[[str], str]) -> str:
    """The text / Markdown body of one TuneResult."""
    s = r.settings
    cpu = r.cpu
    lines = [heading(f"Tune: {r.model.get('name')} (graph {r.model.get('graph')}) on {machine_label(dict(r.machine))}"),
             "",
             f"Grid: batch {s.get('batches')} × seq {s.get('seqs')}; runtimes {', '.join(s.get('runtimes') or [])}; "
             f"variants {', '.join(s.get('variants') or [])}; threads {s.get('threads')}; "
             f"accuracy budget {_budget(s.get('max_accuracy_drop'))}; {s.get('seconds')} s"
             + (f" of a {s.get('budget'):g} s budget" if s.get("budget") else ""),
             f"Baseline: {r.baseline} = onnxruntime.InferenceSession(path) with its default options. "
             f"Floor: {cpu.get('cores')} cores × {cpu.get('ghz', 0):.2f} GHz × {cpu.get('flops_per_cycle'):g} FP32 "
             f"FLOP/cycle ({cpu.get('isa') or 'ISA unknown'}), recurrent weights from the nearest cache that holds "
             f"them at {_cache_rates(cpu)} (README, 'The floor').",
             "", table(CHOICE_HEADERS, choice_rows(r), "rrlrrrrr"),
             "", "Accuracy against FP32 ONNX Runtime, once per runtime and variant "
             f"({r.accuracy[0].inputs if r.accuracy else 'no checks'}):",
             "", table(ACCURACY_HEADERS, accuracy_rows(r), "llllrrll")]
    curves = _curves(r)
    if curves:
        lines += ["", "Relative L2 error along the sequence (variant vs FP32):"] + ["  " + c for c in curves]
    lines += ["", table(LATENCY_HEADERS, latency_rows(r), "lrrrrrrl")]
    if r.deploy:
        lines.append(f"Chosen artefacts and runner settings: {r.deploy.get('deploy_json')}")
    lines += [f"skipped: {x}" for x in r.skipped[:20]]
    if len(r.skipped) > 20:
        lines.append(f"skipped: … and {len(r.skipped) - 20} more")
    lines += [f"warning: {w}" for w in r.warnings]
    return "\n".join(lines)


def render_tune_html(r: Any, idx: int) -> str:
    """The HTML section: the tables, plus a latency-versus-task-metric chart per shape."""
    from rnndeploy.report.svg import Series, line_chart

    parts = [f'<p class="meta">Command: <code>{escape(r.command)}</code> · {escape(r.created)}</p>']
    parts.append(_html_table(CHOICE_HEADERS, choice_rows(r)))
    parts.append("<h3>Accuracy against FP32</h3>" + _html_table(ACCURACY_HEADERS, accuracy_rows(r)))
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
    curves = _curve_charts(r, idx, colors)
    if curves:
        parts.append('<h3>Error versus timestep</h3><div class="charts">' + "".join(curves) + "</div>")
    metric = next((a.metric for a in r.accuracy if a.metric), None)
    charts = []
    if metric:
        for ch in r.choices:
            series = []
            for i, c in enumerate(r.candidates):
                m = r.get(c.label, ch.batch, ch.seq)
                check = r.check_for(c)
                if m is None or check is None or check.value is None:
                    continue
                series.append(Series(c.label, (m.median * 1e3,), (check.value,), colors[i % len(colors)]))
            if series:
                charts.append(line_chart(series, f"{metric} vs latency, batch {ch.batch} seq {ch.seq}",
                                         "median latency (ms)", metric, log_x=True,
                                         chart_id=f"tune{idx}-b{ch.batch}-s{ch.seq}"))
    if charts:
        parts.append('<h3>Trade-off: task metric versus latency</h3><div class="charts">' + "".join(charts) + "</div>")
    parts.append("<details><summary>All measurements</summary>" + _html_table(LATENCY_HEADERS, latency_rows(r))
                 + "</details>")
    parts += [f'<p class="note">skipped: {escape(x)}</p>' for x in r.skipped[:20]]
    parts += [f'<p class="note">warning: {escape(w)}</p>' for w in r.warnings]
    return "".join(parts)


def _curve_charts(r: Any, idx: int, colors: Sequence[str]) -> List[str]:
    """Per output with a time axis: relative L2 error at each timestep, one line per checked
    (runtime, variant) — the FP32 reference itself is left out (its error is zero)."""
    from rnndeploy.report.svg import Series, line_chart

    charts = []
    names = list(dict.fromkeys(name for a in r.accuracy for name in a.outputs))
    for name in names:
        series = []
        for i, a in enumerate(r.accuracy):
            curve = (a.outputs.get(name) or {}).get("error_vs_timestep")
            if (a.runtime, a.variant) == ("ort-cpu", "fp32") or not curve or len(curve["timesteps"]) < 2:
                continue
            series.append(Series(f"{a.runtime} {a.variant}", tuple(float(t) for t in curve["timesteps"]),
                                 tuple(curve["rel_l2"]), colors[i % len(colors)]))
        if series:
            charts.append(line_chart(series, f"{name}: error vs timestep (against FP32 ONNX Runtime)", "timestep",
                                     "relative L2 error at t", log_y=True, chart_id=f"tune{idx}-{name}-t"))
    return charts


def _budget(pct: Optional[float]) -> str:
    return "model tolerances" if pct is None else f"task metric within {pct:g}% of FP32"


def _curves(r: Any) -> List[str]:
    out = []
    for a in r.accuracy:
        for name, o in a.outputs.items():
            curve = o.get("error_vs_timestep")
            if a.variant == "fp32" or not curve or len(curve["timesteps"]) < 4:
                continue
            ts, errs = curve["timesteps"], curve["rel_l2"]
            picks = sorted({0, len(ts) // 4, len(ts) // 2, len(ts) - 1})
            out.append(f"{a.runtime} {a.variant} {name}: " + "  ".join(f"t={ts[i]}: {fmt.err(errs[i])}" for i in picks))
    return out


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from rnndeploy.report.html import _table

    return _table(headers, rows, "l" * len(headers))
