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

from nmt import gemm

__all__ = ["InferenceLinear", "MultiHeadAttention", "Packing"]

_STACKED_WEIGHTS = "_stacked_weights"  # the cache attribute of MultiHeadAttention


class InferenceLinear(nn.Linear):
    """nn.Linear that, in inference, multiplies through `nmt.gemm`, which keeps a copy of the
    weight prepared for the fastest CPU backend (packed for oneDNN, or transposed).

    For the few rows of a decoding step, x @ Wᵀ with Wᵀ stored (in, out) ran up to 1.5× as fast as
    F.linear (torch 2.13 with MKL, 1-128 rows, one AVX-512 AMD EPYC core). Training and autograd
    use F.linear as usual.
    """

    def forward(self, x: torch.Tensor, *, relu: bool = False) -> torch.Tensor:
        """Return x Wᵀ + b, and its ReLU when `relu` (fused into the product where the backend
        can)."""
        if self.training or torch.is_grad_enabled():
            out = F.linear(x, self.weight, self.bias)
            return F.relu(out) if relu else out
        out = gemm.linear(x.reshape(-1, x.size(-1)), self, self.weight, self.bias,
                          relu=relu)  # (N, out)
        return out.view(*x.shape[:-1], self.out_features)


class Packing:
    """The real (non-padding) positions of a padded batch, for running position-wise layers on
    them alone. `pack` turns (B, L, ...) into (N, ...) rows, `unpack` puts them back, padded with
    zeros."""

    def __init__(self, keep: torch.Tensor) -> None:
        self.batch, self.length = keep.shape  # keep: (B, L), True at real positions
        self.index = keep.reshape(-1).nonzero().squeeze(1)  # (N,)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.batch * self.length, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        padded = x.new_zeros(self.batch * self.length, *x.shape[1:])
        padded.index_copy_(0, self.index, x)
        return padded.view(self.batch, self.length, *x.shape[1:])  # (B, L, ...)


