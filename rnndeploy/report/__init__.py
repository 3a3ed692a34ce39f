"""Reports: one JSON results format (schema.py), text/Markdown tables (text.py) and a
self-contained HTML page with inline-SVG plots (html.py, svg.py)."""

from __future__ import annotations

from typing import Any, Sequence

from rnndeploy.fileio import write_text_atomic
from rnndeploy.report.text import render_markdown, render_text

__all__ = ["render_markdown", "render_text", "write_html", "write_markdown"]


def write_markdown(path: str, results: Sequence[Any]) -> None:
    """Write ``results`` (ParityResult / BenchResult) as one Markdown file, atomically."""
    write_text_atomic(path, render_markdown(results))


def write_html(path: str, results: Sequence[Any], title: str = "rnndeploy report") -> None:
    """Write ``results`` as one self-contained HTML page, atomically."""
    from rnndeploy.report.html import render_html

    write_text_atomic(path, render_html(results, title))
