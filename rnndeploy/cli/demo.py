"""``rnndeploy demo``."""

from __future__ import annotations

from typing import Sequence

import click


@click.command()
@click.option("--out", "out", default="runs/demo", show_default=True,
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
    from rnndeploy.fileio import transaction_dir
    from rnndeploy.recipe import load_recipe

    load_recipe(recipe)  # a missing or broken recipe fails before anything is created
    lib.check_out_dir(out, recipe)

    def invoke(args: Sequence[str]) -> int:
        status = cli.main(list(args), prog_name="rnndeploy", standalone_mode=False)
        return int(status or 0)

    # all or nothing: a failed demo leaves no new directory and the previous output as it was
    with transaction_dir(out, parents=True, what="--out") as out_dir:
        stages = lib.plan(out_dir, lib.detect_machine(), recipe=recipe, quick=quick)
        try:
            lib.run(stages, invoke, click.echo)
        except lib.StageFailed as err:  # the stage printed its own error line
            click.echo(f"demo stopped at stage {err.stage.name!r} (exit {err.exit_code}); "
                       f"rerun it alone: {err.stage.command}", err=True)
            raise click.exceptions.Exit(err.exit_code) from None
    click.echo(f"\nreport: {out_dir / 'report.html'} (open it in a browser), {out_dir / 'report.md'}")
