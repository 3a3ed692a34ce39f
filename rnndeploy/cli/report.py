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
    from rnndeploy.report import render_text, write_html, write_markdown
    from rnndeploy.report.schema import load_verified, write_results

    distinct_outputs(click.get_current_context(), ["html_path", "markdown_path", "json_path"])
    doc, results = load_verified(files)
    if html_path:
        write_html(html_path, results, title)
        click.echo(f"wrote {html_path} ({len(results)} results)")
    if markdown_path:
        write_markdown(markdown_path, results)
        click.echo(f"wrote {markdown_path}")
    if json_path:
        write_results(json_path, doc["results"])
        click.echo(f"wrote {json_path}")
    if not (html_path or markdown_path or json_path):
        click.echo("\n\n".join(render_text(r) for r in results))
