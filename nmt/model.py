"""Encoder-decoder Transformer (Vaswani et al. 2017) with incremental decoding for search."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nmt import gemm
from nmt.attention import InferenceLinear, MultiHeadAttention, Packing
from nmt.config import ModelConfig
from nmt.decoder_step import StepLayer, decode_step, prepare_step
from nmt.dropout import Dropout

__all__ = ["DecoderCache", "Transformer", "sinusoidal_positions"]


def sinusoidal_positions(max_positions: int, d_model: int) -> torch.Tensor:
    """Return the fixed position encodings (max_positions, D) of Vaswani et al. 2017, section 3.5.

    PE(pos, 2i) = sin(pos / 10000^(2i/D)) and PE(pos, 2i+1) = cos(pos / 10000^(2i/D)).
    """
    position = torch.arange(max_positions, dtype=torch.float32).unsqueeze(1)  # (P, 1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32)
                          * (-math.log(10000.0) / d_model))  # (D/2,)
    table = torch.zeros(max_positions, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear(D, F), activation, dropout, Linear(F, D)."""

    def __init__(self, config: ModelConfig, *, linear: type[nn.Linear] = nn.Linear) -> None:
        super().__init__()
        self.inner = linear(config.d_model, config.d_ff)
        self.outer = linear(config.d_ff, config.d_model)
        self.activation = F.gelu if config.activation == "gelu" else F.relu
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation is F.relu and type(self.inner) is InferenceLinear:
            return self.outer(self.dropout(self.inner(x, relu=True)))
        return self.outer(self.dropout(self.activation(self.inner(x))))


