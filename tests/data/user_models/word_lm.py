"""The classic PyTorch word-level language model (examples/word_language_model): a
seq-first LSTM whose forward returns ``decoded.view(-1, ntoken)`` — rows = seq × batch,
an output axis that follows no input axis."""

import torch
from torch import nn

NTOKEN = 50


class WordLM(nn.Module):
    def __init__(self, ntoken=NTOKEN, ninp=16, nhid=16):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, 2)
        self.decoder = nn.Linear(nhid, ntoken)
        self.ntoken = ntoken

    def forward(self, ids):
        out, _ = self.rnn(self.encoder(ids))
        return self.decoder(out).view(-1, self.ntoken)


class ShortWindow(nn.Module):
    """Returns at most the first 5 steps: fixed at 5 for the probe sizes, 1 at seq 1."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 4, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0][:, :5]


def build():
    torch.manual_seed(0)
    return WordLM()


def short_window():
    torch.manual_seed(0)
    return ShortWindow()
