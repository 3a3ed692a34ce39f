"""``rnndeploy inspect``: what is in an ONNX file or a TensorRT engine."""

from __future__ import annotations

import click

from rnndeploy import jsonio
from rnndeploy.cli.types import DEVICE_INDEX


@click.command()
@click.argument("path", metavar="MODEL.onnx|MODEL.plan", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--no-live", is_flag=True, help="Engine: show the sidecar only; do not deserialize the engine.")
@click.option("--device", type=DEVICE_INDEX, default=0, show_default=True, help="CUDA device for deserializing an engine.")
def inspect(path: str, as_json: bool, no_live: bool, device: int) -> None:
    """Describe an ONNX file (inputs/outputs with dynamic dims, ops, recurrence, precision,
    rnndeploy metadata) or a TensorRT engine (sidecar: TensorRT version, GPU, precision
    path, profiles, build facts; plus the engine's own I/O, profiles and layer precisions
    when TensorRT and a GPU are present). A truncated or altered engine is refused.

    \b
      rnndeploy inspect sine.onnx
      rnndeploy inspect sine.plan --json
    """
    from rnndeploy.artefacts.naming import classify

    if classify(path) == "onnx":
        from rnndeploy.cli.types import refuse_ignored

        refuse_ignored(click.get_current_context(), [("no_live", False, "applies to engines (MODEL.plan)"),
                                                     ("device", False, "applies to engines (MODEL.plan)")])
        from rnndeploy.artefacts.onnx_file import load_onnx
        from rnndeploy.onnx_info import describe_onnx
        from rnndeploy.precision import is_fp16_model, precision_report_of

        info = describe_onnx(path)
        model = load_onnx(path)
        precision = {"fp16_graph": is_fp16_model(model), "conversion": precision_report_of(model)}
        if as_json:
            click.echo(jsonio.dumps({**info.to_dict(), "precision": precision}, indent=2, sort_keys=True))
            return
        click.echo(info.render())
        conv = precision["conversion"]
        if precision["fp16_graph"]:
            click.echo(f"precision: FP16 graph (policy {conv.get('policy') if conv else 'unknown'}); "
                       "TensorRT >= 10 builds it strongly typed")
        else:
            click.echo("precision: FP32 graph")
        return
    from rnndeploy.engine.inspect_engine import describe_engine_file

    einfo = describe_engine_file(path, live=not no_live, device=device)
    click.echo(jsonio.dumps(einfo.to_dict(), indent=2, sort_keys=True) if as_json else einfo.render())
