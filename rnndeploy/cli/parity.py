"""``rnndeploy parity``."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import click

from rnndeploy.cli.harness_options import dim_option, model_options, output_options, runner_options, tolerance_options
from rnndeploy.cli.types import FRACTION, NON_NEGATIVE_INT, SEED, TOKENS, TOKENS_OR_NONE, OutputPath


@click.command()
@model_options
@runner_options
@click.option("--reference", metavar="NAME", help="Backend whose outputs are the truth (default torch when a checkpoint "
                                                  "or module is given, keras for a Keras model, else ort-cpu). Without --backend, every other "
                                                  "runtime available here is checked against it.")
@click.option("--shapes", default="1x1,1x16,3x37,8x128", show_default=True, metavar="BxS,...",
              help="batch x seq cases for generated inputs.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for generated inputs and sampling.")
@dim_option
@click.option("--inputs", "inputs_file", metavar="FILE.npz", help="Inputs keyed by input name (any ONNX model).")
@click.option("--expected", "expected_file", metavar="FILE.npz", help="Reference outputs keyed by output name.")
@click.option("--inputs-from-recipe", "from_recipe", is_flag=True,
              help="Inputs: the real data split the model was trained on (rebuilt from its metadata); adds the "
                   "recipe's task metric per backend.")
@click.option("--split", "data_split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="With --inputs-from-recipe: which split.")
@click.option("--rows", "data_rows", type=click.IntRange(min=1), default=256, show_default=True,
              help="With --inputs-from-recipe: rows of the split (one case).")
@click.option("--golden", metavar="DIR", help="Check against a golden directory (inputs + reference outputs).")
@click.option("--save-golden", metavar="DIR", type=OutputPath(kind="dir"), help="Write the inputs and reference outputs as a golden directory.")
@tolerance_options
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
@output_options
def parity(model: Optional[str], onnx_path: Optional[str], checkpoint: Optional[str], module_ref: Optional[str],
           engine: Optional[str], keras_path: Optional[str], graph: Optional[str], with_state: Optional[bool],
           backends: Sequence[str],
           precision: str, device: Optional[str], threads: Optional[int], cuda_graph: bool, include_copies: bool,
           fp16_mode: Optional[str], ort_opt_level: Optional[str], trt_cache_dir: Optional[str],
           trt_profile: Optional[str],
           reference: Optional[str], shapes: str, seed: int, dims: Sequence[str], inputs_file: Optional[str],
           expected_file: Optional[str], from_recipe: bool, data_split: str, data_rows: int, golden: Optional[str], save_golden: Optional[str], atol: Optional[float],
           rtol: Optional[float], tol_items: Sequence[str], sample_steps: Optional[int], min_agreement: Optional[float],
           decoder_path: Optional[str], decode_max_len: int, bos_id: Optional[int], eos_id: Optional[int], warn_only: bool, json_path: Optional[str], markdown_path: Optional[str], show_progress: Optional[bool]) -> Any:
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
    from pathlib import Path

    from rnndeploy.backends.source import resolve_source
    from rnndeploy.cli.harness_options import (
        backends_or_defaults,
        command_line,
        default_reference,
        emit_result,
        normalized_source,
        parse_dims,
        parse_shapes,
        runner_options_from,
    )
    from rnndeploy.errors import ParityError, UsageError
    from rnndeploy.parity.harness import ParityConfig, run_parity
    from rnndeploy.parity.tolerances import ToleranceOverrides

    source = resolve_source(model, onnx=onnx_path, checkpoint=checkpoint, module=module_ref, engine=engine,
                            graph=graph, with_state=with_state, keras=keras_path)
    source = normalized_source(source)
    decoder = None
    if decoder_path is None and source.graph == "encoder" and source.onnx and source.onnx.endswith(".encoder.onnx"):
        sibling = source.onnx[: -len(".encoder.onnx")] + ".decoder_step.onnx"
        if Path(sibling).is_file():  # what `rnndeploy export -o NAME.onnx` writes for a seq2seq model
            decoder_path = sibling
    if decoder_path:
        from rnndeploy.artefacts.naming import classify

        kind = classify(decoder_path)
        if kind not in ("onnx", "engine"):
            raise UsageError(f"--decoder {decoder_path} is not an ONNX file or engine")
        decoder = resolve_source(onnx=decoder_path if kind == "onnx" else None,
                                 engine=decoder_path if kind == "engine" else None,
                                 checkpoint=source.checkpoint, module=source.module, graph="decoder_step")
        decoder = normalized_source(decoder)
        if source.graph != "encoder":
            raise UsageError(f"--decoder needs MODEL to be the encoder graph; {source.onnx or model} holds {source.graph!r}")
    ref = reference or default_reference(source)
    if not save_golden:
        backends = backends_or_defaults(backends, source, ref if not (golden or expected_file) else None)
    _refuse_ignored_options(source, decoder, backends, ref, bool(inputs_file or golden or from_recipe), from_recipe)
    options = runner_options_from(precision, device, threads, cuda_graph, include_copies, fp16_mode, ort_opt_level,
                                  trt_cache_dir, trt_profile)
    config = ParityConfig(
        backends=tuple(backends),
        reference=ref,
        shapes=tuple(parse_shapes(shapes)),
        seed=seed,
        options=options,
        overrides=ToleranceOverrides.parse(atol, rtol, tol_items),
        golden=golden,
        save_golden=save_golden,
        inputs_file=inputs_file,
        expected_file=expected_file,
        extra_dims=parse_dims(dims),
        sample_steps=sample_steps if sample_steps is not None else (32 if source.spec.family == "charlm" else 0),
        min_agreement=min_agreement,
        decoder=decoder,
        decode_max_len=decode_max_len,
        bos_id=bos_id,
        eos_id=eos_id,
        show_progress=show_progress,
        data_split=data_split if from_recipe else None,
        data_rows=data_rows,
    )
    result = run_parity(source, config, command=command_line())
    if save_golden and not result.cases:  # only the reference ran: a golden, no comparison
        click.echo(f"golden written to {save_golden} (only the reference ran: nothing compared"
                   f"{'; no --json/--markdown written' if json_path or markdown_path else ''})")
        return None
    if result.status == "invalid":  # never written, never reported as passed
        raise UsageError(f"parity is invalid: {result.invalid_reason()}", "give finite tolerances and inputs to compare")
    emit_result(result, json_path, markdown_path)
    if save_golden:
        click.echo(f"golden written to {save_golden}")
    if not result.passed:
        failures = result.failures()
        msg = f"parity failed: {len(failures)} problem{'s' if len(failures) != 1 else ''}; first: {failures[0]}"
        if warn_only:
            click.echo(f"warning (--warn-only): {msg}", err=True)
            return None
        if "NaN" in failures[0] or "Inf" in failures[0] or " raised " in failures[0]:
            hint = "the runtime produced no usable numbers: check the model at that shape / precision"
        else:
            hint = "see the table above; loosen with --tol OUTPUT:ATOL:RTOL only if the error is expected"
        raise ParityError(msg, hint)
    return None


def _refuse_ignored_options(source: Any, decoder: Any, backends: Sequence[str], reference: str,
                            own_inputs: bool, from_recipe: bool) -> None:
    """Options given on the command line that this run would not use are errors (see cli.types)."""
    from rnndeploy.cli.types import distinct_outputs, refuse_ignored

    ctx = click.get_current_context()
    names = {b.split(":")[0] for b in list(backends) + [reference]}
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
    distinct_outputs(ctx, ["json_path", "markdown_path"])

