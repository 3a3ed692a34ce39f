"""``rnndeploy normalize``: rewrite a recurrent ONNX model into the form every runtime runs right."""

from __future__ import annotations

from typing import Optional

import click

from rnndeploy.cli.types import OutputPath, distinct_outputs


@click.command()
@click.argument("onnx_file", metavar="IN.onnx", type=click.Path(dir_okay=False))
@click.option("-o", "--output", metavar="OUT.onnx", type=OutputPath(), help="Where to write the normalised model. Without it: report only.")
@click.option("--batch-first-state", is_flag=True,
              help="Make state inputs/outputs [batch, layers*dirs, hidden] (for servers that batch along axis 0).")
@click.option("--no-fold", is_flag=True, help="Keep constant shape subgraphs as they are.")
@click.option("--for", "target", type=click.Choice(["all", "openvino"]), default="all", show_default=True,
              help="openvino: also add a no-op clip to recurrent nodes with sequence_lens (OpenVINO ignores the "
                   "lengths otherwise; a clip makes ONNX Runtime's CUDA EP fall back to CPU for that node).")
@click.option("--no-verify", is_flag=True, help="Write without checking the rewritten model against the original.")
@click.option("--json", "json_path", metavar="FILE", type=OutputPath(), help="Also write the report (rewrites, compatibility) as JSON.")
def normalize(onnx_file: str, output: Optional[str], batch_first_state: bool, no_fold: bool, target: str,
              no_verify: bool, json_path: Optional[str]) -> None:
    """Rewrite IN.onnx so ONNX Runtime, TensorRT and OpenVINO all compute it correctly:
    layout=1 (batch-first) LSTM/GRU/RNN nodes become layout=0 between Transposes, constant
    shape subgraphs are folded, and (--batch-first-state) state tensors become batch-first.
    One line per rewrite, then what the result still trips on each runtime (ONNX Runtime
    CPU/CUDA, TensorRT 8.6/10, OpenVINO; each entry says [measured] or [docs]: the CUDA and
    TensorRT entries come from their documentation, not from runs). The result is checked
    against the original on generated inputs (ONNX Runtime, or onnx's reference evaluator
    where ONNX Runtime refuses the original) before anything is written.

    \b
      rnndeploy normalize batch_first.onnx -o fixed.onnx
      rnndeploy normalize model.onnx -o triton.onnx --batch-first-state
      rnndeploy normalize model.onnx                        (report only)

    Exit status: 0 written (or reported), 1 the rewritten model differs from the original,
    2 bad input (including a model that no runtime runs correctly even after the rewrites:
    the node and each runtime are named; nothing is written).
    """
    from dataclasses import replace

    from rnndeploy.artefacts.onnx_file import load_onnx
    from rnndeploy.graph.files import normalize_file, normalize_model
    from rnndeploy.graph.normalize import NormalizeOptions

    distinct_outputs(click.get_current_context(), ["output", "json_path"], inputs=["onnx_file"])
    options = NormalizeOptions(fold=not no_fold, batch_first_state=batch_first_state, openvino=target == "openvino")
    if output:
        report = normalize_file(onnx_file, output, options, verify=not no_verify)
    else:
        _, report = normalize_model(load_onnx(onnx_file, external_data=True), options, verify=not no_verify, source=onnx_file)
        report = replace(report, output=None)
    click.echo(report.render())
    if output:
        click.echo(f"wrote {output}")
    if json_path:
        from rnndeploy.fileio import write_json_atomic

        write_json_atomic(json_path, report.to_dict())
