"""Learner: padding, micro-batching, several updates per batch, export, checkpoints, learning."""

import math

import pytest
import torch

from policy.advantages import group_advantages
from policy.batch import RolloutBatch
from policy.config import LearnerConfig
from policy.forward import completion_logprobs, pad_rows
from policy.learner import Learner
from policy.model_loading import ModelLoadError, load_causal_lm
from tests.policy.conftest import make_batch


def _learner(path, **kw) -> Learner:
    return Learner(LearnerConfig(model=str(path), **kw))


def test_pad_rows_layout():
    mb = pad_rows([[5, 6], [7]], [[8], [9, 10, 11]], pad_id=0, device="cpu")
    assert mb["input_ids"].tolist() == [[5, 6, 8, 0, 0], [0, 7, 9, 10, 11]]
    assert mb["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]]
    assert mb["position_ids"][1].tolist() == [0, 0, 1, 2, 3]  # the real tokens start at 0
    assert mb["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]


def test_padded_logprobs_equal_unpadded(tiny_qwen2_dir):
    model = load_causal_lm(str(tiny_qwen2_dir)).eval()
    prompts, completions = [[5, 6, 7, 8], [9]], [[10, 11], [12, 13, 14, 15]]
    with torch.no_grad():
        batched = completion_logprobs(model, pad_rows(prompts, completions, 0, "cpu"), torch.no_grad)
        for i in range(2):
            ids = torch.tensor([prompts[i] + completions[i]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            expected = logp[len(prompts[i]) - 1 :].gather(1, ids[0, len(prompts[i]) :, None]).squeeze(1)
            torch.testing.assert_close(batched[i, : len(completions[i])], expected, atol=1e-5, rtol=1e-5)


def test_micro_batching_gives_the_same_step(tiny_qwen2_dir):
    batch = make_batch(seed=1)
    a = _learner(tiny_qwen2_dir, lr=1e-3, micro_batch_size=len(batch))
    b = _learner(tiny_qwen2_dir, lr=1e-3, micro_batch_size=2)
    ma, mb = a.update(batch), b.update(batch)
    assert ma["loss"] == pytest.approx(mb["loss"], abs=1e-6)
    assert ma["grad_norm"] == pytest.approx(mb["grad_norm"], rel=1e-4)
    # the accumulated gradients (left in .grad after the step) are the same sum
    for (name, pa), pb in zip(a.policy.named_parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-7, rtol=1e-4, msg=name)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_qwen2_dir):
    batch = make_batch(seed=9)
    a = _learner(tiny_qwen2_dir, lr=1e-3)
    b = _learner(tiny_qwen2_dir, lr=1e-3, gradient_checkpointing=True)
    assert a.update(batch)["loss"] == pytest.approx(b.update(batch)["loss"], abs=1e-7)
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-7, rtol=1e-5)


def test_update_metrics_and_reference_stays_frozen(tiny_qwen2_dir):
    learner = _learner(tiny_qwen2_dir, lr=1e-3, micro_batch_size=4)
    ref_before = {k: v.clone() for k, v in learner.reference.state_dict().items()}
    batch = make_batch(seed=2)
    m0 = learner.update(batch)
    assert m0["kl"] == 0.0  # policy == reference before the first step
    assert m0["ratio_mean"] == pytest.approx(1.0) and m0["clip_fraction"] == 0.0
    assert m0["policy_version"] == 1 and m0["step"] == 1 and learner.version == 1
    assert m0["num_completion_tokens"] == batch.num_completion_tokens
    # sampler said -6.0 per token; the random tiny model gives about -log(512) = -6.24
    assert 0.0 < m0["sampler_logprob_abs_diff"] < 1.5
    m1 = learner.update(make_batch(seed=3, version=1))
    assert m1["kl"] > 0 and math.isfinite(m1["kl"])
    for k, v in learner.reference.state_dict().items():
        assert torch.equal(v, ref_before[k]), k
    assert not any(p.requires_grad for p in learner.reference.parameters())


def test_several_updates_per_batch_use_fixed_old_logprobs(tiny_qwen2_dir):
    learner = _learner(tiny_qwen2_dir, lr=5e-3, updates_per_batch=3)
    m = learner.update(make_batch(seed=4))
    assert m["step"] == 3 and m["policy_version"] == 1  # 3 optimizer steps, one new version
    assert m["ratio_mean"] != pytest.approx(1.0, abs=1e-6)  # steps 2 and 3 see ratio != 1


def test_export_weights_buckets_and_names(tiny_qwen2_dir):
    learner = _learner(tiny_qwen2_dir)
    learner.update(make_batch())
    version, buckets = learner.export_weights(bucket_bytes=200_000)
    assert version == 1
    names = [n for bucket in buckets for n, _ in bucket]
    expected = [n for n in learner.policy.state_dict() if n != "lm_head.weight"]  # tied: sent once
    assert names == expected
    for bucket in buckets:
        size = sum(t.numel() * t.element_size() for _, t in bucket)
        assert size <= 200_000 or len(bucket) == 1
    assert len(buckets) > 1
    exported = dict(x for bucket in buckets for x in bucket)
    emb = learner.policy.state_dict()["model.embed_tokens.weight"]
    assert torch.equal(exported["model.embed_tokens.weight"], emb)
    exported["model.embed_tokens.weight"].zero_()  # a copy: the learner's weights are untouched
    assert emb.abs().sum() > 0
    _, half = learner.export_weights(dtype=torch.bfloat16)
    assert all(t.dtype == torch.bfloat16 for b in half for _, t in b)


def test_checkpoint_resume_gives_the_same_next_step(tiny_qwen2_dir, tmp_path):
    first, second = make_batch(seed=5), make_batch(seed=6, version=1)
    a = _learner(tiny_qwen2_dir, lr=1e-3, micro_batch_size=4)
    a.update(first)
    a.save(tmp_path / "ckpt")
    expected = a.update(second)

    b = _learner(tiny_qwen2_dir, lr=1e-3, micro_batch_size=4)
    b.load(tmp_path / "ckpt")
    assert (b.step, b.version) == (1, 1)
    got = b.update(second)
    assert got["loss"] == pytest.approx(expected["loss"], abs=1e-7)
    assert got["kl"] == pytest.approx(expected["kl"], abs=1e-9)
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-7, rtol=1e-6)
    # the checkpoint folder is itself a loadable model folder (one format for learner, SFT, vLLM)
    assert load_causal_lm(str(tmp_path / "ckpt")).config.vocab_size == 512


def test_model_loading_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(ModelLoadError, match="offline"):
        load_causal_lm("HuggingFaceTB/no-such-model-here")


def test_batch_validation_names_the_field():
    batch = make_batch()
    batch.sampler_logprobs[1] = batch.sampler_logprobs[1][:-1]
    with pytest.raises(ValueError, match=r"sampler_logprobs\[1\].*p0/1"):
        batch.validate()
    batch = make_batch()
    batch.advantages = batch.advantages[:-1]
    with pytest.raises(ValueError, match="advantages"):
        batch.validate()


@pytest.mark.slow
def test_it_really_learns(tiny_qwen2_dir):
    """Torch sampling + this learner; reward = share of one chosen token in the completion."""
    target, group_size, steps = 100, 8, 40
    learner = _learner(tiny_qwen2_dir, lr=3e-3, micro_batch_size=16)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 400, (6,), generator=g).tolist() for _ in range(4)]

    @torch.no_grad()
    def sample(rows, new_tokens=8):
        ids, tokens, logprobs = torch.tensor(rows), [], []
        for _ in range(new_tokens):
            logp = torch.log_softmax(learner.policy(input_ids=ids).logits[:, -1].float(), -1)
            tok = torch.multinomial(logp.exp(), 1, generator=g)
            tokens.append(tok)
            logprobs.append(logp.gather(1, tok))
            ids = torch.cat([ids, tok], 1)
        return torch.cat(tokens, 1).tolist(), torch.cat(logprobs, 1).tolist()

    mean_rewards, kls = [], []
    for _ in range(steps):
        rows = [p for p in prompts for _ in range(group_size)]
        completions, sampler = sample(rows)
        rewards = torch.tensor([c.count(target) / len(c) for c in completions])
        batch = RolloutBatch(
            rows,
            completions,
            group_advantages(rewards, group_size).tolist(),
            sampler,
            [f"c{i}" for i in range(len(rows))],
            learner.version,
        )
        m = learner.update(batch)
        mean_rewards.append(rewards.mean().item())
        kls.append(m["kl"])
        assert m["sampler_logprob_abs_diff"] < 1e-4  # torch sampler == torch learner
    start, end = sum(mean_rewards[:5]) / 5, sum(mean_rewards[-5:]) / 5
    assert start < 0.05
    assert end > start + 0.3, mean_rewards
    assert kls[0] == 0.0 and all(math.isfinite(k) for k in kls)
    assert sum(kls[-5:]) / 5 > sum(kls[1:6]) / 5 > 0