class MultiHeadAttention(nn.Module):
    """softmax(Q Kᵀ / √Dh) V over H heads, with separate query, key, value, output projections."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, *,
                 linear: type[nn.Linear] = nn.Linear) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.query = linear(d_model, d_model)
        self.key = linear(d_model, d_model)
        self.value = linear(d_model, d_model)
        self.output = linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.n_heads * self.head_dim)  # (B, L, D)

    def self_attend_packed(self, x: torch.Tensor, packing: Packing,
                           mask: torch.Tensor | None) -> torch.Tensor:
        """Self-attention over packed rows `x` (N, D) of a padded batch; return (N, D).

        The projections run on the N real positions only, and attention on the padded (B, L)
        layout, as the encoder of CTranslate2 does.
        """
        def heads(projection: nn.Module) -> torch.Tensor:
            return self.split_heads(packing.unpack(projection(x)))  # (B, H, L, Dh)

        return self.attend_packed(x, packing, heads(self.key), heads(self.value), mask)

    def attend_packed(self, x: torch.Tensor, packing: Packing, key: torch.Tensor,
                      value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attend from packed query rows `x` (N, D) to projected `key`/`value` (B, H, Tk, Dh);
        return (N, D). The query and output projections run on the N real positions only."""
        q = self.split_heads(packing.unpack(self.query(x)))  # (B, H, Tq, Dh)
        context, _ = self.attend(q, key, value, mask)
        return self.output(packing.pack(self.merge_heads(context)))

    def project_query_key_value(
        self, x: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the queries, keys and values of `x` (B, L, D), each (B, H, L, Dh).

        In inference the three projections run as one product with the weights side by side,
        which saves two calls per decoder layer and decoding step.
        """
        projections = (self.query, self.key, self.value)
        if (self.training or torch.is_grad_enabled()
                or not all(type(p) is InferenceLinear for p in projections)):
            q = self.split_heads(self.query(x))
            return (q, *self.project_key_value(x))
        batch, length, d_model = x.shape
        weight, bias = self._stack_query_key_value()  # (3D, D), (3D,)
        stacked = gemm.linear(x.reshape(-1, d_model), self, weight, bias)  # (B·L, 3D)
        stacked = stacked.view(batch, length, 3, self.n_heads, self.head_dim)
        q, key, value = stacked.permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, Dh) each
        return q, key, value

    def _stack_query_key_value(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the query, key and value weights stacked (3D, D) and their biases (3D,),
        cached until a parameter changes."""
        tensors = [t for p in (self.query, self.key, self.value) for t in (p.weight, p.bias)]
        key = tuple((t.data_ptr(), t.dtype, t.device,
                     None if t.is_inference() else t._version) for t in tensors)
        cached = self.__dict__.get(_STACKED_WEIGHTS)
        if cached is None or cached[0] != key:
            # `gemm` keys its copies of the stacked weight by address, which a new stack may
            # reuse, so they are dropped with the old stack.
            self.forget_prepared_weights()
            weight = torch.cat([t.detach() for t in tensors[0::2]])
            bias = torch.cat([t.detach() for t in tensors[1::2]])
            cached = self.__dict__[_STACKED_WEIGHTS] = (key, weight, bias)
        return cached[1], cached[2]

    def forget_prepared_weights(self) -> None:
        """Drop the stacked query, key and value weights and `gemm`'s copies of them."""
        self.__dict__.pop(_STACKED_WEIGHTS, None)
        gemm.forget_weights(self)

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
        group: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from `query` (B, Tq, D) to projected `key`/`value` (B / group, H, Tk, Dh).

        With `group` > 1, each run of `group` consecutive query rows (the beams of one sentence)
        shares one row of `key`, `value` and `mask`, so beam search never copies the encoder's
        keys and values per beam. `mask` broadcasts to (B / group, H, group · Tq, Tk). Returns the
        output (B, Tq, D) and, when `need_weights`, the attention probabilities (B, H, Tq, Tk).
        """
        q = self.split_heads(self.query(query))  # (B, H, Tq, Dh)
        return self.attend_heads(q, key, value, mask, need_weights=need_weights, group=group)

    def attend_heads(
        self,
        q: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        need_weights: bool = False,
        group: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward` after the query projection: attend from projected queries `q`
        (B, H, Tq, Dh) and apply the output projection."""
        batch, _, query_length, _ = q.shape
        d_model = self.n_heads * self.head_dim
        if group > 1:
            # The group's queries become one sentence's query positions.
            q = q.view(batch // group, group, self.n_heads, query_length, self.head_dim)
            q = q.transpose(1, 2).reshape(batch // group, self.n_heads, group * query_length,
                                          self.head_dim)  # (B / group, H, group · Tq, Dh)

        context, weights = self.attend(q, key, value, mask, need_weights=need_weights)

        if group > 1:
            context = context.view(batch // group, self.n_heads, group, query_length, self.head_dim)
            context = context.transpose(1, 2).reshape(batch, self.n_heads, query_length,
                                                      self.head_dim)  # (B, H, Tq, Dh)
            if weights is not None:
                weights = weights.view(batch // group, self.n_heads, group, query_length, -1)
                weights = weights.transpose(1, 2).reshape(batch, self.n_heads, query_length,
                                                          -1)  # (B, H, Tq, Tk)
        context = context.transpose(1, 2).reshape(batch, query_length, d_model)  # (B, Tq, D)
        return self.output(context), weights

    def attend(
        self,
        q: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return softmax(q kᵀ / √Dh) v (B, H, Tq, Dh) for projected heads, and the probabilities
        (B, H, Tq, Tk) when `need_weights`."""
        dropout = self.dropout if self.training else 0.0
        # For one query position (a decoding step without beam groups), plain matmul and softmax
        # took about half the time of torch's fused CPU kernel (torch 2.13, one thread, up to 50
        # keys). The fused kernel wins for longer queries.
        if need_weights or q.size(-2) == 1:
            scores = q @ key.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, Tq, Tk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            probabilities = scores.softmax(dim=-1)
            context = F.dropout(probabilities, dropout, self.training) @ value  # (B, H, Tq, Dh)
            return context, probabilities if need_weights else None
        context = F.scaled_dot_product_attention(q, key, value, attn_mask=mask,
                                                 dropout_p=dropout)
        return context, None
