"""``rnndeploy export``: a checkpoint or a user module → validated ONNX file(s)."""

from __future__ import annotations

from typing import Optional, Tuple

import click

from rnndeploy import jsonio
from rnndeploy.cli.types import POSITIVE_INT, OutputPath
from rnndeploy.errors import UsageError


@click.command()
@click.argument("checkpoint", required=False)
@click.option(
    "-o",
    "--out",
    required=True,
    type=OutputPath(kind="file_or_dir"),
    help="NAME.onnx, or an existing directory (DIR/<graph>.onnx). "
    "A seq2seq model writes NAME.encoder.onnx + NAME.decoder_step.onnx (DIR/encoder.onnx + DIR/decoder_step.onnx).",
)
@click.option(
    "--model",
    "model_ref",
    metavar="FILE.py:FACTORY",
    help="Export your own torch.nn.Module: FACTORY() returns it, weights loaded.",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME:DTYPE[DIMS]",
    help="One per forward argument, in order, e.g. x:float32[batch,seq,8]; names in DIMS are dynamic axes. "
    "Optional :ROLE and :LOW..HIGH suffixes (ids:int64[batch,seq]:tokens:0..5000).",
)
@click.option(
    "--output",
    "outputs",
    multiple=True,
    metavar="NAME[:ROLE]|NAME:DTYPE[DIMS][:ROLE]",
    help="Output names in the order forward returns them (dims are found by running the module), or declared "
    "in full; a DIMS name that is no input axis is a derived axis whose size the module decides, checked at every "
    "validation shape (e.g. logits:float32[rows,1000] for decoded.view(-1, ntoken)).",
)
@click.option("--name", default=None, help="Model name for a user module or Keras file (default: the file's name).")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "torchscript", "dynamo"]),
    default=None,
    help="Default: the recipe's exporter (TorchScript for a user module), falling back to the other one if "
    "it fails or does not validate; the choice is recorded in the metadata. A named exporter is used alone.",
)
@click.option(
    "--opset", type=POSITIVE_INT, default=None, help="ONNX opset (default: the recipe's, else 17 — TensorRT 8.6 parses <= 17)."
)
@click.option(
    "--with-state/--without-state",
    "with_state",
    default=None,
    help="Streaming form: initial states in, final states out (default: the recipe's, else without).",
)
@click.option("--simplify", is_flag=True, help="Simplify with onnxslim; kept only if validation still passes.")
@click.option(
    "--no-validate", is_flag=True, help="Skip the checker and the ONNX Runtime vs torch comparison (not advised)."
)
@click.option(
    "--long-seq",
    type=POSITIVE_INT,
    default=None,
    metavar="N",
    help="Longest training sequence; validation runs one twice as long (default: from the recipe/data, else 128).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of the summary.")
def export(
    checkpoint: Optional[str],
    out: str,
    model_ref: Optional[str],
    inputs: Tuple[str, ...],
    outputs: Tuple[str, ...],
    name: Optional[str],
    exporter: Optional[str],
    opset: Optional[int],
    with_state: Optional[bool],
    simplify: bool,
    no_validate: bool,
    long_seq: Optional[int],
    as_json: bool,
) -> None:
    """Export a checkpoint directory (from `rnndeploy train`), a Keras model (.keras / .h5)
    or your own module to ONNX, then prove the file computes what PyTorch (or Keras)
    computes: onnx.checker, then ONNX Runtime at batch 1, seq 1, other shapes, a sequence
    longer than training (and padded batches for a masking Keras model), output by output.
    Nothing is written unless every check passes.

    \b
      rnndeploy export runs/sine -o sine.onnx
      rnndeploy export sentiment.keras -o sentiment.onnx      # Keras 3 .keras or Keras 2/3 .h5; no torch needed
      rnndeploy export --model net.py:build --input x:float32[batch,seq,8] --output y -o net.onnx
    """
    if (checkpoint is None) == (model_ref is None):
        raise UsageError("give either a CHECKPOINT directory, a Keras MODEL.keras / .h5, or --model FILE.py:FACTORY",
                         "see rnndeploy export --help")
    from rnndeploy.cli.types import distinct_outputs

    distinct_outputs(click.get_current_context(), ["out"], inputs=["checkpoint"])
    if name is not None and not name.strip():
        raise UsageError("--name is empty", "give the model a name, or leave --name out (the file's name is used)")
    if long_seq is not None and long_seq < 1:
        raise UsageError(f"--long-seq {long_seq} must be a positive length")
    from rnndeploy.keras.archive import is_keras_path

    if checkpoint is not None and is_keras_path(checkpoint):
        _export_keras(checkpoint, out, exporter, opset, with_state, simplify, no_validate, long_seq, name,
                      inputs, outputs, as_json)
        return
    if model_ref is None and (inputs or outputs or name is not None):
        raise UsageError("--input/--output/--name describe a --model user module", "leave them out for a checkpoint")
    from rnndeploy.optional import require

    require("torch", "export")
    from rnndeploy.export import ExportOptions, ValidationFailed, export_checkpoint, export_user_module

    try:
        if model_ref is not None:
            options = ExportOptions(
                exporter=exporter or "auto",
                opset=opset if opset is not None else 17,
                with_state=False,
                simplify=simplify,
                validate=not no_validate,
                longest_train_seq=long_seq,
            )
            if with_state:
                raise UsageError(
                    "--with-state applies to zoo checkpoints", "declare state tensors with --input/--output"
                )
            result = export_user_module(model_ref, inputs, out, options, outputs=outputs, name=name)
        else:
            result = export_checkpoint(
                checkpoint,
                out,
                exporter=exporter,
                opset=opset,
                with_state=with_state,
                simplify=simplify,
                validate=not no_validate,
                longest_train_seq=long_seq,
            )
    except ValidationFailed as err:
        for report in err.reports:
            click.echo(report.render(), err=True)
        raise
    click.echo(jsonio.dumps(result.to_dict(), indent=2) if as_json else result.render())


def _export_keras(path: str, out: str, exporter: Optional[str], opset: Optional[int], with_state: Optional[bool],
                  simplify: bool, no_validate: bool, long_seq: Optional[int], name: Optional[str],
                  inputs: Tuple[str, ...], outputs: Tuple[str, ...], as_json: bool) -> None:
    from rnndeploy.export.validate import ValidationFailed
    from rnndeploy.keras.export import KerasExportOptions, export_keras, keras_export_usage

    keras_export_usage(exporter, simplify, inputs, outputs)
    options = KerasExportOptions(
        opset=opset if opset is not None else 17,
        with_state=bool(with_state),
        validate=False if no_validate else None,
        longest_train_seq=long_seq,
        name=name,
    )
    try:
        result = export_keras(path, out, options)
    except ValidationFailed as err:
        for report in err.reports:
            click.echo(report.render(), err=True)
        raise
    click.echo(jsonio.dumps(result.to_dict(), indent=2) if as_json else result.render())
