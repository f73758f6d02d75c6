"""SentencePiece tokenizer shared by the source (Hindi) and target (English) sides."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm

from nmt.normalize import normalize_text

__all__ = ["Tokenizer"]


class Tokenizer:
    """A joint Hindi-English SentencePiece model with the project's text normalization in front.

    The SentencePiece model is trained with its own normalizer off (rule ``identity``), so
    `nmt.normalize.normalize_text` is the only normalization, the same at training and translation.
    Special token ids are read from the model, never assumed.
    """

    def __init__(self, processor: spm.SentencePieceProcessor) -> None:
        self.processor = processor
        self.pad_id = processor.pad_id()
        self.unk_id = processor.unk_id()
        self.bos_id = processor.bos_id()
        self.eos_id = processor.eos_id()
        self.vocab_size = processor.get_piece_size()
        if min(self.pad_id, self.bos_id, self.eos_id) < 0:
            raise ValueError("the SentencePiece model must define pad, bos and eos pieces")

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load a ``.model`` file written by SentencePiece."""
        processor = spm.SentencePieceProcessor()
        processor.Load(str(path))
        return cls(processor)

    def encode(self, text: str, *, normalize: bool = True) -> list[int]:
        """Return the piece ids of `text`, without bos or eos."""
        if normalize:
            text = normalize_text(text)
        return self.processor.EncodeAsIds(text)

    def encode_batch(self, texts: list[str], *, normalize: bool = True) -> list[list[int]]:
        """Return the piece ids of each text, without bos or eos."""
        if normalize:
            texts = [normalize_text(text) for text in texts]
        return self.processor.EncodeAsIds(texts)

    def decode(self, ids: list[int]) -> str:
        """Return the text of `ids`; special ids are skipped."""
        special = (self.pad_id, self.bos_id, self.eos_id)
        return self.processor.DecodeIds([i for i in ids if i not in special])

    def id_to_piece(self, token_id: int) -> str:
        """Return the piece string of one id."""
        return self.processor.IdToPiece(token_id)

    def is_byte(self, token_id: int) -> bool:
        """Return whether `token_id` is a byte-fallback piece such as ``<0xF0>``."""
        return self.processor.IsByte(token_id)
