"""Training of the joint Hindi-English SentencePiece model."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from nmt.normalize import normalize_text
from nmt.protect import placeholder_symbols

__all__ = ["train_tokenizer"]

logger = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def train_tokenizer(
    sentences: Iterable[str],
    out_path: Path,
    *,
    vocab_size: int = 8000,
    model_type: str = "unigram",
    max_sentences: int = 2_000_000,
    seed_sentencepiece_size: int = 1_000_000,
    hard_vocab_limit: bool = True,
) -> Path:
    """Train a SentencePiece model on normalized `sentences` and write ``out_path`` (a ``.model``).

    Character coverage is 1.0 so that every Devanagari character is a piece, and byte fallback
    turns any character outside the vocabulary into byte pieces instead of the unknown id.
    SentencePiece's own normalizer is off: `normalize_text` is the only normalization.
    `hard_vocab_limit=False` lets a tiny corpus give fewer pieces than asked (used by tests).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    normalized = [normalize_text(s) for s in sentences]
    normalized = [s for s in normalized if s]
    logger.info("training a %s tokenizer of %d pieces on %d sentences", model_type, vocab_size,
                len(normalized))

    model = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(normalized),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        user_defined_symbols=placeholder_symbols(),
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        input_sentence_size=max_sentences,
        shuffle_input_sentence=True,
        seed_sentencepiece_size=seed_sentencepiece_size,
        hard_vocab_limit=hard_vocab_limit,
        num_threads=2,
        minloglevel=2,
    )
    out_path.write_bytes(model.getvalue())
    return out_path
