"""Padded micro-batch tensors and the completion-token logprobs of a forward pass.

Runs in the learner process (and the SFT trainer); shared by `policy.learner` and `policy.sft`.
Memory layout: prompts left-padded to the longest prompt, completions right-padded, so every
completion starts at the same column and only the C positions before the last need the output projection.
Also: the frozen reference's Linear weights held in bf16 for a learner that computes in bf16.
"""

from __future__ import annotations

import torch

from policy import multimodal
from policy.grpo import token_logprobs


def pad_rows(prompts: list[list[int]], completions: list[list[int]], pad_id: int, device) -> dict:
    """Token lists -> padded tensors: [left pad | prompt | completion | right pad].

    Returns input_ids, attention_mask, position_ids (N, P+C) and completion_mask (N, C),
    where P = longest prompt and C = longest completion of these rows.
    """
    p_max = max(len(p) for p in prompts)
    c_max = max(len(c) for c in completions)
    if c_max == 0:
        raise ValueError("every completion in the micro-batch is empty")
    n = len(prompts)
    input_ids = torch.full((n, p_max + c_max), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, p_max + c_max), dtype=torch.long)
    completion_mask = torch.zeros((n, c_max), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        input_ids[i, p_max - len(p) : p_max] = torch.tensor(p, dtype=torch.long)
        input_ids[i, p_max : p_max + len(c)] = torch.tensor(c, dtype=torch.long)
        attention_mask[i, p_max - len(p) : p_max + len(c)] = 1
        completion_mask[i, : len(c)] = 1
    # Positions count real tokens only, so left padding does not shift the rotary phases.
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "position_ids": position_ids.to(device),
        "completion_mask": completion_mask.to(device),
    }


def completion_logprobs(model, mb: dict, autocast) -> torch.Tensor:
    """Logprobs of the completion tokens of a padded micro-batch: (N, C) float32 (padding included, masked later)."""
    if mb.get("mm") is not None:  # an omni / VL model: media kwargs, 3-D rotary positions
        return multimodal.completion_logprobs(model, mb, autocast)
    c = mb["completion_mask"].shape[1]
    width = mb["input_ids"].shape[1]
    # Positions P-1 .. P+C-2 exactly (position P-1+j predicts completion token j): the output
    # projection skips the last position, and no slice of the logits is taken (nor its backward).
    keep = torch.arange(width - c - 1, width - 1, device=mb["input_ids"].device)  # (C,)
    with autocast():
        out = model(
            input_ids=mb["input_ids"],
            attention_mask=mb["attention_mask"],
            position_ids=mb["position_ids"],
            logits_to_keep=keep,
            use_cache=False,
        )
    return token_logprobs(out.logits, mb["input_ids"][:, -c:])  # (N, C, V) -> (N, C)


def hold_linears_in_bf16(model: torch.nn.Module) -> int:
    """Store every nn.Linear weight (and bias) of a frozen model in bf16; returns how many tensors.

    For the reference of a bf16 learner: autocast casts each fp32 Linear weight to bf16 on every call
    (frozen weights are not in its cache), the same round-to-nearest a stored bf16 copy has, so the
    logprobs are bit-identical, with half the bytes and no casts. Embeddings and norms stay fp32 (the
    residual stream's dtype). A tied output layer gets its own bf16 copy; the input embedding keeps fp32.
    """
    converted = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        for name in ("weight", "bias"):
            t = getattr(module, name)
            if t is None or t.dtype != torch.float32:
                continue
            # A new Parameter, not .data = ...: a tied weight is shared with the embedding, which stays fp32.
            setattr(module, name, torch.nn.Parameter(t.detach().to(torch.bfloat16), requires_grad=False))
            converted += 1
    return converted
