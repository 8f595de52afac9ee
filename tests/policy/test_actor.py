"""Data parallel: two CPU learner actors (Ray, gloo) match one learner on the same batches."""

import pytest
import torch

from common.weight_plan import from_wire
from policy.config import LearnerConfig
from policy.learner import Learner
from tests.policy.conftest import make_batch


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_two_learner_actors_match_one_learner(ray_local, tiny_qwen2_dir, tmp_path):
    from policy.actor import LearnerGroup

    lr = 1e-4
    config = LearnerConfig(model=str(tiny_qwen2_dir), lr=lr, micro_batch_size=2)
    batches = [
        make_batch(seed=7, prompts=2, group_size=3),
        make_batch(seed=8, prompts=2, group_size=3, version=1),
    ]

    single = Learner(config)
    expected = [single.update(b) for b in batches]

    group = LearnerGroup(config, num_learners=2, num_cpus_per_learner=1)
    try:
        got = [group.update(b) for b in batches]
        version, buckets = group.export_weights()
        # the object-store sync's path: put by the actor as arrays (to_wire), read back as a worker
        # does (from_wire), the same tensors (bf16: rounded once)
        ref_version, ref = group.export_weights_ref()
        by_ref = from_wire(ray_local.get(ref))
        _, ref16 = group.export_weights_ref(dtype="bfloat16")
        by_ref16 = from_wire(ray_local.get(ref16))
        group.save(tmp_path / "ckpt")
    finally:
        group.shutdown()

    for e, g in zip(expected, got, strict=True):
        # losses and counts are reduced over both ranks: the whole batch's values
        assert g["num_sequences"] == e["num_sequences"] == 6
        assert g["num_completion_tokens"] == e["num_completion_tokens"]
        assert g["loss"] == pytest.approx(e["loss"], abs=1e-6)
        assert g["kl"] == pytest.approx(e["kl"], rel=1e-3, abs=1e-9)
        assert g["grad_norm"] == pytest.approx(e["grad_norm"], rel=1e-4)
    assert got[1]["kl"] > 0
    assert version == ref_version == single.version == 2
    flat, flat_ref = [x for b in buckets for x in b], [x for b in by_ref for x in b]
    flat16 = [x for b in by_ref16 for x in b]
    assert [n for n, _ in flat] == [n for n, _ in flat_ref] == [n for n, _ in flat16]
    for (name, t), (_, put), (_, half) in zip(flat, flat_ref, flat16, strict=True):
        assert torch.equal(t, put), name
        assert half.dtype == torch.bfloat16 and torch.equal(half, t.to(torch.bfloat16)), name
    state = single.policy.state_dict()
    # summed gradients differ from the single learner's in the last bits only; Adam's first steps
    # move every weight by about lr, so 2*lr bounds a sign flip of a ~0 gradient
    for name, tensor in (x for b in buckets for x in b):
        torch.testing.assert_close(tensor, state[name], atol=2 * lr + 1e-7, rtol=0, msg=name)
    moved = (buckets[0][0][1] - single.reference.state_dict()[buckets[0][0][0]]).abs().mean()
    assert moved > lr / 2  # the weights did move, so the comparison above is not vacuous
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()


@pytest.mark.slow
def test_two_fsdp_learner_actors_match_one_learner(ray_local, tiny_qwen2_dir, tmp_path):
    from policy.actor import LearnerGroup

    config = LearnerConfig(model=str(tiny_qwen2_dir), lr=1e-3, micro_batch_size=2, strategy="fsdp")
    batch = make_batch(seed=7, prompts=2, group_size=3)
    rows = ([[5, 6, 7]], [[8, 9, 10]])
    single = Learner(config)  # one rank: nothing to shard, the plain learner
    expected = single.update(batch)
    group = LearnerGroup(config, num_learners=2, num_cpus_per_learner=1)
    try:
        got = group.update(batch)
        version, buckets = group.export_weights(bucket_bytes=200_000)
        logprobs = group.logprobs(*rows)
        group.save(tmp_path / "ckpt")
        assert group.load(tmp_path / "ckpt") == 1
    finally:
        group.shutdown()
    for key in ("loss", "kl", "grad_norm", "sampler_logprob_abs_diff"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5), key
    state = single.policy.state_dict()
    assert version == 1 and len(buckets) > 1
    for name, tensor in (x for b in buckets for x in b):
        torch.testing.assert_close(tensor, state[name], atol=1e-5, rtol=0, msg=name)
    torch.testing.assert_close(logprobs, single.logprobs(*rows), atol=1e-5, rtol=0)
    assert (tmp_path / "ckpt" / ".metadata").is_file()
