"""Argument groups shared by ``rnndeploy parity``, ``bench`` and ``tune`` (Polygraphy's
``tools/args`` shape): each group owns its options and turns them into one library
object, so a command lists the groups it uses and calls the library with what they give.

    @MODEL      MODEL, --onnx/--checkpoint/--module/--engine/--keras, --graph, --with-state
                → a ModelSource (normalised when the ONNX file needs it; one line says so)
    @RUNNERS    --backend and the runner settings → RunnerChoice(backends, RunnerOptions)
    @TOLERANCES --atol/--rtol/--tol → ToleranceOverrides
    @DIMS       --dim NAME=SIZE → {name: size}
    @OUTPUT     --json/--markdown/--progress → ResultOutput (prints tables, writes files)

``GROUP.take(params)`` pops the group's parameters from a command's keyword arguments
and returns its object. Parsing only: no work happens here."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import click

from rnndeploy.backends import BACKENDS
from rnndeploy.cli.types import THREADS, TOLERANCE, OutputPath
from rnndeploy.errors import UsageError

F = Callable[..., Any]


class ArgGroup:
    """Options that belong together, and the one library object they become.

    Args:
        decorators: the click arguments/options, in help order.
        build: called with the group's parameters (by keyword) → the object.
    """

    def __init__(self, *decorators: Callable[[F], F], build: Callable[..., Any]):
        self._decorators = decorators
        self._build = build
        probe = self(lambda **kw: None)
        self.names: Tuple[str, ...] = tuple(p.name for p in getattr(probe, "__click_params__", []))

    def __call__(self, f: F) -> F:
        """Add the group's options to the command ``f``."""
        for d in reversed(self._decorators):
            f = d(f)
        return f

    def take(self, params: Dict[str, Any]) -> Any:
        """Pop the group's parameters from ``params`` and build its object."""
        return self._build(**{n: params.pop(n) for n in self.names})


@dataclass(frozen=True)
class RunnerChoice:
    """The backends named with --backend (possibly none) and the options they run with."""

    backends: Tuple[str, ...]
    options: Any


@dataclass(frozen=True)
class ResultOutput:
    """Where a result goes: the terminal always, a results JSON and Markdown when asked."""

    json_path: Optional[str] = None
    markdown_path: Optional[str] = None
    show_progress: Optional[bool] = None

    def emit(self, result: Any) -> None:
        emit_result(result, self.json_path, self.markdown_path)


def _model_source(model: Optional[str], onnx_path: Optional[str], checkpoint: Optional[str],
                  module_ref: Optional[str], engine: Optional[str], keras_path: Optional[str], graph: Optional[str],
                  with_state: Optional[bool]) -> Any:
    from rnndeploy.backends.source import resolve_source

    return normalized_source(resolve_source(model, onnx=onnx_path, checkpoint=checkpoint, module=module_ref,
                                            engine=engine, graph=graph, with_state=with_state, keras=keras_path))


def _runner_choice(backends: Sequence[str], **settings: Any) -> RunnerChoice:
    return RunnerChoice(tuple(backends), runner_options_from(**settings))


def _tolerances(atol: Optional[float], rtol: Optional[float], tol_items: Sequence[str]) -> Any:
    from rnndeploy.parity.tolerances import ToleranceOverrides

    return ToleranceOverrides.parse(atol, rtol, tol_items)


MODEL = ArgGroup(
    click.argument("model", required=False),
    click.option("--onnx", "onnx_path", metavar="FILE", help="ONNX file (ort-* backends; the spec comes from its metadata)."),
    click.option("--checkpoint", metavar="DIR", help="rnndeploy checkpoint directory (torch backend)."),
    click.option("--module", "module_ref", metavar="FILE.py:FACTORY", help="Your own torch module (torch backend)."),
    click.option("--engine", metavar="FILE", help="Serialized TensorRT engine (trt backend)."),
    click.option("--keras", "keras_path", metavar="FILE", help="Saved Keras model, .keras or .h5 (keras backend)."),
    click.option("--graph", metavar="NAME", help="Graph of a multi-graph model (e.g. encoder, decoder_step)."),
    click.option("--with-state/--without-state", "with_state", default=None,
                 help="Streaming form (states in/out). Default: whatever the ONNX file takes."),
    build=_model_source,
)

