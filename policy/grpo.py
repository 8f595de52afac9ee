"""GRPO math as pure tensor functions (no model, no torch.distributed, no Ray).

Runs wherever it is called: in the learner process for the loss, in the orchestrator for
advantages. Shapes: B*G rows = B prompts x G samples (groups are consecutive runs of
`group_size` rows); T = completion length (padded), masks mark real completion tokens.

The loss is the one of the reference GRPO trainer (TRL, as used by R1-Omni / ERV):
per token, -(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) - kl_coef * k3), with
k3 = exp(ref - logp) - (ref - logp) - 1, aggregated per sequence then over sequences.
Sums can be split over micro-batches or data-parallel ranks: pass the global counts
(`num_sequences`, `num_tokens`) and the parts add up to the global loss and gradient.
"""

from __future__ import annotations

import torch

AGGREGATIONS = ("sequence-mean", "token-mean")


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(r - mean_g) / (std_g + eps) within each group; rewards (B*G,) -> advantages (B*G,).

    std is the unbiased one (as the reference trainer's `torch.std`), so group_size >= 2.
    A group whose rewards are all equal gets zeros (no learning signal).
    """
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for the unbiased std, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must have shape (B*G,) with G={group_size}, got {tuple(rewards.shape)}")
    grouped = rewards.float().view(-1, group_size)  # (B, G)
    mean = grouped.mean(dim=1, keepdim=True)  # (B, 1)
    std = grouped.std(dim=1, keepdim=True)  # (B, 1), unbiased
    return ((grouped - mean) / (std + eps)).view(-1)  # (B*G,)


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1 >= 0."""
    delta = ref_logprobs - logprobs  # (..., T)
    return torch.exp(delta) - delta - 1


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log p(token) under logits: logits (N, T, V), token_ids (N, T) -> (N, T), in float32.

    Computed as gathered logit minus logsumexp, in fp32 even under bf16 autocast, because
    the ratio exp(logp - old) amplifies rounding errors.
    """
    logits = logits.float()
    picked = logits.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)  # (N, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (N, T)


def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    kl_coef: float = 0.04,
    aggregation: str = "sequence-mean",
    num_sequences: int | None = None,
    num_tokens: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO clipped surrogate with k3 KL penalty. Returns (loss, metrics).

    logprobs, old_logprobs, ref_logprobs, mask: (N, T); advantages: (N,).
    old_logprobs are detached (with one update per batch: the current logprobs detached,
    so ratio = 1 and the loss is the reference trainer's exactly).
    aggregation: "sequence-mean" (token mean within each sequence, then mean over sequences:
    the paper's setting) or "token-mean" (mean over all tokens of the batch).
    num_sequences / num_tokens: global denominators when this call sees a shard of the batch
    (micro-batch or data-parallel rank); default: this call's own counts.
    metrics (0-dim, detached): kl, clip_fraction, ratio_mean (token means over this shard),
    num_tokens (this shard's masked token count), for weighted averaging across shards.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    mask = mask.to(logprobs.dtype)  # (N, T)
    adv = advantages.to(logprobs.dtype).unsqueeze(1)  # (N, 1)
    ratio = torch.exp(logprobs - old_logprobs.detach())  # (N, T)
    clipped_ratio = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)  # (N, T)
    surrogate = torch.min(ratio * adv, clipped_ratio * adv)  # (N, T)
    kl = kl_k3(logprobs, ref_logprobs.detach())  # (N, T)
    per_token_loss = -(surrogate - kl_coef * kl) * mask  # (N, T)

    if aggregation == "sequence-mean":
        seq_len = mask.sum(dim=1).clamp(min=1)  # (N,)
        denom = num_sequences if num_sequences is not None else logprobs.shape[0]
        loss = (per_token_loss.sum(dim=1) / seq_len).sum() / denom
    else:
        denom = num_tokens if num_tokens is not None else mask.sum().clamp(min=1)
        loss = per_token_loss.sum() / denom

    with torch.no_grad():
        count = mask.sum()
        safe = count.clamp(min=1)
        # Clipping is active where the clipped term is the smaller one: the gradient is cut there.
        is_clipped = ((ratio < 1 - clip_eps) & (adv < 0)) | ((ratio > 1 + clip_eps) & (adv > 0))
        metrics = {
            "kl": (kl * mask).sum() / safe,
            "clip_fraction": (is_clipped.to(mask.dtype) * mask).sum() / safe,
            "ratio_mean": (ratio * mask).sum() / safe,
            "num_tokens": count,
        }
    return loss, metrics
