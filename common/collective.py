"""The wire protocol of the direct weight transport: one sender (learner rank 0) broadcasts to every receiver.

Runs in the learner's rank-0 process (send) and in each rollout engine's vLLM worker (receive).
A group is its own process group (a TCPStore rendezvous at the sender's address), apart from
the learners' data-parallel group and from vLLM's internal groups. Per sync: one header
(magic, version, plan length), the plan's bytes (common/weight_plan.py: every bucket's names,
dtypes, shapes, offsets), one flat buffer per bucket, then an acknowledgement all-reduce, so a
receiver that died or failed to load makes the sender fail instead of returning early. Every
collective waits at most `timeout_s`; a failure or timeout raises WeightTransportError.
`GlooGroup` is the CPU group (torch's ProcessGroupGloo); common/nccl_group.py is the GPU one.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
import torch.distributed as dist

from common.errors import WeightTransportError
from common.weight_plan import TransferPlan, pack, unpack

MAGIC = 0x45525657  # "ERVW": a receiver that reads anything else is out of step with the sender


class Group(Protocol):
    """A process group of the sender (rank 0) and the receivers; every call may raise WeightTransportError."""

    rank: int
    world_size: int
    device: str

    def broadcast(self, tensor: torch.Tensor, what: str) -> None: ...
    def all_reduce(self, tensor: torch.Tensor, what: str) -> None: ...
    def close(self) -> None: ...


class GlooGroup:
    """A stateless gloo group over TCP: rank 0 hosts the TCPStore at (address, port)."""

    device = "cpu"

    def __init__(self, address: str, port: int, rank: int, world_size: int, timeout_s: float):
        self.rank, self.world_size, self.timeout_s = rank, world_size, timeout_s
        timeout = datetime.timedelta(seconds=timeout_s)
        try:
            store = dist.TCPStore(address, port, world_size, is_master=rank == 0, timeout=timeout)
            self.pg = dist.ProcessGroupGloo(dist.PrefixStore("erv-weights", store), rank, world_size, timeout)
        except Exception as err:  # DistStoreError, RuntimeError: a peer never joined
            raise WeightTransportError(
                f"weight transport group {address}:{port}: rank {rank} of {world_size} could not join "
                f"within {timeout_s:g} s ({type(err).__name__}: {err})"
            ) from err
        self._store = store  # rank 0 serves the store: keep it alive as long as the group

    def _wait(self, work, what: str) -> None:
        try:
            work.wait(datetime.timedelta(seconds=self.timeout_s))
        except Exception as err:  # gloo: connection closed by peer, or timed out
            raise WeightTransportError(
                f"weight transport: {what} failed on rank {self.rank} of {self.world_size} within "
                f"{self.timeout_s:g} s, a peer died or hung ({type(err).__name__}: {str(err)[:300]})"
            ) from err

    def broadcast(self, tensor: torch.Tensor, what: str) -> None:
        opts = dist.BroadcastOptions()
        opts.rootRank, opts.timeout = 0, datetime.timedelta(seconds=self.timeout_s)
        self._wait(self.pg.broadcast([tensor], opts), what)

    def all_reduce(self, tensor: torch.Tensor, what: str) -> None:
        opts = dist.AllreduceOptions()
        opts.timeout = datetime.timedelta(seconds=self.timeout_s)
        self._wait(self.pg.allreduce([tensor], opts), what)

    def close(self) -> None:
        self.pg = None
        self._store = None


def send(group: Group, plan: TransferPlan, bucket_tensors: Callable[[int], list[torch.Tensor]]) -> None:
    """Sender side of one sync: header, plan, every bucket (its tensors from bucket_tensors(i)), ack."""
    data = plan.to_bytes()
    group.broadcast(torch.tensor([MAGIC, plan.version, len(data)], dtype=torch.int64, device=group.device),
                    "the header")  # fmt: skip
    group.broadcast(torch.frombuffer(bytearray(data), dtype=torch.uint8).to(group.device), "the plan")
    for i, bucket in enumerate(plan.buckets):
        buffer = pack(bucket, bucket_tensors(i), device=group.device)
        group.broadcast(buffer, f"bucket {i + 1}/{len(plan.buckets)} ({bucket.nbytes} bytes)")
        del buffer  # one bucket's buffer at a time
    ack = torch.zeros(1, dtype=torch.int64, device=group.device)
    group.all_reduce(ack, "the acknowledgement")
    if int(ack) != group.world_size - 1:
        raise WeightTransportError(
            f"weight transport: {group.world_size - 1 - int(ack)} of {group.world_size - 1} receivers "
            f"failed to load version {plan.version}"
        )


def receive_plan(group: Group) -> TransferPlan:
    """Receiver side: the header and the plan of the next sync."""
    header = torch.zeros(3, dtype=torch.int64, device=group.device)
    group.broadcast(header, "the header")
    magic, _, length = (int(x) for x in header.tolist())
    if magic != MAGIC:
        raise WeightTransportError(
            f"weight transport: bad header {header.tolist()}, out of step with the sender"
        )
    data = torch.zeros(length, dtype=torch.uint8, device=group.device)
    group.broadcast(data, "the plan")
    return TransferPlan.from_bytes(bytes(data.cpu().numpy()))


def receive_buckets(group: Group, plan: TransferPlan) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of every bucket, received lazily one bucket at a time (a loader consumes them)."""
    for i, bucket in enumerate(plan.buckets):
        buffer = torch.empty(bucket.nbytes, dtype=torch.uint8, device=group.device)
        group.broadcast(buffer, f"bucket {i + 1}/{len(plan.buckets)} ({bucket.nbytes} bytes)")
        yield from unpack(bucket, buffer)


def acknowledge(group: Group, ok: bool) -> None:
    """Receiver side, last call of a sync: tell the sender whether this receiver loaded the weights."""
    group.all_reduce(torch.tensor([int(ok)], dtype=torch.int64, device=group.device), "the acknowledgement")


def receive(group: Group, load: Callable[[Iterator[tuple[str, torch.Tensor]]], object]) -> int:
    """A whole sync on a receiver: plan, buckets streamed into `load`, ack; returns the plan's version.

    A load that raises is acknowledged as a failure (the sender then fails too), then re-raised.
    """
    plan = receive_plan(group)
    weights = receive_buckets(group, plan)
    try:
        load(weights)
        for _ in weights:  # a loader that stopped early: drain, the sender broadcasts every bucket
            pass
    except WeightTransportError:
        raise  # the group is broken: no acknowledgement can get through
    except Exception:
        for _ in weights:
            pass
        acknowledge(group, False)
        raise
    acknowledge(group, True)
    return plan.version
