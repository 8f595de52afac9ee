"""FSDP2 learner (`strategy: fsdp`) on 2 CPU ranks over gloo: same step as ddp and one learner, half the bytes."""

import pytest
import torch

from policy import sharding
from policy.config import LearnerConfig
from policy.learner import Learner
from tests.policy.conftest import make_batch
from tests.support.ranks import run_ranks

LR = 1e-3
METRICS = ("loss", "kl", "clip_fraction", "ratio_mean", "grad_norm", "sampler_logprob_abs_diff")
ROWS = ([[5, 6, 7, 8], [9]], [[10, 11], [12, 13, 14, 15]])


def _one_update(rank: int, model: str, variants: list[dict], world_size: int = 2) -> list[dict]:
    """Per variant: this rank's metrics, bytes, gathered gradients, export and logprobs after one update."""
    out = []
    batch = make_batch(seed=7, prompts=2, group_size=3)
    for kw in variants:
        learner = Learner(LearnerConfig(model=model, lr=LR, micro_batch_size=2, **kw))
        metrics = learner.update(batch.shard(rank, world_size))
        grads = {n: sharding.full(p.grad).clone() for n, p in learner.policy.named_parameters()}
        version, buckets = learner.export_weights(bucket_bytes=200_000)
        out.append(
            {
                "metrics": metrics,
                "bytes": sharding.local_bytes(learner.policy, learner.optimizer),
                "grads": grads,
                "version": version,
                "buckets": buckets,
                "logprobs": learner.logprobs(*ROWS),
            }
        )
    return out


def test_offloading_the_reference_needs_fsdp(tiny_qwen2_dir):
    with pytest.raises(ValueError, match="needs learner.strategy: fsdp"):
        LearnerConfig(model=str(tiny_qwen2_dir), reference_offload="cpu")


def test_fsdp_on_one_rank_is_the_plain_learner(tiny_qwen2_dir):
    batch = make_batch(seed=3)
    a = Learner(LearnerConfig(model=str(tiny_qwen2_dir), lr=LR))
    b = Learner(LearnerConfig(model=str(tiny_qwen2_dir), lr=LR, strategy="fsdp"))
    assert a.update(batch)["loss"] == b.update(batch)["loss"]
    assert not b.sharded


@pytest.mark.slow
def test_fsdp_update_equals_ddp_and_one_learner_with_half_the_bytes(tiny_qwen2_dir):
    variants = [
        {"strategy": "ddp"},
        {"strategy": "fsdp"},
        {"strategy": "fsdp", "gradient_checkpointing": True, "reference_offload": "cpu"},
    ]
    ranks = run_ranks(_one_update, 2, str(tiny_qwen2_dir), variants)
    # world size 1: the whole batch on one rank
    single = _one_update(0, str(tiny_qwen2_dir), [{}], world_size=1)[0]
    single_w = dict(x for b in single["buckets"] for x in b)
    ddp, *fsdps = ranks[0]
    for fsdp in fsdps:
        for key in METRICS:
            assert fsdp["metrics"][key] == pytest.approx(ddp["metrics"][key], abs=1e-5), key
            assert fsdp["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-5), key
        assert fsdp["metrics"]["num_completion_tokens"] == single["metrics"]["num_completion_tokens"]
        for name, g in ddp["grads"].items():  # the summed, clipped gradients
            torch.testing.assert_close(fsdp["grads"][name], g, atol=1e-6, rtol=0, msg=name)
        # export: the same HF names (tied embedding once) and weights, gathered on rank 0 only
        names = [n for b in fsdp["buckets"] for n, _ in b]
        assert names == [n for b in ddp["buckets"] for n, _ in b] == list(single_w)
        assert "lm_head.weight" not in names and len(fsdp["buckets"]) > 1
        for name, t in (x for b in fsdp["buckets"] for x in b):
            torch.testing.assert_close(t, single_w[name], atol=1e-5, rtol=0, msg=name)
        assert fsdp["version"] == 1
        torch.testing.assert_close(fsdp["logprobs"], single["logprobs"], atol=1e-5, rtol=0)
    assert [v["buckets"] for v in ranks[1][1:]] == [[], []]  # only rank 0 returns buckets
    for rank in ranks:
        ddp_bytes = sum(rank[0]["bytes"].values())
        for fsdp in rank[1:]:
            assert sum(fsdp["bytes"].values()) <= 0.55 * ddp_bytes, (fsdp["bytes"], rank[0]["bytes"])
