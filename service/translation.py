"""Translation of whole texts: segmentation, batched decoding and reassembly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nmt.segment import Segmented, split_text
from service.batcher import DecodeOptions, DynamicBatcher

if TYPE_CHECKING:
    from nmt.attention_map import AttentionMap

logger = logging.getLogger(__name__)


class TranslatorLike(Protocol):
    """The part of `nmt.translator.Translator` that the service uses."""

    max_source_tokens: int

    def translate(
        self,
        texts: Sequence[str],
        *,
        beam_size: int | None = None,
        n_best: int = 1,
        max_length: int | None = None,
    ) -> list[Any]: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class TextResult:
    """Translation of one input text, with its score and next-best alternatives.

    `sentences` pairs each sentence sent to the model with its best translation.
    """

    translation: str
    score: float
    alternatives: list[str]
    alternative_scores: list[float] = field(default_factory=list)
    sentences: list[tuple[str, str]] = field(default_factory=list)


def run_translator(
    translator: TranslatorLike, sentences: list[str], options: DecodeOptions
) -> list[Any]:
    """Translate one batch of sentences. Blocking: the batcher calls it in its worker thread."""
    return translator.translate(
        sentences,
        beam_size=options.beam_size,
        n_best=options.n_best,
        max_length=options.max_length,
    )


class TranslationService:
    """Translate texts of any length with a translator shared through a batcher."""

    def __init__(self, translator: TranslatorLike, batcher: DynamicBatcher) -> None:
        self.translator = translator
        self.batcher = batcher

    async def translate(self, texts: list[str], options: DecodeOptions) -> list[TextResult]:
        """Translate `texts`, keeping their order and the layout of each one.

        All sentences of all texts go to the batcher as one job. With n_best > 1, the
        k-th alternative of a text joins the k-th hypothesis of each of its sentences (or
        the sentence's last hypothesis when it has fewer).
        """
        # Segmentation and token counting take milliseconds for long inputs: keep them
        # off the event loop too.
        segmented, tokens = await asyncio.to_thread(self._segment, texts)
        sentences = [sentence for item in segmented for sentence in item.sentences]
        translations = await self.batcher.translate(sentences, tokens, options)

        results = []
        position = 0
        for item in segmented:
            count = len(item.sentences)
            results.append(_assemble(item, translations[position : position + count], options))
            position += count
        return results

    @property
    def decoder_layers(self) -> int | None:
        """Decoder layers of the translator's model, or None when it exposes no model."""
        model = getattr(self.translator, "model", None)
        config = getattr(model, "config", None)
        return getattr(config, "decoder_layers", None)

    async def attention_maps(
        self, sentences: list[tuple[str, str]], layer: int
    ) -> list[AttentionMap]:
        """Compute the cross-attention map of each (source, translation) sentence pair.

        Needs a translator with a model (`decoder_layers` is not None). Runs in the
        batcher's worker thread, so it never competes with a translation batch.
        """
        from nmt.attention_map import cross_attention

        def compute() -> list[AttentionMap]:
            return [
                cross_attention(self.translator, source, target, layer)  # type: ignore[arg-type]
                for source, target in sentences
            ]

        return await self.batcher.run_in_worker(compute)

    def _segment(self, texts: list[str]) -> tuple[list[Segmented], list[int]]:
        limit = self.translator.max_source_tokens
        count_tokens = self.translator.count_tokens
        segmented = [
            split_text(text, max_tokens=limit, count_tokens=count_tokens) for text in texts
        ]
        tokens = [count_tokens(sentence) for item in segmented for sentence in item.sentences]
        return segmented, tokens


def _assemble(item: Segmented, translations: Sequence[Any], options: DecodeOptions) -> TextResult:
    """Join one text's sentence translations back into its layout."""
    if not translations:  # nothing to translate: numbers, punctuation or URLs only
        return TextResult(translation=item.join([]), score=0.0, alternatives=[])

    best = item.join([translation.text for translation in translations])
    score = sum(translation.score for translation in translations) / len(translations)

    hypotheses = [translation.alternatives or [translation] for translation in translations]
    available = max(len(hyps) for hyps in hypotheses)
    alternatives = []
    alternative_scores = []
    for rank in range(1, min(options.n_best, available)):
        chosen = [hyps[min(rank, len(hyps) - 1)] for hyps in hypotheses]
        alternatives.append(item.join([hypothesis.text for hypothesis in chosen]))
        alternative_scores.append(sum(hypothesis.score for hypothesis in chosen) / len(chosen))

    sentences = [
        (sentence, translation.text)
        for sentence, translation in zip(item.sentences, translations, strict=True)
    ]
    return TextResult(
        translation=best,
        score=score,
        alternatives=alternatives,
        alternative_scores=alternative_scores,
        sentences=sentences,
    )
