"""ZooModel: the base class every reference model derives from (see the package docstring)."""

from __future__ import annotations

import copy
import json
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from rnndeploy.errors import RecipeError, UsageError
from rnndeploy.models.init import forget_bias_torch_default, init_keras
from rnndeploy.models.recurrent import length_mask
from rnndeploy.spec import GraphSpec, ModelSpec, TensorSpec


class ZooModel(nn.Module):
    """A reference model: a torch module that declares its deployable contract.

    Subclasses set ``family`` and ``graph_names``, build their layers, and implement
    ``spec()`` and ``run_graph(graph, with_state, *inputs) -> tuple``.
    """

    family: str = ""
    graph_names: Tuple[str, ...] = ("model",)

    def __init__(self, config: Mapping[str, Any], data_info: Mapping[str, Any]):
        super().__init__()
        try:
            json.dumps([dict(config), dict(data_info)], allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RecipeError(
                f"model {config.get('name')!r}: config or data_info is not JSON-able ({exc})",
                "pass plain numbers, strings, lists and dicts (they are written into the checkpoint and ONNX metadata)",
            ) from exc
        self.config: Dict[str, Any] = copy.deepcopy(dict(config))
        self.data_info: Dict[str, Any] = copy.deepcopy(dict(data_info))

    # -- the contract ------------------------------------------------------------------
    def spec(self) -> ModelSpec:
        raise NotImplementedError

    def run_graph(self, graph: str, with_state: bool, *inputs: Tensor) -> Tuple[Tensor, ...]:
        raise NotImplementedError

    def supports_state(self, graph: str = "model") -> bool:
        """True when ``graph`` declares optional state tensors (the streaming form)."""
        g = self.spec().graph(graph)
        return any(t.optional for t in g.inputs + g.outputs)

    def graph_spec(self, graph: str = "model", with_state: bool = False) -> GraphSpec:
        """The spec of ``graph`` with optional state tensors kept or dropped."""
        g = self.spec().graph(graph)
        if with_state and not any(t.optional for t in g.inputs):
            raise UsageError(
                f"model {self.config.get('name')!r} graph {graph!r} has no streaming (with-state) form",
                "bidirectional and per-layer-merged models cannot carry state across chunks; export without --with-state",
            )
        return g.streaming(with_state)

    def graph_module(self, graph: str = "model", with_state: bool = False) -> nn.Module:
        """A module whose forward takes ``graph``'s spec inputs positionally (spec order) and
        returns a tuple of its spec outputs (spec order). It shares this model's parameters
        and follows its train/eval mode."""
        return GraphModule(self, graph, self.graph_spec(graph, with_state), with_state)

    def example_inputs(
        self, graph: str = "model", batch: int = 2, seq: int = 7, with_state: bool = False, seed: int = 0
    ) -> Dict[str, Tensor]:
        """Seeded inputs for ``graph`` keyed by spec name (spec order), on the model's device.

        Floats are uniform in the spec's [low, high]; tokens in [low, high); lengths in
        [1, seq] with the first row full; tokens past a row's length are the pad id.
        ``seq`` sizes both "seq" and "src_seq".
        """
        g = self.graph_spec(graph, with_state)
        gen = torch.Generator().manual_seed(seed)
        sizes = {"batch": batch, "seq": seq, "src_seq": seq}
        out: Dict[str, Tensor] = {}
        lengths = None
        for t in g.inputs:
            if t.role == "lengths":
                lengths = torch.randint(1, seq + 1, (batch,), generator=gen, dtype=torch.int64)
                lengths[0] = seq
        for t in g.inputs:
            shape = t.shape_for(sizes)
            if t.role == "lengths":
                out[t.name] = lengths
            elif t.dtype.startswith("int"):
                low = int(t.low if t.low is not None else 0)
                high = int(t.high if t.high is not None else low + 2)
                v = torch.randint(low, high, shape, generator=gen, dtype=torch.int64)
                pad = self.pad_id_for(t.name)
                if lengths is not None and t.time_axis is not None and pad is not None:
                    v = torch.where(length_mask(lengths, shape[t.time_axis]), v, torch.full_like(v, int(pad)))
                out[t.name] = v
            else:
                low = float(t.low if t.low is not None else -1.0)
                high = float(t.high if t.high is not None else 1.0)
                out[t.name] = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float32)
        device = _device_of(self)
        return {k: v.to(device) for k, v in out.items()}

    def pad_id_for(self, tensor: str) -> Optional[int]:
        """The padding id of a token input (None: not padded / no pad id)."""
        pad = self.data_info.get("pad_id")
        return None if pad is None else int(pad)

    # -- helpers for subclasses ------------------------------------------------------------
    def _init_weights(self) -> None:
        if self.config.get("init", "keras") == "keras":
            init_keras(self, bool(self.config.get("unit_forget_bias", True)))
        elif self.config.get("unit_forget_bias", True):
            forget_bias_torch_default(self)

    def _attrs(self, **derived: Any) -> Dict[str, Any]:
        """Spec attrs: the resolved config, the data facts and derived facts (JSON-checked)."""
        attrs: Dict[str, Any] = {}
        attrs.update(self.config)
        attrs.update(self.data_info)
        attrs.update(derived)
        return attrs


