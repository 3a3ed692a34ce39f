"""Click parameter types shared by every command: numbers that make sense, outputs that can be written.

Every numeric option goes through ``Number`` (built on
``rnndeploy.validation.check_number``): NaN is refused everywhere, infinity unless
the option gives it a meaning, and the bounds are stated in the error::

    @click.option("--min-time", type=POSITIVE_SECONDS)      # > 0, finite
    @click.option("--atol", type=TOLERANCE)                 # >= 0 or inf ("not checked")
    @click.option("--seed", type=SEED)                      # integer >= 0

Every output option goes through ``OutputPath``: the path is checked when the
command line is parsed — before any training, export, build or measurement — with
``rnndeploy.fileio.check_output_path`` (directory exists and takes new files, the
path is not a directory)::

    @click.option("--json", "json_path", type=OutputPath())
    @click.option("--out", type=OutputPath(kind="dir"))

A failure is a click usage error: one line naming the option, exit status 2. New
commands get the same rules by using these types.

Two checks span options, for a command to call first thing:

- ``refuse_ignored(ctx, [(param, applies, why), ...])``: an option given on the
  command line that this run would ignore (``--shapes`` with ``--inputs``,
  ``--bos-id`` without a decoder) is an error, never silently dropped;
- ``distinct_outputs(ctx, params)``: two outputs naming the same file.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple

import click

from rnndeploy.errors import UsageError
from rnndeploy.validation import MAX_THREADS, check_number, describe_range


class Number(click.ParamType):
    """A number checked by ``check_number`` (see the module docstring)."""

    def __init__(self, integer: bool = False, minimum: Optional[float] = None, maximum: Optional[float] = None,
                 above: Optional[float] = None, allow_inf: bool = False, metavar: Optional[str] = None):
        self.integer = integer
        self.bounds = {"minimum": minimum, "maximum": maximum, "above": above, "allow_inf": allow_inf}
        self.name = describe_range(minimum, maximum, above, allow_inf, integer)
        self._metavar = metavar or ("INTEGER" if integer else "FLOAT")

    def get_metavar(self, param: click.Parameter, ctx: Optional[click.Context] = None) -> str:  # type: ignore[override]
        return self._metavar

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if value is None:
            return None
        name = _name(param, ctx)
        try:
            return check_number(value, name, integer=self.integer, **self.bounds)  # type: ignore[arg-type]
        except UsageError as err:
            self.fail(_without(str(err), name), param, ctx)

    def __repr__(self) -> str:
        return f"Number({self.name})"


def _name(param: Optional[click.Parameter], ctx: Optional[click.Context]) -> str:
    if param is None:
        return "value"
    opts = getattr(param, "opts", None) or [param.name or "value"]
    return max(opts, key=len)


def _without(message: str, name: str) -> str:
    """The message without its leading option name (click already names the option)."""
    return message[len(name) + 1:] if message.startswith(name + " ") else message


POSITIVE_INT = Number(integer=True, minimum=1)
THREADS = Number(integer=True, minimum=1, maximum=MAX_THREADS, metavar="N")
PORT = Number(integer=True, minimum=0, maximum=65535, metavar="PORT")
# Loop counts are bounded (every loop rnndeploy runs is bounded in count): 10^6 timed calls or
# untimed warm-up calls, 10^4 generated tokens per row.
CALLS = Number(integer=True, minimum=1, maximum=10**6)
WARMUP_CALLS = Number(integer=True, minimum=0, maximum=10**6)
TOKENS = Number(integer=True, minimum=1, maximum=10**4)
TOKENS_OR_NONE = Number(integer=True, minimum=0, maximum=10**4)
NON_NEGATIVE_INT = Number(integer=True, minimum=0)
SEED = Number(integer=True, minimum=0, maximum=2**63 - 1)
DEVICE_INDEX = Number(integer=True, minimum=0, metavar="N")
POSITIVE_FLOAT = Number(above=0.0)
POSITIVE_SECONDS = Number(above=0.0, metavar="SECONDS")
NON_NEGATIVE_FLOAT = Number(minimum=0.0)
TOLERANCE = Number(minimum=0.0, allow_inf=True)
FRACTION = Number(minimum=0.0, maximum=1.0)


class OutputPath(click.ParamType):
    """A path rnndeploy will write, checked at parse time (see the module docstring).

    Args:
        kind: "file" or "dir" (``check_output_path``'s kinds).
    """

    def __init__(self, kind: str = "file"):
        self.kind = kind
        self.name = "directory" if kind == "dir" else "file"

    def get_metavar(self, param: click.Parameter, ctx: Optional[click.Context] = None) -> Optional[str]:  # type: ignore[override]
        return None  # keep the option's own metavar (FILE, DIR, MODEL.plan)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if value is None:
            return None
        from rnndeploy.fileio import check_output_path

        name = _name(param, ctx)
        try:
            check_output_path(str(value), name, self.kind)
        except UsageError as err:
            self.fail(_without(str(err), name), param, ctx)
        return str(value)

    def __repr__(self) -> str:
        return f"OutputPath({self.kind})"


def given(ctx: click.Context, param: str) -> bool:
    """True when ``param`` (the Python name) was set on the command line or from the environment."""
    from click.core import ParameterSource

    return ctx.get_parameter_source(param) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _option_name(ctx: click.Context, param: str) -> str:
    for p in ctx.command.params:
        if p.name == param:
            return _name(p, ctx)
    return param


def refuse_ignored(ctx: click.Context, rules: Sequence[Tuple[str, bool, str]]) -> None:
    """Refuse options given explicitly that this run would ignore.

    Args:
        rules: (param name, whether it applies to this run, why / when it applies).

    Raises:
        UsageError: "--shapes sets generated inputs' shapes; --inputs brings its own".
    """
    for param, applies, why in rules:
        if not applies and given(ctx, param):
            raise UsageError(f"{_option_name(ctx, param)} {why}", "leave it out, or give what it applies to")


def distinct_outputs(ctx: click.Context, params: Sequence[str], inputs: Sequence[str] = ()) -> None:
    """Refuse two output options naming the same file (the second would overwrite the first), and
    an output naming one of the command's inputs (``inputs``: parameter names of input paths)."""
    seen = {}
    for param in inputs:
        value = ctx.params.get(param)
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v:
                seen[os.path.realpath(str(v))] = f"input {v}"
    for param in params:
        value = ctx.params.get(param)
        if not value:
            continue
        key = os.path.realpath(str(value))
        if key in seen:
            what = seen[key]
            if what.startswith("input "):
                raise UsageError(f"{_option_name(ctx, param)} {value} is the {what}: it would be overwritten",
                                 "write the output to another file")
            raise UsageError(f"{what} and {_option_name(ctx, param)} name the same file {value}",
                             "give each output its own file")
        seen[key] = _option_name(ctx, param)

