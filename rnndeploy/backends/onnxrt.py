"""ONNX Runtime runners: ``ort-cpu``, ``ort-cuda`` (IOBinding, optional CUDA graph), ``ort-trt`` (TensorRT EP).

onnxruntime is imported only when a runner activates. Settings read from
``RunnerOptions.extra`` (all optional):

    graph_optimization_level  "disabled" | "basic" | "extended" | "all" (default "all")
    inter_op_threads          int (default 1: recurrent graphs are sequential)
    execution_mode            "sequential" (default) | "parallel"
    enable_cpu_mem_arena      bool (default True)
    enable_mem_pattern        bool (default True; forced False with a CUDA graph)
    allow_spinning            bool (default True: intra-op threads busy-wait between ops)
    optimized_model_path      str: where ORT writes the optimized graph (debugging)
    log_severity_level        int (default 3: errors only; 4 silences ORT's log)
    device_id                 int (GPU runners; default from options.device "cuda:N", else 0)
    trt_profile               ort-trt: {"min": {"batch": 1, "seq": 1}, "opt": {...}, "max": {...}}
                              (default batch 1/8/64, seq 1/128/1024, overridden by the spec's fixed dims)
    trt_cache_dir             ort-trt: engine + timing cache directory (default: no cache)
    trt_workspace_bytes       ort-trt: trt_max_workspace_size

Timing: ``ort-cpu`` — host clock around ``session.run`` (synchronous).
``ort-cuda`` / ``ort-trt`` — inputs are copied to device OrtValues in ``prepare``
(unless ``include_copies``), outputs are bound to device memory; the timed call is
``run_with_iobinding`` followed by ``synchronize_outputs``. ORT synchronises the
execution provider's stream at the end of every Run (RunOptions
``disable_synchronize_execution_providers`` is left at its default 0), so the host
clock measures the complete GPU work plus launch overhead — what a caller waits for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from rnndeploy.backends.base import ModelSource, RunDescription, Runner, RunnerOptions
from rnndeploy.errors import DeviceError, MissingDependencyError, SpecError, UsageError, first_line
from rnndeploy.optional import require
from rnndeploy.spec import numpy_dtype

OPT_LEVELS = ("disabled", "basic", "extended", "all")
DEFAULT_TRT_PROFILE = {"min": {"batch": 1, "seq": 1}, "opt": {"batch": 8, "seq": 128}, "max": {"batch": 64, "seq": 1024}}


def onnx_file_precision(path: Union[str, bytes]) -> str:
    """The precision an ONNX file (or in-memory model) computes in: a derived variant's own
    ("int8", see rnndeploy.quantize), "fp16" when it stores float16 initializers, else "fp32"."""
    import onnx

    from rnndeploy.artefacts.onnx_file import load_onnx
    from rnndeploy.quantize import variant_of

    model = load_onnx(path, external_data=False)
    variant = variant_of(model) or {}
    if isinstance(variant.get("recipe"), dict) and variant["recipe"].get("precision"):
        return str(variant["recipe"]["precision"])
    fp16 = onnx.TensorProto.FLOAT16
    return "fp16" if any(i.data_type == fp16 for i in model.graph.initializer) else "fp32"


def session_options(ort: Any, options: RunnerOptions, cuda_graph: bool = False) -> Any:
    """An ``onnxruntime.SessionOptions`` from RunnerOptions (see module docstring for extra keys)."""
    extra = dict(options.extra)
    so = ort.SessionOptions()
    level = str(extra.get("graph_optimization_level", "all"))
    if level not in OPT_LEVELS:
        raise UsageError(f"graph_optimization_level {level!r} is unknown", f"use one of {', '.join(OPT_LEVELS)}")
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if options.threads is not None:
        so.intra_op_num_threads = int(options.threads)
    so.inter_op_num_threads = int(extra.get("inter_op_threads", 1))
    mode = str(extra.get("execution_mode", "sequential"))
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_cpu_mem_arena = bool(extra.get("enable_cpu_mem_arena", True))
    so.enable_mem_pattern = False if cuda_graph else bool(extra.get("enable_mem_pattern", True))
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if extra.get("allow_spinning", True) else "0")
    if extra.get("optimized_model_path"):
        so.optimized_model_filepath = str(extra["optimized_model_path"])
    so.log_severity_level = int(extra.get("log_severity_level", 3))  # errors only: warnings would drown the tables
    return so


def profile_shapes(source: ModelSource, profile: Mapping[str, Mapping[str, int]]) -> Dict[str, str]:
    """TensorRT EP ``trt_profile_{min,opt,max}_shapes`` strings ("x:1x1x3,h0:2x1x64") from the spec."""
    graph = source.graph_spec
    out = {}
    for which in ("min", "opt", "max"):
        sizes = dict(DEFAULT_TRT_PROFILE[which])
        sizes.update(profile.get(which, {}))
        sizes.setdefault("src_seq", sizes["seq"])
        parts = []
        for t in graph.inputs:
            try:
                shape = t.shape_for(sizes)
            except SpecError as exc:
                raise UsageError(f"ort-trt profile: {exc.message}", "give its size in extra['trt_profile']") from exc
            parts.append(f"{t.name}:{'x'.join(str(s) for s in shape)}")
        out[f"trt_profile_{which}_shapes"] = ",".join(parts)
    return out


class OrtCpuRunner(Runner):
    """ONNX Runtime on the CPU execution provider."""

    backend = "ort-cpu"
    providers_wanted: Tuple[str, ...] = ("CPUExecutionProvider",)

    def __init__(self, source: ModelSource, options: Optional[RunnerOptions] = None, label: Optional[str] = None):
        super().__init__(source, options, label)
        self.model = source.onnx_model(self.label)
        self.path = self.model if isinstance(self.model, str) else "the in-memory ONNX model"
        self.session: Any = None
        self.output_names: List[str] = [t.name for t in self.graph_spec.outputs]
        self._file_precision = "fp32"
        self._precision = self.options.precision

    # lifecycle -----------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        ort = require("onnxruntime", f"the {self.label} backend")
        self._file_precision = onnx_file_precision(self.model)
        self._precision = self._effective_precision(self._file_precision)
        so = session_options(ort, self.options, cuda_graph=self.options.cuda_graph)
        providers = self._providers(ort)
        try:
            self.session = ort.InferenceSession(self.model, sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise SpecError(f"onnxruntime could not load {self.path}: {first_line(exc)}") from exc
        self._check_session(ort)

    def _deactivate_impl(self) -> None:
        self.session = None

    def _providers(self, ort: Any) -> List[Any]:
        return ["CPUExecutionProvider"]

    def _effective_precision(self, file_precision: str) -> str:
        """The precision the runner computes in: the ONNX file's own (ORT runs the graph as given)."""
        if self.options.precision == "fp16" and file_precision != "fp16":
            raise UsageError(f"{self.label} runs the ONNX file as given, and {self.path} is FP32",
                             "pass the FP16 ONNX file (rnndeploy.precision converts one), or run --precision fp32")
        return file_precision

    def _check_session(self, ort: Any) -> None:
        got_in = {i.name for i in self.session.get_inputs()}
        got_out = {o.name for o in self.session.get_outputs()}
        want_in = [t.name for t in self.graph_spec.inputs]
        missing = [n for n in want_in if n not in got_in] + [n for n in self.output_names if n not in got_out]
        if missing:
            raise SpecError(f"{self.path} lacks tensors {', '.join(missing)} that the spec declares",
                            f"the file has inputs {', '.join(sorted(got_in))} and outputs {', '.join(sorted(got_out))}")

    # inference ------------------------------------------------------------------------------------
    def _infer_impl(self, feed: Dict[str, np.ndarray]) -> Mapping[str, Any]:
        outs = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, outs))

    def _run_prepared_impl(self, prepared: Any) -> Any:
        return self.session.run(self.output_names, prepared)

    def bind_prepared(self, prepared: Any) -> Any:
        if type(self) is not OrtCpuRunner:
            return super().bind_prepared(prepared)
        # one C call per timed run: nothing of the harness between the clock reads and ORT
        return functools.partial(self.session.run, self.output_names, prepared)

    def describe(self) -> RunDescription:
        threads = self.options.threads
        if threads is None and self.session is not None:
            import os

            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return RunDescription(
            backend=self.label, device="cpu", precision=self._precision, threads=threads,
            host_device_copies=False, cuda_graph=False, timer="host",
            details={"graph_optimization_level": str(self.options.extra.get("graph_optimization_level", "all")),
                     "onnxruntime": _ort_version()},
        )