def test_stale_rows_get_the_decoupled_weight_fresh_rows_none(tiny_qwen2_dir):
    # Two learners from the same weights, one update each on the same rows: once tagged with the learner's
    # version (fresh: today's loss, w = 1), once as sampled one version ago (w = min(pi_prox / mu, cap)).
    fresh_learner = _learner(tiny_qwen2_dir, lr=1e-3, is_cap=1.05)
    stale_learner = _learner(tiny_qwen2_dir, lr=1e-3, is_cap=1.05)
    fresh_learner._version = stale_learner._version = 3
    fresh, stale = make_batch(seed=8, version=3), make_batch(seed=8, version=3)
    stale.sampled_versions = [2] * 3 + [3] * 3  # the first prompt's group is one version old
    mf, ms = fresh_learner.update(fresh), stale_learner.update(stale)
    assert mf["is_weight_mean"] == 1.0 and mf["is_weight_max"] == 1.0 and mf["is_truncated_fraction"] == 0.0
    # sampler -6.0, learner about -6.24: pi_prox / mu = exp(-0.24) < 1 for most tokens, above the 1.05 cap for some
    assert ms["is_weight_mean"] != 1.0 and ms["is_weight_max"] <= 1.05 + 1e-9
    assert 0.0 < ms["is_truncated_fraction"] < 0.5
    assert ms["loss"] != mf["loss"] and ms["kl"] == mf["kl"]
