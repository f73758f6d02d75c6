"""Build a vocabulary shortlist (`nmt.shortlist`) from co-occurrence counts in parallel data.

For a source piece s and a target piece t, c(s, t) counts the sentence pairs that contain both,
c(s) and c(t) the pairs that contain each, and N the pairs. Each source piece keeps the target
pieces with the highest local mutual information, c(s, t) · log(c(s, t) · N / (c(s) · c(t))),
among those that co-occur with it at least `min_count` times and more often than chance. The
`frequent` most frequent target pieces are candidates for every sentence (and are not listed
again under a source piece), and each source piece is a candidate for itself, so copied pieces
stay reachable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from nmt.shortlist import Shortlist

__all__ = ["build_shortlist", "cooccurrence_counts"]

logger = logging.getLogger(__name__)

CHUNK_PAIRS = 20_000  # sentence pairs whose co-occurrence keys are counted at once


def cooccurrence_counts(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                        vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the pair-level counts (keys, c(s, t), c(s), c(t)) as three tensors.

    The first is (K, 3): source id, target id and count of each co-occurring pair; then c(s) (V,)
    and c(t) (V,), the number of sentence pairs that contain each piece.
    """
    keys, counts = [], []
    source_counts = torch.zeros(vocab_size, dtype=torch.long)
    target_counts = torch.zeros(vocab_size, dtype=torch.long)
    for start in range(0, len(sources), CHUNK_PAIRS):
        chunk = []
        for source, target in zip(sources[start:start + CHUNK_PAIRS],
                                  targets[start:start + CHUNK_PAIRS], strict=True):
            s = torch.tensor(sorted(set(source)), dtype=torch.long)
            t = torch.tensor(sorted(set(target)), dtype=torch.long)
            source_counts[s] += 1
            target_counts[t] += 1
            chunk.append((s[:, None] * vocab_size + t[None, :]).view(-1))
        if chunk:
            unique, count = torch.cat(chunk).unique(return_counts=True)
            keys.append(unique)
            counts.append(count)
    if not keys:
        return torch.zeros(0, 3, dtype=torch.long), source_counts, target_counts
    unique, inverse = torch.cat(keys).unique(return_inverse=True)
    total = torch.zeros(unique.numel(), dtype=torch.long).index_add_(0, inverse, torch.cat(counts))
    table = torch.stack([unique // vocab_size, unique % vocab_size, total], dim=1)  # (K, 3)
    return table, source_counts, target_counts


def build_shortlist(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                    vocab_size: int, *, per_source: int = 50, frequent: int = 500,
                    min_count: int = 2, always: Sequence[int] = ()) -> Shortlist:
    """Build a shortlist from encoded sentence pairs (piece ids without bos or eos).

    `always` adds ids that are candidates for every sentence (such as special pieces).
    """
    if per_source < 0 or frequent < 0:
        raise ValueError("per_source and frequent must be at least 0")
    table, source_counts, target_counts = cooccurrence_counts(sources, targets, vocab_size)
    pairs = len(sources)
    s, t, count = table.unbind(dim=1)  # (K,) each
    ratio = count.double() * pairs / (source_counts[s] * target_counts[t]).double()
    score = count.double() * ratio.log()  # local mutual information
    keep = (count >= min_count) & (ratio > 1.0)
    s, t, score = s[keep], t[keep], score[keep]

    # Sort by source piece, then by score, best first; then cut each source's run at per_source.
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(s[order], stable=True)]
    s, t = s[order], t[order]
    by_source: dict[int, list[int]] = {}
    for source_id, target_id in zip(s.tolist(), t.tolist(), strict=True):
        candidates = by_source.setdefault(source_id, [source_id])
        if len(candidates) <= per_source:
            candidates.append(target_id)
    for source_id in (source_counts > 0).nonzero().view(-1).tolist():
        by_source.setdefault(source_id, [source_id])

    top = torch.argsort(target_counts, descending=True, stable=True)[:frequent]
    common = [i for i in top.tolist() if target_counts[i] > 0]
    # Candidates of every sentence need not be listed again under a source piece.
    listed = set(common) | set(always)
    by_source = {key: [i for i in dict.fromkeys(value) if i not in listed]
                 for key, value in by_source.items()}
    logger.info("shortlist: %d always, %d source pieces, %.1f more candidates per source piece",
                len(listed), len(by_source),
                sum(map(len, by_source.values())) / max(1, len(by_source)))
    return Shortlist(vocab_size, [*always, *common], by_source)
