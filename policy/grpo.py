"""GRPO math as pure tensor functions (no model, no torch.distributed, no Ray).

Runs in the learner process. The group-relative advantages are computed in the (torch-free)
orchestrator, in numpy: policy/advantages.py. Shapes: B*G rows = B prompts x G samples (groups
are consecutive runs of `group_size` rows); T = completion length (padded), masks mark real completion tokens.

The loss is the one of the reference GRPO trainer (TRL, as used by R1-Omni / ERV):
per token, -(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) - kl_coef * k3), with
k3 = exp(ref - logp) - (ref - logp) - 1, aggregated per sequence then over sequences.
Sums can be split over micro-batches or data-parallel ranks: pass the global counts
(`num_sequences`, `num_tokens`) and the parts add up to the global loss and gradient.

Off-policy groups (bounded-staleness async rollouts) use decoupled PPO: the ratio is taken
against the proximal policy (`old_logprobs`: the learner's weights when the batch was formed)
and each token is weighted by w = min(pi_prox / mu, is_cap), mu the sampler's (behaviour)
logprobs. Without behaviour logprobs (every row sampled by the proximal weights) w is not
applied at all, so the loss is bit for bit the on-policy one.
"""

from __future__ import annotations

import torch

AGGREGATIONS = ("sequence-mean", "token-mean")


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1 >= 0."""
    delta = ref_logprobs - logprobs  # (..., T)
    return torch.exp(delta) - delta - 1


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, chunk_rows: int = 32) -> torch.Tensor:
    """log p(token) under logits: logits (N, T, V), token_ids (N, T) -> (N, T), in float32.

    Gathered logit minus logsumexp, in fp32 even under bf16 autocast, because the ratio
    exp(logp - old) amplifies rounding errors. The fp32 upcast is taken `chunk_rows` positions
    at a time (forward and backward), so no (N, T, V) fp32 copy of the logits is ever held.
    """
    n, t, v = logits.shape
    flat = _ChosenLogprob.apply(logits.reshape(n * t, v), token_ids.reshape(n * t), chunk_rows)  # (N*T,)
    return flat.view(n, t)


class _ChosenLogprob(torch.autograd.Function):
    """logits (M, V) any float dtype, token_ids (M,) -> (M,) fp32 logprob of each row's token.

    Written by hand (not log_softmax + gather) because autograd would keep the fp32 upcast of
    the whole (M, V) logits for the backward and make ~10 passes over it; here forward and
    backward each read the logits once per chunk. Backward: d logp / d logits = onehot - softmax.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, token_ids: torch.Tensor, chunk_rows: int) -> torch.Tensor:
        m = logits.shape[0]
        lse = torch.empty(m, dtype=torch.float32, device=logits.device)  # (M,)
        for s in range(0, m, chunk_rows):
            lse[s : s + chunk_rows] = torch.logsumexp(logits[s : s + chunk_rows].float(), dim=-1)
        picked = logits.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1).float()  # (M,)
        ctx.save_for_backward(logits, token_ids, lse)
        ctx.chunk_rows = chunk_rows
        return picked - lse

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, token_ids, lse = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)  # (M, V) in the logits' dtype, as autograd would give
        step = ctx.chunk_rows
        for s in range(0, logits.shape[0], step):
            g = grad[s : s + step].float().unsqueeze(-1)  # (m, 1)
            part = torch.exp(logits[s : s + step].float() - lse[s : s + step].unsqueeze(-1)).mul_(
                -g
            )  # (m, V)
            part.scatter_add_(-1, token_ids[s : s + step].unsqueeze(-1), g)
            grad_logits[s : s + step] = part
        return grad_logits, None, None


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
    behavior_logprobs: torch.Tensor | None = None,
    is_cap: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO clipped surrogate with k3 KL penalty, decoupled-PPO weighted for stale rows. Returns (loss, metrics).

    logprobs, old_logprobs, ref_logprobs, mask: (N, T); advantages: (N,).
    old_logprobs are the proximal policy's, detached (with one update per batch: the current
    logprobs detached, so ratio = 1 and the loss is the reference trainer's exactly).
    behavior_logprobs (N, T) or None: the sampler's logprobs mu; per token the surrogate is
    scaled by w = min(exp(old - mu), is_cap) (rows sampled by the proximal weights pass
    old_logprobs there: w = 1 exactly). None: no weight (the on-policy loss, bit for bit).
    aggregation: "sequence-mean" (token mean within each sequence, then mean over sequences:
    the paper's setting) or "token-mean" (mean over all tokens of the batch).
    num_sequences / num_tokens: global denominators when this call sees a shard of the batch
    (micro-batch or data-parallel rank); default: this call's own counts.
    metrics (0-dim, detached): kl, clip_fraction, ratio_mean, is_weight_mean, is_truncated_fraction
    (token means over this shard), is_weight_max, num_tokens (this shard's masked token count),
    for weighted averaging across shards.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if not is_cap >= 1.0:
        raise ValueError(f"is_cap must be >= 1 (a weight of 1 is never truncated), got {is_cap}")
    mask = mask.to(logprobs.dtype)  # (N, T)
    adv = advantages.to(logprobs.dtype).unsqueeze(1)  # (N, 1)
    ratio = torch.exp(logprobs - old_logprobs.detach())  # (N, T)
    clipped_ratio = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)  # (N, T)
    if behavior_logprobs is None:
        weight = None
        surrogate = torch.min(ratio * adv, clipped_ratio * adv)  # (N, T)
    else:
        raw_weight = torch.exp(old_logprobs.detach() - behavior_logprobs.detach())  # (N, T) pi_prox / mu
        weight = torch.clamp(raw_weight, max=is_cap)  # (N, T)
        surrogate = weight * torch.min(ratio * adv, clipped_ratio * adv)  # (N, T)
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
            "is_weight_mean": torch.ones((), dtype=mask.dtype, device=mask.device),
            "is_weight_max": torch.ones((), dtype=mask.dtype, device=mask.device),
            "is_truncated_fraction": torch.zeros((), dtype=mask.dtype, device=mask.device),
            "num_tokens": count,
        }
        if weight is not None:
            metrics["is_weight_mean"] = (weight * mask).sum() / safe
            metrics["is_weight_max"] = (weight * mask).max() if count > 0 else metrics["is_weight_max"]
            metrics["is_truncated_fraction"] = ((raw_weight > is_cap).to(mask.dtype) * mask).sum() / safe
    return loss, metrics
