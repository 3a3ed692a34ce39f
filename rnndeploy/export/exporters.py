"""The two torch → ONNX exporters, and the checks that a green export is not lying.

TorchScript (``dynamo=False``) is the default for recurrent models: with torch 2.13
it writes native ``LSTM``/``GRU``/``RNN`` nodes with dynamic axes for every zoo case
measured (shared/FINDINGS.md §2) and takes ~0.1 s. The dynamo exporter is the
fallback; it can silently freeze the sequence axis, and a second dynamo export of
an RNN in one process gets a frozen axis from a stale cache, so it runs in a fresh
subprocess (``rnndeploy.export.dynamo_worker``) whenever the module can be rebuilt
there (see ``sources``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from rnndeploy.artefacts.onnx_file import load_onnx
from rnndeploy.errors import ExportError, first_line
from rnndeploy.export.user_module import flatten_outputs
from rnndeploy.spec import GraphSpec

EXPORTERS = ("torchscript", "dynamo")
EXPORTER_CHOICES = ("auto",) + EXPORTERS
DEFAULT_OPSET = 17  # the newest opset TensorRT 8.6's parser reads
DYNAMO_TIMEOUT_S = 600


class ShapeDependentForward(ExportError):
    """The module's forward traces to different graphs at different input sizes."""


def torch_module_facts(module: Any) -> Dict[str, int]:
    """Counts of recurrent torch modules by class name (LSTM, GRU, RNN, LSTMCell, ...)."""
    import torch

    kinds = (
        (torch.nn.LSTM, "LSTM"),
        (torch.nn.GRU, "GRU"),
        (torch.nn.RNN, "RNN"),
        (torch.nn.LSTMCell, "LSTMCell"),
        (torch.nn.GRUCell, "GRUCell"),
        (torch.nn.RNNCell, "RNNCell"),
    )
    counts: Counter = Counter()
    for m in module.modules():
        for cls, name in kinds:
            if isinstance(m, cls):
                counts[name] += 1
                break
    return dict(sorted(counts.items()))


def check_supported(module: Any) -> None:
    """Refuse constructs no exporter turns into a correct ONNX graph.

    Raises:
        ExportError: an ``nn.LSTM`` with ``proj_size`` (ONNX's LSTM has no projection;
            TorchScript refuses it and dynamo writes a graph ONNX Runtime rejects).
    """
    import torch

    for name, m in module.named_modules():
        if isinstance(m, torch.nn.LSTM) and getattr(m, "proj_size", 0):
            raise ExportError(
                f"LSTM {name or '(root)'} uses proj_size={m.proj_size}, which ONNX's LSTM operator cannot express",
                "retrain without proj_size (or add an nn.Linear after the LSTM); no exporter produces a correct graph for it",
            )


class FlatOutputs:
    """Wraps a module so forward returns a flat tuple of tensors (nested tuples flattened)."""

    def __new__(cls, module: Any) -> Any:
        import torch

        class _Flat(torch.nn.Module):
            def __init__(self, inner: Any):
                super().__init__()
                self.inner = inner

            def forward(self, *args: Any) -> Tuple[Any, ...]:
                return tuple(flatten_outputs(self.inner(*args)))

        return _Flat(module).eval()


