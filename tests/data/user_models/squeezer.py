"""A module that cannot run at batch 1 (it squeezes the batch axis away), although its
--input declaration calls batch dynamic: validation must say so, not crash."""

import torch
from torch import nn


class Squeezer(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x)
        last = y[:, -1].squeeze()  # [batch, 4], but [4] when batch is 1
        return last.reshape(last.shape[0], 4)


def build() -> nn.Module:
    torch.manual_seed(0)
    return Squeezer()
