"""Translation of whole texts: segmentation, batched decoding and reassembly."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from nmt.pipeline import SentenceTranslator, TextResult, assemble, segment_texts
from nmt.segment import Segmented
from service.batcher import DecodeOptions, DynamicBatcher

if TYPE_CHECKING:
    from nmt.attention_map import AttentionMap

logger = logging.getLogger(__name__)


class TranslatorLike(SentenceTranslator, Protocol):
    """The part of `nmt.translator.Translator` that the service uses."""

    def count_tokens(self, text: str) -> int: ...


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

        The steps are those of `nmt.pipeline.translate_texts`, with the batcher between
        segmentation and assembly: all sentences of all texts go to it as one job.
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
            sentence_translations = translations[position : position + count]
            results.append(assemble(item, sentence_translations, options.n_best))
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
        segmented = segment_texts(texts)
        count_tokens = self.translator.count_tokens
        tokens = [count_tokens(sentence) for item in segmented for sentence in item.sentences]
        return segmented, tokens
