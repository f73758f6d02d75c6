"""Cross-attention between a Hindi sentence and its English translation, for display.

The map is computed by teacher forcing: the model reads the source and is fed the finished
translation one position behind, and one decoder layer's cross-attention probabilities are
averaged over its heads. Row i is the step that produces target token i, so each row is a
distribution over the source tokens and sums to 1.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch

from nmt.normalize import normalize_input
from nmt.protect import placeholder, protect
from nmt.translator import Translator

__all__ = ["AttentionMap", "cross_attention"]

logger = logging.getLogger(__name__)

_FIRST_PRIVATE_USE = 0xE000  # start of Unicode's Private Use Area, absent from translations


@dataclass(frozen=True)
class AttentionMap:
    """Cross-attention weights (target tokens × source tokens) with the token strings."""

    source_tokens: list[str]
    target_tokens: list[str]
    weights: list[list[float]]  # weights[i][j]: attention of target token i to source token j


@torch.inference_mode()
def cross_attention(
    translator: Translator, source_text: str, target_text: str, layer: int = -1
) -> AttentionMap:
    """Compute one decoder layer's cross-attention while the model reproduces a translation.

    The source goes through the translator's preprocessing (`normalize_input`, then `protect`),
    and the target is `target_text` re-encoded, with each protected source span that it contains
    put back as its placeholder, as the model produced it. Both sides keep their eos token as the
    last entry, labelled with the tokenizer's eos piece (``</s>``). The source eos column is part
    of every softmax, so rows sum to 1 only with it. The target eos row shows where the model
    looked when it stopped. Token strings are SentencePiece pieces (``▁`` marks a word start),
    except that a placeholder piece shows the span it stands for.

    `layer` indexes the decoder layers and may be negative (-1 is the last). Raises ValueError
    when it is out of range.

    NOTE: the target ids are re-encoded from the final text, so they can differ from the ids the
    search produced where SentencePiece has several segmentations of the same text. A source
    longer than the model accepts is cut like the translator cuts each piece, and the target is
    cut to the model's positions.
    """
    model, tokenizer = translator.model, translator.tokenizer
    layer_index = _resolve_layer(layer, model.config.decoder_layers)

    protected = protect(normalize_input(source_text))
    source_ids = tokenizer.encode(protected.text, normalize=False)
    source_ids = source_ids[: translator.max_source_tokens] + [tokenizer.eos_id]

    # The target input is bos followed by every output token but the last (eos).
    target_ids = tokenizer.encode(_protect_target(target_text, protected.spans))
    target_ids = target_ids[: model.config.max_positions - 1] + [tokenizer.eos_id]
    target_input = [tokenizer.bos_id] + target_ids[:-1]

    device = translator.device
    source = torch.tensor([source_ids], dtype=torch.long, device=device)  # (1, S)
    target = torch.tensor([target_input], dtype=torch.long, device=device)  # (1, T)
    memory, source_mask = model.encode(source)
    cache = model.start_cache(memory, source_mask)
    _, attention = model.decode(target, cache, attention_layer=layer_index)  # (1, H, T, S)
    weights = attention[0].float().mean(dim=0)  # (T, S)

    return AttentionMap(
        source_tokens=_labels(tokenizer, source_ids, protected.spans),
        target_tokens=_labels(tokenizer, target_ids, protected.spans),
        weights=weights.cpu().tolist(),
    )


def _resolve_layer(layer: int, layer_count: int) -> int:
    """Return the non-negative index of decoder layer `layer` (which may count from the end)."""
    if not -layer_count <= layer < layer_count:
        raise ValueError(
            f"attention layer {layer} is out of range for a decoder of {layer_count} "
            f"layer(s); use a value from {-layer_count} to {layer_count - 1}"
        )
    return layer % layer_count


def _protect_target(target_text: str, spans: tuple[str, ...]) -> str:
    """Replace the first whole-word occurrence of each protected span by its placeholder."""
    # Private-use characters mark replaced spans first, because a placeholder contains digits
    # that a later span such as "0" would match.
    for index, span in enumerate(spans):
        pattern = re.compile(r"(?<!\w)" + re.escape(span) + r"(?!\w)")
        marker = chr(_FIRST_PRIVATE_USE + index)
        target_text = pattern.sub(lambda _, marker=marker: marker, target_text, count=1)
    for index in range(len(spans)):
        target_text = target_text.replace(chr(_FIRST_PRIVATE_USE + index), placeholder(index))
    return target_text


def _labels(tokenizer, ids: list[int], spans: tuple[str, ...]) -> list[str]:
    labels = []
    for token_id in ids:
        piece = tokenizer.id_to_piece(token_id)
        for index, span in enumerate(spans):
            piece = piece.replace(placeholder(index), span)
        labels.append(piece)
    return labels
