"""The recurrent core shared by every family: stacked, optionally bidirectional, Keras merge modes.

Layout choices made for export (see shared/FINDINGS.md §2):
- everything is batch-first and built from ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, which the
  TorchScript exporter turns into one native ONNX ``RNN`` / ``LSTM`` / ``GRU`` node per layer
  with dynamic batch and sequence axes;
- bidirectional with ``merge_mode="concat"`` (or unidirectional) is ONE
  ``nn.LSTM(num_layers, bidirectional=...)``: exactly Keras' stacked
  ``Bidirectional(LSTM(...))`` layers, whose next layer sees both directions concatenated;
- bidirectional with ``sum`` / ``mul`` / ``ave``: Keras merges after EVERY Bidirectional
  layer, so layer k+1 sees ``hidden_size`` features. A fused multi-layer nn.LSTM cannot
  express that, hence one single-layer bidirectional module per layer with the merge between;
- variable-length batches use ``pack_padded_sequence``. Masking would be exact for the
  forward direction only: a backward direction starting at the padded end would read
  padding. Packing is exact for both directions, and the TorchScript exporter writes it
  as the native node's ``sequence_lens`` input (padded outputs are zeros, final states are
  taken at each sequence's own last step), which ONNX Runtime and TensorRT both implement.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

State = Tuple[Tensor, ...]  # (h,) or (h, c); each [layers * directions, batch, hidden]


def make_rnn(cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, dropout: float) -> nn.Module:
    """A batch-first torch recurrent module for a canonical cell name."""
    kwargs = dict(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        batch_first=True,
        bidirectional=bidirectional,
        # torch applies this dropout between layers only; with one layer it would only warn.
        dropout=dropout if num_layers > 1 else 0.0,
    )
    if cell == "lstm":
        return nn.LSTM(**kwargs)
    if cell == "gru":
        return nn.GRU(**kwargs)
    if cell in ("rnn_tanh", "rnn_relu"):
        return nn.RNN(nonlinearity=cell[4:], **kwargs)
    raise ValueError(f"unknown cell {cell!r}")


def merge(mode: str, fwd: Tensor, bwd: Tensor) -> Tensor:
    """Keras Bidirectional merge of the two directions' features (last axis)."""
    if mode == "concat":
        return torch.cat([fwd, bwd], dim=-1)
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) * 0.5
    raise ValueError(f"unknown merge mode {mode!r}")


def run_rnn(rnn: nn.Module, x: Tensor, lengths: Optional[Tensor], state: Optional[State]) -> Tuple[Tensor, State]:
    """Run one torch recurrent module batch-first; padded steps (t >= lengths) give zeros."""
    hx = None
    if state is not None:
        hx = state if isinstance(rnn, nn.LSTM) else state[0]
    if lengths is None:
        out, hn = rnn(x, hx)
    else:
        # pack_padded_sequence wants CPU lengths; a traced export always runs on CPU.
        lens = lengths.cpu() if lengths.is_cuda else lengths
        if hx is None:
            # An explicit zero state: with torch's implicit one, the TorchScript exporter's
            # peephole pass crashes on a single-layer packed RNN whose final state is used.
            zeros = x.new_zeros((rnn.num_layers * (2 if rnn.bidirectional else 1), x.shape[0], rnn.hidden_size))
            hx = (zeros, zeros) if isinstance(rnn, nn.LSTM) else zeros
        packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        out, hn = rnn(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, (tuple(hn) if isinstance(hn, tuple) else (hn,))


class RecurrentStack(nn.Module):
    """Stacked (bi)directional recurrent layers.

    Args:
        cell: "lstm" | "gru" | "rnn_tanh" | "rnn_relu".
        input_size: features per step.
        hidden_size: units per direction per layer.
        num_layers: stacked layers.
        bidirectional: run a backward direction too.
        merge_mode: Keras merge of the directions ("concat", "sum", "mul", "ave").
        dropout: dropout on each layer's output except the last (as torch and a Keras
            stack with Dropout between layers).

    ``forward(x, lengths=None, state=None) -> (sequence, last, new_state)``:
        sequence [batch, seq, output_size]: merged features per step, zero at padded steps;
        last [batch, output_size]: the forward direction at each sequence's last valid step
            merged with the backward direction's final output (at step 0) — Keras'
            ``return_sequences=False`` semantics;
        new_state: final (h,) or (h, c) [num_layers * directions, batch, hidden], or None
            for the per-layer (non-concat bidirectional) form.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        merge_mode: str = "concat",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.merge_mode = merge_mode if bidirectional else "concat"
        self.fused = not bidirectional or self.merge_mode == "concat"
        if self.fused:
            self.layers = nn.ModuleList([make_rnn(cell, input_size, hidden_size, num_layers, bidirectional, dropout)])
        else:
            self.layers = nn.ModuleList(
                [make_rnn(cell, input_size if k == 0 else hidden_size, hidden_size, 1, True, 0.0) for k in range(num_layers)]
            )
        self.dropout = nn.Dropout(dropout)
        self.output_size = hidden_size * (2 if bidirectional and self.merge_mode == "concat" else 1)

    @property
    def num_states(self) -> int:
        """1 (h) or 2 (h, c for LSTM)."""
        return 2 if self.cell == "lstm" else 1

    @property
    def state_layers(self) -> int:
        """First axis of each state tensor: layers × directions."""
        return self.num_layers * (2 if self.bidirectional else 1)

    def forward(
        self, x: Tensor, lengths: Optional[Tensor] = None, state: Optional[State] = None
    ) -> Tuple[Tensor, Tensor, Optional[State]]:
        if self.fused:
            seq, hn = run_rnn(self.layers[0], x, lengths, state)
            # Positive indices: with packed input the exporter cannot infer h's first dim and
            # fails on negative ones.
            h, top = hn[0], self.state_layers - 1
            last = torch.cat([h[top - 1], h[top]], dim=-1) if self.bidirectional else h[top]
            return seq, last, hn
        if state is not None:
            raise ValueError("explicit states need merge_mode 'concat' or a unidirectional stack")
        inp = x
        h = x
        for k, rnn in enumerate(self.layers):
            if k > 0:
                inp = self.dropout(inp)
            out, hn = run_rnn(rnn, inp, lengths, None)
            inp = merge(self.merge_mode, out[..., : self.hidden_size], out[..., self.hidden_size :])
            h = hn[0]
        last = merge(self.merge_mode, h[0], h[1])
        return inp, last, None


def length_mask(lengths: Tensor, seq_len: Any, device: Optional[torch.device] = None) -> Tensor:
    """Bool [batch, seq]: True at valid steps (t < length), on ``device`` (default: lengths').

    Lengths often stay on the CPU (pack_padded_sequence wants them there) while the data
    lives on a GPU; pass the data's device then. ``seq_len`` may be a traced size.
    """
    steps = torch.arange(seq_len, device=lengths.device)
    mask = steps.unsqueeze(0) < lengths.unsqueeze(1)
    return mask if device is None or mask.device == device else mask.to(device)
