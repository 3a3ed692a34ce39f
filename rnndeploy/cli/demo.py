"""``rnndeploy demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import click

from rnndeploy.cli.types import OutputPath


@click.command()
@click.option("--out", "out", type=OutputPath(kind="dir"), default="runs/demo", show_default=True,
              help="Directory for the checkpoint, ONNX file, engine, results and report.")
@click.option("--recipe", default="sine", show_default=True, help="Recipe to train (a name in recipes/ or a path).")
@click.option("--quick", is_flag=True, help="Two epochs and a one-point benchmark (a smoke test of the pipeline).")
def demo(out: str, recipe: str, quick: bool) -> None:
    """Run every stage on one recipe: train, export, build-engine (GPU + TensorRT only),
    parity and bench on every runtime this machine has, then a JSON/Markdown/HTML report.

    Each stage prints the rnndeploy command it runs, so any of them can be rerun alone.
    """
    from rnndeploy import demo as lib
    from rnndeploy.cli import cli

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def invoke(args: Sequence[str]) -> int:
        status = cli.main(list(args), prog_name="rnndeploy", standalone_mode=False)
        return int(status or 0)

    stages = lib.plan(out_dir, lib.detect_machine(), recipe=recipe, quick=quick)
    lib.run(stages, invoke, click.echo)
    click.echo(f"\nreport: {out_dir / 'report.html'} (open it in a browser), {out_dir / 'report.md'}")
