"""Weight initialisation as the Keras defaults the seeds recommend.

- recurrent weights (``weight_hh``): each gate block orthogonal (an LSTM's
  ``[4H, H]`` matrix is four ``[H, H]`` orthogonal blocks), which keeps gradients
  from exploding or vanishing through time at the start of training;
- input weights (``weight_ih``): Xavier/Glorot uniform over the whole matrix, like
  Keras' ``glorot_uniform`` kernel;
- biases zero, except the LSTM forget gate: torch adds two biases (``bias_ih`` and
  ``bias_hh``), so the forget slices are set to 1 and 0 so that they SUM to 1, which is
  what Keras' ``unit_forget_bias=True`` gives its single bias;
- embeddings uniform in [-0.05, 0.05] (Keras ``embeddings_initializer``), padding row 0;
- dense layers Glorot uniform with zero bias.
"""

from __future__ import annotations

import torch
from torch import nn

GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1, nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}


@torch.no_grad()
def init_recurrent(module: nn.Module, unit_forget_bias: bool = True) -> None:
    """Keras-style init of one nn.LSTM / nn.GRU / nn.RNN (every layer and direction)."""
    gates = GATES[type(module)]
    hidden = module.hidden_size
    for name, p in module.named_parameters():
        if name.startswith("weight_hh"):
            for g in range(gates):
                nn.init.orthogonal_(p[g * hidden : (g + 1) * hidden])
        elif name.startswith("weight_ih"):
            nn.init.xavier_uniform_(p)
        elif name.startswith("bias"):
            nn.init.zeros_(p)
            # torch's LSTM gate order is (input, forget, cell, output).
            if gates == 4 and unit_forget_bias and name.startswith("bias_ih"):
                p[hidden : 2 * hidden] = 1.0


@torch.no_grad()
def init_keras(model: nn.Module, unit_forget_bias: bool = True) -> None:
    """Apply the Keras-style defaults to every recurrent, embedding and linear submodule."""
    for m in model.modules():
        if type(m) in GATES:
            init_recurrent(m, unit_forget_bias)
        elif isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.05, 0.05)
            if m.padding_idx is not None:
                m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@torch.no_grad()
def forget_bias_torch_default(model: nn.Module) -> None:
    """With init "torch" and unit_forget_bias, still make each LSTM's forget biases sum to 1."""
    for m in model.modules():
        if type(m) in (nn.LSTM, nn.LSTMCell):
            h = m.hidden_size
            for name, p in m.named_parameters():
                if name.startswith("bias_ih"):
                    p[h : 2 * h] = 1.0
                elif name.startswith("bias_hh"):
                    p[h : 2 * h] = 0.0
