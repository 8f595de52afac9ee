"""Sender of the direct weight transport (`run.weight_transport: collective`): learner rank 0 -> every engine.

Runs in each learner rank's process. Rank 0 joins a process group with the rollout engines
(common/collective.py: gloo on CPU; on CUDA vLLM's NCCL communicator, common/nccl_group.py) and,
per sync, plans the buckets from names, dtypes and global shapes (no gather needed for that),
sends the plan, then gathers and sends one bucket at a time. Under fsdp the other ranks call
`send` too: each parameter's all-gather (`full_tensor`) is a collective of the learner ranks.
"""

from __future__ import annotations

import torch

from common import collective
from common.weight_plan import TransferPlan, dtype_name, plan_buckets
from policy import sharding
from policy.export import export_tensors


def plan_for(
    tensors: list[tuple[str, torch.Tensor]], bucket_bytes: int, version: int, dtype=None
) -> TransferPlan:
    """The bucket plan of these tensors (global shapes: a DTensor's .shape is the full one)."""
    entries = [(n, dtype_name(dtype or t.dtype), tuple(t.shape)) for n, t in tensors]
    return plan_buckets(entries, bucket_bytes, version)


class WeightSender:
    """Rank 0's end of the transport group (rank 0 of it; the engines are ranks 1..world_size-1)."""

    def __init__(self, address: str, port: int, world_size: int, timeout_s: float, device: str = "cpu"):
        if device == "cuda":
            from common.nccl_group import NcclGroup

            self.group = NcclGroup(address, port, 0, world_size, timeout_s)
        else:
            self.group = collective.GlooGroup(address, port, 0, world_size, timeout_s)

    def close(self) -> None:
        self.group.close()


def send(policy: torch.nn.Module, version: int, bucket_bytes: int, sender: WeightSender | None,
         dtype: torch.dtype | None = None, prefix: str = "") -> TransferPlan | None:  # fmt: skip
    """One sync: rank 0 (holding `sender`) sends every bucket; other fsdp ranks pass sender=None and
    only take part in the gathers. Returns the plan on rank 0."""
    tensors = export_tensors(policy, prefix)
    plan = plan_for(tensors, bucket_bytes, version, dtype)
    start = 0

    def bucket_tensors(i: int) -> list[torch.Tensor]:
        nonlocal start
        count = len(plan.buckets[i].slots)
        out = []
        for _, t in tensors[start : start + count]:
            t = sharding.full(t).detach()  # fsdp: all-gather of this parameter only
            out.append(t.to(dtype) if dtype is not None else t)
        start += count
        return out

    if sender is None:  # a non-sending fsdp rank: the same gathers in the same order
        for i in range(len(plan.buckets)):
            bucket_tensors(i)
        return None
    collective.send(sender.group, plan, bucket_tensors)
    return plan