def export_torchscript(module: Any, graph: GraphSpec, example: Mapping[str, np.ndarray], opset: int) -> Any:
    """TorchScript-trace ``module`` at ``example`` into an ``onnx.ModelProto`` with the spec's
    names and dynamic axes.

    Raises:
        ExportError: the tracer or the ONNX symbolic functions failed.
    """
    import torch

    args = _torch_args(graph, example)
    dynamic_axes = {t.name: t.dynamic_axes for t in graph.inputs + graph.outputs if t.dynamic_axes}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), _quiet(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                FlatOutputs(module),
                args,
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=[t.name for t in graph.inputs],
                output_names=[t.name for t in graph.outputs],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except Exception as exc:
        msg = first_line(exc, 400)
        hint = None
        if "_M_range_check" in msg:
            hint = (
                "a known TorchScript-exporter failure when only h_n of a packed LSTM/GRU is used: also consume "
                "its output sequence (pad_packed_sequence), e.g. take the last valid step from it"
            )
        raise ExportError(f"the TorchScript exporter failed: {msg}", hint) from exc
    return load_onnx(buf.getvalue())


def trace_signature(module: Any, graph: GraphSpec, example: Mapping[str, np.ndarray], opset: int) -> Dict[str, int]:
    """Op histogram of the TorchScript export at ``example`` (used to spot shape-dependent forwards)."""
    from rnndeploy.onnx_info import all_nodes

    model = export_torchscript(module, graph, example, opset)
    return dict(Counter(n.op_type for n in all_nodes(model.graph)))


def check_shape_independent(
    module: Any, graph: GraphSpec, examples: List[Tuple[Dict[str, int], Mapping[str, np.ndarray]]], opset: int
) -> None:
    """Trace at two sizes; different graphs mean forward depends on Python values of its inputs.

    Raises:
        ShapeDependentForward: naming both sizes and node counts.
    """
    sigs = [(sizes, trace_signature(module, graph, feeds, opset)) for sizes, feeds in examples]
    (s0, h0), (s1, h1) = sigs[0], sigs[1]
    if h0 != h1:
        diff = sorted(k for k in set(h0) | set(h1) if h0.get(k) != h1.get(k))
        detail = ", ".join(f"{k} {h0.get(k, 0)}→{h1.get(k, 0)}" for k in diff[:4])
        raise ShapeDependentForward(
            f"the module's forward traces to a different graph at {_sizes_text(s0)} ({sum(h0.values())} nodes) "
            f"than at {_sizes_text(s1)} ({sum(h1.values())} nodes; {detail}): it depends on Python values of its "
            "inputs (a loop over x.shape, an if on a tensor), so no single ONNX graph reproduces it",
            "run the recurrence with nn.LSTM/nn.GRU/nn.RNN over the whole sequence instead of a Python loop over a cell",
        )


def export_dynamo_in_process(module: Any, graph: GraphSpec, example: Mapping[str, np.ndarray], opset: int) -> Any:
    """The dynamo exporter in this process. Only the first dynamo export of an RNN in a
    process is reliable; ``export_dynamo_subprocess`` is preferred."""
    import torch

    args = _torch_args(graph, example)
    dims: Dict[str, Any] = {}
    dynamic_shapes = []
    for t in graph.inputs:
        axes = {i: dims.setdefault(name, torch.export.Dim(name, min=1)) for i, name in t.dynamic_axes.items()}
        dynamic_shapes.append(axes or None)
    try:
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                FlatOutputs(module),
                args,
                None,
                dynamo=True,
                opset_version=opset,
                input_names=[t.name for t in graph.inputs],
                output_names=[t.name for t in graph.outputs],
                dynamic_shapes={"args": tuple(dynamic_shapes)},  # FlatOutputs.forward(*args)
                external_data=False,
                verbose=False,
                report=False,
            )
    except Exception as exc:
        raise ExportError(_dynamo_error(exc)) from exc
    if program is None:
        raise ExportError("the dynamo exporter returned no program")
    return program.model_proto


def export_dynamo_subprocess(
    source: Mapping[str, Any], graph: GraphSpec, example: Mapping[str, np.ndarray], opset: int
) -> Any:
    """Run the dynamo exporter in a fresh Python process that rebuilds the module from ``source``.

    Raises:
        ExportError: the worker failed or timed out; the message is the worker's first error line.
    """

    with tempfile.TemporaryDirectory(prefix="rnndeploy-dynamo-") as tmp:
        np.savez(os.path.join(tmp, "example.npz"), **{k: np.asarray(v) for k, v in example.items()})
        from rnndeploy.export.sources import persist

        request = {
            "source": persist(source, tmp),
            "graph": graph.to_dict(),
            "opset": opset,
            "example": os.path.join(tmp, "example.npz"),
            "out": os.path.join(tmp, "model.onnx"),
        }
        req_path = os.path.join(tmp, "request.json")
        with open(req_path, "w") as f:
            json.dump(request, f)
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "rnndeploy.export.dynamo_worker", req_path],
                capture_output=True,
                text=True,
                timeout=DYNAMO_TIMEOUT_S,
                env=env,
            )
        except subprocess.TimeoutExpired as exc:
            raise ExportError(f"the dynamo exporter did not finish within {DYNAMO_TIMEOUT_S} s") from exc
        status = _last_json_line(proc.stdout)
        if proc.returncode != 0 or not status.get("ok"):
            reason = status.get("error") or "the dynamo exporter failed: " + (
                _last_line(proc.stderr) or f"worker exited {proc.returncode}"
            )
            raise ExportError(reason)
        return load_onnx(request["out"], external_data=True)


