"""Bucket plan of a direct weight transfer: which tensors travel in which flat byte bucket, at which offset.

Pure functions and data, imported by the sender (the learner's rank 0, policy/weight_transport.py)
and by the receivers (the rollout engines' vLLM workers, rollout/weight_receiver.py), which must
agree on the layout without sharing any other code. The sender plans from names, dtypes and
shapes alone (under fsdp these are the global shapes, known without gathering), sends the plan
once per sync, then one buffer per bucket; the receiver cuts each buffer back into tensors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

ALIGN = 16  # byte alignment of every tensor in a bucket: uint8 -> float32/bf16 views need it


def dtype_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 -> "bfloat16": how a dtype travels (getattr(torch, name) reads it back)."""
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class TensorSlot:
    """One tensor inside a bucket: its Hugging Face name, dtype name, shape and byte range."""

    name: str
    dtype: str  # torch dtype name without the "torch." prefix: "float32", "bfloat16"
    shape: tuple[int, ...]
    offset: int  # first byte inside the bucket
    nbytes: int


@dataclass(frozen=True)
class Bucket:
    nbytes: int  # size of the flat uint8 buffer broadcast for this bucket
    slots: tuple[TensorSlot, ...]


@dataclass(frozen=True)
class TransferPlan:
    """Everything a receiver needs before the first byte: the policy version and every bucket's layout."""

    version: int
    buckets: tuple[Bucket, ...]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buckets)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TransferPlan:
        raw = json.loads(data.decode())
        buckets = tuple(
            Bucket(b["nbytes"], tuple(TensorSlot(**{**s, "shape": tuple(s["shape"])}) for s in b["slots"]))
            for b in raw["buckets"]
        )
        return cls(int(raw["version"]), buckets)


def dtype_size(dtype: str) -> int:
    return torch.empty((), dtype=getattr(torch, dtype)).element_size()


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def plan_buckets(
    entries: list[tuple[str, str, tuple[int, ...]]], bucket_bytes: int, version: int, align: int = ALIGN
) -> TransferPlan:
    """Group (name, dtype, shape) entries, in order, into buckets of <= bucket_bytes each.

    Each tensor starts at a multiple of `align`; a tensor larger than the limit gets a bucket
    of its own. Order is kept, so the receiver loads names in the sender's state-dict order.
    """
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    buckets: list[Bucket] = []
    slots: list[TensorSlot] = []
    end = 0
    for name, dtype, shape in entries:
        nbytes = _numel(tuple(shape)) * dtype_size(dtype)
        offset = -(-end // align) * align  # round up to the alignment
        if slots and offset + nbytes > bucket_bytes:
            buckets.append(Bucket(end, tuple(slots)))
            slots, offset = [], 0
        slots.append(TensorSlot(name, dtype, tuple(shape), offset, nbytes))
        end = offset + nbytes
    if slots:
        buckets.append(Bucket(end, tuple(slots)))
    return TransferPlan(version, tuple(buckets))


def pack(bucket: Bucket, tensors: list[torch.Tensor], device="cpu") -> torch.Tensor:
    """The bucket's flat uint8 buffer holding `tensors` (in slot order) at their offsets."""
    buffer = torch.zeros(bucket.nbytes, dtype=torch.uint8, device=device)
    for slot, t in zip(bucket.slots, tensors, strict=True):
        if t.dtype != getattr(torch, slot.dtype) or tuple(t.shape) != slot.shape:
            raise ValueError(
                f"{slot.name}: planned {slot.dtype} {slot.shape}, got {t.dtype} {tuple(t.shape)}"
            )
        region = buffer[slot.offset : slot.offset + slot.nbytes]
        region.view(t.dtype).copy_(t.reshape(-1))
    return buffer


def unpack(bucket: Bucket, buffer: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) views into a received bucket buffer (no copy; they live as long as the buffer)."""
    if buffer.numel() != bucket.nbytes or buffer.dtype != torch.uint8:
        raise ValueError(
            f"bucket buffer: expected {bucket.nbytes} uint8, got {buffer.numel()} {buffer.dtype}"
        )
    return [
        (s.name, buffer[s.offset : s.offset + s.nbytes].view(getattr(torch, s.dtype)).view(s.shape))
        for s in bucket.slots
    ]


# -- the object-store path (run.weight_transport: object_store) -----------------------------------
# Ray stores numpy arrays out of band and a reader maps them from shared memory without a copy;
# torch tensors are pickled, copied on put and again on get. SmolLM2-135M in bf16, measured here:
# put + get 0.5-0.7 s as tensors, 0.03-0.15 s as arrays. numpy has no bfloat16: the bits travel as
# a same-width integer array and the dtype by name.
_SAME_WIDTH = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def to_wire(buckets: list[list[tuple[str, torch.Tensor]]]) -> list[list[tuple[str, str, object]]]:
    """Buckets of (name, tensor) as (name, dtype name, numpy array of the same bytes): for ray.put."""
    wire = []
    for bucket in buckets:
        items = []
        for name, t in bucket:
            t = t.detach().cpu().contiguous()
            items.append((name, dtype_name(t.dtype), t.view(_SAME_WIDTH[t.element_size()]).numpy()))
        wire.append(items)
    return wire


def from_wire(wire: list[list[tuple[str, str, object]]]) -> list[list[tuple[str, torch.Tensor]]]:
    """to_wire's buckets back as (name, tensor) views of the arrays (read-only: for copying from)."""
    import warnings

    out = []
    for i, bucket in enumerate(wire):
        items = []
        for entry in bucket:
            if len(entry) != 3:
                raise ValueError(f"weight bucket {i}: entries are (name, dtype, array) as to_wire makes them, "
                                 f"got {len(entry)} fields")  # fmt: skip
            name, dtype, array = entry
            with warnings.catch_warnings():  # shared memory is read-only; the engine only copies from it
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                items.append((name, torch.from_numpy(array).view(getattr(torch, dtype))))
        out.append(items)
    return out
