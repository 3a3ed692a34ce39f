"""``rnndeploy parity``."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import click

from rnndeploy.cli.harness_options import DIMS, MODEL, OUTPUT, RUNNERS, TOLERANCES
from rnndeploy.cli.types import FRACTION, NON_NEGATIVE_INT, POSITIVE_INT, SEED, TOKENS, TOKENS_OR_NONE, OutputPath


@click.command()
@MODEL
@RUNNERS
@click.option("--reference", metavar="NAME", help="Backend whose outputs are the truth (default torch when a checkpoint "
                                                  "or module is given, keras for a Keras model, else ort-cpu). Without --backend, every other "
                                                  "runtime available here is checked against it.")
@click.option("--shapes", default="1x1,1x16,3x37,8x128", show_default=True, metavar="BxS,...",
              help="batch x seq cases for generated inputs.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for generated inputs and sampling.")
@DIMS
@click.option("--inputs", "inputs_file", metavar="FILE.npz", help="Inputs keyed by input name (any ONNX model).")
@click.option("--expected", "expected_file", metavar="FILE.npz", help="Reference outputs keyed by output name.")
@click.option("--inputs-from-recipe", "from_recipe", is_flag=True,
              help="Inputs: the real data split the model was trained on (rebuilt from its metadata); adds the "
                   "recipe's task metric per backend.")
@click.option("--split", "data_split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="With --inputs-from-recipe: which split.")
@click.option("--rows", "data_rows", type=POSITIVE_INT, default=256, show_default=True,
              help="With --inputs-from-recipe: rows of the split (one case).")
@click.option("--golden", metavar="DIR", help="Check against a golden directory (inputs + reference outputs).")
@click.option("--save-golden", metavar="DIR", type=OutputPath(kind="dir"), help="Write the inputs and reference outputs as a golden directory.")
@TOLERANCES
@click.option("--sample-steps", type=TOKENS_OR_NONE, default=None,
              help="char-LM: also compare N sampled tokens per row (fixed seed). Default 32 for char-LMs, else 0.")
@click.option("--min-agreement", type=FRACTION, help="Fail when argmax / sampling / decoding agreement is below this fraction.")
@click.option("--decoder", "decoder_path", metavar="FILE",
              help="seq2seq: the decoder_step ONNX file (or engine) beside MODEL = the encoder; adds greedy decoding "
                   "agreement with every backend. Default: NAME.decoder_step.onnx beside NAME.encoder.onnx.")
@click.option("--decode-max-len", type=TOKENS, default=64, show_default=True, help="seq2seq: decoding steps.")
@click.option("--bos-id", type=NON_NEGATIVE_INT, help="seq2seq: start token id (default: the spec's).")
@click.option("--eos-id", type=NON_NEGATIVE_INT, help="seq2seq: end token id (default: the spec's).")
@click.option("--warn-only", is_flag=True, help="Report failures but exit 0.")
@OUTPUT
def parity(reference: Optional[str], shapes: str, seed: int, inputs_file: Optional[str], expected_file: Optional[str],
           from_recipe: bool, data_split: str, data_rows: int, golden: Optional[str], save_golden: Optional[str],
           sample_steps: Optional[int], min_agreement: Optional[float], decoder_path: Optional[str],
           decode_max_len: int, bos_id: Optional[int], eos_id: Optional[int], warn_only: bool, **params: Any) -> Any:
    """Run the same inputs through every --backend and compare each output with the reference.

    \b
    Examples:
      rnndeploy parity model.onnx --checkpoint runs/sine --backend ort-cpu      (torch is the reference)
      rnndeploy parity model.onnx --backend ort-cpu --inputs in.npz --expected out.npz
      rnndeploy parity sine.int8.onnx --checkpoint runs/sine --backend ort-cpu --inputs-from-recipe   (real test split)
      rnndeploy parity runs/sine --onnx model.onnx --backend torch --save-golden golden/   (training box)
      rnndeploy parity model.onnx --engine model.plan --backend trt --golden golden/ --precision fp16
      rnndeploy parity g2p.encoder.onnx --decoder g2p.decoder_step.onnx --checkpoint runs/g2p --backend ort-cpu

    Exit status: 0 all outputs within tolerance, 1 a check failed (or NaN/Inf), 2 bad input,
    3 a backend's package or GPU is missing.
    """
    from rnndeploy.cli.harness_options import backends_or_defaults, command_line, normalized_source, parse_shapes
    from rnndeploy.errors import UsageError
    from rnndeploy.parity.harness import (
        ParityConfig,
        default_reference,
        default_sample_steps,
        find_decoder,
        run_parity,
    )

    source = MODEL.take(params)
    runners = RUNNERS.take(params)
    out = OUTPUT.take(params)
    decoder = find_decoder(source, decoder_path)
    ref = reference or default_reference(source)
    backends = runners.backends
    if not save_golden:
        backends = backends_or_defaults(backends, source, ref if not (golden or expected_file) else None)
    _refuse_ignored_options(source, decoder, backends, ref, bool(inputs_file or golden or from_recipe), from_recipe)
    config = ParityConfig(
        backends=tuple(backends),
        reference=ref,
        shapes=tuple(parse_shapes(shapes)),
        seed=seed,
        options=runners.options,
        overrides=TOLERANCES.take(params),
        golden=golden,
        save_golden=save_golden,
        inputs_file=inputs_file,
        expected_file=expected_file,
        extra_dims=DIMS.take(params),
        sample_steps=sample_steps if sample_steps is not None else default_sample_steps(source.spec),
        min_agreement=min_agreement,
        decoder=normalized_source(decoder) if decoder is not None else None,
        decode_max_len=decode_max_len,
        bos_id=bos_id,
        eos_id=eos_id,
        show_progress=out.show_progress,
        data_split=data_split if from_recipe else None,
        data_rows=data_rows,
    )
    result = run_parity(source, config, command=command_line())
    if save_golden and not result.cases:  # only the reference ran: a golden, no comparison
        click.echo(f"golden written to {save_golden} (only the reference ran: nothing compared"
                   f"{'; no --json/--markdown written' if out.json_path or out.markdown_path else ''})")
        return None
    if result.status == "invalid":  # never written, never reported as passed
        raise UsageError(f"parity is invalid: {result.invalid_reason()}", "give finite tolerances and inputs to compare")
    out.emit(result)
    if save_golden:
        click.echo(f"golden written to {save_golden}")
    verdict = result.verdict()
    if verdict is not None:
        if warn_only:
            click.echo(f"warning (--warn-only): {verdict.message}", err=True)
            return None
        raise verdict
    return None


def _refuse_ignored_options(source: Any, decoder: Any, backends: Sequence[str], reference: str,
                            own_inputs: bool, from_recipe: bool) -> None:
    """Options given on the command line that this run would not use are errors (see cli.types)."""
    from rnndeploy.cli.harness_options import refuse_ignored_runner_options
    from rnndeploy.cli.types import distinct_outputs, refuse_ignored

    ctx = click.get_current_context()
    from rnndeploy.backends import BackendLabel

    names = {label.name for label in map(BackendLabel.lookup, list(backends) + [reference]) if label is not None}
    agreement = decoder is not None or source.spec.family == "charlm" or any(
        t.role in ("logits", "probs") for t in source.graph_spec.outputs)
    generated = "sets the shapes of generated inputs; --inputs, --golden and --inputs-from-recipe bring their own"
    refuse_ignored(ctx, [
        ("shapes", not own_inputs, generated),
        ("dims", not own_inputs, generated),
        ("bos_id", decoder is not None, "applies to seq2seq decoding (--decoder, or MODEL.encoder.onnx with its decoder)"),
        ("eos_id", decoder is not None, "applies to seq2seq decoding (--decoder, or MODEL.encoder.onnx with its decoder)"),
        ("decode_max_len", decoder is not None, "applies to seq2seq decoding (--decoder)"),
        ("trt_profile", "ort-trt" in names, "applies to the ort-trt backend"),
        ("trt_cache_dir", "ort-trt" in names, "applies to the ort-trt backend"),
        ("data_split", from_recipe, "applies with --inputs-from-recipe"),
        ("data_rows", from_recipe, "applies with --inputs-from-recipe"),
        ("min_agreement", agreement, "applies to logits/probs outputs, char-LM sampling and seq2seq decoding; "
                                     f"{source.spec.name!r} has none"),
    ])
    refuse_ignored_runner_options(ctx, list(backends) + [reference])
    distinct_outputs(ctx, ["json_path", "markdown_path"])