RUNNERS = ArgGroup(
    click.option("--backend", "backends", multiple=True, metavar="NAME[:MOD...]",
                 help=f"Runtime to run (repeatable): {', '.join(BACKENDS)}; modifiers give several configurations "
                      "side by side, e.g. torch:fp16, torch:fp16:graph, ort-cpu:t1, ort-cuda:copies, openvino:bf16. "
                      "Default: every runtime available here (the command says which, and why others are skipped)."),
    click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
                 help="Precision of the runtimes under test (torch: autocast or .half(); trt/ort-trt: FP16 kernels)."),
    click.option("--device", metavar="DEV", help="cpu, cuda or cuda:N (torch; GPU backends take cuda:N)."),
    click.option("--threads", type=THREADS, help="Intra-op CPU threads (torch, ort-cpu). Default: library default."),
    click.option("--cuda-graph", is_flag=True, help="Capture and replay a CUDA graph (GPU backends)."),
    click.option("--include-copies", is_flag=True,
                 help="GPU timings include host<->device copies (default: device-resident inputs and outputs)."),
    click.option("--fp16-mode", type=click.Choice(["autocast", "half"]), default=None,
                 help="torch FP16: autocast (default on CUDA) or .half() the module."),
    click.option("--ort-opt-level", type=click.Choice(["disabled", "basic", "extended", "all"]), default=None,
                 help="onnxruntime graph optimisation level (default all)."),
    click.option("--trt-cache-dir", metavar="DIR", help="ort-trt engine/timing cache directory."),
    click.option("--trt-profile", metavar="AXIS=MIN:OPT:MAX,...",
                 help="ort-trt optimisation profile, e.g. batch=1:8:256,seq=1:128:2048 "
                      "(default batch 1:8:64, seq 1:128:1024)."),
    build=_runner_choice,
)

TOLERANCES = ArgGroup(
    click.option("--atol", type=TOLERANCE, help="Absolute tolerance for every output (overrides the spec)."),
    click.option("--rtol", type=TOLERANCE, help="Relative tolerance for every output (overrides the spec)."),
    click.option("--tol", "tol_items", multiple=True, metavar="OUTPUT:ATOL:RTOL[:REL_L2]",
                 help="Tolerance for one output (repeatable); wins over --atol/--rtol."),
    build=_tolerances,
)

DIMS = ArgGroup(
    click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
                 help="Size of a dynamic axis other than batch/seq (foreign models; repeatable)."),
    build=lambda dims: parse_dims(dims),
)

OUTPUT = ArgGroup(
    click.option("--json", "json_path", metavar="FILE", type=OutputPath(), help="Write the result as an rnndeploy results JSON file."),
    click.option("--markdown", "markdown_path", metavar="FILE", type=OutputPath(), help="Write the result as Markdown."),
    click.option("--progress/--no-progress", "show_progress", default=None, help="Progress bars (default: on a terminal)."),
    build=ResultOutput,
)


def parse_shapes(text: str) -> List[Tuple[int, int]]:
    """"1x16,4x128" → [(1, 16), (4, 128)] (batch x seq)."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        parts = item.lower().split("x")
        try:
            b, s = (int(p) for p in parts)
        except ValueError:
            raise UsageError(f"shape {item!r} is not BATCHxSEQ", "write e.g. --shapes 1x16,4x128") from None
        if b < 1 or s < 1:
            raise UsageError(f"shape {item!r}: batch and seq must be at least 1")
        out.append((b, s))
    if not out:
        raise UsageError(f"--shapes {text!r} names no shape", "write e.g. --shapes 1x16,4x128")
    return list(dict.fromkeys(out))  # "1x4,1x4" is one case (case ids are unique in results)


def parse_int_list(text: str, what: str, maximum: Optional[int] = None) -> List[int]:
    """"1,32,256" → [1, 32, 256] (all ≥ 1, and ≤ ``maximum`` when given; repeats dropped)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a comma-separated list of integers", f"write e.g. {what} 1,32") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what} {text!r}: give positive integers", f"write e.g. {what} 1,32")
    if maximum is not None and any(v > maximum for v in values):
        raise UsageError(f"{what} {text!r}: each value must be at most {maximum}", f"write e.g. {what} 1,2")
    return list(dict.fromkeys(values))  # "1,1" measures once


def parse_trt_profile(text: str) -> Dict[str, Dict[str, int]]:
    """"batch=1:8:256,seq=1:128:2048" → {"min": {"batch": 1, "seq": 1}, "opt": {...}, "max": {...}}."""
    out: Dict[str, Dict[str, int]] = {"min": {}, "opt": {}, "max": {}}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        axis, _, rng = item.partition("=")
        try:
            lo, opt, hi = (int(v) for v in rng.split(":"))
        except ValueError:
            raise UsageError(f"--trt-profile {item!r} is malformed", "write AXIS=MIN:OPT:MAX, e.g. seq=1:128:2048") from None
        if not (axis and 1 <= lo <= opt <= hi):
            raise UsageError(f"--trt-profile {item!r}: need 1 <= MIN <= OPT <= MAX")
        out["min"][axis], out["opt"][axis], out["max"][axis] = lo, opt, hi
    return out


def check_device(device: Optional[str]) -> None:
    """Refuse a --device that is not cpu, cuda or cuda:N (before any runner or GPU probe)."""
    if device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise UsageError(f"--device {device!r} is not cpu, cuda or cuda:N", "e.g. --device cuda:0")


