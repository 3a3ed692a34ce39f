"""Embedding → bidirectional LSTM over padded token batches (packed by length) → masked
mean over valid steps → class logits."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BiClassifier(nn.Module):
    def __init__(self, vocab: int = 50, emb: int = 8, hidden: int = 10, classes: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.emb(tokens), lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=tokens.shape[1])
        pooled = y.sum(dim=1) / lengths.to(y.dtype).unsqueeze(1)
        return self.head(pooled)


def build() -> nn.Module:
    torch.manual_seed(3)
    return BiClassifier()
