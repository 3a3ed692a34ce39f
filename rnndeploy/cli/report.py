"""``rnndeploy report``."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import click

from rnndeploy.cli.types import OutputPath


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="RESULTS.json...")
@click.option("-o", "--output", "html_path", metavar="FILE.html", type=OutputPath(), help="Write one self-contained HTML page.")
@click.option("--markdown", "markdown_path", metavar="FILE.md", type=OutputPath(), help="Write Markdown tables.")
@click.option("--json", "json_path", metavar="FILE.json", type=OutputPath(), help="Write the merged results as one JSON file.")
@click.option("--title", default="rnndeploy report", show_default=True, help="Page title.")
def report(files: Sequence[str], html_path: Optional[str], markdown_path: Optional[str], json_path: Optional[str],
           title: str) -> Any:
    """Merge parity and bench results (e.g. a CPU box's and a GPU box's) into one report.

    \b
    Example:
      rnndeploy report cpu.json gpu.json -o report.html --markdown report.md
    Without -o/--markdown/--json, prints the tables.
    """
    from rnndeploy.cli.types import distinct_outputs
    from rnndeploy.fileio import write_files_atomic
    from rnndeploy.report import render_markdown, render_text
    from rnndeploy.report.html import render_html
    from rnndeploy.report.schema import dumps_results, load_verified, to_document

    distinct_outputs(click.get_current_context(), ["html_path", "markdown_path", "json_path"], inputs=["files"])
    doc, results = load_verified(files)
    outputs = {}  # everything rendered before anything is written, then written all or nothing
    if html_path:
        outputs[html_path] = render_html(results, title)
    if markdown_path:
        outputs[markdown_path] = render_markdown(results)
    if json_path:
        outputs[json_path] = dumps_results(to_document(doc["results"]))
    write_files_atomic(outputs)
    for path in outputs:
        click.echo(f"wrote {path}" + (f" ({len(results)} results)" if path == html_path else ""))
    if not (html_path or markdown_path or json_path):
        click.echo("\n\n".join(render_text(r) for r in results))
