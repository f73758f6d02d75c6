"""Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2).

Dimension names used in shape notes across the package: B batch (times beam during search),
S source length, T target length, D model width, H heads, Dh = D / H head width, V vocabulary.
Masks are boolean and True means "may attend".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """softmax(Q Kᵀ / √Dh) V over H heads, with separate query, key, value and output projections."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)

    def project_key_value(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the keys and values of `memory` (B, L, D), each (B, H, L, Dh).

        Search calls this once per sentence for cross-attention and reuses the result at every step.
        """
        return self.split_heads(self.key(memory)), self.split_heads(self.value(memory))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from `query` (B, Tq, D) to projected `key`/`value` (B, H, Tk, Dh).

        `mask` broadcasts to (B, H, Tq, Tk). Returns the output (B, Tq, D) and, when `need_weights`,
        the attention probabilities (B, H, Tq, Tk).
        """
        batch, query_length, d_model = query.shape
        q = self.split_heads(self.query(query))  # (B, H, Tq, Dh)
        dropout = self.dropout if self.training else 0.0

        weights = None
        if need_weights:
            scores = q @ key.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            context = F.dropout(weights, dropout, self.training) @ value  # (B, H, Tq, Dh)
        else:
            context = F.scaled_dot_product_attention(q, key, value, attn_mask=mask, dropout_p=dropout)

        context = context.transpose(1, 2).reshape(batch, query_length, d_model)  # (B, Tq, D)
        return self.output(context), weights
