"""Padded micro-batch tensors and the completion-token logprobs of a forward pass.

Runs in the learner process (and the SFT trainer); shared by `policy.learner` and `policy.sft`.
Two layouts. `pad_rows`: every row is [left pad | prompt | completion | right pad], so every
completion starts at the same column and only the C positions before the last need the output
projection. `shared_prefix_rows`: a GRPO batch repeats each prompt G times, so each distinct prompt
runs once (a prefix pass that keeps its keys and values) and its completions, packed into one
sequence without padding, attend to it (a packed pass): the same logprobs and gradients, while a
150-token prompt with 50-token completions is 3/4 of the tokens of the row layout, and padding
to the longest completion would have doubled the rest. Also: the frozen reference's Linear weights
held in bf16 for a learner that computes in bf16.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer

from policy import multimodal
from policy.grpo import token_logprobs
from policy.packed_attention import NAME as PACKED_SDPA
from policy.packed_attention import PackedSpans, uses_packed_attention


def pad_rows(prompts: list[list[int]], completions: list[list[int]], pad_id: int, device) -> dict:
    """Token lists -> padded tensors: [left pad | prompt | completion | right pad].

    Returns input_ids, attention_mask, position_ids (N, P+C) and completion_mask (N, C),
    where P = longest prompt and C = longest completion of these rows; model_tokens: the real tokens.
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
        "model_tokens": int(attention_mask.sum()),
    }


def shared_prefix_rows(prompts: list[list[int]], completions: list[list[int]], pad_id: int, device) -> dict:
    """Token lists -> each distinct prompt once, left-padded, and its rows' completions packed after it.

    A prompt's completions share one sequence (no padding between rows): each attends to the prompt
    and causally to itself only, at positions prompt length + 0, 1, ... Completion token 0 is
    predicted by the prompt's last position, token j >= 1 by the row's packed token j - 1; the last
    token of a row predicts nothing that is scored and is not run. Returns prefix_ids, prefix_mask,
    prefix_positions (U, P) of the U distinct prompts; row_prefix (N,); packed_ids, packed_targets,
    packed_positions (U, T) and packed_allowed (U, P+T, bool: query t may see key s, as (U, T, P+T));
    gather (N, C-1): where row i's token j + 1 is predicted in the flattened (U*T) packed outputs;
    packed_spans: each packed sequence's completion lengths (policy.packed_attention); completion_mask (N, C);
    model_tokens: the real tokens the two passes run.
    """
    index: dict[tuple[int, ...], int] = {}
    row_prefix = [index.setdefault(tuple(p), len(index)) for p in prompts]
    distinct = [list(p) for p in index]
    p_max, c_max = max(len(p) for p in distinct), max(len(c) for c in completions)
    if c_max == 0 or min(len(p) for p in distinct) == 0:
        raise ValueError("a prompt or every completion in the micro-batch is empty")
    u, n = len(distinct), len(completions)
    prefix_ids = torch.full((u, p_max), pad_id, dtype=torch.long)
    prefix_mask = torch.zeros((u, p_max), dtype=torch.bool)
    for k, p in enumerate(distinct):
        prefix_ids[k, p_max - len(p) :] = torch.tensor(p, dtype=torch.long)
        prefix_mask[k, p_max - len(p) :] = True
    # segment of each row in its prompt's packed sequence: tokens 0..len-2 of the completion
    fill, start = [0] * u, []
    for i, c in enumerate(completions):
        start.append(fill[row_prefix[i]])
        fill[row_prefix[i]] += max(len(c) - 1, 0)
    t_max = max(max(fill), 1)
    packed_ids = torch.full((u, t_max), pad_id, dtype=torch.long)
    packed_targets = torch.full((u, t_max), pad_id, dtype=torch.long)
    packed_positions = torch.zeros((u, t_max), dtype=torch.long)
    row_of = torch.full((u, t_max), -1, dtype=torch.long)  # the row a packed token belongs to (-1: padding)
    offset = torch.zeros((u, t_max), dtype=torch.long)  # its offset within the row
    gather = torch.zeros((n, max(c_max - 1, 1)), dtype=torch.long)
    completion_mask = torch.zeros((n, c_max), dtype=torch.long)
    lengths: list[list[int]] = [[] for _ in range(u)]
    for i, c in enumerate(completions):
        k, s, m = row_prefix[i], start[i], max(len(c) - 1, 0)
        completion_mask[i, : len(c)] = 1
        if m == 0:
            continue
        lengths[k].append(m)
        packed_ids[k, s : s + m] = torch.tensor(c[:-1], dtype=torch.long)
        packed_targets[k, s : s + m] = torch.tensor(c[1:], dtype=torch.long)
        packed_positions[k, s : s + m] = len(distinct[k]) + torch.arange(m)
        row_of[k, s : s + m], offset[k, s : s + m] = i, torch.arange(m)
        gather[i, :m] = k * t_max + s + torch.arange(m)
    same_row = (row_of[:, :, None] == row_of[:, None, :]) & (row_of[:, :, None] >= 0)  # (U, T, T)
    causal = offset[:, None, :] <= offset[:, :, None]
    # a padding query sees itself only: a query that sees nothing makes softmax NaN (and its gradient)
    own = torch.eye(t_max, dtype=torch.bool).expand(u, t_max, t_max) & (row_of[:, :, None] < 0)
    allowed = torch.cat([prefix_mask[:, None, :].expand(u, t_max, p_max), same_row & causal | own], dim=2)
    return {
        "prefix_ids": prefix_ids.to(device),
        "prefix_mask": prefix_mask.long().to(device),
        "prefix_positions": (prefix_mask.long().cumsum(dim=1) - 1).clamp(min=0).to(device),  # real tokens
        "row_prefix": torch.tensor(row_prefix, dtype=torch.long).to(device),
        "packed_ids": packed_ids.to(device),
        "packed_targets": packed_targets.to(device),
        "packed_positions": packed_positions.to(device),
        "packed_allowed": allowed.to(device),  # (U, T, P+T)
        "packed_spans": PackedSpans(lengths, prefix_mask.to(device)),
        "gather": gather.to(device),
        "input_ids": torch.tensor([c[:1] or [pad_id] for c in completions]).to(device),  # (N, 1): token 0
        "completion_mask": completion_mask.to(device),
        "model_tokens": sum(len(p) for p in distinct) + sum(fill),
    }


