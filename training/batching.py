"""Token-based, length-bucketed batches of encoded sentence pairs."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

__all__ = ["Batch", "collate", "make_batches"]


def make_batches(
    source_lengths: Sequence[int], target_lengths: Sequence[int], *, batch_tokens: int, seed: int
) -> list[list[int]]:
    """Group pair indices into batches of similar length, in a shuffled order fixed by `seed`.

    Pairs are sorted by length (ties in random order) and cut into batches whose padded size,
    (longest source + longest target) × pairs, stays within `batch_tokens`. A pair longer than
    that on its own still gets a batch of one.
    """
    rng = random.Random(seed)
    order = list(range(len(source_lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: (source_lengths[i], target_lengths[i]))

    batches: list[list[int]] = []
    current: list[int] = []
    longest_source = longest_target = 0
    for index in order:
        source_max = max(longest_source, source_lengths[index])
        target_max = max(longest_target, target_lengths[index])
        if current and (source_max + target_max) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, source_max, target_max = [], source_lengths[index], target_lengths[index]
        current.append(index)
        longest_source, longest_target = source_max, target_max
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


class Batch:
    """Padded tensors for teacher forcing.

    source: (B, S) ids + eos; target_input: (B, T) bos + ids; target_output: (B, T) ids + eos.
    """

    def __init__(
        self, source: torch.Tensor, target_input: torch.Tensor, target_output: torch.Tensor
    ) -> None:
        self.source = source
        self.target_input = target_input
        self.target_output = target_output

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.source.to(device), self.target_input.to(device), self.target_output.to(device)
        )


def _pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    tensor = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        tensor[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return tensor


def collate(
    sources: list[list[int]], targets: list[list[int]], *, pad_id: int, bos_id: int, eos_id: int
) -> Batch:
    """Build a `Batch` from token id lists without special tokens."""
    return Batch(
        source=_pad([ids + [eos_id] for ids in sources], pad_id),
        target_input=_pad([[bos_id] + ids for ids in targets], pad_id),
        target_output=_pad([ids + [eos_id] for ids in targets], pad_id),
    )
