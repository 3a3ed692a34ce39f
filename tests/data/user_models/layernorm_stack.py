"""LSTM → LayerNorm → LSTM → per-step head: a normalisation layer between two recurrent layers."""

import torch
from torch import nn


class NormStack(nn.Module):
    def __init__(self, n_in: int = 4, hidden: int = 12):
        super().__init__()
        self.lstm1 = nn.LSTM(n_in, hidden, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.lstm2 = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm1(x)
        y, _ = self.lstm2(self.norm(y))
        return self.head(y)


def build() -> nn.Module:
    torch.manual_seed(1)
    return NormStack()
