"""The ``rnndeploy`` command line: a thin click layer over the library.

Subcommands live one per module in this package and are imported only when
invoked (or listed by ``--help``), so ``rnndeploy --help`` starts fast and works
with only numpy, onnx and click installed. A command parses options, calls one
library function and prints; library errors (``RnnDeployError``) become one line
on stderr and the error's exit status.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List, Optional

import click

from rnndeploy import __version__
from rnndeploy.errors import RnnDeployError

# name -> "module:attribute"; order is the order of `rnndeploy --help`.
COMMANDS: Dict[str, str] = {
    "demo": "rnndeploy.cli.demo:demo",
    "train": "rnndeploy.cli.train:train",
    "recipes": "rnndeploy.cli.train:recipes",
    "export": "rnndeploy.cli.export:export",
    "build-engine": "rnndeploy.cli.engine:build_engine",
    "inspect": "rnndeploy.cli.inspect:inspect",
    "normalize": "rnndeploy.cli.normalize:normalize",
    "parity": "rnndeploy.cli.parity:parity",
    "bench": "rnndeploy.cli.bench:bench",
    "quantize": "rnndeploy.cli.tune:quantize",
    "tune": "rnndeploy.cli.tune:tune",
    "report": "rnndeploy.cli.report:report",
    "triton": "rnndeploy.cli.triton:triton",
    "serve": "rnndeploy.cli.triton:serve",
    "loadtest": "rnndeploy.cli.triton:loadtest",
    "doctor": "rnndeploy.cli.doctor:doctor",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is needed.

    A command whose module cannot be imported yet (a stage not built, or a module
    that fails to import) is left out of the listing instead of breaking --help.
    """

    def list_commands(self, ctx: click.Context) -> List[str]:
        return [name for name in COMMANDS if self.get_command(ctx, name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # the stage's CLI module does not exist
                return None
            raise
        return getattr(module, attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RnnDeployError as err:
            click.echo(f"rnndeploy: error: {err}", err=True)
            ctx.exit(err.exit_code)
        except click.UsageError as err:
            _usage_error(err)

    def make_context(self, info_name: Optional[str], args: List[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            _usage_error(err)
            raise  # unreachable: _usage_error exits


def _usage_error(err: click.UsageError) -> None:
    """A command-line mistake as one line (click's default is usage + hint + error, three lines)."""
    where = err.ctx.command_path if err.ctx is not None else "rnndeploy"
    click.echo(f"rnndeploy: error: {err.format_message()} (see {where} --help)", err=True)
    raise click.exceptions.Exit(err.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rnndeploy")
def cli() -> None:
    """Take recurrent networks from PyTorch to ONNX Runtime and TensorRT, and prove
    the deployed model computes the same function, fast.

    \b
    Typical flow:
      rnndeploy train recipes/sine.toml --out runs/sine
      rnndeploy export runs/sine -o sine.onnx
      rnndeploy build-engine sine.onnx --fp16 -o sine.plan     (GPU box)
      rnndeploy parity sine.onnx --backend torch --backend ort-cpu
      rnndeploy bench sine.onnx --backend ort-cpu
      rnndeploy report results/*.json -o report.html

    Exit status: 0 ok, 1 a check failed, 2 bad input, 3 missing dependency or GPU.
    """


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="rnndeploy")
