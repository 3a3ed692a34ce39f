"""Additive (Bahdanau) attention with a padding mask."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from rnndeploy.spec import Tolerance

# Score given to padded positions. Finite on purpose: exp(MASKED - max) is exactly 0 in
# fp32 and fp16 alike, and an FP16 conversion of the graph cannot turn it into NaN the way
# -inf arithmetic can (e.g. -inf - -inf when a runtime rewrites the softmax).
MASKED = -1.0e4


# Attention weights lie in [0, 1] and sum to 1 over the sequence, so typical weights are ~1/seq:
# the default FP16 atol (1e-2) would let a 0.01 weight double unnoticed. Measured FP16-vs-torch
# (ORT CPU, rnndeploy.precision fp16, hidden 64, seq 30-100, sharpened random weights):
# max abs 8e-6..2e-5, rel L2 1e-5..1.3e-4: atol 2e-3 and rel_l2 1e-3 keep >= 8x headroom.
ATTENTION_FP16 = Tolerance(atol=2e-3, rtol=1e-2, rel_l2=1e-3)


class AdditiveAttention(nn.Module):
    """``e_t = v · tanh(W_k k_t + W_q q)``, ``a = softmax(e)`` over valid steps, ``c = Σ a_t k_t``.

    Args:
        key_size: features of each key (the recurrent outputs attended over).
        attention_size: hidden size of the scoring MLP.
        query_size: features of the query (a decoder state); 0 for self-attentive
            pooling without a query (a text classifier's attention).

    ``forward(keys [B, T, K], mask [B, T] bool (True = valid), query [B, Q] or None)``
    returns ``(context [B, K], weights [B, T])``; weights are exactly 0 where mask is False.
    """

    def __init__(self, key_size: int, attention_size: int, query_size: int = 0):
        super().__init__()
        self.key_proj = nn.Linear(key_size, attention_size)
        self.query_proj = nn.Linear(query_size, attention_size, bias=False) if query_size > 0 else None
        self.v = nn.Linear(attention_size, 1, bias=False)

    def forward(
        self, keys: Tensor, mask: Tensor, query: Optional[Tensor] = None, projected_keys: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """``projected_keys``: ``key_proj(keys)`` computed once per sequence by a caller that
        attends over the same keys at many steps (teacher-forced training)."""
        energy = self.key_proj(keys) if projected_keys is None else projected_keys
        if self.query_proj is not None:
            if query is None:
                raise ValueError("this attention needs a query")
            energy = energy + self.query_proj(query).unsqueeze(1)
        # MatMul with the 1-D v and a weighted sum instead of squeeze(): after a packed RNN the
        # exporter does not know the squeezed dim is 1 and would emit If nodes to check it.
        scores = torch.matmul(torch.tanh(energy), self.v.weight[0])
        scores = torch.where(mask, scores, torch.full_like(scores, MASKED))
        weights = torch.softmax(scores, dim=-1)
        context = (weights.unsqueeze(-1) * keys).sum(dim=1)
        return context, weights
