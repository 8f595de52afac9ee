"""Attention of the shared-prompt packed pass, one completion at a time.

Runs in the learner process. `policy.forward.shared_prefix_rows` packs a prompt's G completions into one
sequence after the prompt's keys and values; under sdpa that sequence's (T, P+T) mask is mostly False (a
completion sees its prompt and itself only), yet sdpa computes every score: with 16 completions of ~55
tokens it was 26% of an update's time on a 2-core CPU (torch.profiler). Here each completion's queries
attend to [its prompt | itself] alone, by the same sdpa call transformers makes, so the result is the same
and the work is sum(m * (P + m)) instead of T * (P + T).

Wired in as a transformers attention implementation (its documented extension point): a model switched by
`use_packed_attention` runs every other pass (prompt pass, parity probe, row layout) through sdpa as before;
only a forward given `packed_spans` takes the per-completion path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "erv_packed_sdpa"


@dataclass(frozen=True)
class PackedSpans:
    """The packed pass's layout: per sequence k, its completions' lengths in packing order (each from where the
    last ended, from 0; padding after); prefix_mask: (U, P) bool, False at a shorter prompt's left padding."""

    lengths: list[list[int]]
    prefix_mask: torch.Tensor


def packed_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                          packed_spans: PackedSpans | None = None, **kwargs):  # fmt: skip
    """query (U, heads, T, d); key, value (U, kv_heads, P+T, d) [prompt | packed] -> ((U, T, heads, d), None)."""
    if packed_spans is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)  # fmt: skip
    _, heads, t, d = query.shape
    p = key.shape[2] - t
    rows = []
    # split, not a slice per completion: a slice's backward writes into a zero tensor of the whole input
    for q, k, v, lengths, seen in zip(query.split(1), key.split(1), value.split(1), packed_spans.lengths,
                                      packed_spans.prefix_mask, strict=True):  # fmt: skip
        pad = t - sum(lengths)
        qs, ks, vs = (
            q.split([*lengths, pad], dim=2),
            k.split([p, *lengths, pad], 2),
            v.split([p, *lengths, pad], 2),
        )
        pieces = []
        for j, m in enumerate(lengths):  # queries of one completion: [its prompt | itself, causally]
            causal = torch.ones((m, m), dtype=torch.bool, device=query.device).tril()
            mask = torch.cat([seen.expand(m, p), causal], dim=1)[None, None]  # (1, 1, m, P+m)
            keys, values = torch.cat([ks[0], ks[j + 1]], dim=2), torch.cat([vs[0], vs[j + 1]], dim=2)
            out, _ = sdpa_attention_forward(
                module, qs[j], keys, values, mask, dropout=dropout, scaling=scaling
            )
            pieces.append(out)  # (1, m, heads, d)
        pieces.append(query.new_zeros((1, pad, heads, d)))  # padding queries: zeros, read by nothing
        rows.append(torch.cat(pieces, dim=1))
    return torch.cat(rows, dim=0), None


def use_packed_attention(model: torch.nn.Module) -> bool:
    """Switch an sdpa model to `packed_sdpa_attention`; False (left as it is) for any other implementation."""
    if model.config._attn_implementation not in ("sdpa", NAME):
        return False
    AttentionInterface.register(NAME, packed_sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the other passes' masks: exactly sdpa's
    model.set_attn_implementation(NAME)  # not for a model outside AttentionInterface: it then stays sdpa
    return uses_packed_attention(model)


def uses_packed_attention(model: torch.nn.Module) -> bool:
    return model.config._attn_implementation == NAME