def runner_options_from(precision: str, device: Optional[str], threads: Optional[int], cuda_graph: bool,
                        include_copies: bool, fp16_mode: Optional[str], ort_opt_level: Optional[str],
                        trt_cache_dir: Optional[str], trt_profile: Optional[str] = None) -> Any:
    """RunnerOptions from the runner option group."""
    from rnndeploy.backends import RunnerOptions

    check_device(device)

    extra: Dict[str, Any] = {}
    if trt_profile:
        extra["trt_profile"] = parse_trt_profile(trt_profile)
    if fp16_mode:
        extra["fp16_mode"] = fp16_mode
    if ort_opt_level:
        extra["graph_optimization_level"] = ort_opt_level
    if trt_cache_dir:
        extra["trt_cache_dir"] = trt_cache_dir
    return RunnerOptions(precision=precision, device=device, threads=threads, cuda_graph=cuda_graph,
                         include_copies=include_copies, extra=extra)


# axes every command sizes itself (--shapes, --batch/--seq): --dim naming one would contradict them
SIZED_AXES = ("batch", "seq", "src_seq")


def parse_dims(items: Sequence[str]) -> Dict[str, int]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            size = int(value)
        except ValueError:
            raise UsageError(f"--dim {item!r} is malformed", "write NAME=SIZE, e.g. --dim N=4") from None
        if not name or size < 1:
            raise UsageError(f"--dim {item!r} is malformed", "write NAME=SIZE with a positive size")
        if name in SIZED_AXES:
            raise UsageError(f"--dim {item!r}: {name} is not sized with --dim",
                             "batch and seq come from --shapes (parity) or --batch/--seq (bench, loadtest)")
        if name in out and out[name] != size:
            raise UsageError(f"--dim {name} is given twice ({out[name]} and {size})", "give each axis once")
        out[name] = size
    return out


def refuse_ignored_runner_options(ctx: click.Context, labels: Sequence[str]) -> None:
    """Runner options given on the command line that none of the backends that will run
    (``labels``: under test and reference) would use are errors, never silently dropped:
    --cuda-graph and --include-copies need a GPU backend, --fp16-mode torch at FP16."""
    from rnndeploy.backends import BackendLabel
    from rnndeploy.cli.types import refuse_ignored

    parsed = [label for label in map(BackendLabel.lookup, labels) if label is not None]
    device = str(ctx.params.get("device") or "cpu")
    precision = ctx.params.get("precision") or "fp32"
    gpu = any(label.name in ("ort-cuda", "ort-trt", "trt") or (label.runs_torch and device.startswith("cuda"))
              for label in parsed)
    torch_fp16 = any(label.runs_torch and label.changes.get("precision", precision) == "fp16" for label in parsed)
    on_gpu = "applies to GPU backends (ort-cuda, ort-trt, trt, or torch with --device cuda)"
    refuse_ignored(ctx, [
        ("cuda_graph", gpu, on_gpu),
        ("include_copies", gpu, on_gpu),
        ("fp16_mode", torch_fp16, "applies to torch at FP16 (--precision fp16, or --backend torch:fp16)"),
    ])


def command_line() -> str:
    """The command as typed (for results files)."""
    args = sys.argv[1:]
    prog = "rnndeploy"
    return " ".join([prog] + [shlex.quote(a) for a in args])


def emit_result(result: Any, json_path: Optional[str], markdown_path: Optional[str]) -> None:
    """Print a parity/bench result's tables and write the requested JSON / Markdown files."""
    from rnndeploy.fileio import write_files_atomic
    from rnndeploy.report import render_markdown, render_text
    from rnndeploy.report.schema import dumps_results, to_document

    click.echo(render_text(result))
    files = {}  # rendered first, written together: never one file without the other
    if json_path:
        files[json_path] = dumps_results(to_document([result]))
    if markdown_path:
        files[markdown_path] = render_markdown([result])
    write_files_atomic(files)


def normalized_source(source: Any) -> Any:
    """``source`` with its ONNX file swapped for a verified normalised copy when the file
    needs one (layout=1 recurrent nodes), saying so in one line on stderr."""
    from rnndeploy.graph.files import auto_normalize

    source, line = auto_normalize(source)
    if line:
        click.echo(f"rnndeploy: {line}", err=True)
    return source


def backends_or_defaults(backends: Sequence[str], source: Any, reference: Optional[str] = None) -> Sequence[str]:
    """``backends`` as given, or — when none was named — every runtime that can run here on
    ``source`` (rnndeploy.backends.default_backends), said in one line on stderr: which
    were chosen and which were skipped, and why."""
    if backends:
        return backends
    from rnndeploy.backends import default_backends

    chosen, skipped = default_backends(source)
    ref = f" ({reference} is the reference)" if reference in chosen else ""
    line = f"no --backend given: running {', '.join(chosen) or 'none'}{ref}"
    if skipped:
        line += "; skipped " + "; ".join(f"{name}: {why}" for name, why in skipped.items())
    click.echo(f"rnndeploy: {line}", err=True)
    return chosen
