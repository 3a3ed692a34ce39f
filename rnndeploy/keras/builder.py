"""A small ONNX graph builder: unique names, deduplicated constants and nodes.

Identical nodes (same op, inputs and attributes) are built once, so a mask that
Keras computes twice — once recorded in the config, once by a layer's own mask
propagation — becomes one set of nodes in the file.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from rnndeploy.spec import ONNX_ELEM_TYPES as ONNX_TYPES

# ONNX TensorProto element types used here.
FLOAT, INT32, INT64, BOOL = (ONNX_TYPES[d] for d in ("float32", "int32", "int64", "bool"))

Dim = Union[int, str]


class GraphBuilder:
    """Collects nodes, initializers, inputs and outputs of one ONNX graph."""

    def __init__(self, name: str):
        self.name = name
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self.inputs: List[Any] = []
        self.outputs: List[Any] = []
        self._names: Dict[str, int] = {}
        self._consts: Dict[Tuple[str, Tuple[int, ...], bytes], str] = {}
        self._cse: Dict[Tuple[Any, ...], List[str]] = {}

    # -- names ---------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A name not used before in this graph ("lstm/Y", "lstm/Y_1", ...)."""
        base = base or "t"
        n = self._names.get(base)
        if n is None:
            self._names[base] = 0
            return base
        while True:
            n += 1
            cand = f"{base}_{n}"
            if cand not in self._names:
                self._names[base] = n
                self._names[cand] = 0
                return cand

    def reserve(self, name: str) -> None:
        """Claim ``name`` (a graph input/output name) so no generated name takes it."""
        self._names.setdefault(name, 0)

    # -- constants -------------------------------------------------------------------------
    def const(self, value: Any, name: str = "const", dtype: Any = None) -> str:
        """An initializer holding ``value`` (deduplicated by dtype, shape and bytes)."""
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        arr = np.array(arr, order="C")  # (ascontiguousarray would turn a scalar into shape [1])
        key = (arr.dtype.str, tuple(arr.shape), arr.tobytes())
        if key in self._consts:
            return self._consts[key]
        out = self.fresh(name)
        self.initializers.append(numpy_helper.from_array(arr, out))
        self._consts[key] = out
        return out

    def i64(self, values: Sequence[int], name: str = "ints") -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), name)

    def scalar(self, value: float, dtype: Any = np.float32, name: str = "scalar") -> str:
        return self.const(np.asarray(value, dtype=dtype), name)

    # -- nodes ---------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[str], name: str = "", n_out: int = 1, **attrs: Any) -> Any:
        """Add a node (or reuse an identical one); returns its output name, or a list when n_out > 1."""
        from onnx import helper

        key = (op_type, tuple(inputs), n_out, tuple(sorted((k, _freeze(v)) for k, v in attrs.items())))
        if key in self._cse:
            outs = self._cse[key]
        else:
            base = name or op_type.lower()
            outs = [self.fresh(base if n_out == 1 else f"{base}_{i}") for i in range(n_out)]
            node = helper.make_node(op_type, list(inputs), outs, name=self.fresh(f"{base}_node"),
                                    **{k: v for k, v in attrs.items() if v is not None})
            self.nodes.append(node)
            self._cse[key] = outs
        return outs[0] if n_out == 1 else list(outs)

    def op_outputs(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str = "",
                   **attrs: Any) -> None:
        """Add a node writing to given output names (empty string: output not produced)."""
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=self.fresh(f"{name or op_type.lower()}_node"),
                                           **{k: v for k, v in attrs.items() if v is not None}))

    def identity(self, src: str, dst: str) -> None:
        self.op_outputs("Identity", [src], [dst], name=dst)

    # -- graph I/O -----------------------------------------------------------------------
    def add_input(self, name: str, dtype: str, dims: Sequence[Dim]) -> None:
        from onnx import helper

        self.reserve(name)
        self.inputs.append(helper.make_tensor_value_info(name, ONNX_TYPES[dtype], list(dims)))

    def add_output(self, name: str, dtype: str, dims: Sequence[Optional[Dim]]) -> None:
        from onnx import helper

        self.outputs.append(helper.make_tensor_value_info(name, ONNX_TYPES[dtype], list(dims)))

    def model(self, opset: int, producer_version: str) -> Any:
        from onnx import helper

        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="rnndeploy-keras", producer_version=producer_version)
        # IR 8 (onnx 1.13+) is what onnxruntime >= 1.14 and TensorRT 8.6's parser read.
        model.ir_version = 8
        return model


def _freeze(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, float):
        return ("f", repr(v))
    if hasattr(v, "SerializeToString"):  # a TensorProto attribute (ConstantOfShape's value)
        return ("proto", v.SerializeToString())
    return v