class Residual(nn.Module):
    """A sublayer with dropout, residual connection and layer norm before (pre-norm) or after it."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = Dropout(config.dropout)
        self.pre_norm = config.pre_norm

    def forward(self, x: torch.Tensor, sublayer) -> tuple[torch.Tensor, torch.Tensor | None]:
        inner = self.norm(x) if self.pre_norm else x
        out, weights = sublayer(inner)
        x = x + self.dropout(out)
        return (x if self.pre_norm else self.norm(x)), weights


class EncoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads,
                                                 config.attention_dropout, linear=InferenceLinear)
        self.feed_forward = FeedForward(config, linear=InferenceLinear)
        self.attention_block = Residual(config)
        self.feed_forward_block = Residual(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                packing: Packing | None = None) -> torch.Tensor:
        """Encode `x` (B, S, D), or its real positions (N, D) when `packing` is given."""
        def attend(h):
            if packing is not None:
                return self.self_attention.self_attend_packed(h, packing, mask), None
            key, value = self.self_attention.project_key_value(h)
            return self.self_attention(h, key, value, mask)

        x, _ = self.attention_block(x, attend)
        x, _ = self.feed_forward_block(x, lambda h: (self.feed_forward(h), None))
        return x


@dataclass
class LayerCache:
    """Keys and values of one decoder layer: self-attention grows by one step per call."""

    cross_key: torch.Tensor  # (B, H, S, Dh)
    cross_value: torch.Tensor  # (B, H, S, Dh)
    self_key: torch.Tensor | None = None  # (B, H, t, Dh)
    self_value: torch.Tensor | None = None  # (B, H, t, Dh)


@dataclass
class DecoderCache:
    """Incremental decoding state: the source mask and the keys/values of every decoder layer.

    With `group` > 1 (see `expand`), each run of `group` consecutive target rows (the beams of one
    sentence) shares one row of the source mask and of the cross-attention keys and values.
    """

    source_mask: torch.Tensor  # (B / group, 1, 1, S), True at real source tokens
    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0  # target positions decoded so far
    group: int = 1  # target rows per source row
    # What `Transformer.decode_step` prepared at its first call: the decoder layers for
    # `nmt.decoder_step`, or None where `decode` runs instead.
    step_layers: list[StepLayer] | None = None
    step_prepared: bool = False
    # The last decoder layer's cross-attention probabilities, averaged over heads and summed
    # over the decoded positions (B, S), once search calls `track_coverage`.
    coverage: torch.Tensor | None = None

    def track_coverage(self, rows: int) -> None:
        """Start summing attention for the coverage penalty over `rows` target rows."""
        self.coverage = self.source_mask.new_zeros(rows, self.source_mask.size(-1),
                                                   dtype=torch.float)

    def expand(self, group: int) -> DecoderCache:
        """Return a cache with `group` target rows per source row, such as the beams of a sentence.

        The source mask and cross-attention keys and values are shared, not copied; cached
        self-attention keys and values, if any, are repeated.
        """
        def repeat(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.repeat_interleave(group, dim=0)

        layers = [LayerCache(layer.cross_key, layer.cross_value, repeat(layer.self_key),
                             repeat(layer.self_value)) for layer in self.layers]
        return DecoderCache(self.source_mask, layers, self.length, self.group * group,
                            self.step_layers, self.step_prepared, repeat(self.coverage))

    def select(self, indices: torch.Tensor, *, same_sources: bool = False) -> DecoderCache:
        """Return the cache rows `indices` (B',), for beam reordering and dropping finished rows.

        In a grouped cache each run of `group` consecutive indices must come from one source row,
        as beam search's reordering does. The result keeps the grouping. Pass `same_sources`
        when the indices keep every source row in place (beams reordered within their
        sentences), which skips checking that.
        """
        source_rows = indices
        if self.group > 1 and not same_sources:
            source_rows = indices.view(-1, self.group)[:, 0] // self.group  # (B' / group,)
        # Reordering beams within their sentences keeps every source row: skip that copy.
        keep_source = same_sources or (
            source_rows.numel() == self.source_mask.size(0)
            and bool((source_rows == torch.arange(source_rows.numel(),
                                                  device=indices.device)).all()))

        def source_select(tensor: torch.Tensor) -> torch.Tensor:
            return tensor if keep_source else tensor.index_select(0, source_rows)

        def target_select(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.index_select(0, indices)

        layers = [LayerCache(source_select(layer.cross_key), source_select(layer.cross_value),
                             target_select(layer.self_key), target_select(layer.self_value))
                  for layer in self.layers]
        return DecoderCache(source_select(self.source_mask), layers, self.length, self.group,
                            self.step_layers, self.step_prepared, target_select(self.coverage))

    def add_coverage(self, probabilities: torch.Tensor) -> None:
        """Add one step's last-layer cross-attention (B, H, S), if coverage is tracked."""
        if self.coverage is not None:
            self.coverage += probabilities.mean(dim=1)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads,
                                                 config.attention_dropout, linear=InferenceLinear)
        self.cross_attention = MultiHeadAttention(config.d_model, config.n_heads,
                                                  config.attention_dropout, linear=InferenceLinear)
        self.feed_forward = FeedForward(config, linear=InferenceLinear)
        self.self_attention_block = Residual(config)
        self.cross_attention_block = Residual(config)
        self.feed_forward_block = Residual(config)

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None,
        source_mask: torch.Tensor,
        cache: LayerCache,
        *,
        need_weights: bool = False,
        group: int = 1,
        packing: Packing | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode `x` (B, T, D), or its real positions (N, D) when `packing` is given.

        With `packing` (teacher forcing only), the cache's self-attention keys are not kept.
        """
        def attend_self(h):
            if packing is not None:
                return self.self_attention.self_attend_packed(h, packing, self_mask), None
            q, key, value = self.self_attention.project_query_key_value(h)  # (B, H, T, Dh) each
            if cache.self_key is not None:
                key = torch.cat([cache.self_key, key], dim=2)  # (B, H, t + T, Dh)
                value = torch.cat([cache.self_value, value], dim=2)
            cache.self_key, cache.self_value = key, value
            return self.self_attention.attend_heads(q, key, value, self_mask)

        def attend_source(h):
            if packing is not None:
                return self.cross_attention.attend_packed(h, packing, cache.cross_key,
                                                          cache.cross_value, source_mask), None
            return self.cross_attention(h, cache.cross_key, cache.cross_value, source_mask,
                                        need_weights=need_weights, group=group)

        x, _ = self.self_attention_block(x, attend_self)
        x, weights = self.cross_attention_block(x, attend_source)
        x, _ = self.feed_forward_block(x, lambda h: (self.feed_forward(h), None))
        return x, weights


class Transformer(nn.Module):
    """Encoder-decoder Transformer with one joint embedding matrix.

    `encode` runs the encoder, `start_cache` precomputes cross-attention keys and values,
    `decode` runs the decoder on new target positions and grows the cache, and `logits` is the
    output projection. Training calls `forward`, which does all of them at once.
    """

    def __init__(self, config: ModelConfig, pad_id: int) -> None:
        super().__init__()
        self.config = config
        self.pad_id = pad_id
        self.embedding = nn.Embedding(config.vocab_size, config.d_model, padding_idx=pad_id)
        self.register_buffer("positions", sinusoidal_positions(config.max_positions,
                                                               config.d_model), persistent=False)
        self.embedding_dropout = Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config)
                                            for _ in range(config.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config)
                                            for _ in range(config.decoder_layers))
        # Pre-norm stacks end with a layer norm; post-norm layers already end normalized.
        self.encoder_norm = nn.LayerNorm(config.d_model) if config.pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(config.d_model) if config.pre_norm else nn.Identity()
        self.output_projection = None
        if not config.tie_embeddings:
            self.output_projection = InferenceLinear(config.d_model, config.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, parameter in self.named_parameters():
            if parameter.dim() > 1 and not name.startswith("embedding"):
                nn.init.xavier_uniform_(parameter)
            elif name.endswith("bias"):
                nn.init.zeros_(parameter)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=self.config.d_model ** -0.5)
        with torch.no_grad():
            self.embedding.weight[self.pad_id].zero_()

    @property
    def output_weight(self) -> torch.Tensor:
        """The output embedding matrix (V, D)."""
        if self.output_projection is None:
            return self.embedding.weight
        return self.output_projection.weight

    def embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = ids.size(1)
        if offset + length > self.config.max_positions:
            raise ValueError(f"sequence of {offset + length} tokens exceeds max_positions "
                             f"({self.config.max_positions})")
        x = self.embedding(ids) * math.sqrt(self.config.d_model)  # (B, L, D)
        x = x + self.positions[offset:offset + length]
        return self.embedding_dropout(x)

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode source ids (B, S); return the memory (B, S, D) and source mask (B, 1, 1, S)."""
        keep = source != self.pad_id  # (B, S)
        source_mask = keep[:, None, None, :]  # (B, 1, 1, S)
        x = self.embed(source)

        # Every layer but attention runs on the real positions only, which skips the padding of
        # a batch of unequal sentences.
        packing = None
        if not bool(keep.all()):
            packing = Packing(keep)
            x = packing.pack(x)  # (N, D)
        for layer in self.encoder_layers:
            x = layer(x, source_mask, packing)
        x = self.encoder_norm(x)
        if packing is not None:
            x = packing.unpack(x)  # (B, S, D), zeros at padding
        return x, source_mask

    def start_cache(self, memory: torch.Tensor, source_mask: torch.Tensor) -> DecoderCache:
        """Precompute every decoder layer's cross-attention keys and values from `memory`."""
        layers = []
        for layer in self.decoder_layers:
            key, value = layer.cross_attention.project_key_value(memory)  # (B, H, S, Dh) each
            layers.append(LayerCache(cross_key=key, cross_value=value))
        return DecoderCache(source_mask, layers)

    def decode(
        self,
        target: torch.Tensor,
        cache: DecoderCache,
        *,
        attention_layer: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode target ids (B, T) that follow the `cache.length` positions already in `cache`.

        Returns decoder states (B, T, D) and, when `attention_layer` is given, that layer's
        cross-attention probabilities (B, H, T, S). The cache grows by T positions.
        """
        length = target.size(1)
        self_mask = None
        if length > 1:
            # Position i attends to every cached position and to new positions up to i.
            total = cache.length + length
            self_mask = torch.ones(length, total, dtype=torch.bool, device=target.device)
            self_mask = torch.tril(self_mask, diagonal=cache.length)  # (T, t + T)

        x = self.embed(target, offset=cache.length)
        attention = None
        layers = zip(self.decoder_layers, cache.layers, strict=True)
        for index, (layer, layer_cache) in enumerate(layers):
            x, weights = layer(x, self_mask, cache.source_mask, layer_cache,
                               need_weights=index == attention_layer, group=cache.group)
            if weights is not None:
                attention = weights
        cache.length += length
        return self.decoder_norm(x), attention

    def decode_step(self, target: torch.Tensor, cache: DecoderCache) -> torch.Tensor:
        """Decode one new position `target` (B, 1) for search; return the decoder states (B, D).

        The same as `decode` (the last position of its states), through the faster flat step of
        `nmt.decoder_step` where that supports the model. The choice is made at the first call
        on a cache and kept with it, so a search makes it once.
        """
        if not cache.step_prepared:
            cache.step_layers, cache.step_prepared = prepare_step(self), True
        if cache.step_layers is not None:
            return decode_step(self, cache.step_layers, target, cache)
        last = None if cache.coverage is None else self.config.decoder_layers - 1
        states, attention = self.decode(target, cache, attention_layer=last)
        if attention is not None:
            cache.add_coverage(attention[:, :, -1])  # (B, H, S)
        return states[:, -1]

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """Project decoder states (..., D) to vocabulary logits (..., V)."""
        if self.output_projection is None:
            if self.training or torch.is_grad_enabled():
                return F.linear(states, self.embedding.weight)
            rows = states.reshape(-1, states.size(-1))  # (N, D)
            logits = gemm.linear(rows, self, self.embedding.weight)  # (N, V)
            return logits.view(*states.shape[:-1], self.config.vocab_size)
        # A module call, so that a quantized replacement of the projection (nmt.quantize) runs.
        return self.output_projection(states)

    def forward(self, source: torch.Tensor, target_input: torch.Tensor) -> torch.Tensor:
        """Return decoder states (B, T, D) for teacher forcing, zeros at padding; apply `logits`
        for scores.

        Like the encoder, the decoder runs every layer but attention on the real target positions
        only. In training batches of similar source length, a third of the target positions can
        be padding.
        """
        memory, source_mask = self.encode(source)
        cache = self.start_cache(memory, source_mask)
        keep = target_input != self.pad_id  # (B, T)
        if bool(keep.all()):
            states, _ = self.decode(target_input, cache)
            return states
        packing = Packing(keep)
        length = target_input.size(1)
        causal = torch.ones(length, length, dtype=torch.bool, device=target_input.device).tril()
        x = packing.pack(self.embed(target_input))  # (N, D)
        for layer, layer_cache in zip(self.decoder_layers, cache.layers, strict=True):
            x, _ = layer(x, causal, source_mask, layer_cache, packing=packing)
        return packing.unpack(self.decoder_norm(x))  # (B, T, D)
