"""A plain GRU returning its full output sequence and its final state as a nested tuple."""

import torch
from torch import nn


class StatefulGRU(nn.Module):
    def __init__(self, n_in: int = 3, hidden: int = 8):
        super().__init__()
        self.gru = nn.GRU(n_in, hidden, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor, h0: torch.Tensor):
        y, h = self.gru(x, h0)
        return y, (h,)


def build() -> nn.Module:
    torch.manual_seed(2)
    return StatefulGRU()
