"""Training losses: label-smoothed cross-entropy and the additive angular margin term.

The margin term follows ArcFace (Deng et al. 2019, "ArcFace: Additive Angular Margin Loss for Deep
Face Recognition", eq. 3), applied to the output embeddings: with W_j the L2-normalized output
embedding of token j and x the L2-normalized decoder state, c_j = cos θ_j = W_j · x, and the target
token y gets c_y = cos(θ_y + m). The term is CE(s · c), added to the ordinary loss with weight λ.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["angular_margin_cosines", "margin_loss", "translation_loss"]

# cos θ is clamped this far inside [-1, 1] so that sin θ = sqrt(1 - cos² θ) keeps a finite gradient.
_COS_EPS = 1e-6


def angular_margin_cosines(cosine: torch.Tensor, target: torch.Tensor,
                           margin: float) -> torch.Tensor:
    """Return `cosine` (N, V) with the target column replaced by cos(θ_y + m).

    cos(θ + m) = cos θ cos m − sin θ sin m needs no acos. Past θ + m = π it would turn back up, so
    there the curve continues as cos θ − m sin m (the linear extension used by ArcFace's reference
    code), which keeps the target logit monotone decreasing in θ.
    """
    cos_y = cosine.gather(1, target[:, None]).clamp(-1 + _COS_EPS, 1 - _COS_EPS)  # (N, 1)
    sin_y = torch.sqrt((1.0 - cos_y * cos_y).clamp_min(_COS_EPS))
    shifted = cos_y * math.cos(margin) - sin_y * math.sin(margin)
    threshold = math.cos(math.pi - margin)  # cos θ below this means θ + m > π
    shifted = torch.where(cos_y > threshold, shifted, cos_y - margin * math.sin(margin))
    return cosine.scatter(1, target[:, None], shifted)


def margin_loss(states: torch.Tensor, output_weight: torch.Tensor, target: torch.Tensor, *,
                margin: float, scale: float, ignore_index: int) -> torch.Tensor:
    """Return the summed CE(s · c) over non-padding positions.

    states: (N, D); output_weight: (V, D); target: (N,).

    No label smoothing here: the margin always goes to the gold token's logit.
    """
    keep = target != ignore_index
    states, target = states[keep], target[keep]
    cosine = F.normalize(states.float(), dim=-1) @ F.normalize(output_weight.float(), dim=-1).T
    logits = scale * angular_margin_cosines(cosine, target, margin)  # (N, V)
    return F.cross_entropy(logits, target, reduction="sum")


def translation_loss(
    states: torch.Tensor,
    output_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    pad_id: int,
    label_smoothing: float = 0.1,
    margin_weight: float = 0.0,
    margin: float = 0.2,
    margin_scale: float = 16.0,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return (summed total loss, summed plain cross-entropy, target token count).

    states: decoder outputs (B, T, D); target: gold ids (B, T) with `pad_id` at padding.
    Total = CE(logits, label smoothing) + λ · margin term; λ = 0 skips the margin term entirely,
    which gives exactly the plain loss.
    """
    keep = target != pad_id  # (B, T)
    # The output projection and softmax are the largest step of a small model, so they run on the
    # N real target positions only.
    states, target = states[keep], target[keep]  # (N, D), (N,)
    log_probs = torch.log_softmax(F.linear(states, output_weight).float(), dim=-1)  # (N, V)
    nll = -log_probs.gather(1, target[:, None]).squeeze(1)  # (N,)
    # Label smoothing as torch's cross_entropy defines it: (1 - ε) · NLL + ε · mean_j(-log p_j).
    uniform = -log_probs.mean(dim=-1)
    plain = nll.sum()
    total = ((1.0 - label_smoothing) * nll + label_smoothing * uniform).sum()
    if margin_weight > 0:
        total = total + margin_weight * margin_loss(states, output_weight, target, margin=margin,
                                                    scale=margin_scale, ignore_index=pad_id)
    return total, plain.detach(), target.numel()
