"""Modules (and factories) that must NOT export, each for a different reason."""

import torch
from torch import nn


class PythonLoop(nn.Module):
    """Steps a GRUCell in a Python loop over x.shape[1]: the trace unrolls it at one length."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(3, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 6)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return h


class Projected(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 8, proj_size=4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


def python_loop() -> nn.Module:
    torch.manual_seed(0)
    return PythonLoop()


def proj_size() -> nn.Module:
    torch.manual_seed(0)
    return Projected()


def raises() -> nn.Module:
    raise RuntimeError("weights file model.pt not found")


def not_a_module():
    return {"weights": [1, 2, 3]}
