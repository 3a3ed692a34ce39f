"""Backend registry: name -> lazily imported Runner class.

Importing this package imports neither torch, onnxruntime nor TensorRT; a backend's
module and its dependency are imported only when that backend is asked for, and a
missing dependency raises MissingDependencyError naming the pip extra.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

from rnndeploy.backends.base import (
    HostTimer,
    ModelSource,
    RunDescription,
    Runner,
    RunnerOptions,
    Timer,
    check_feed,
)
from rnndeploy.errors import MissingDependencyError, UsageError
from rnndeploy.optional import available
from rnndeploy.validation import MAX_THREADS

__all__ = [
    "BACKENDS",
    "Backend",
    "HostTimer",
    "ModelSource",
    "RunDescription",
    "Runner",
    "RunnerOptions",
    "Timer",
    "available_backends",
    "backend_availability",
    "default_backends",
    "runnable_backends",
    "check_feed",
    "create_runner",
    "natural_options",
    "model_source",
    "run_onnx_model",
    "BackendLabel",
    "runner_class",
]


@dataclass(frozen=True)
class Backend:
    """A registry entry.

    Attributes:
        target: "module:Class" of the Runner subclass.
        module: the third-party module it needs (checked before importing ``target``).
        extra: the pip extra providing ``module``.
        artefact: what it runs: "onnx", "engine", "torch" (checkpoint or user module) or "keras".
        gpu: needs a CUDA device.
        env: environment defaults set (unless already set) before ``module`` is imported.
    """

    target: str
    module: str
    extra: str
    artefact: str
    gpu: bool = False
    env: Tuple[Tuple[str, str], ...] = ()


BACKENDS: Dict[str, Backend] = {
    "torch": Backend("rnndeploy.backends.torch_runner:TorchRunner", "torch", "train", "torch"),
    "ort-cpu": Backend("rnndeploy.backends.onnxrt:OrtCpuRunner", "onnxruntime", "cpu", "onnx"),
    "ort-cuda": Backend("rnndeploy.backends.onnxrt:OrtCudaRunner", "onnxruntime", "gpu", "onnx", gpu=True),
    "ort-trt": Backend("rnndeploy.backends.onnxrt:OrtTrtRunner", "onnxruntime", "gpu", "onnx", gpu=True),
    "trt": Backend("rnndeploy.backends.tensorrt:TensorRTRunner", "tensorrt", "gpu", "engine", gpu=True),
    "onnx-ref": Backend("rnndeploy.backends.onnxref:OnnxReferenceRunner", "onnx", "cpu", "onnx"),
    "openvino": Backend("rnndeploy.backends.openvino_runner:OpenVinoRunner", "openvino", "openvino", "onnx"),
    # Keras 3 picks its backend at import; torch is the one rnndeploy installs (no TensorFlow)
    "keras": Backend("rnndeploy.backends.keras_runner:KerasRunner", "keras", "keras-runtime", "keras",
                     env=(("KERAS_BACKEND", "torch"),)),
}


SPLIT_BATCH_BACKENDS = ("openvino",)  # runners that read extra["split_batch"] (label modifier sN)


def runner_class(name: str) -> Type[Runner]:
    """The Runner subclass registered as ``name``.

    Raises:
        UsageError: unknown backend name (lists the known ones).
        MissingDependencyError: the backend's package is not installed (names the extra).
    """
    entry = BACKENDS.get(name)
    if entry is None:
        raise UsageError(f"backend {name!r} is unknown", f"use one of {', '.join(BACKENDS)}")
    for key, value in entry.env:
        os.environ.setdefault(key, value)
    try:
        importlib.import_module(entry.module)
    except ImportError as exc:
        raise MissingDependencyError(entry.module, entry.extra, f"the {name} backend") from exc
    module_name, attr = entry.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UsageError(f"backend {name!r} is not part of this rnndeploy build ({module_name} is missing)",
                         f"use one of {', '.join(n for n in BACKENDS if n != name)}") from exc
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise TypeError(f"{entry.target} is not a Runner subclass")
    return cls


@dataclass(frozen=True)
class BackendLabel:
    """A backend as named on the command line: a registry name optionally followed by
    ``:``-separated modifiers, so one run can hold several configurations of the same
    backend side by side. The label text names the runner's rows and cases.

        torch            the backend as configured by the run's options
        torch:fp16       FP16 (torch: autocast on CUDA / .half() on CPU; ort-trt, trt: FP16 kernels)
        openvino:bf16    bf16 (OpenVINO on a CPU with AVX-512 BF16 / AMX; plain openvino is FP32)
        torch:fp16:half  FP16 by .half() (``autocast`` selects autocast)
        torch:graph      CUDA graph capture and replay (``nograph`` turns it off)
        ort-cpu:t1       one intra-op thread (``tN``: N threads)
        openvino:s2      each batch cut in 2 parts run at once on 2 streams (``sN``; openvino only)
        ort-cuda:copies  timings include host↔device copies

    Attributes:
        text: the label as given, e.g. "torch:fp16:graph".
        name: the registry name, e.g. "torch".
        changes: the RunnerOptions fields the modifiers set (``extra`` merged into the options' extra).
    """

    text: str
    name: str
    changes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> BackendLabel:
        """Raises UsageError for an unknown backend or modifier."""
        name, *mods = str(text).split(":")
        if name not in BACKENDS:
            raise UsageError(f"backend {name!r} is unknown", f"use one of {', '.join(BACKENDS)}")
        changes: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for m in mods:
            if m in ("fp16", "fp32", "bf16"):
                changes["precision"] = m
            elif m in ("graph", "nograph"):
                changes["cuda_graph"] = m == "graph"
            elif m in ("copies", "nocopies"):
                changes["include_copies"] = m == "copies"
            elif m in ("half", "autocast"):
                extra["fp16_mode"] = m
            elif len(m) > 1 and m[0] == "t" and m[1:].isdigit() and 0 < int(m[1:]) <= MAX_THREADS:
                changes["threads"] = int(m[1:])
            elif len(m) > 1 and m[0] == "s" and m[1:].isdigit() and 2 <= int(m[1:]) <= MAX_THREADS:
                if name not in SPLIT_BATCH_BACKENDS:
                    raise UsageError(f"backend label {text!r}: modifier {m!r} (batch split over streams) is for "
                                     f"{', '.join(SPLIT_BATCH_BACKENDS)} only", f"drop {m!r}")
                extra["split_batch"] = int(m[1:])
            else:
                raise UsageError(f"backend label {text!r}: modifier {m!r} is unknown",
                                 f"modifiers: fp16, fp32, bf16, half, autocast, graph, nograph, copies, nocopies, "
                                 f"tN (threads, 1 <= N <= {MAX_THREADS}), sN (openvino: batch over N streams, "
                                 f"2 <= N <= {MAX_THREADS})")
        if extra:
            changes["extra"] = extra
        return cls(str(text), name, changes)

    @classmethod
    def lookup(cls, text: str) -> Optional[BackendLabel]:
        """``parse`` for a label whose name may be outside the registry: None then (a test's
        or a script's own runner factory serves such names)."""
        return cls.parse(text) if str(text).split(":")[0] in BACKENDS else None

    @property
    def entry(self) -> Backend:
        return BACKENDS[self.name]

    @property
    def runs_torch(self) -> bool:
        """The backend runs the PyTorch module itself (a checkpoint or user module)."""
        return self.entry.artefact == "torch"

    def apply(self, options: RunnerOptions) -> RunnerOptions:
        """``options`` with this label's modifiers applied."""
        if not self.changes:
            return options
        changes = dict(self.changes)
        extra = {**options.extra, **changes.pop("extra", {})}
        return replace(options, extra=extra, **changes)

    def natural_options(self, options: RunnerOptions) -> RunnerOptions:
        """``options`` on the device this backend runs on: a GPU backend given no device
        (or cpu) gets "cuda"; an ONNX or engine backend on the CPU gets "cpu"; torch keeps
        the device asked for (None = its own choice)."""
        entry = self.entry
        if entry.gpu and options.device in (None, "cpu"):
            return replace(options, device="cuda")
        if not entry.gpu and entry.artefact != "torch" and options.device not in (None, "cpu"):
            return replace(options, device="cpu")
        return options

    def __str__(self) -> str:
        return self.text


def natural_options(label: str, options: RunnerOptions) -> RunnerOptions:
    """``BackendLabel.natural_options`` for a label; a name the registry does not know (a
    test's or a script's own runner factory serves it) keeps ``options`` as they are."""
    parsed = BackendLabel.lookup(label)
    return options if parsed is None else parsed.natural_options(options)


def create_runner(name: str, source: ModelSource, options: Optional[RunnerOptions] = None) -> Runner:
    """Instantiate (not activate) the runner for backend ``name`` — a registry name or a
    label with modifiers (see ``BackendLabel``); the runner carries the label."""
    label = BackendLabel.parse(name)
    return runner_class(label.name)(source, label.apply(options or RunnerOptions()), label=label.text)


def model_source(model: Any) -> ModelSource:
    """A ModelSource for an in-memory ``onnx.ModelProto``, with the spec of the graph as it is
    (its declared inputs and outputs: an FP16 graph takes float16 inputs), not its metadata's."""
    from rnndeploy.spec import spec_from_onnx_io

    return ModelSource(spec_from_onnx_io(model), onnx_bytes=model.SerializeToString())


def run_onnx_model(model: Any, feeds: Mapping[str, Any], backend: str = "ort-cpu",
                   options: Optional[RunnerOptions] = None) -> Dict[str, Any]:
    """Outputs (name → array) of an in-memory ONNX model on ``feeds``, through the runner of
    ``backend`` (default ort-cpu; "onnx-ref" needs only onnx): how checks that build or
    rewrite a graph in memory run it, without writing a file."""
    with create_runner(backend, model_source(model), options) as runner:
        return runner.infer(dict(feeds))


def available_backends() -> List[str]:
    """Backends whose package is importable here (a GPU is not checked)."""
    return [n for n, b in BACKENDS.items() if available(b.module)]


def runnable_backends(source: Optional[ModelSource] = None) -> List[str]:
    """Backends that can run here (package, GPU, ORT provider) — and on ``source``'s artefacts.

    For a demo or CI step that should check "whatever this machine has". Imports
    onnxruntime (to list its providers) but never creates a TensorRT runtime.
    """
    return [n for n, why in backend_availability(source).items() if why is None]


# Backends never chosen by default: name them to run them.
NOT_BY_DEFAULT = {"onnx-ref": "onnx's reference evaluator is slow (pure numpy): name it with --backend onnx-ref"}


def default_backends(source: Optional[ModelSource] = None) -> Tuple[List[str], Dict[str, str]]:
    """(backends to run, {skipped backend: why}) when the user names none: every backend
    that can run here on ``source``'s artefacts, except those in NOT_BY_DEFAULT."""
    chosen: List[str] = []
    skipped: Dict[str, str] = {}
    for name, why in backend_availability(source).items():
        why = why or NOT_BY_DEFAULT.get(name)
        if why is None:
            chosen.append(name)
        else:
            skipped[name] = why
    return chosen, skipped


def backend_availability(source: Optional[ModelSource] = None) -> Dict[str, Optional[str]]:
    """Every registered backend → None when it can run here (on ``source``'s artefacts), else why not."""
    from rnndeploy.environment import probe_gpus

    names = available_backends()
    gpu_err: Optional[str] = None
    if any(BACKENDS[n].gpu for n in names):
        gpus, err = probe_gpus()
        gpu_err = None if gpus else f"no CUDA GPU ({err})"
    providers: List[str] = []
    if "ort-cpu" in names:
        try:
            import onnxruntime

            providers = list(onnxruntime.get_available_providers())
        except ImportError:  # pragma: no cover - available() said it was there
            providers = []
    need_provider = {"ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}
    missing_artefact = {"torch": "no checkpoint or module given", "onnx": "no ONNX file given",
                        "engine": "no TensorRT engine given (--engine)", "keras": "no Keras model given (--keras)"}
    out: Dict[str, Optional[str]] = {}
    for n, b in BACKENDS.items():
        if n not in names:
            out[n] = f"{b.module} is not installed (pip install 'rnndeploy[{b.extra}]')"
        elif b.gpu and gpu_err:
            out[n] = gpu_err
        elif n in need_provider and need_provider[n] not in providers:
            out[n] = f"this onnxruntime has no {need_provider[n]}"
        elif source is not None and not {"torch": bool(source.checkpoint or source.module),
                                         "onnx": bool(source.onnx or source.onnx_bytes),
                                         "engine": bool(source.engine), "keras": bool(source.keras)}[b.artefact]:
            out[n] = missing_artefact[b.artefact]
        else:
            out[n] = None
    return out
