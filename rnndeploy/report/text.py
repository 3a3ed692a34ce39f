"""Terminal and Markdown renderings of parity and bench results (the same tables, two syntaxes)."""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Sequence

from rnndeploy.report import fmt
from rnndeploy.report.machine import distinct_machines, machine_label

TableFn = Callable[[Sequence[str], Sequence[Sequence[str]], Any], str]


def describe_run(d: Mapping[str, Any]) -> str:
    """One line saying what a figure from a runner includes (from RunDescription.to_dict())."""
    if not d:
        return "—"
    parts = [f"{d.get('precision', '?')} on {d.get('device', '?')}"]
    if d.get("threads"):
        parts.append(f"{d['threads']} threads")
    if str(d.get("device", "cpu")) != "cpu":
        parts.append("with H2D/D2H copies" if d.get("host_device_copies") else "device-resident I/O")
        parts.append("CUDA graph" if d.get("cuda_graph") else "no CUDA graph")
    parts.append(f"{d.get('timer', 'host')} timer")
    return ", ".join(parts)


def describe_settings(settings: Mapping[str, Any]) -> str:
    """"warm-up 10, ≥1.0 s per configuration"."""
    count = f"{settings.get('iters')} timed calls" if settings.get("iters") else f"≥{settings.get('min_time')} s of calls"
    return f"warm-up {settings.get('warmup')} calls, {count} per configuration"


# -- parity ------------------------------------------------------------------------------------------
def parity_rows(result: Any) -> List[List[str]]:
    rows = []
    for c in result.cases:
        if c.error:
            rows.append([c.backend, c.case, "—", "—", "—", "—", "—", "—", "ERROR"])
            continue
        for o in c.outputs:
            s = o.stats
            rows.append([
                c.backend, c.case, o.output,
                fmt.err(s.max_abs if s else None), fmt.err(s.p99_abs if s else None), fmt.err(s.rel_l2 if s else None),
                "—" if s is None else f"{s.cosine:.6f}",
                fmt.err(s.atol_needed if s else None),
                verdict(o),
            ])
    return rows


def verdict(o: Any) -> str:
    """The result column of one output comparison: ok, not checked (tolerance inf), NaN/Inf, FAIL."""
    if o.passed:
        return "ok" if o.checked else "not checked"
    return "NaN/Inf" if o.failure and ("NaN" in o.failure or "Inf" in o.failure) else "FAIL"


PARITY_HEADERS = ["backend", "case", "output", "max abs", "p99 abs", "rel L2", "cosine", "atol needed", "result"]


