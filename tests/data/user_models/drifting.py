"""A module whose forward reads Python state that changes between calls: every call scales
its outputs differently, so the traced graph (one call baked in) cannot match later calls.
Used to check that validation reports every failing output."""

import torch
from torch import nn


class Drifting(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.calls = 0

    def forward(self, x: torch.Tensor):
        self.calls += 1
        y, h = self.gru(x)
        return y * float(self.calls), h[-1] * float(self.calls)


def build() -> nn.Module:
    torch.manual_seed(0)
    return Drifting()