class _PrefixLayer(DynamicLayer):
    """One decoder layer's keys and values of the prefix pass; then the packed pass's read-only view.

    Never appends: recording overwrites and reading concatenates without storing, so a gradient
    checkpoint's replay of a layer sees what the first run saw (transformers' own layer appends).
    """

    reading = False

    def update(self, key_states, value_states, *args, **kwargs):
        if self.reading:  # (U, heads, P, d) prompt + (U, heads, T, d) packed completions
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self.values = key_states, value_states  # (U, heads, P, d)
        return key_states, value_states


def _shared_prefix_logprobs(model, mb: dict, autocast) -> torch.Tensor:
    """completion_logprobs of the shared_prefix_rows layout: (N, C) float32."""
    layers = model.config.get_text_config(decoder=True).num_hidden_layers
    prefix = Cache(layers=[_PrefixLayer() for _ in range(layers)])
    rows = mb["row_prefix"]
    with autocast():  # the last prompt position predicts completion token 0
        out = model(input_ids=mb["prefix_ids"], attention_mask=mb["prefix_mask"],
                    position_ids=mb["prefix_positions"], past_key_values=prefix, use_cache=False,
                    logits_to_keep=1)  # fmt: skip
    first = token_logprobs(out.logits.index_select(0, rows), mb["input_ids"])  # (N, 1)
    c = mb["completion_mask"].shape[1]
    if c == 1:
        return first
    view = Cache(layers=[_PrefixLayer() for _ in range(layers)])
    for recorded, layer in zip(prefix.layers, view.layers, strict=True):
        layer.lazy_initialization(recorded.keys, recorded.values)
        layer.keys, layer.values = recorded.keys, recorded.values  # (U, heads, P, d): one per packed sequence
        layer.reading = True
    # the per-completion attention where the model has it (policy.packed_attention), else the dense mask
    spans = {"packed_spans": mb["packed_spans"]} if uses_packed_attention(model) else {}
    with autocast():
        out = model(input_ids=mb["packed_ids"], attention_mask=_attention_mask(model, mb["packed_allowed"]),
                    position_ids=mb["packed_positions"], past_key_values=view, use_cache=False,
                    **spans)  # fmt: skip
    packed = token_logprobs(out.logits, mb["packed_targets"])  # (U, T)
    return torch.cat([first, packed.reshape(-1)[mb["gather"][:, : c - 1]]], dim=1)  # (N, C)


def _attention_mask(model, allowed: torch.Tensor) -> torch.Tensor:
    """The packed layout's (U, 1, T, P+T) mask as the model's attention takes a custom 4-D mask:
    boolean (True: attend) for sdpa / flex, additive 0 / -inf (float32) for eager."""
    if model.config._attn_implementation in ("sdpa", "flex_attention", PACKED_SDPA):
        return allowed[:, None]
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]


def allow_prefix_under_checkpointing(model: torch.nn.Module) -> None:
    """Let gradient-checkpointed decoder layers keep the prefix cache (they drop any cache otherwise).

    Safe for _PrefixLayer only, which a replay cannot corrupt; the learner never passes another cache.
    """
    for module in model.modules():
        if hasattr(module, "_can_checkpoint_with_cache"):
            module._can_checkpoint_with_cache = True


def completion_logprobs(model, mb: dict, autocast) -> torch.Tensor:
    """Logprobs of the completion tokens of a padded micro-batch: (N, C) float32 (padding included, masked later)."""
    if mb.get("mm") is not None:  # an omni / VL model: media kwargs, 3-D rotary positions
        return multimodal.completion_logprobs(model, mb, autocast)
    if "row_prefix" in mb:
        return _shared_prefix_logprobs(model, mb, autocast)
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
