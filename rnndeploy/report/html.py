"""One self-contained HTML page: summary tables, latency and error plots (inline SVG), details.

No CDN, no external file, no font download: styles and a few lines of script are
inline, plots are SVG drawn by rnndeploy.report.svg. The script only builds the table
of contents and marks the page ready; everything is readable without it.
"""

from __future__ import annotations

import datetime
from html import escape
from typing import Any, Dict, List, Sequence

from rnndeploy.report import fmt
from rnndeploy.report.machine import distinct_machines, machine_label
from rnndeploy.report.svg import PALETTE, Series, line_chart
from rnndeploy.report.text import (
    LOADTEST_HEADERS,
    PARITY_HEADERS,
    bench_headers,
    bench_rows,
    describe_loadtest,
    describe_run,
    describe_settings,
    loadtest_rows,
    parity_rows,
)

BACKEND_ORDER = ("torch", "ort-cpu", "ort-cuda", "ort-trt", "trt")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#222;
line-height:1.4;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{margin-top:22px}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
th,td{border:1px solid #d8d8d8;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f0f3f7}td.l,th.l{text-align:left}
tr.fail td{background:#fdecea}.pass{color:#1b7d2c;font-weight:600}.fail{color:#b3261e;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart .title{font-size:13px;font-weight:600}
.chart .tick{font-size:10px;fill:#555}.chart .axis{font-size:11px;fill:#333}.chart .legend{font-size:11px}
.meta{color:#555;font-size:13px}.note{color:#8a5a00;font-size:13px}code{background:#f4f4f4;padding:1px 4px}
#toc{font-size:13px}details{margin:8px 0}summary{cursor:pointer;color:#124}
"""

SCRIPT = """
(function(){var toc=document.getElementById('toc');var hs=document.querySelectorAll('h2[id]');
for(var i=0;i<hs.length;i++){var li=document.createElement('li');var a=document.createElement('a');
a.href='#'+hs[i].id;a.textContent=hs[i].textContent;li.appendChild(a);toc.appendChild(li);}
document.body.setAttribute('data-ready',String(document.querySelectorAll('svg.chart').length));})();
"""


def backend_colors(names: Sequence[str]) -> Dict[str, str]:
    """A stable colour per backend (known backends keep theirs across pages)."""
    colors = {}
    extra = 0
    for n in names:
        if n in BACKEND_ORDER:
            colors[n] = PALETTE[BACKEND_ORDER.index(n)]
        else:
            colors[n] = PALETTE[(len(BACKEND_ORDER) + extra) % len(PALETTE)]
            extra += 1
    return colors


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str, fail_col: int = -1) -> str:
    out = ["<table><thead><tr>"]
    out += [f'<th class="{"l" if a == "l" else ""}">{escape(h)}</th>' for h, a in zip(headers, align)]
    out.append("</tr></thead><tbody>")
    for r in rows:
        bad = fail_col >= 0 and r[fail_col] not in ("ok", "PASSED", "", "not checked")
        out.append(f'<tr class="{"fail" if bad else ""}">')
        out += [f'<td class="{"l" if a == "l" else ""}">{escape(c)}</td>' for c, a in zip(r, align)]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _slug(text: str, used: Dict[str, int]) -> str:
    base = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-") or "section"
    n = used.get(base, 0)
    used[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


# -- summary -----------------------------------------------------------------------------------------
def _summary(results: Sequence[Any]) -> str:
    parts = []
    prow = []
    for r in results:
        if r.kind != "parity":
            continue
        for b in r.backend_names():
            for out in r.output_names():
                w = r.worst(b, out)
                agree = r.argmax_agreement(b, out)
                ok = all(o.passed for c in r.cases if c.backend == b for o in c.outputs if o.output == out)
                errs = any(c.error for c in r.cases if c.backend == b)
                prow.append([str(r.model.get("name")), b, str(r.reference.get("backend")), out,
                             fmt.err(w.stats.max_abs if w and w.stats else None),
                             fmt.err(w.stats.rel_l2 if w and w.stats else None),
                             fmt.pct(agree, 3) if agree is not None else "—",
                             str(r.backends.get(b, {}).get("precision", "?")),
                             "ok" if ok and not errs else "FAIL"])
    if prow:
        parts.append("<h3>Parity (worst case over all inputs)</h3>")
        parts.append(_table(["model", "backend", "reference", "output", "max abs", "rel L2", "argmax agree",
                             "precision", "result"], prow, "llllrrrll", fail_col=8))
    for r in results:
        if r.kind != "bench":
            continue
        backends = r.backends()
        cols = [(b, s) for s in r.seqs() for b in r.batches()]
        rows = []
        for be in backends:
            row = [be]
            for b, s in cols:
                m = r.get(be, b, s)
                ratio = r.ratio(be, b, s)
                cell = fmt.ms(m.median) if m else "—"
                if ratio is not None:
                    cell += f" ({fmt.ratio(ratio)})"
                row.append(cell)
            rows.append(row)
        parts.append(f"<h3>Median latency, ms — {escape(_model_label(r))} on "
                     f"{escape(machine_label(dict(r.machine)))} (× = ratio to {escape(str(r.baseline or '—'))})</h3>")
        parts.append(_table(["backend"] + [f"b{b} s{s}" for b, s in cols], rows, "l" + "r" * len(cols)))
    return "".join(parts)


# -- sections ----------------------------------------------------------------------------------------
def _bench_section(r: Any, idx: int) -> str:
    colors = backend_colors(r.backends())
    out = [f'<p class="meta">{escape(describe_settings(r.settings))}. Command: <code>{escape(r.command)}</code> · '
           f'{escape(r.created)}</p><ul class="meta">']
    seen: Dict[str, Any] = {}
    for m in r.measurements:
        seen.setdefault(m.backend, m.description)
    out += [f"<li><b>{escape(b)}</b>: {escape(describe_run(d))}</li>" for b, d in seen.items()]
    out.append("</ul><div class=\"charts\">")
    seqs = r.seqs()
    for batch in r.batches():
        series = []
        for be in r.backends():
            pts = [(float(s), r.get(be, batch, s).median * 1e3) for s in seqs if r.get(be, batch, s) is not None]
            if pts:
                series.append(Series(be, tuple(p[0] for p in pts), tuple(p[1] for p in pts), colors[be]))
        wide = len(seqs) > 1 and max(seqs) / max(min(seqs), 1) >= 8
        out.append(line_chart(series, f"Latency vs sequence length, batch {batch}", "sequence length",
                              "median latency (ms)", log_x=wide, log_y=True, chart_id=f"bench{idx}-b{batch}"))
    out.append("</div>")
    out.append("<details><summary>All measurements</summary>")
    out.append(_table(bench_headers(r), bench_rows(r), "lrrrrrrrrrl"))
    out.append("</details>")
    out += [f'<p class="note">warning: {escape(w)}</p>' for w in r.warnings]
    return "".join(out)


def _parity_section(r: Any, idx: int) -> str:
    colors = backend_colors(r.backend_names())
    ref = r.reference
    status = '<span class="pass">PASSED</span>' if r.passed else f'<span class="fail">{r.status.upper()}</span>'
    out = [f'<p>{status} — reference <b>{escape(str(ref.get("backend")))}</b> '
           f'({escape(str(ref.get("source")))}{", " + escape(str(ref.get("path"))) if ref.get("path") else ""}). '
           f'Command: <code>{escape(r.command)}</code> · {escape(r.created)}</p><ul class="meta">']
    out += [f"<li><b>{escape(b)}</b>: {escape(describe_run(d))}</li>" for b, d in r.backends.items()]
    out.append("</ul><div class=\"charts\">")
    for o in r.output_names():
        series = []
        for b in r.backend_names():
            prof = r.time_profile(b, o)
            if prof is not None and len(prof.rel_l2) > 1:
                series.append(Series(b, tuple(float(t) for t in range(len(prof.rel_l2))), prof.rel_l2, colors[b]))
        if series:
            out.append(line_chart(series, f"{o}: error vs timestep (worst over inputs)", "timestep",
                                  "relative L2 error at t", log_y=True, chart_id=f"parity{idx}-{o}-t"))
        series = []
        for b in r.backend_names():
            pts = r.error_vs_seq_len(b, o)
            by_seq: Dict[int, float] = {}
            for p in pts:
                by_seq[p.seq] = max(by_seq.get(p.seq, 0.0), p.rel_l2)
            if len(by_seq) > 1:
                xs = sorted(by_seq)
                series.append(Series(b, tuple(float(x) for x in xs), tuple(by_seq[x] for x in xs), colors[b]))
        if series:
            out.append(line_chart(series, f"{o}: error vs sequence length", "sequence length",
                                  "relative L2 error (worst over batch)", log_y=True, chart_id=f"parity{idx}-{o}-s"))
    out.append("</div>")
    if r.tasks:
        rows = [[t.backend, t.kind, t.output or "—", fmt.pct(t.agreement, 3), str(t.total),
                 fmt.pct(t.threshold, 3) if t.threshold is not None else "—", "ok" if t.passed else "FAIL"]
                for t in r.tasks]
        out.append(_table(["backend", "check", "output", "agreement", "n", "required", "result"], rows, "lllrrrl", 6))
    out.append("<details><summary>Every output of every case</summary>")
    out.append(_table(PARITY_HEADERS, parity_rows(r), "lllrrrrrl", fail_col=8))
    out.append("</details>")
    out += [f'<p class="note">warning: {escape(w)}</p>' for w in r.warnings]
    out += [f'<p class="fail">{escape(f)}</p>' for f in r.failures()[:20]]
    return "".join(out)


def _loadtest_section(r: Any, idx: int) -> str:
    status = '<span class="pass">PASSED</span>' if r.passed else '<span class="fail">FAILED</span>'
    out = [f"<p>{status} — {escape(describe_loadtest(r))}. Command: <code>{escape(r.command)}</code> · "
           f"{escape(r.created)}</p>", '<div class="charts">']
    levels = [lv for lv in r.levels if lv.latencies]
    if levels:
        xs = tuple(float(lv.concurrency) for lv in levels)
        wide = max(xs) / max(min(xs), 1.0) >= 8
        out.append(line_chart([Series("answered requests/s", xs, tuple(lv.throughput for lv in levels), PALETTE[0])],
                              "Throughput vs concurrency", "concurrent clients", "requests per second", log_x=wide,
                              chart_id=f"load{idx}-tput"))
        out.append(line_chart([Series("p50", xs, tuple(lv.p50 * 1e3 for lv in levels), PALETTE[0]),
                               Series("p99", xs, tuple(lv.p99 * 1e3 for lv in levels), PALETTE[1], dashed=True)],
                              "Latency vs concurrency", "concurrent clients", "latency (ms)", log_x=wide, log_y=True,
                              chart_id=f"load{idx}-lat"))
    out.append("</div>")
    out.append(_table(LOADTEST_HEADERS, loadtest_rows(r), "rrrrrrrrrrrl", fail_col=11))
    out += [f'<p class="fail">{escape(f)}</p>' for f in r.failures()[:20]]
    out += [f'<p class="note">warning: {escape(w)}</p>' for w in r.warnings]
    return "".join(out)


def _machines(results: Sequence[Any]) -> str:
    rows: List[List[str]] = []
    for m in distinct_machines(results):
        v = m.get("versions", {})
        rows.append([machine_label(m), str(m.get("cpu")), f"{m.get('cpu_affinity')}/{m.get('cpu_count')}",
                     str(m.get("memory_gib")), ", ".join(g.get("name", "") for g in m.get("gpus") or []) or "—",
                     str(m.get("cuda_driver") or "—"),
                     f"{m['load_average'][0]:.2f}" if m.get("load_average") else "—",
                     ", ".join(f"{k} {v[k]}" for k in sorted(v) if v[k])])
    return _table(["machine", "CPU", "cores used/all", "GiB", "GPUs", "CUDA driver", "load (1 min)", "versions"], rows,
                  "lllrllrl")


def _model_label(r: Any) -> str:
    """"g2p-gru-attn (encoder)"; the graph is left out for single-graph models ("model")."""
    name, graph = str(r.model.get("name")), r.model.get("graph")
    return name if graph in (None, "model") else f"{name} ({graph})"


def render_html(results: Sequence[Any], title: str = "rnndeploy report") -> str:
    """The page for ``results`` (ParityResult / BenchResult / LoadTestResult, any mix, any machines)."""
    used: Dict[str, int] = {}
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="meta">Generated {escape(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))} '
            f"from {len(results)} result{'s' if len(results) != 1 else ''}.</p>",
            '<ul id="toc"></ul>']
    sid = _slug("Summary", used)
    body.append(f'<h2 id="{sid}">Summary</h2>{_summary(results)}')
    for i, r in enumerate(results):
        name = _model_label(r)
        if r.kind == "tune":
            from rnndeploy.report.tune import render_tune_html

            head = f"Tune — {name} on {machine_label(dict(r.machine))}"
            body.append(f'<h2 id="{_slug(head, used)}">{escape(head)}</h2>{render_tune_html(r, i)}')
        elif r.kind == "bench":
            head = f"Latency — {name} on {machine_label(dict(r.machine))}"
            body.append(f'<h2 id="{_slug(head, used)}">{escape(head)}</h2>{_bench_section(r, i)}')
        elif r.kind == "loadtest":
            head = f"Served on Triton — {name} ({r.model.get('served_as')})"
            body.append(f'<h2 id="{_slug(head, used)}">{escape(head)}</h2>{_loadtest_section(r, i)}')
        else:
            head = f"Parity — {name}"
            body.append(f'<h2 id="{_slug(head, used)}">{escape(head)}</h2>{_parity_section(r, i)}')
    mid = _slug("Machines", used)
    body.append(f'<h2 id="{mid}">Machines</h2>{_machines(results)}')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n")
