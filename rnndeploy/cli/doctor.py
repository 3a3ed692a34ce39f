"""``rnndeploy doctor``."""

from __future__ import annotations

import click

from rnndeploy import jsonio


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Show versions of python, torch, onnx, onnxruntime (+ providers) and TensorRT,
    the CUDA devices, and what each missing piece disables."""
    from rnndeploy import doctor as lib

    report = lib.collect()
    click.echo(jsonio.dumps(report.to_dict(), indent=2) if as_json else lib.render(report))
