"""Receiver of the direct weight transport: one rollout engine's end of the learner -> engines group.

Runs inside the rollout engine's vLLM worker process, called from `WeightSyncExtension`
(rollout/engine.py) through `collective_rpc`. It joins the group as rank `rank` (the learner's
rank 0 is the sender) and, per sync, streams the received buckets into the worker's load
function, which reloads in place and refreshes tied layers (the same end as the object-store
path). On CPU the group is gloo; on CUDA vLLM's NCCL communicator (common/nccl_group.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from common import collective


class WeightReceiver:
    """Holds this engine's membership of the transport group; `receive(load)` runs one sync."""

    def __init__(self, address: str, port: int, rank: int, world_size: int, timeout_s: float, device: str):
        if device.startswith("cuda"):
            from common.nccl_group import NcclGroup

            self.group = NcclGroup(address, port, rank, world_size, timeout_s)
        else:
            self.group = collective.GlooGroup(address, port, rank, world_size, timeout_s)

    def receive(self, load: Callable[[Iterator], object]) -> int:
        """Receive one sync's buckets into `load`; returns the version the sender sent."""
        return collective.receive(self.group, load)

    def close(self) -> None:
        self.group.close()
