"""Sequence regressor: (stacked, bidirectional) SimpleRNN / LSTM / GRU → dense head.

Config keys (besides the common ones in rnndeploy.models.config):
    bidirectional    false
    merge_mode       "concat" | "sum" | "mul" | "ave" (Keras Bidirectional; default "concat")
    output           "last": one prediction per sequence, from its last valid step;
                     "sequence": a prediction at every step (zero at padded steps)
    variable_length  false; true adds an int64 input "lengths" [batch]

data_info: ``input_size`` (features per step), ``output_size`` (alias ``n_outputs``),
optional ``input_range`` [low, high] of the (normalised) inputs (default [-3, 3], a
z-scored signal), optional ``normalization`` {"mean": [...], "std": [...]} and any
other JSON-able facts, all copied into the spec's attrs.

Graph "model": inputs x [batch, seq, input_size] (+ lengths [batch]) (+ h0 [, c0]
[num_layers, batch, hidden] when streaming); outputs y [batch, output_size] or
[batch, seq, output_size] (+ hn [, cn]). Streaming is offered only for unidirectional
models: a backward direction needs the future of the sequence.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from rnndeploy.errors import RecipeError
from rnndeploy.models.base import ZooModel, need, state_specs
from rnndeploy.models.recurrent import RecurrentStack, State, length_mask
from rnndeploy.spec import DEFAULT_TOLERANCES, GraphSpec, ModelSpec, TensorSpec


class SequenceRegressor(ZooModel):
    family = "regressor"

    def __init__(self, config: Mapping[str, Any], data_info: Mapping[str, Any]):
        super().__init__(config, data_info)
        cfg = self.config
        self.input_size = need(data_info, "input_size", self.family)
        self.output_size = need(data_info, "output_size", self.family, alias="n_outputs")
        rng = data_info.get("input_range", [-3.0, 3.0])
        if not (isinstance(rng, (list, tuple)) and len(rng) == 2 and float(rng[0]) < float(rng[1])):
            raise RecipeError(f"data_info 'input_range' = {rng!r} must be [low, high] with low < high")
        self.input_range = (float(rng[0]), float(rng[1]))
        self.rnn = RecurrentStack(
            cfg["cell"],
            self.input_size,
            cfg["hidden_size"],
            cfg["num_layers"],
            cfg["bidirectional"],
            cfg["merge_mode"],
            cfg["dropout"],
        )
        self.drop = nn.Dropout(cfg["dropout"])
        self.head = nn.Linear(self.rnn.output_size, self.output_size)
        self._init_weights()

    @property
    def streamable(self) -> bool:
        return not self.config["bidirectional"]

    @property
    def state_names(self) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        """(input state names, output state names)."""
        if self.config["cell"] == "lstm":
            return ("h0", "c0"), ("hn", "cn")
        return ("h0",), ("hn",)

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None, state: Optional[State] = None) -> Tensor:
        """Training forward: y [batch, output_size] or [batch, seq, output_size]."""
        return self._run(x, lengths, state)[0]

    def _run(self, x: Tensor, lengths: Optional[Tensor], state: Optional[State]) -> Tuple[Tensor, Optional[State]]:
        seq, last, new_state = self.rnn(x, lengths, state)
        if self.config["output"] == "last":
            return self.head(self.drop(last)), new_state
        y = self.head(self.drop(seq))
        if lengths is not None:
            # The head maps a padded step's zero features to its bias; zero it so padded
            # outputs are a defined value every runtime reproduces.
            y = torch.where(length_mask(lengths, x.shape[1], y.device).unsqueeze(-1), y, torch.zeros_like(y))
        return y, new_state

    def run_graph(self, graph: str, with_state: bool, *inputs: Tensor) -> Tuple[Tensor, ...]:
        x = inputs[0]
        rest = list(inputs[1:])
        lengths = rest.pop(0) if self.config["variable_length"] else None
        state = tuple(rest) if with_state else None
        y, new_state = self._run(x, lengths, state)
        return (y, *new_state) if with_state else (y,)

    def spec(self) -> ModelSpec:
        cfg = self.config
        low, high = self.input_range
        inputs = [
            TensorSpec("x", "float32", ("batch", "seq", self.input_size), "features", time_axis=1, low=low, high=high,
                       description="input features per step (normalised as in training)"),
        ]
        if cfg["variable_length"]:
            inputs.append(TensorSpec("lengths", "int64", ("batch",), "lengths", low=1,
                                     description="valid steps per sequence, 1..seq; steps past it are ignored"))
        if cfg["output"] == "last":
            y = TensorSpec("y", "float32", ("batch", self.output_size), "prediction",
                           description="prediction from each sequence's last valid step")
        else:
            y = TensorSpec("y", "float32", ("batch", "seq", self.output_size), "prediction", time_axis=1,
                           description="prediction at every step (0 at padded steps)")
        outputs = [y]
        state_in, state_out = self.state_names
        layers = self.rnn.state_layers
        if self.streamable:
            inputs += state_specs(cfg["cell"], layers, cfg["hidden_size"], state_in, "initial state (zeros when absent)")
            outputs += state_specs(cfg["cell"], layers, cfg["hidden_size"], state_out, "state after each sequence's last valid step")
        graph = GraphSpec("model", tuple(inputs), tuple(outputs), tolerances=dict(DEFAULT_TOLERANCES))
        return ModelSpec(
            name=cfg["name"],
            family=self.family,
            graphs={"model": graph},
            attrs=self._attrs(
                input_size=self.input_size,
                output_size=self.output_size,
                input_range=[low, high],
                state_inputs=list(state_in) if self.streamable else [],
                state_outputs=list(state_out) if self.streamable else [],
            ),
        )
