"""The bucket plan of the direct weight transport: boundaries, alignment, round trip through bytes and buffers."""

import pytest
import torch

from common.weight_plan import TransferPlan, from_wire, pack, plan_buckets, to_wire, unpack


def test_buckets_split_at_the_limit_and_keep_order_and_alignment():
    # 10 fp32 = 40 B, 3 bf16 = 6 B, 100 fp32 = 400 B (over the limit: a bucket of its own), 4 fp32 = 16 B
    entries = [
        ("a", "float32", (2, 5)),
        ("b", "bfloat16", (3,)),
        ("c", "float32", (100,)),
        ("d", "float32", (4,)),
    ]
    plan = plan_buckets(entries, bucket_bytes=64, version=7)
    assert plan.version == 7
    layout = [[(s.name, s.offset, s.nbytes) for s in b.slots] for b in plan.buckets]
    # b starts at 48 (40 rounded up to 16); c does not fit after b (54 -> 64 + 400 > 64): new bucket;
    # d does not fit after c either.
    assert layout == [[("a", 0, 40), ("b", 48, 6)], [("c", 0, 400)], [("d", 0, 16)]]
    assert [b.nbytes for b in plan.buckets] == [54, 400, 16]
    assert plan.nbytes == 470


def test_a_plan_survives_its_wire_form():
    plan = plan_buckets([("x.weight", "bfloat16", (3, 4)), ("y", "float32", ())], 1 << 20, 3)
    assert TransferPlan.from_bytes(plan.to_bytes()) == plan


def test_pack_then_unpack_gives_the_tensors_back():
    g = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(3, 5, generator=g),
        torch.randn(7, generator=g).bfloat16(),
        torch.randn(2, 2, generator=g),
    ]
    plan = plan_buckets(
        [(f"t{i}", str(t.dtype)[6:], tuple(t.shape)) for i, t in enumerate(tensors)], 1 << 10, 0
    )
    (bucket,) = plan.buckets
    out = unpack(bucket, pack(bucket, tensors))
    assert [n for n, _ in out] == ["t0", "t1", "t2"]
    for (_, got), want in zip(out, tensors, strict=True):
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_pack_refuses_a_tensor_that_is_not_the_planned_one():
    plan = plan_buckets([("w", "float32", (2, 2))], 1 << 10, 0)
    with pytest.raises(ValueError, match="w: planned float32"):
        pack(plan.buckets[0], [torch.zeros(4)])


def test_the_object_store_form_carries_every_dtype_bit_for_bit_as_arrays():
    import pickle

    import numpy as np

    g = torch.Generator().manual_seed(0)
    buckets = [
        [("a.weight", torch.randn(3, 4, generator=g).bfloat16()), ("b.bias", torch.randn(5, generator=g))],
        [
            ("c.weight", torch.randn(2, 2, generator=g).half()),
            ("d.mask", torch.tensor([1, 0], dtype=torch.int64)),
        ],
    ]
    wire = to_wire(buckets)
    assert all(isinstance(a, np.ndarray) for b in wire for _, _, a in b)  # what Ray maps without a copy
    back = from_wire(pickle.loads(pickle.dumps(wire, protocol=5)))
    for sent, got in zip(buckets, back, strict=True):
        for (n1, t1), (n2, t2) in zip(sent, got, strict=True):
            assert n1 == n2 and t1.dtype == t2.dtype and t1.shape == t2.shape and torch.equal(t1, t2)


def test_a_bucket_not_made_by_to_wire_is_refused_by_name():
    with pytest.raises(ValueError, match="weight bucket 0: entries are \\(name, dtype, array\\)"):
        from_wire([[("a.weight", torch.zeros(2))]])
