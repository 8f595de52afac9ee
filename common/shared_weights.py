"""Weights shared through one memory-mapped file: the learner's parameters live in it, engines on its node read it.

`run.weight_transport: shared_memory`. Imported by the learner process (policy/actor.py: `share_parameters`,
the write marks around each update) and by the rollout workers (rollout/worker.py: `SharedWeightsReader`).
A sync then copies nothing on the learner's side and nothing through Ray: each engine loads straight from
the learner's parameters (the object store's put + a worker's first touch of its pages cost 0.6-1.0 s of the
1.1 s sync of a 540 MB model on a 2-core CPU).

Layout: a 4096-byte header, then the tensors at the offsets of a one-bucket `TransferPlan` (common/weight_plan.py).
The header holds a seqlock (int64 `seq`: odd while the learner writes, i.e. during an update) and the version
of the weights in the file; a reader checks both before and after its load, so torn weights fail the load
instead of reaching an engine. Once every engine has mapped the file its name is removed (`unlink`): the
memory lives as long as a mapping does and a crash leaves nothing behind in /dev/shm.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from common.errors import WeightTransportError
from common.weight_plan import TransferPlan, dtype_name, plan_buckets

HEADER = 4096  # page-aligned tensors after it
SEQ, VERSION = 0, 1  # int64 slots of the header


class SharedWeightsError(WeightTransportError, ValueError):
    """The file is missing, of another layout, or was written during a read (torn weights)."""


def _map(path: str | Path, nbytes: int) -> torch.Tensor:
    return torch.from_file(str(path), shared=True, size=nbytes, dtype=torch.uint8)  # MAP_SHARED


def _view(buffer: torch.Tensor, slot) -> torch.Tensor:
    start = HEADER + slot.offset
    return buffer[start : start + slot.nbytes].view(getattr(torch, slot.dtype)).view(slot.shape)


class SharedWeights:
    """The learner's side: parameters moved into the file, and the seqlock marks around each write."""

    def __init__(self, path: Path, plan: TransferPlan, buffer: torch.Tensor):
        self.path, self.plan, self.buffer = path, plan, buffer
        self.header = buffer[:HEADER].view(torch.int64)

    def begin_write(self) -> None:
        self.header[SEQ] += 1  # odd: a reader now or later until end_write sees torn weights

    def end_write(self, version: int) -> None:
        self.header[VERSION] = version
        self.header[SEQ] += 1

    def holds(self, tensors: list[torch.Tensor]) -> bool:
        """True when every tensor's memory is still inside the file (a `p.data = ...` elsewhere would move it)."""
        lo, hi = self.buffer.data_ptr(), self.buffer.data_ptr() + self.buffer.numel()
        return all(lo <= t.data_ptr() < hi for t in tensors)

    def unlink(self) -> None:
        self.path.unlink(missing_ok=True)


def share_parameters(
    named: list[tuple[str, torch.Tensor]],
    parameters: list[torch.nn.Parameter],
    path: str | Path,
    version: int,
) -> SharedWeights:
    """Move the parameters behind `named` (export names -> views of the live parameters) into a new file at `path`.

    Each named tensor must be a whole parameter of `parameters` (same memory and shape): the parameter's
    `.data` then points into the file, so optimizer steps write there; the optimizer and any tie keep working
    (the Parameter objects are unchanged). Raises SharedWeightsError naming a tensor that is not one.
    """
    by_ptr = {(p.data_ptr(), tuple(p.shape), p.dtype): p for p in parameters}
    owners = []
    for name, t in named:
        p = by_ptr.get((t.data_ptr(), tuple(t.shape), t.dtype))
        if p is None or not p.is_contiguous() or p.device.type != "cpu":
            raise SharedWeightsError(f"{name} is not a whole contiguous CPU parameter; it cannot be shared")
        owners.append(p)
    entries = [(name, dtype_name(t.dtype), tuple(t.shape)) for name, t in named]
    plan = plan_buckets(entries, bucket_bytes=1 << 62, version=version)
    (bucket,) = plan.buckets
    path = Path(path)
    with open(path, "wb") as f:
        f.truncate(HEADER + bucket.nbytes)
    buffer = _map(path, HEADER + bucket.nbytes)
    shared = SharedWeights(path, plan, buffer)
    shared.begin_write()
    for slot, p in zip(bucket.slots, owners, strict=True):
        view = _view(buffer, slot)
        view.copy_(p.data)
        p.data = view
    shared.end_write(version)
    return shared


class SharedWeightsReader:
    """An engine's side: the file mapped once; `begin` / `end` bracket each load with the seqlock check."""

    def __init__(self, path: str | Path, plan_bytes: bytes):
        self.plan = TransferPlan.from_bytes(plan_bytes)
        (bucket,) = self.plan.buckets
        size = HEADER + bucket.nbytes
        try:
            actual = os.path.getsize(path)
        except OSError as err:
            raise SharedWeightsError(f"shared weights file {path}: {err.strerror}") from None
        if actual != size:
            raise SharedWeightsError(f"shared weights file {path} has {actual} bytes, the plan {size}")
        self.buffer = _map(path, size)
        self.header = self.buffer[:HEADER].view(torch.int64)
        self.tensors = [(slot.name, _view(self.buffer, slot)) for slot in bucket.slots]

    def begin(self, version: int) -> int:
        """The seqlock's value before a load of `version`; raises if the file holds another or is being written."""
        seq, held = int(self.header[SEQ]), int(self.header[VERSION])
        if seq % 2 or held != version:
            what = "being written (an update is running)" if seq % 2 else f"version {held}"
            raise SharedWeightsError(f"shared weights: asked for version {version}, the file holds {what}")
        return seq

    def end(self, seq: int) -> None:
        """Raise if the learner wrote while the load read (the engine may hold torn weights: reload)."""
        if int(self.header[SEQ]) != seq:
            raise SharedWeightsError("shared weights: the learner wrote them during the load (torn weights)")
