"""``rnndeploy train`` and ``rnndeploy recipes``."""

from __future__ import annotations

import json
from typing import Optional, Tuple

import click

from rnndeploy import jsonio
from rnndeploy.cli.types import POSITIVE_INT, SEED, OutputPath


@click.command()
@click.argument("recipe")
@click.option(
    "--out",
    "-o",
    "out",
    required=True,
    type=OutputPath(kind="dir"),
    help="Checkpoint directory to write; an existing checkpoint there is replaced atomically, "
    "any other non-empty directory is refused.",
)
@click.option("--variant", default=None, help="A [variants.NAME] overlay of the recipe (e.g. gru).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help='Override a recipe key; VALUE is TOML (5, 0.1, true, "x", [1, 2]); repeatable.',
)
@click.option("--epochs", type=POSITIVE_INT, default=None, help="Shortcut for --set train.epochs=N.")
@click.option("--seed", type=SEED, default=None, help="Shortcut for --set train.seed=N.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final verdict (no epoch lines, no progress bar).")
@click.option("--require-quality", is_flag=True, help="Exit 1 when the recipe's quality bar is missed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def train(
    recipe: str,
    out: str,
    variant: Optional[str],
    overrides: Tuple[str, ...],
    epochs: Optional[int],
    seed: Optional[int],
    quiet: bool,
    require_quality: bool,
    as_json: bool,
) -> None:
    """Train RECIPE (a .toml path, or a name from recipes/) and write a checkpoint to --out.

    Prints one line per epoch (validation metrics), then the recipe's quality verdict
    on the test split with the best epoch's weights.

    \b
      rnndeploy train sine --out runs/sine
      rnndeploy train sine --variant gru --epochs 5 --out runs/sine-gru
      rnndeploy train sentiment --set data.source=labelled_text --set data.path=reviews.csv --out runs/mine
    """
    from rnndeploy.recipe import load_recipe

    sets = list(overrides)
    if epochs is not None:
        sets.append(f"train.epochs={epochs}")
    if seed is not None:
        sets.append(f"train.seed={seed}")
    resolved = load_recipe(recipe, variant=variant, overrides=sets)

    from rnndeploy.train import train_recipe

    log = None if (quiet or as_json) else (lambda line: click.echo(line, err=as_json))
    result = train_recipe(resolved, out, log=log, show_progress=False if (quiet or as_json) else None)
    if as_json:
        click.echo(jsonio.dumps(result.to_dict(), indent=2))
    elif quiet:
        click.echo(result.quality.describe())
    click.echo(f"checkpoint: {out}", err=as_json)
    if require_quality and not result.quality.passed:
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def recipes(as_json: bool) -> None:
    """List the recipes in recipes/ with their description, variants and quality bar."""
    from rnndeploy.recipe import list_recipes

    found = list_recipes()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in found], indent=2, default=list))
        return
    if not found:
        click.echo("no recipes found (looked in ./recipes and the rnndeploy repository's recipes/)")
        return
    width = max(len(r.name) for r in found)
    for r in found:
        variants = f"  [variants: {', '.join(r.variants)}]" if r.variants else ""
        click.echo(f"{r.name:<{width}}  {r.description}{variants}")
        click.echo(f"{'':<{width}}  task: {r.task}; quality bar: {r.quality}")