@dataclass
class _Bound:
    """What ``prepare`` hands to ``run_prepared`` on a GPU session."""

    binding: Any
    run_options: Any
    values: Dict[str, Any]  # OrtValues kept alive (device inputs, preallocated outputs)
    host_feed: Dict[str, np.ndarray]


class OrtCudaRunner(OrtCpuRunner):
    """ONNX Runtime on the CUDA execution provider with IOBinding (cuDNN runs LSTM/GRU/RNN)."""

    backend = "ort-cuda"
    provider = "CUDAExecutionProvider"

    def __init__(self, source: ModelSource, options: Optional[RunnerOptions] = None, label: Optional[str] = None):
        super().__init__(source, options, label)
        self.device_id = _device_id(self.options)
        self._graph_ids = 0

    def _activate_impl(self) -> None:
        ort = require("onnxruntime", f"the {self.label} backend")
        if self.provider not in ort.get_available_providers():
            raise MissingDependencyError("onnxruntime-gpu", "gpu", f"the {self.label} backend "
                                         f"(this onnxruntime offers {', '.join(ort.get_available_providers())})")
        from rnndeploy.doctor import probe_gpus

        gpus, err = probe_gpus()
        if not gpus:
            raise DeviceError(f"the {self.label} backend needs a CUDA GPU: {err}", "run it on a GPU machine")
        super()._activate_impl()

    def _cuda_options(self) -> Dict[str, Any]:
        opts: Dict[str, Any] = {"device_id": self.device_id}
        if self.options.cuda_graph:
            opts["enable_cuda_graph"] = "1"
        return opts

    def _providers(self, ort: Any) -> List[Any]:
        return [(self.provider, self._cuda_options()), "CPUExecutionProvider"]

    def _check_session(self, ort: Any) -> None:
        got = self.session.get_providers()
        if self.provider not in got:
            # ORT silently falls back to the CPU when the CUDA libraries fail to load.
            raise DeviceError(f"onnxruntime did not enable {self.provider} (session providers: {', '.join(got)})",
                              "check the CUDA / cuDNN libraries match this onnxruntime-gpu build")
        super()._check_session(ort)

    # inference ------------------------------------------------------------------------------------
    def _infer_impl(self, feed: Dict[str, np.ndarray]) -> Mapping[str, Any]:
        bound = self._bind(feed, copies_in_run=True)
        self.session.run_with_iobinding(bound.binding, bound.run_options)
        return self._outputs_to_host(bound)

    def _prepare_impl(self, feed: Dict[str, np.ndarray]) -> Any:
        # with a CUDA graph, the benchmark's warm-up runs capture it outside the timed region
        return self._bind(feed, copies_in_run=self.options.include_copies)

    def _run_prepared_impl(self, prepared: Any) -> Any:
        copies_in_graph = self.options.include_copies and self.options.cuda_graph
        if copies_in_graph:
            # graph replay needs fixed device buffers: the H2D copies go into them, inside the timing
            for name, arr in prepared.host_feed.items():
                prepared.values[name].update_inplace(arr)
        self.session.run_with_iobinding(prepared.binding, prepared.run_options)
        prepared.binding.synchronize_outputs()
        if copies_in_graph:
            return [prepared.values[n].numpy() for n in self.output_names]
        if self.options.include_copies:
            return prepared.binding.copy_outputs_to_cpu()
        return None

    def _bind(self, feed: Dict[str, np.ndarray], copies_in_run: bool) -> _Bound:
        ort = require("onnxruntime")
        binding = self.session.io_binding()
        run_options = ort.RunOptions()
        values: Dict[str, Any] = {}
        for name, arr in feed.items():
            if copies_in_run and not self.options.cuda_graph:
                binding.bind_cpu_input(name, arr)
            else:
                values[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", self.device_id)
                binding.bind_ortvalue_input(name, values[name])
        if self.options.cuda_graph:
            # A CUDA graph replays fixed device addresses: preallocate outputs with the shapes the spec implies.
            from rnndeploy.inputs import infer_sizes

            sizes = infer_sizes(self.graph_spec, feed)
            for t in self.graph_spec.outputs:
                try:
                    shape = t.shape_for(sizes)
                except SpecError as exc:
                    raise UsageError(f"{self.label} with a CUDA graph: {exc.message}",
                                     "the output shape must follow from the input shapes; run without --cuda-graph") from exc
                values[t.name] = ort.OrtValue.ortvalue_from_shape_and_type(list(shape), numpy_dtype(t.dtype), "cuda",
                                                                           self.device_id)
                binding.bind_ortvalue_output(t.name, values[t.name])
            self._graph_ids += 1
            # one captured graph per shape: ORT keys them by this run option
            run_options.add_run_config_entry("gpu_graph_id", str(self._graph_ids))
        else:
            for name in self.output_names:
                if copies_in_run:
                    binding.bind_output(name)
                else:
                    binding.bind_output(name, "cuda", self.device_id)
        return _Bound(binding, run_options, values, feed)

    def _outputs_to_host(self, bound: _Bound) -> Dict[str, np.ndarray]:
        if self.options.cuda_graph:
            return {n: bound.values[n].numpy() for n in self.output_names}
        return dict(zip(self.output_names, bound.binding.copy_outputs_to_cpu()))

    def describe(self) -> RunDescription:
        return RunDescription(
            backend=self.label, device=f"cuda:{self.device_id}", precision=self._precision, threads=None,
            host_device_copies=self.options.include_copies, cuda_graph=self.options.cuda_graph, timer="host",
            details={"onnxruntime": _ort_version(), "provider": self.provider,
                     "timing": "host clock around run_with_iobinding; ORT synchronises the stream after each run"},
        )


class OrtTrtRunner(OrtCudaRunner):
    """ONNX Runtime with the TensorRT execution provider (CUDA EP, then CPU, as fallbacks)."""

    backend = "ort-trt"
    provider = "TensorrtExecutionProvider"

    def _effective_precision(self, file_precision: str) -> str:
        # The TRT EP builds FP16 engines from an FP32 file itself (trt_fp16_enable).
        return "fp16" if self.options.precision == "fp16" else file_precision

    def trt_options(self) -> Dict[str, Any]:
        """The TensorRT EP provider options this runner passes (pure; unit-tested)."""
        extra = dict(self.options.extra)
        opts: Dict[str, Any] = {"device_id": self.device_id}
        if self.options.precision == "fp16":
            opts["trt_fp16_enable"] = "True"
        opts.update(profile_shapes(self.source, extra.get("trt_profile", {})))
        cache = extra.get("trt_cache_dir")
        if cache:
            opts.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                         "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache)})
        if extra.get("trt_workspace_bytes"):
            opts["trt_max_workspace_size"] = str(int(extra["trt_workspace_bytes"]))
        if self.options.cuda_graph:
            opts["trt_cuda_graph_enable"] = "True"
        return opts

    def _providers(self, ort: Any) -> List[Any]:
        return [(self.provider, self.trt_options()), ("CUDAExecutionProvider", {"device_id": self.device_id}),
                "CPUExecutionProvider"]

    def describe(self) -> RunDescription:
        from dataclasses import replace

        d = super().describe()
        return replace(d, details={**d.details, "trt_options": self.trt_options()})


def _device_id(options: RunnerOptions) -> int:
    if "device_id" in options.extra:
        return int(options.extra["device_id"])
    dev = options.device or "cuda"
    if dev.startswith("cuda:"):
        try:
            return int(dev.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"device {dev!r} is not cuda or cuda:N") from None
    if dev not in ("cuda", "gpu"):
        raise UsageError(f"device {dev!r} does not fit a GPU backend", "use cuda or cuda:N")
    return 0


def _ort_version() -> Optional[str]:
    try:
        import onnxruntime

        return str(onnxruntime.__version__)
    except ImportError:
        return None