class GraphModule(nn.Module):
    """Positional-in, tuple-out view of one graph of a ZooModel (what export traces)."""

    def __init__(self, model: ZooModel, graph: str, spec: GraphSpec, with_state: bool):
        super().__init__()
        self.model = model
        self.graph = graph
        self.with_state = with_state
        self.input_names = tuple(t.name for t in spec.inputs)
        self.output_names = tuple(t.name for t in spec.outputs)

    def forward(self, *inputs: Tensor) -> Tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise UsageError(
                f"graph {self.graph!r} takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), got {len(inputs)}"
            )
        return tuple(self.model.run_graph(self.graph, self.with_state, *inputs))


def need(data_info: Mapping[str, Any], key: str, family: str, alias: Optional[str] = None, minimum: int = 1) -> int:
    """An integer fact from data_info, or a RecipeError naming what is missing."""
    v = data_info.get(key, data_info.get(alias) if alias else None)
    if v is None:
        raise RecipeError(
            f"the {family} model needs {key!r} from the dataset, and data_info lacks it",
            f"data_info keys: {', '.join(sorted(data_info)) or '(none)'}",
        )
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise RecipeError(f"data_info {key!r} = {v!r} must be an integer >= {minimum}")
    return int(v)


def state_range(cell: str, which: str) -> Tuple[float, float]:
    """Plausible [low, high] of a recurrent state for generated parity inputs."""
    if which == "c":
        return (-2.0, 2.0)
    if cell == "rnn_relu":
        return (0.0, 1.0)
    return (-1.0, 1.0)


def state_specs(cell: str, layers: int, hidden: int, names: Tuple[str, ...], description: str) -> Tuple[TensorSpec, ...]:
    """Optional state TensorSpecs ("h…" then "c…" for LSTM) of shape [layers, batch, hidden]."""
    out = []
    for name in names:
        low, high = state_range(cell, "c" if name.startswith("c") else "h")
        out.append(
            TensorSpec(name, "float32", (layers, "batch", hidden), "state", low=low, high=high, optional=True, description=description)
        )
    return tuple(out)


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def special_id(data_info: Mapping[str, Any], key: str, vocab_size: int, default: Optional[int] = None) -> int:
    """A special token id (pad/bos/eos) from data_info, checked to lie inside the vocabulary."""
    v = data_info.get(key, default)
    if v is None:
        raise RecipeError(f"data_info lacks {key!r}", "the dataset must name its special token ids")
    if isinstance(v, bool) or not isinstance(v, int) or not (0 <= v < vocab_size):
        raise RecipeError(f"data_info {key!r} = {v!r} is not a token id of a {vocab_size}-token vocabulary")
    return int(v)
