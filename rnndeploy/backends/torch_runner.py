"""The ``torch`` runner: an rnndeploy checkpoint or a user module, CPU or CUDA, FP32 or FP16.

Torch side (needs torch). What it runs:

- a checkpoint directory: ``rnndeploy.checkpoint.load_model(dir).model.graph_module(graph, with_state)``;
- a user module ``path/to/file.py:factory``: ``factory()`` returns an ``nn.Module`` whose
  forward takes the graph's inputs positionally (spec order) and returns one tensor or
  a tuple in spec output order; loaded by rnndeploy.artefacts.user_module (its folder on
  sys.path, exactly as export loads it).

Settings (RunnerOptions): ``device`` "cpu" (default) / "cuda" / "cuda:N"; ``threads``
(torch.set_num_threads, restored on deactivate); ``precision`` "fp16" with
``extra["fp16_mode"]`` "autocast" (default on CUDA) or "half" (default on CPU, where
autocast has no FP16 LSTM); ``cuda_graph`` captures one CUDA graph per input shape
(static input buffers, replayed by ``run_prepared``). On CUDA, TF32 is switched off
while the runner is active (``extra["tf32"]=True`` keeps it on) so FP32 means FP32.

Timing: CPU — host clock (torch CPU ops are synchronous). CUDA — CUDA events recorded
on the current stream around the calls (TorchCudaTimer); inputs are moved to the
device in ``prepare`` unless ``include_copies``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from rnndeploy.artefacts.user_module import load_user_module
from rnndeploy.backends.base import ModelSource, RunDescription, Runner, RunnerOptions, Timer
from rnndeploy.errors import DeviceError, UsageError
from rnndeploy.optional import require

_CUDA_GRAPH_WARMUP = 3  # eager runs on a side stream before capture, as torch.cuda.graphs recommends


class TorchCudaTimer(Timer):
    """CUDA events on the current stream: start, ``number`` calls, end, wait on end."""

    kind = "cuda-event"

    def __init__(self, torch: Any):
        self.torch = torch

    def measure(self, fn: Callable[[], Any], number: int = 1) -> float:
        start = self.torch.cuda.Event(enable_timing=True)
        end = self.torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(number):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


class _Static:
    """Device buffers and the captured graph of one input shape."""

    def __init__(self, inputs: List[Any], outputs: Any, graph: Any):
        self.inputs = inputs
        self.outputs = outputs
        self.graph = graph
        self.host_feed: Optional[Dict[str, Any]] = None  # include_copies: copied into ``inputs`` on each run


class TorchRunner(Runner):
    """PyTorch eager (optionally CUDA-graph) execution of a checkpoint or user module."""

    backend = "torch"

    def __init__(self, source: ModelSource, options: Optional[RunnerOptions] = None, label: Optional[str] = None,
                 module: Any = None):
        """``module``: an in-memory ``nn.Module`` to run instead of loading ``source``'s checkpoint
        or module file (e.g. ``zoo_model.graph_module(graph)`` in a benchmark script)."""
        super().__init__(source, options, label)
        self._given = module
        if module is None and not (source.checkpoint or source.module):
            source.need("checkpoint", self.label)
        self.torch: Any = None
        self.module: Any = None
        self.device: Any = None
        self._saved_threads: Optional[int] = None
        self._saved_tf32: Optional[Tuple[bool, bool]] = None
        self.fp16_mode: Optional[str] = None

    # lifecycle -------------------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        torch = self.torch = require("torch", "the torch runner")
        dev = self.options.device or "cpu"
        if dev.startswith("cuda"):
            if not torch.cuda.is_available():
                raise DeviceError(f"torch cannot see a CUDA device (device {dev!r} requested)",
                                  "run on a GPU machine with a CUDA build of torch, or use --device cpu")
        elif dev != "cpu":
            raise UsageError(f"device {dev!r} is not cpu, cuda or cuda:N")
        if self.options.cuda_graph and not dev.startswith("cuda"):
            raise UsageError("--cuda-graph needs a CUDA device", "add --device cuda")
        self.device = torch.device(dev)
        if self.device.type == "cuda":
            # cuDNN runs FP32 RNNs in TF32 on Ampere+ by default (cudnn.allow_tf32=True): ~1e-3 relative
            # error, which would make an "FP32" reference no better than FP16. Off unless asked for.
            self._saved_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            tf32 = bool(self.options.extra.get("tf32", False))
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
        if self.options.threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(int(self.options.threads))
        module = self._load()
        if self.options.precision == "fp16":
            self.fp16_mode = str(self.options.extra.get("fp16_mode") or ("autocast" if self.device.type == "cuda" else "half"))
            if self.fp16_mode not in ("autocast", "half"):
                raise UsageError(f"fp16_mode {self.fp16_mode!r} is unknown", "use autocast or half")
            if self.fp16_mode == "half":
                module = module.half()
        self.module = module.to(self.device).eval()

    def _deactivate_impl(self) -> None:
        if self._saved_tf32 is not None:
            self.torch.backends.cudnn.allow_tf32, self.torch.backends.cuda.matmul.allow_tf32 = self._saved_tf32
            self._saved_tf32 = None
        if self._saved_threads is not None:
            self.torch.set_num_threads(self._saved_threads)
            self._saved_threads = None
        self.module = None

    def _load(self) -> Any:
        if self._given is not None:
            return self._given
        if self.source.checkpoint:
            from rnndeploy.checkpoint import load_model

            loaded = load_model(self.source.checkpoint)
            return loaded.model.graph_module(self.source.graph, self.source.with_state)
        return load_user_module(self.source.module or "", option="--module")

    # inference ------------------------------------------------------------------------------------
    def _to_tensors(self, feed: Mapping[str, Any]) -> List[Any]:
        torch = self.torch
        out = []
        for t in self.graph_spec.inputs:
            x = feed[t.name]
            x = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
            if self.fp16_mode == "half" and x.is_floating_point():
                x = x.half()
            out.append(x.to(self.device, non_blocking=True))
        return out

    def _forward(self, tensors: List[Any]) -> Any:
        torch = self.torch
        with torch.inference_mode():
            if self.fp16_mode == "autocast":
                with torch.autocast(device_type=self.device.type, dtype=torch.float16):
                    return self.module(*tensors)
            return self.module(*tensors)

    def _as_dict(self, out: Any) -> Dict[str, np.ndarray]:
        outs = out if isinstance(out, (tuple, list)) else (out,)
        names = [t.name for t in self.graph_spec.outputs]
        if len(outs) != len(names):
            raise UsageError(f"the torch module returned {len(outs)} outputs, the spec declares {len(names)} "
                             f"({', '.join(names)})", "return a tuple in spec output order")
        result = {}
        for t, v in zip(self.graph_spec.outputs, outs):
            arr = v.detach().to("cpu")
            if arr.is_floating_point() and t.dtype == "float32":
                arr = arr.float()  # FP16 runs are compared in the spec's dtype
            result[t.name] = arr.numpy()
        return result

    def _infer_impl(self, feed: Dict[str, np.ndarray]) -> Mapping[str, Any]:
        if self.options.cuda_graph:
            static = self._capture(feed)
            static.graph.replay()
            self.torch.cuda.synchronize(self.device)
            return self._as_dict(static.outputs)
        return self._as_dict(self._forward(self._to_tensors(feed)))

    def _prepare_impl(self, feed: Dict[str, np.ndarray]) -> Any:
        if self.options.cuda_graph:
            # a graph replays fixed device buffers: with include_copies the host inputs are
            # copied into them (and the outputs out) around each replay, inside the timing
            static = self._capture(feed)
            static.host_feed = feed if self.options.include_copies else None
            return static
        if self.options.include_copies:
            return feed
        return self._to_tensors(feed)

    def _run_prepared_impl(self, prepared: Any) -> Any:
        if isinstance(prepared, _Static):
            if prepared.host_feed is not None:
                for t, dst in zip(self.graph_spec.inputs, prepared.inputs):
                    dst.copy_(self.torch.from_numpy(np.ascontiguousarray(prepared.host_feed[t.name])), non_blocking=True)
            prepared.graph.replay()
            if prepared.host_feed is not None:
                outs = prepared.outputs if isinstance(prepared.outputs, (tuple, list)) else (prepared.outputs,)
                return [o.cpu() for o in outs]
            return prepared.outputs
        if isinstance(prepared, dict):  # include_copies: host arrays in, host arrays out
            out = self._forward(self._to_tensors(prepared))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            return [o.cpu() for o in outs]
        return self._forward(prepared)

    def _capture(self, feed: Mapping[str, Any]) -> _Static:
        torch = self.torch
        static_in = self._to_tensors(feed)
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(_CUDA_GRAPH_WARMUP):
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        return _Static(static_in, static_out, graph)

    def timer(self) -> Timer:
        if self.device is not None and self.device.type == "cuda":
            return TorchCudaTimer(self.torch)
        return super().timer()

    def describe(self) -> RunDescription:
        torch = self.torch
        dev = "cpu"
        details: Dict[str, Any] = {"torch": getattr(torch, "__version__", None), "eager": not self.options.cuda_graph}
        if self.device is not None and self.device.type == "cuda":
            idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
            dev = f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
            details["cudnn"] = torch.backends.cudnn.version()
            details["tf32"] = bool(self.options.extra.get("tf32", False))
        if self.fp16_mode:
            details["fp16_mode"] = self.fp16_mode
        details["source"] = "in-memory" if self._given is not None else ("checkpoint" if self.source.checkpoint else "module")
        threads = torch.get_num_threads() if torch is not None and dev == "cpu" else None
        return RunDescription(
            backend=self.label, device=dev, precision=self.options.precision, threads=threads,
            host_device_copies=bool(self.options.include_copies and dev != "cpu"),
            cuda_graph=bool(self.options.cuda_graph), timer="cuda-event" if dev != "cpu" else "host", details=details,
        )
