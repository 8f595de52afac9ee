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


def _uneven_update(rank: int, model: str, world_size: int = 2) -> dict:
    """5 rows, one per micro-batch: rank 0 runs 2 micro-batches of its own, rank 1 three."""
    config = LearnerConfig(model=model, lr=LR, micro_batch_size=1, updates_per_batch=2, strategy="fsdp")
    learner = Learner(config)
    metrics = learner.update(make_batch(seed=4, prompts=1, group_size=5).shard(rank, world_size))
    return {"metrics": metrics, "weights": _flat(learner.export_weights()[1])}


@pytest.mark.slow
def test_fsdp_ranks_with_different_micro_batch_counts(tiny_qwen2_dir):
    """Every forward is a collective: the rank with fewer rows runs idle micro-batches, no hang, same step."""
    got = run_ranks(_uneven_update, 2, str(tiny_qwen2_dir), timeout=120)[0]
    single = _uneven_update(0, str(tiny_qwen2_dir), world_size=1)
    for key in METRICS:
        assert got["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-5), key
    for name, t in single["weights"].items():
        torch.testing.assert_close(got["weights"][name], t, atol=1e-5, rtol=0, msg=name)


def _save_and_resume(rank: int, model: str, ckpt: str) -> dict:
    """Update, save (sharded), update again; then a fresh learner loads and takes that second update."""
    first, second = make_batch(seed=5), make_batch(seed=6, version=1)
    config = LearnerConfig(model=model, lr=LR, micro_batch_size=2, strategy="fsdp")
    a = Learner(config)
    a.update(first.shard(rank, 2))
    a.save(ckpt)
    expected = a.update(second.shard(rank, 2))
    expected_w = a.export_weights()[1]
    b = Learner(config)
    b.load(ckpt)
    got = b.update(second.shard(rank, 2))
    return {"expected": expected, "got": got, "expected_w": expected_w, "got_w": b.export_weights()[1]}


def _flat(buckets) -> dict:
    return dict(x for b in buckets for x in b)


@pytest.mark.slow
@pytest.mark.parametrize("tied", [True, False])
def test_sharded_checkpoint_resumes_exactly_reshards_to_one_and_exports(tmp_path, tied):
    from transformers import AutoModelForCausalLM

    from orchestrator.cli import main
    from tests.support.tiny_models import build_tiny_qwen2

    model = str(build_tiny_qwen2(tmp_path / "model", tied=tied))
    ckpt = tmp_path / "ckpt"
    r0 = run_ranks(_save_and_resume, 2, model, str(ckpt))[0]
    assert sorted(p.name for p in ckpt.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    # same world size: the next step is identical
    for key in (*METRICS, "step", "policy_version"):
        assert r0["got"][key] == r0["expected"][key], key
    got_w = _flat(r0["got_w"])
    for name, t in _flat(r0["expected_w"]).items():
        assert torch.equal(got_w[name], t), name

    # 2 -> 1: DCP reshards into one unsharded learner, which takes the same second step
    one = Learner(LearnerConfig(model=model, lr=LR, micro_batch_size=2, strategy="fsdp"))
    one.load(ckpt)
    assert (one.step, one.version) == (1, 1)
    loaded = _flat(one.export_weights()[1])
    with torch.no_grad():
        ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
        learner_logits = one.policy(input_ids=ids).logits
    m = one.update(make_batch(seed=6, version=1))
    for key in METRICS:
        assert m[key] == pytest.approx(r0["expected"][key], abs=1e-5), key
    for name, t in _flat(one.export_weights()[1]).items():
        torch.testing.assert_close(t, _flat(r0["expected_w"])[name], atol=1e-5, rtol=0, msg=name)

    # export-hf: a Hugging Face folder transformers loads, with the learner's logits
    assert main(["export-hf", str(ckpt), str(tmp_path / "hf")]) == 0
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert hf.config.tie_word_embeddings == tied
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits, learner_logits, atol=1e-5, rtol=0)
    for name, t in loaded.items():
        assert torch.equal(hf.state_dict()[name], t), name


def test_export_hf_of_a_ddp_checkpoint_and_of_no_checkpoint(tiny_qwen2_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from orchestrator.cli import main

    learner = Learner(LearnerConfig(model=str(tiny_qwen2_dir), lr=LR))
    learner.update(make_batch(seed=2))
    learner.save(tmp_path / "step-000001" / "learner")  # the layout of a run's checkpoints/step-N
    assert main(["export-hf", str(tmp_path / "step-000001"), str(tmp_path / "hf")]) == 0
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits, learner.policy(input_ids=ids).logits)
    with pytest.raises(SystemExit, match="not a learner checkpoint"):
        main(["export-hf", str(tmp_path / "hf"), str(tmp_path / "other")])
