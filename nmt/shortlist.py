"""Vocabulary shortlist: the target pieces a search may produce for a batch of source sentences.

The output projection, the softmax and the top-k of each decoding step all grow with the
vocabulary. A shortlist restricts them to the pieces that the source sentences of a batch make
likely: pieces that co-occur with a source piece in the training data, the most frequent target
pieces, and each source piece itself (numbers, names and placeholders are copied). The search
then renormalizes over those candidates only.

The file is ``shortlist.txt`` in a model directory, in the text format of CTranslate2's
vocabulary map, so an export can use the same list (``use_vmap``)::

    <TAB>the , . of ...          (no source piece: pieces that are always candidates)
    ▁भारत<TAB>▁India ▁Indian ...  (a source piece, then its candidates)

`training.shortlist` builds it from the training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from nmt.tokenizer import Tokenizer

__all__ = ["SHORTLIST", "Shortlist"]

SHORTLIST = "shortlist.txt"


class Shortlist:
    """Candidate target ids: `always` for every batch, `by_source[id]` for each source piece."""

    def __init__(self, vocab_size: int, always: Sequence[int],
                 by_source: dict[int, Sequence[int]]) -> None:
        self.vocab_size = vocab_size
        self.always = torch.tensor(sorted(set(always)), dtype=torch.long)
        self.by_source = {source: torch.tensor(list(targets), dtype=torch.long)
                          for source, targets in by_source.items()}

    def candidates(self, sources: Sequence[Sequence[int]]) -> torch.Tensor:
        """Return the sorted candidate target ids (V',) for a batch of source id lists."""
        seen = {token for ids in sources for token in ids}
        parts = [self.always] + [self.by_source[token] for token in seen if token in self.by_source]
        return torch.unique(torch.cat(parts))  # sorted

    @classmethod
    def load(cls, path: str | Path, tokenizer: Tokenizer) -> Shortlist:
        """Read a shortlist file; every piece in it must be in the tokenizer's vocabulary.

        The tokenizer's special pieces (unknown, bos, eos) are always candidates.
        """
        ids = {tokenizer.id_to_piece(i): i for i in range(tokenizer.vocab_size)}
        always = [tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id]
        by_source: dict[int, list[int]] = {}
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            source, tab, targets = line.partition("\t")
            if not tab:
                raise ValueError(f"{path}, line {number}: expected a tab after the source piece")
            unknown = [p for p in [source, *targets.split()] if p and p not in ids]
            if unknown:
                raise ValueError(f"{path}, line {number}: {unknown[0]!r} is not a piece of the "
                                 f"tokenizer")
            target_ids = [ids[piece] for piece in targets.split()]
            if source:
                by_source[ids[source]] = target_ids
            else:
                always += target_ids
        return cls(tokenizer.vocab_size, always, by_source)

    def save(self, path: str | Path, tokenizer: Tokenizer) -> None:
        """Write the shortlist in the text format above."""
        def pieces(ids: torch.Tensor) -> str:
            return " ".join(tokenizer.id_to_piece(i) for i in ids.tolist())

        lines = [f"\t{pieces(self.always)}"]
        lines += [f"{tokenizer.id_to_piece(source)}\t{pieces(targets)}"
                  for source, targets in sorted(self.by_source.items())]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