def _parity(result: Any, table: TableFn, heading: Callable[[str], str]) -> str:
    ref = result.reference
    ref_desc = ref.get("description") or {}
    src = {"golden": f"golden {ref.get('path')}", "expected": f"expected outputs {ref.get('path')}"}.get(
        ref.get("source"), "run in this process")
    lines = [
        heading(f"Parity: {result.model.get('name')} (graph {result.model.get('graph')}) — "
                f"{result.status.upper()}"),
        "",
        f"Reference: {ref.get('backend')} ({src}; {describe_run(ref_desc)})",
    ]
    for b, d in result.backends.items():
        lines.append(f"Under test: {b} ({describe_run(d)})")
        details = d.get("details") or {}
        for text in details.get("rewrites", []):  # what the runtime needed to compute it right
            lines.append(f"  rewritten for {b}: {text}")
        if details.get("ignored_inputs"):
            lines.append(f"  {b} ignores input(s) {', '.join(details['ignored_inputs'])} (pruned from its model; not fed)")
    tols = {}
    for c in result.cases:
        for o in c.outputs:
            tols.setdefault(o.output, fmt.tolerance(o.tolerance))
    if tols:
        lines.append("Tolerances: " + "; ".join(f"{k}: {v}" for k, v in tols.items()))
    lines += ["", table(PARITY_HEADERS, parity_rows(result), "lllrrrrrl")]
    agreement_rows = []
    for t in result.tasks:
        extra = ""
        if t.details.get("first_divergence"):
            extra = f"first divergence at row {t.details['first_divergence'][0]}, step {t.details['first_divergence'][1]}"
        agreement_rows.append([t.backend, t.kind, t.output or "—", fmt.pct(t.agreement, 3), str(t.total),
                               fmt.pct(t.threshold, 3) if t.threshold is not None else "—",
                               "ok" if t.passed else "FAIL", extra])
    if agreement_rows:
        lines += ["", table(["backend", "check", "output", "agreement", "n", "required", "result", "note"],
                            agreement_rows, "llllrrll")]
    for b, tm in result.task_metrics.items():
        value = tm.get("value")
        lines.append(f"task metric on the {tm.get('split')} split ({tm.get('rows')} rows): {b}: {tm.get('metric')} = "
                     + ("—" if value is None else f"{value:.6g}"))
    long_profiles = []
    for b in result.backend_names():
        for out in result.output_names():
            prof = result.time_profile(b, out)
            if prof is not None and len(prof.rel_l2) >= 4:
                n = len(prof.rel_l2)
                picks = sorted({0, n // 4, n // 2, n - 1})
                long_profiles.append([b, out] + [f"t={t}: {fmt.err(prof.rel_l2[t])}" for t in picks])
    if long_profiles:
        lines += ["", "Relative L2 error along the sequence (worst case per timestep):"]
        lines += ["  " + "  ".join(r) for r in long_profiles]
    by_seq_rows = []
    for b in result.backend_names():
        for out in result.output_names():
            worst: dict = {}
            for p in result.error_vs_seq_len(b, out):
                worst[p.seq] = max(worst.get(p.seq, 0.0), p.rel_l2)
            if len(worst) >= 2:
                by_seq_rows.append([b, out] + [f"s{k}: {fmt.err(v)}" for k, v in sorted(worst.items())])
    if by_seq_rows:
        lines += ["", "Relative L2 error versus sequence length (worst over batch sizes):"]
        lines += ["  " + "  ".join(r) for r in by_seq_rows]
    for w in result.warnings:
        lines.append(f"warning: {w}")
    for f in result.failures()[:10]:
        lines.append(f"failure: {f}")
    return "\n".join(lines)


# -- bench --------------------------------------------------------------------------------------------
BENCH_HEADERS = ["backend", "batch", "seq", "median ms", "p90 ms", "p99 ms", "IQR", "seq/s", "steps/s", "vs torch",
                 "note"]


def bench_headers(result: Any) -> List[str]:
    """BENCH_HEADERS with the ratio column named after the run's baseline ("vs keras", ...)."""
    return [f"vs {result.baseline}" if h == "vs torch" and result.baseline else h for h in BENCH_HEADERS]


def bench_rows(result: Any) -> List[List[str]]:
    rows = []
    order = {b: i for i, b in enumerate(result.backends())}
    ms = sorted(result.measurements, key=lambda m: (m.seq, m.batch, order[m.backend]))
    for m in ms:
        rows.append([
            m.backend, str(m.batch), str(m.seq), fmt.ms(m.median), fmt.ms(m.p90), fmt.ms(m.p99),
            fmt.pct(m.iqr_rel, 0), fmt.rate(m.sequences_per_s), fmt.rate(m.timesteps_per_s),
            fmt.ratio(result.ratio(m.backend, m.batch, m.seq)), "; ".join(m.warnings),
        ])
    return rows


def _bench(result: Any, table: TableFn, heading: Callable[[str], str]) -> str:
    lines = [heading(f"Latency: {result.model.get('name')} (graph {result.model.get('graph')}) on "
                     f"{machine_label(dict(result.machine))}"), ""]
    seen = {}
    for m in result.measurements:
        seen.setdefault(m.backend, m.description)
    for b, d in seen.items():
        lines.append(f"{b}: {describe_run(d)}")
    lines.append(f"Timing: {describe_settings(result.settings)}; ratios are median / median of "
                 f"{result.baseline or '(no torch row)'} at the same batch and seq, measured side by side.")
    lines += ["", table(bench_headers(result), bench_rows(result), "lrrrrrrrrrl")]
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


# -- load test ------------------------------------------------------------------------------------------
LOADTEST_HEADERS = ["clients", "sent", "verified", "wrong", "errors", "abandoned", "req/s", "steps/s", "p50 ms",
                    "p90 ms", "p99 ms", "result"]


def loadtest_rows(result: Any) -> List[List[str]]:
    return [[str(lv.concurrency), str(lv.sent), str(lv.verified), str(lv.wrong), str(lv.errors), str(lv.abandoned),
             fmt.rate(lv.throughput), fmt.rate(lv.steps_per_s), fmt.ms(lv.p50), fmt.ms(lv.p90), fmt.ms(lv.p99),
             "ok" if lv.passed else "FAIL"] for lv in result.levels]


def describe_loadtest(result: Any) -> str:
    """One line: what was served and how requests were made."""
    m, s = result.model, result.settings
    shape = f"batch {s.get('batch')} x {s.get('seq')} steps per request"
    if m.get("streaming"):
        shape += f", sequences of {s.get('chunks')} requests with state kept on the server"
    batching = m.get("server_batching") or f"max batch {m.get('max_batch_size')}"
    return (f"{m.get('served_as')} at {m.get('protocol')}://{m.get('url')} ({batching}); {shape}; "
            f"every answer checked against {m.get('reference')} on {m.get('onnx') or 'the reference model'}; "
            f"up to {s.get('requests')} requests or {s.get('max_seconds')} s per level, {s.get('warmup')} untimed per client")


def _loadtest(result: Any, table: TableFn, heading: Callable[[str], str]) -> str:
    lines = [heading(f"Served: {result.model.get('name')} on Triton — {'PASSED' if result.passed else 'FAILED'} "
                     f"(client on {machine_label(dict(result.machine))})"), "", describe_loadtest(result),
             "Latency: client-side wall time per request (network, queueing, batching and the model); "
             "req/s counts answered timed requests.", "",
             table(LOADTEST_HEADERS, loadtest_rows(result), "rrrrrrrrrrrl")]
    for f in result.failures()[:10]:
        lines.append(f"failure: {f}")
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


# -- entry points --------------------------------------------------------------------------------------
_RENDERERS = {"parity": _parity, "bench": _bench, "loadtest": _loadtest}


def render_text(result: Any) -> str:
    """A terminal rendering of one ParityResult, BenchResult or LoadTestResult."""
    heading = lambda s: s  # noqa: E731
    tab = lambda h, r, a: fmt.table(h, r, a)  # noqa: E731
    return _body(result, tab, heading)


def _body(result: Any, table: TableFn, heading: Callable[[str], str]) -> str:
    if result.kind == "tune":
        from rnndeploy.report.tune import render_tune

        return render_tune(result, table, heading)
    return _RENDERERS[result.kind](result, table, heading)


def render_markdown(results: Sequence[Any]) -> str:
    """A Markdown document for several results (machines listed once at the end)."""
    heading = lambda s: f"## {s}"  # noqa: E731
    tab = lambda h, r, a: fmt.md_table(h, r, a)  # noqa: E731
    parts = ["# rnndeploy report", ""]
    for r in results:
        body = _body(r, tab, heading)
        # plain lines between tables read better as a list in Markdown
        out = []
        for line in body.split("\n"):
            if line and not line.startswith(("|", "#", "  ")):
                out.append(f"- {line}")
            else:
                out.append(line)
        parts += ["\n".join(out), "", f"Command: `{r.command or '(library call)'}` · {r.created}", ""]
    parts += ["## Machines", ""]
    for m in distinct_machines(results):
        v = m.get("versions", {})
        vers = ", ".join(f"{k} {v[k]}" for k in sorted(v) if v[k])
        gpus = ", ".join(f"{g.get('name')} (sm {g.get('compute_capability')})" for g in m.get("gpus") or []) or "none"
        load = m.get("load_average")
        load_s = f"; load average {load[0]:.2f} (1 min) when measured" if load else ""
        parts.append(f"- **{machine_label(m)}** — {m.get('os')} {m.get('arch')}, CPU {m.get('cpu')} "
                     f"({m.get('cpu_affinity')} usable of {m.get('cpu_count')} cores), {m.get('memory_gib')} GiB; "
                     f"GPUs: {gpus}; CUDA driver {m.get('cuda_driver') or '—'}{load_s}; {vers}")
    return "\n".join(parts) + "\n"
