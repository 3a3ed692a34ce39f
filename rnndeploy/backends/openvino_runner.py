"""``openvino``: OpenVINO on the CPU, reading the ONNX file directly.

Precision is explicit. OpenVINO's CPU plugin computes in bf16 by default on CPUs with
AVX-512 BF16 or AMX (measured here: max abs differences 1e-2…3e-1 on the zoo models,
~1e-6 with the f32 hint), so this runner always sets ``INFERENCE_PRECISION_HINT``:

    openvino         FP32 ("f32")
    openvino:bf16    bf16 — refused on a CPU without native bf16 (AVX-512 BF16 or AMX)

and ``describe()`` reports the precision the compiled model says it uses.

Before compiling, the model goes through the rewrites OpenVINO needs
(rnndeploy.graph.normalize): layout=1 recurrent nodes → layout=0 (OpenVINO ignores
``layout`` and returns wrong values and shapes) and a no-op ``clip`` on recurrent nodes
with ``sequence_lens`` (OpenVINO ignores the lengths otherwise). Both were measured on
OpenVINO 2026.4.1; the rewrites are listed in ``describe().details["rewrites"]``.
What no rewrite fixes (LSTM peepholes, input_forget, other activations) is in
``rnndeploy normalize``'s compatibility table, and parity catches it.

Settings read from ``RunnerOptions.extra`` (all optional):

    performance_hint   "LATENCY" (default) | "THROUGHPUT"
    num_streams        int (default: OpenVINO's choice for the hint; 1 for LATENCY)
    split_batch        int N ≥ 2 (label modifier ``sN``, e.g. ``openvino:s2``): each call's
                       batch is cut into N parts run at once on N streams (THROUGHPUT hint,
                       N infer requests in flight, one thread each unless ``threads`` says
                       otherwise), the outputs joined on their batch axes. A recurrent step
                       then never waits for another core: measured here (2-core AMD EPYC,
                       benchmarks/results/cpu_explore.md), the char-LM GRU at batch ≥ 32 in FP32
                       took 0.56-0.68× ONNX Runtime's defaults this way and 1.25-1.43× on one
                       stream; the smallest LSTMs were slower split than not.

Timing: host clock around ``InferRequest.infer`` on a prepared request with inputs and
outputs shared with numpy (no copies inside the timed call); synchronous. With
``split_batch``: around starting the N requests, waiting for all, and joining the outputs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from rnndeploy.backends.base import ModelSource, RunDescription, Runner, RunnerOptions
from rnndeploy.errors import DeviceError, SpecError, first_line
from rnndeploy.optional import require

HINTS = {"fp32": "f32", "bf16": "bf16"}


def cpu_has_native_bf16(core: Any = None) -> Tuple[bool, str]:
    """(whether the CPU computes bf16 natively, what told us): OpenVINO's CPU capabilities
    when a Core is given, else /proc/cpuinfo flags (avx512_bf16, amx_bf16)."""
    if core is not None:
        try:
            caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
            return "BF16" in caps, f"OpenVINO CPU capabilities: {', '.join(caps)}"
        except Exception:  # older plugins: fall through to the flags
            pass
    from rnndeploy.environment import cpu_flags

    flags = cpu_flags()
    if not flags:
        return False, "/proc/cpuinfo is not readable"
    have = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return bool(have), f"CPU flags: {', '.join(have) or 'neither avx512_bf16 nor amx_bf16'}"


class OpenVinoRunner(Runner):
    """OpenVINO's CPU plugin on the ONNX file (see module docstring)."""

    backend = "openvino"
    precisions = ("fp32", "bf16")

    def __init__(self, source: ModelSource, options: Optional[RunnerOptions] = None, label: Optional[str] = None):
        super().__init__(source, options, label)
        self.model = source.onnx_model(self.label)
        self.output_names: List[str] = [t.name for t in self.graph_spec.outputs]
        self.compiled: Any = None
        self.request: Any = None
        self._ports: Dict[str, Any] = {}
        self._rewrites: List[str] = []
        self._ignored: List[str] = []
        self._precision = self.options.precision
        self._threads: Optional[int] = self.options.threads
        self._split = int(self.options.extra.get("split_batch", 1) or 1)
        self.requests: List[Any] = []  # split_batch's infer requests, one per stream
        self._batch_axes = {t.name: t.dims.index("batch") if "batch" in t.dims else None
                            for t in list(self.graph_spec.inputs) + list(self.graph_spec.outputs)}

    # lifecycle -----------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        ov = require("openvino", f"the {self.label} backend")
        core = ov.Core()
        if self.options.precision == "bf16":
            native, why = cpu_has_native_bf16(core)
            if not native:
                raise DeviceError(f"{self.backend}:bf16 needs a CPU with native bf16 (AVX-512 BF16 or AMX); {why}",
                                  f"run {self.backend} (FP32) instead")
        model = self._read(ov, core)
        extra = dict(self.options.extra)
        config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[self.options.precision],
                                  "PERFORMANCE_HINT": str(extra.get("performance_hint", "LATENCY"))}
        if self.options.threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(self.options.threads)
        if extra.get("num_streams") is not None:
            config["NUM_STREAMS"] = int(extra["num_streams"])
        if self._split > 1:
            config.update({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self._split,
                           "INFERENCE_NUM_THREADS": int(self.options.threads or self._split)})
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its own message for unsupported graphs
            raise SpecError(f"OpenVINO could not compile {self._where()}: {_ov_message(exc)}") from exc
        self._precision = {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16"}.get(
            _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT")), self.options.precision)
        self._threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS")) or self.options.threads
        self._ports = {}
        for port in self.compiled.outputs:
            for name in port.get_names():
                self._ports[name] = port
        missing = [n for n in self.output_names if n not in self._ports]
        inputs = {n for port in self.compiled.inputs for n in port.get_names()}
        # an input OpenVINO pruned is one it ignores (measured: an LSTM's peephole input P); it is
        # not fed, the description says so, and parity shows what ignoring it costs
        self._ignored = [t.name for t in self.graph_spec.inputs if t.name not in inputs]
        if missing:
            raise SpecError(f"{self._where()} lacks tensors {', '.join(missing)} that the spec declares",
                            f"OpenVINO sees inputs {', '.join(sorted(inputs))} and outputs {', '.join(sorted(self._ports))}")
        self.request = self.compiled.create_infer_request()
        self.requests = [self.compiled.create_infer_request() for _ in range(self._split)] if self._split > 1 else []

    def _read(self, ov: Any, core: Any) -> Any:
        """The ov.Model, after the rewrites OpenVINO needs (held in memory; the file is untouched)."""
        import os

        import onnx
        from onnx.external_data_helper import load_external_data_for_model

        from rnndeploy.artefacts.onnx_file import load_onnx
        from rnndeploy.graph.normalize import NormalizeOptions, normalize

        proto = load_onnx(self.model)
        result = normalize(proto, NormalizeOptions(layout=True, fold=False, openvino=True))
        self._rewrites = [r.text for r in result.rewrites]
        try:
            if not result.changed and isinstance(self.model, str):
                return core.read_model(self.model)  # external data resolves beside the file
            if isinstance(self.model, str) and any(t.data_location == onnx.TensorProto.EXTERNAL
                                                   for t in result.model.graph.initializer):
                load_external_data_for_model(result.model, os.path.dirname(os.path.abspath(self.model)))
            return core.read_model(result.model.SerializeToString())
        except Exception as exc:
            raise SpecError(f"OpenVINO could not read {self._where()}: {_ov_message(exc)}") from exc

    def _deactivate_impl(self) -> None:
        self.request = None
        self.requests = []
        self.compiled = None

    # inference ------------------------------------------------------------------------------------
    def _infer_impl(self, feed: Dict[str, np.ndarray]) -> Mapping[str, Any]:
        for name in self._ignored:
            feed.pop(name, None)
        if self.requests:
            return self._run_split(self._parts(feed))
        res = self.request.infer(feed)
        return {n: np.array(res[self._ports[n]]) for n in self.output_names}

    def _prepare_impl(self, feed: Dict[str, np.ndarray]) -> Any:
        feed = {k: np.ascontiguousarray(v) for k, v in feed.items() if k not in self._ignored}
        return _Split(self._parts(feed)) if self.requests else feed

    def _run_prepared_impl(self, prepared: Any) -> Any:
        if isinstance(prepared, _Split):
            return self._run_split(prepared.parts)
        return self.request.infer(prepared, share_inputs=True, share_outputs=True)

    def _parts(self, feed: Mapping[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """The feed cut on each input's batch axis into at most ``split_batch`` non-empty parts
        (an input without a batch axis goes whole to every part)."""
        axes = self._batch_axes
        batch = next((v.shape[axes[k]] for k, v in feed.items() if axes.get(k) is not None), 1)
        parts = min(self._split, max(1, int(batch)))
        return [{k: np.ascontiguousarray(np.array_split(v, parts, axis=axes[k])[i]) if axes.get(k) is not None else v
                 for k, v in feed.items()} for i in range(parts)]

    def _run_split(self, parts: List[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Every part in flight at once on its own request; outputs joined on their batch axes."""
        requests = self.requests[:len(parts)]
        for req, part in zip(requests, parts):
            req.start_async(part, share_inputs=True)
        for req in requests:
            req.wait()
        out = {}
        for name in self.output_names:
            pieces = [req.get_tensor(self._ports[name]).data for req in requests]
            axis = self._batch_axes[name]
            out[name] = np.concatenate(pieces, axis=axis) if axis is not None else np.array(pieces[0])
        return out

    def describe(self) -> RunDescription:
        details: Dict[str, Any] = {"openvino": _ov_version(), "device": "CPU",
                                   "inference_precision": HINTS.get(self._precision, self._precision),
                                   "performance_hint": "THROUGHPUT" if self._split > 1 else
                                   str(self.options.extra.get("performance_hint", "LATENCY"))}
        if self._split > 1:
            details["split_batch"] = self._split
        if self._rewrites:
            details["rewrites"] = list(self._rewrites)
        if self._ignored:
            details["ignored_inputs"] = list(self._ignored)
        return RunDescription(backend=self.label, device="cpu", precision=self._precision, threads=self._threads,
                              host_device_copies=False, cuda_graph=False, timer="host", details=details)

    def _where(self) -> str:
        return self.model if isinstance(self.model, str) else "the in-memory ONNX model"


class _Split:
    """A prepared feed for ``split_batch``: one input dict per stream."""

    def __init__(self, parts: List[Dict[str, np.ndarray]]):
        self.parts = parts


def _type_name(t: Any) -> str:
    """"f32" / "bf16" from an ov.Type (whose str is e.g. "<Type: 'float32'>")."""
    for attr in ("get_type_name", "to_string"):
        fn = getattr(t, attr, None)
        if callable(fn):
            try:
                return str(fn())
            except Exception:  # an API that exists but fails: try the next
                continue
    text = str(t)
    return text.split("'")[1] if "'" in text else text


def _ov_message(exc: BaseException) -> str:
    # OpenVINO prefixes messages with source locations over several lines; the last line says what is wrong
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful[-1] if useful else first_line(exc))[:400]


def _ov_version() -> Optional[str]:
    try:
        import openvino

        return str(openvino.get_version())
    except ImportError:
        return None
