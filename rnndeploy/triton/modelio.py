"""The inputs and outputs of a model file as a Triton backend will see them.

Triton's onnxruntime backend reads the ONNX graph's declared inputs/outputs; its tensorrt
backend reads the engine's I/O tensors (recorded by ``build-engine`` in the sidecar,
``model.plan.json``, including the dtypes TensorRT chose: TensorRT 8.6 has no int64 I/O, so
int64 token ids become int32 there). Every config rule is checked against this view, never
against what the spec hopes the file holds.

The batch axis of a tensor is the axis named ``batch`` (the rnndeploy spec convention and
the ONNX ``dim_param`` rnndeploy export writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from rnndeploy.errors import UsageError

BATCH = "batch"
ONNX_PLATFORM = "onnxruntime_onnx"
TRT_PLATFORM = "tensorrt_plan"
PYTHON_BACKEND = "python"
MODEL_FILES = {ONNX_PLATFORM: "model.onnx", TRT_PLATFORM: "model.plan", PYTHON_BACKEND: "model.py"}


@dataclass(frozen=True)
class IoTensor:
    """One input or output of a model file.

    Attributes:
        name: tensor name.
        dtype: numpy-style name ("float32", "int64", "uint64", "bool", ...).
        shape: declared shape, -1 for every dynamic axis.
        batch_axis: index of the axis named "batch", or None.
    """

    name: str
    dtype: str
    shape: Tuple[int, ...]
    batch_axis: Optional[int] = None

    @property
    def batch_first(self) -> bool:
        return self.batch_axis == 0 and len(self.shape) > 0 and self.shape[0] == -1


@dataclass(frozen=True)
class ModelIO:
    """Inputs, outputs and (TensorRT) optimization profiles of one model file."""

    platform: str
    inputs: Tuple[IoTensor, ...]
    outputs: Tuple[IoTensor, ...]
    profiles: Tuple[Any, ...] = ()  # rnndeploy.engine.profiles.Profile, TensorRT only

    def input(self, name: str) -> Optional[IoTensor]:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> Optional[IoTensor]:
        return next((t for t in self.outputs if t.name == name), None)


def _batch_axis(dims: Sequence[Any], spec_dims: Optional[Sequence[Any]]) -> Optional[int]:
    for source in (dims, spec_dims or ()):
        if BATCH in list(source):
            return list(source).index(BATCH)
    return None


def onnx_io(path_or_model: Any, spec_graph: Any = None) -> ModelIO:
    """The declared I/O of an ONNX file or ``onnx.ModelProto`` (initializers excluded).

    The batch axis comes from the ONNX ``dim_param`` names, else from ``spec_graph`` (a
    GraphSpec), else from the rnndeploy spec in the file's metadata."""
    from rnndeploy.onnx_info import describe_onnx

    info = describe_onnx(path_or_model)
    if spec_graph is None and info.spec is not None:
        spec = info.model_spec
        spec_graph = spec.graph(info.graph or next(iter(spec.graphs)))
    by_name: Dict[str, Any] = {}
    if spec_graph is not None:
        by_name = {t.name: t.dims for t in tuple(spec_graph.inputs) + tuple(spec_graph.outputs)}

    def tensor(t: Any) -> IoTensor:
        shape = tuple(d if isinstance(d, int) else -1 for d in t.dims)
        return IoTensor(t.name, t.dtype, shape, _batch_axis(t.dims, by_name.get(t.name)))

    return ModelIO(ONNX_PLATFORM, tuple(tensor(t) for t in info.inputs), tuple(tensor(t) for t in info.outputs))


def engine_io(path: str) -> Tuple[ModelIO, Mapping[str, Any]]:
    """The I/O and profiles of a TensorRT engine, from its sidecar (no TensorRT, no GPU needed).
    Returns (io, sidecar data).

    Raises:
        EngineFileError: no sidecar, or one that does not match the engine file.
        UsageError: a sidecar without the I/O record (an engine built by an older rnndeploy).
    """
    from rnndeploy.engine.profiles import Profile
    from rnndeploy.engine.sidecar import check_engine_bytes, read_sidecar
    from rnndeploy.spec import ModelSpec

    side = read_sidecar(path, required=True)
    assert side is not None  # required=True raises instead
    check_engine_bytes(path, side)
    io = side.data.get("io")
    if not isinstance(io, list) or not io:
        raise UsageError(f"engine sidecar {path}.json records no I/O tensors",
                         "rebuild the engine with this rnndeploy's build-engine (it records the engine's tensors)")
    spec_dims: Dict[str, Any] = {}
    if isinstance(side.spec, Mapping):
        spec = ModelSpec.from_dict(side.spec)
        graph = spec.graph(side.graph or next(iter(spec.graphs)))
        spec_dims = {t.name: t.dims for t in graph.inputs + graph.outputs}
    inputs, outputs = [], []
    for t in io:
        shape = tuple(int(d) for d in t["shape"])
        tensor = IoTensor(t["name"], str(t["dtype"]), shape, _batch_axis((), spec_dims.get(t["name"])))
        (inputs if t.get("mode") == "input" else outputs).append(tensor)
    profiles = tuple(Profile.from_dict(p) for p in side.profiles)
    return ModelIO(TRT_PLATFORM, tuple(inputs), tuple(outputs), profiles), side.data


def model_io(platform: str, model_file: Path, spec_graph: Any = None) -> ModelIO:
    """The I/O of ``model_file`` read the way ``platform``'s backend reads it."""
    if platform == ONNX_PLATFORM:
        return onnx_io(str(model_file), spec_graph)
    if platform == TRT_PLATFORM:
        return engine_io(str(model_file))[0]
    raise UsageError(f"platform {platform!r} is not one rnndeploy writes or checks",
                     f"use {ONNX_PLATFORM} or {TRT_PLATFORM}")
