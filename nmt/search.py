"""Greedy and beam search over a `Transformer`, batched, with incremental decoding."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmt.model import DecoderCache, Transformer

__all__ = ["Hypothesis", "beam_search", "coverage_penalty", "greedy_search", "length_penalty",
           "max_output_lengths"]


@dataclass(frozen=True)
class Hypothesis:
    """One output: token ids without bos and eos, its score and its summed log-probability."""

    tokens: list[int]
    score: float
    log_prob: float


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016, section 7)."""
    return ((5.0 + length) / 6.0) ** alpha


def coverage_penalty(coverage: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
    """GNMT coverage penalty Σ_j log(min(c_j, 1)) of each row (Wu et al. 2016, section 7).

    coverage (N, S) is the attention each source position received, summed over the output's
    positions, and source_mask (N, S) is True at real source tokens. Returns (N,), at most 0,
    which is lower the more source tokens the output left unattended.
    """
    # The floor keeps a position that got no attention at all finite.
    logs = coverage.clamp(min=1e-6, max=1.0).log()
    return torch.where(source_mask, logs, 0.0).sum(dim=-1)


def max_output_lengths(source_lengths: torch.Tensor, ratio: float, extra: int,
                       max_positions: int, cap: int | None = None) -> torch.Tensor:
    """Return each sentence's maximum output length in tokens: ratio · source length + extra.

    The result never exceeds `cap` nor `max_positions - 1`, because position 0 is the bos token.
    """
    upper = max_positions - 1 if cap is None else min(cap, max_positions - 1)
    # Clamped as floats, so that a huge ratio or extra cannot overflow the integer conversion.
    limit = (source_lengths.double() * ratio).floor() + extra
    return limit.clamp(min=1, max=upper).long()


def _ban_repeated_ngrams(prefixes: torch.Tensor, log_probs: torch.Tensor, size: int) -> None:
    """Set to -inf, in place, each token that would repeat an n-gram of `size` already in a prefix.

    prefixes: (N, L) token ids so far; log_probs: (N, V) scores of the next token.
    """
    if size <= 0 or prefixes.size(1) < size:
        return
    windows = prefixes.unfold(1, size, 1)  # every n-gram of each prefix (N, L - size + 1, size)
    context = prefixes[:, prefixes.size(1) - size + 1:]  # the last size - 1 tokens (N, size - 1)
    # An n-gram whose first size - 1 tokens equal the context bans its last token.
    repeats = (windows[:, :, :-1] == context[:, None, :]).all(dim=-1)  # (N, L - size + 1)
    rows, starts = repeats.nonzero(as_tuple=True)
    log_probs[rows, windows[rows, starts, -1]] = float("-inf")


@torch.inference_mode()
def greedy_search(
    model: Transformer,
    source: torch.Tensor,
    *,
    bos_id: int,
    eos_id: int,
    max_length_ratio: float = 1.5,
    max_length_extra: int = 10,
    alpha: float = 1.0,
    no_repeat_ngram_size: int = 0,
    max_length: int | None = None,
) -> list[Hypothesis]:
    """Translate source ids (B, S) by taking the most probable token at each step.

    A sentence leaves the batch once it has emitted eos, so the model only runs on live rows.
    """
    batch = source.size(0)
    device = source.device
    memory, source_mask = model.encode(source)
    cache = model.start_cache(memory, source_mask)
    max_lengths = max_output_lengths(source_mask.view(batch, -1).sum(-1), max_length_ratio,
                                     max_length_extra, model.config.max_positions, max_length)
    steps = int(max_lengths.max())

    # Row b contains bos, the tokens of sentence b, and eos from the step it finished on.
    tokens = torch.full((batch, steps + 1), eos_id, dtype=torch.long, device=device)  # (B, L)
    tokens[:, 0] = bos_id
    log_prob = torch.zeros(batch, device=device)
    live = torch.arange(batch, device=device)  # sentences still decoding (b,)
    for step in range(steps):
        states = model.decode_step(tokens[live, step:step + 1], cache)  # (b, D)
        step_scores = torch.log_softmax(model.logits(states).float(), dim=-1)  # (b, V)
        _ban_repeated_ngrams(tokens[live, 1:step + 1], step_scores, no_repeat_ngram_size)
        at_limit = max_lengths[live] <= step + 1
        if at_limit.any():
            step_scores[at_limit] = float("-inf")
            step_scores[at_limit, eos_id] = 0.0

        best_score, best = step_scores.max(dim=-1)  # (b,)
        log_prob[live] += best_score
        tokens[live, step + 1] = best
        ended = best == eos_id
        if ended.any():
            still = (~ended).nonzero().view(-1)
            if still.numel() == 0:
                break
            live = live[still]
            cache = cache.select(still)

    hypotheses = []
    for row, score in zip(tokens[:, 1:].tolist(), log_prob.tolist(), strict=True):
        output = row[:row.index(eos_id)] if eos_id in row else row
        penalty = length_penalty(len(output) + 1, alpha)
        hypotheses.append(Hypothesis(output, score / penalty, score))
    return hypotheses


@torch.inference_mode()
def beam_search(
    model: Transformer,
    source: torch.Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    n_best: int = 1,
    alpha: float = 1.0,
    beta: float = 0.0,
    max_length_ratio: float = 1.5,
    max_length_extra: int = 10,
    no_repeat_ngram_size: int = 0,
    max_length: int | None = None,
) -> list[list[Hypothesis]]:
    """Translate source ids (B, S) with beam search; return the `n_best` best hypotheses of each.

    All B × K beams are one tensor of rows; row b·K + k is beam k of sentence b. A sentence is
    finished once `beam_size` hypotheses have ended in eos, or at its maximum output length, and its
    rows then leave the batch. Scores are log-probabilities divided by the GNMT length penalty,
    plus `beta` times the GNMT coverage penalty where `beta` > 0.

    NOTE: the coverage penalty ranks finished hypotheses only. Live beams compete on
    log-probability alone, so `beta` changes which of the found hypotheses comes first, not
    which are found.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), not {n_best}")
    if beta < 0:
        raise ValueError(f"beta must be at least 0, got {beta}")
    batch, beam = source.size(0), beam_size
    device = source.device

    memory, source_mask = model.encode(source)
    max_lengths = max_output_lengths(source_mask.view(batch, -1).sum(-1), max_length_ratio,
                                     max_length_extra, model.config.max_positions, max_length)
    cache = model.start_cache(memory, source_mask).expand(beam)  # B·K target rows
    if beta > 0:
        cache.track_coverage(batch * beam)

    tokens = torch.full((batch * beam, 1), bos_id, dtype=torch.long, device=device)  # (B·K, 1)
    beam_scores = torch.zeros(batch, beam, device=device)
    beam_scores[:, 1:] = float("-inf")  # every beam starts identical: keep only the first
    sentence_ids = torch.arange(batch, device=device)  # original index of each sentence still live
    live_ids = sentence_ids.tolist()  # the same, as a list
    limits = max_lengths.tolist()
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]

    for step in range(int(max_lengths.max())):
        live = len(live_ids)
        states = model.decode_step(tokens[:, -1:], cache)  # (b·K, D)
        step_scores = torch.log_softmax(model.logits(states).float(), dim=-1)  # (b·K, V)
        _ban_repeated_ngrams(tokens[:, 1:], step_scores, no_repeat_ngram_size)
        if step + 1 >= min(limits[i] for i in live_ids):
            at_limit = (max_lengths[sentence_ids] <= step + 1).repeat_interleave(beam)  # (b·K,)
            step_scores[at_limit] = float("-inf")
            step_scores[at_limit, eos_id] = 0.0

        # A sentence's 2K best extensions are among the 2K best tokens of each of its beams, so
        # only those (all of them, in a vocabulary under 2K) are added to their beam's score.
        per_beam = min(2 * beam, step_scores.size(-1))
        row_scores, row_tokens = step_scores.topk(per_beam, dim=1)  # (b·K, k)
        total = (row_scores + beam_scores.view(-1, 1)).view(live, beam * per_beam)  # (b, K·k)
        candidate_scores, candidates = total.topk(2 * beam, dim=1)  # (b, 2K), best first
        origin = candidates // per_beam  # beam each candidate extends (b, 2K)
        token = row_tokens.view(live, beam * per_beam).gather(1, candidates)
        is_eos = (token == eos_id) & (candidate_scores > float("-inf"))

        # Candidates ending in eos among the top K become finished hypotheses.
        ended = is_eos[:, :beam].nonzero().tolist()
        coverage = _ended_coverage(cache, ended, origin, beam) if beta > 0 and ended else None
        for index, (sentence, rank) in enumerate(ended):
            source_row = sentence * beam + int(origin[sentence, rank])
            output = tokens[source_row, 1:].tolist()
            log_prob = float(candidate_scores[sentence, rank])
            score = log_prob / length_penalty(len(output) + 1, alpha)
            if coverage is not None:
                score += beta * coverage[index]
            finished[live_ids[sentence]].append(Hypothesis(output, score, log_prob))

        # The K best candidates that do not end in eos continue; at most K of 2K end in eos.
        order = (torch.arange(2 * beam, device=device) + is_eos * 2 * beam).argsort(dim=1)[:, :beam]
        next_scores = candidate_scores.gather(1, order)  # (b, K)
        next_origin = origin.gather(1, order)
        next_token = token.gather(1, order).view(-1, 1)  # (b·K, 1)
        parent_rows = (torch.arange(live, device=device)[:, None] * beam + next_origin).view(-1)

        # Sentences leave the batch only on a step where one of their hypotheses ended.
        done = [len(finished[live_ids[sentence]]) >= beam for sentence, _ in ended]
        if not any(done):
            tokens = torch.cat([tokens[parent_rows], next_token], dim=1)
            beam_scores = next_scores
            cache = cache.select(parent_rows, same_sources=True)
            continue
        still = [index for index, i in enumerate(live_ids) if len(finished[i]) < beam]
        if not still:
            break
        keep = torch.tensor(still, device=device)  # (b',) sentences still searching
        keep_rows = (keep[:, None] * beam + torch.arange(beam, device=device)).view(-1)
        parent_rows = parent_rows[keep_rows]
        tokens = torch.cat([tokens[parent_rows], next_token[keep_rows]], dim=1)
        beam_scores = next_scores[keep]
        cache = cache.select(parent_rows)
        sentence_ids = sentence_ids[keep]
        live_ids = [live_ids[index] for index in still]

    results = []
    for hypotheses in finished:
        hypotheses.sort(key=lambda h: h.score, reverse=True)
        results.append(hypotheses[:n_best])
    return results


def _ended_coverage(cache: DecoderCache, ended: list[list[int]], origin: torch.Tensor,
                    beam: int) -> list[float]:
    """Return the coverage penalty of each ended candidate [sentence, rank] of this step.

    The cache's coverage already contains the attention of this step, which chose eos.
    """
    sentences = torch.tensor([sentence for sentence, _ in ended], device=origin.device)
    ranks = torch.tensor([rank for _, rank in ended], device=origin.device)
    rows = sentences * beam + origin[sentences, ranks]  # the beam each one extends
    # The cache keeps one source row per sentence (`DecoderCache.expand`).
    mask = cache.source_mask.view(cache.source_mask.size(0), -1)[sentences]  # (n, S)
    return coverage_penalty(cache.coverage[rows], mask).tolist()
