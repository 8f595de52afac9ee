"""Which of the policy's tensors travel to the rollout engines, under which names, in which bucket.

Runs in the learner process: `export_tensors` for both transports (policy/weight_transport.py plans
the collective's byte buckets from it), `export_buckets` for the object-store path
(Learner.export_weights). Names and sizes only: nothing is copied or gathered, so every fsdp rank
gets the same answer.
"""

from __future__ import annotations

import torch


def export_tensors(model: torch.nn.Module, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """The model's state-dict tensors (fsdp: DTensors) as (prefix + Hugging Face name, live tensor), in
    order, a tied output embedding once, under the input embedding's name (vLLM skips lm_head.weight
    for tied models and maps the other names itself, e.g. q/k/v into qkv_proj). `prefix`: as
    Learner.export_prefix ("thinker." for an Omni thinker)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    out, seen = [], set()
    for name, tensor in model.state_dict().items():
        key = id(params[name]) if name in params else name
        if key not in seen:  # a tied alias of an earlier tensor is skipped
            seen.add(key)
            out.append((prefix + name, tensor))
    return out


def export_buckets(
    model: torch.nn.Module, prefix: str, bucket_bytes: int, dtype: torch.dtype | None = None
) -> list[list[tuple[str, torch.Tensor]]]:
    """The model's state dict as buckets of (prefix + Hugging Face name, live tensor), <= bucket_bytes
    each once in `dtype` (None: as held); a tensor larger than the limit gets a bucket of its own.
    The object-store path's buckets; the direct transport plans its own (common/weight_plan.py)."""
    buckets, current, size = [], [], 0
    for name, tensor in export_tensors(model, prefix):
        nbytes = tensor.numel() * (dtype or tensor.dtype).itemsize  # fsdp: the global numel
        if current and size + nbytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current.append((name, tensor))
        size += nbytes
    return buckets + [current] if current else buckets