def conform_io_dims(model: Any, graph: GraphSpec, exporter: str) -> List[str]:
    """Make every dynamic axis of the spec a named ``dim_param`` on the ONNX graph's I/O.

    Fixed axes get the spec's size where the exporter left them unnamed or generic.
    An input axis the exporter fixed to a number is fatal (the graph only accepts
    that size). An output axis declared as a number is only an annotation: it is
    renamed and a note returned, and validation at other sizes decides whether the
    graph really follows it. Other names (``s0``, ``batch_size``) are renamed.

    Raises:
        ExportError: an input axis was frozen, or the I/O names or ranks differ from the spec.
    """
    notes: List[str] = []
    init = {i.name for i in model.graph.initializer}
    g_inputs = {v.name: v for v in model.graph.input if v.name not in init}
    g_outputs = {v.name: v for v in model.graph.output}
    want_in = [t.name for t in graph.inputs]
    want_out = [t.name for t in graph.outputs]
    if list(g_inputs) != want_in or list(g_outputs) != want_out:
        raise ExportError(
            f"the {exporter} exporter wrote inputs {list(g_inputs)} and outputs {list(g_outputs)}; "
            f"the spec declares {want_in} and {want_out}",
            "an input forward ignores is dropped by the exporter: use every declared input",
        )
    for kind, items, tensors in (("input", g_inputs, graph.inputs), ("output", g_outputs, graph.outputs)):
        for t in tensors:
            dims = items[t.name].type.tensor_type.shape.dim
            if len(dims) != len(t.dims):
                raise ExportError(
                    f"the {exporter} exporter gave {kind} {t.name!r} rank {len(dims)}; the spec says {len(t.dims)}"
                )
            for axis, size in enumerate(t.dims):
                # a fixed axis the exporter could not infer (TorchScript names it "Transposeh0_dim_0"):
                # declare the spec's size; validation compares the real shapes with torch's
                if isinstance(size, int) and not dims[axis].HasField("dim_value"):
                    dims[axis].Clear()
                    dims[axis].dim_value = size
            for axis, want in t.dynamic_axes.items():
                d = dims[axis]
                if d.HasField("dim_param") and d.dim_param == want:
                    continue
                if d.HasField("dim_value") and kind == "input":
                    raise ExportError(
                        f"the {exporter} exporter froze axis {axis} ({want}) of input {t.name!r} at {d.dim_value}",
                        "the graph would only accept that size; use another exporter",
                    )
                if d.HasField("dim_value"):
                    notes.append(
                        f"{exporter} declared output {t.name!r} axis {axis} as {d.dim_value}; renamed {want!r} "
                        "(validation at other sizes decides)"
                    )
                d.Clear()
                d.dim_param = want
    return notes


def _torch_args(graph: GraphSpec, example: Mapping[str, np.ndarray]) -> Tuple[Any, ...]:
    import torch

    missing = [t.name for t in graph.inputs if t.name not in example]
    if missing:
        raise ExportError(f"example inputs lack {', '.join(missing)}")
    return tuple(torch.from_numpy(np.ascontiguousarray(example[t.name])) for t in graph.inputs)


@contextlib.contextmanager
def _quiet():
    """Silence what exporters print, at the file-descriptor level: the TorchScript exporter
    dumps its IR graph to C++ stdout on failure and warns on C++ stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        sink = tempfile.TemporaryFile()
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:  # no such descriptor (embedded interpreters): nothing to silence
                pass
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        sink.close()


def _sizes_text(sizes: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sizes.items()) or "fixed shapes"


def _dynamo_error(exc: BaseException) -> str:
    """The informative line of a dynamo export error (its "Exception summary"), colours stripped."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            return "the dynamo exporter failed: " + re.sub(r"^<class '([^']+)'>: ", r"\1: ", lines[i + 1])[:400]
    return f"the dynamo exporter failed: {first_line(exc, 400)}"


def _last_line(text: str) -> str:
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1][:400] if lines else ""


def _last_json_line(text: str) -> Dict[str, Any]:
    for line in reversed((text or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {}


def timed(fn, *args: Any, **kwargs: Any) -> Tuple[Any, float]:
    """(fn(*args, **kwargs), seconds)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0
