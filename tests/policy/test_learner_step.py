"""Learner speed paths that must not change the update: length-sorted micro-batches, fused AdamW,
exact logits_to_keep positions, learner.num_threads, the per-phase seconds."""

import pydantic
import pytest
import torch

import policy.learner as learner_module
from policy.batch import RolloutBatch, micro_batches
from policy.config import LearnerConfig
from policy.forward import completion_logprobs, pad_rows
from policy.learner import Learner
from policy.model_loading import load_causal_lm


def _batch(lengths: list[int], seed: int = 0) -> RolloutBatch:
    """One prompt, completions of the given lengths (rows in this order), random advantages."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(3, 480, (5,), generator=g).tolist()
    completions = [torch.randint(3, 480, (n,), generator=g).tolist() for n in lengths]
    n = len(lengths)
    return RolloutBatch(
        prompt_token_ids=[prompt] * n,
        completion_token_ids=completions,
        advantages=torch.randn(n, generator=g).tolist(),
        sampler_logprobs=[[-6.0] * k for k in lengths],
        completion_ids=[f"p/{i}" for i in range(n)],
        policy_version=0,
    )


def _padded_tokens(batch: RolloutBatch, micro: list[list[int]]) -> int:
    return sum(len(rows) * max(len(batch.completion_token_ids[i]) for i in rows) for rows in micro)


def test_micro_batches_group_rows_of_like_length():
    batch = _batch([9, 2, 8, 3, 7, 1])
    micro = micro_batches(batch, 2)
    assert micro == [[5, 1], [3, 4], [2, 0]]  # lengths (1, 2), (3, 7), (8, 9)
    assert sorted(i for rows in micro for i in rows) == list(range(6))  # every row once
    contiguous = [[0, 1], [2, 3], [4, 5]]
    assert (
        _padded_tokens(batch, micro) == 2 * (2 + 7 + 9) < _padded_tokens(batch, contiguous) == 2 * (9 + 8 + 7)
    )


def test_sorted_micro_batches_give_the_contiguous_step(tiny_qwen2_dir, monkeypatch):
    batch = _batch([9, 2, 8, 3, 7, 1, 4, 6], seed=3)
    cfg = {"model": str(tiny_qwen2_dir), "lr": 1e-3, "micro_batch_size": 3}
    sorted_learner = Learner(LearnerConfig(**cfg))
    ms = sorted_learner.update(batch)
    # the order before sorting: rows 0-2, 3-5, 6-7
    monkeypatch.setattr(learner_module, "micro_batches", lambda b, size: [list(range(i, min(i + size, len(b))))
                                                                         for i in range(0, len(b), size)])  # fmt: skip
    contiguous = Learner(LearnerConfig(**cfg))
    mc = contiguous.update(batch)
    for key in ("loss", "kl", "grad_norm", "sampler_logprob_abs_diff", "sampler_logprob_max_abs_diff"):
        assert ms[key] == pytest.approx(mc[key], abs=1e-6), key
    for (name, a), b in zip(
        sorted_learner.policy.named_parameters(), contiguous.policy.parameters(), strict=True
    ):
        # (not the weights after the step: AdamW's g / sqrt(v) turns 1e-9 sum-order noise on a ~0
        # gradient into a step of lr)
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_fused_adamw_steps_as_the_reference_loop(tiny_qwen2_dir):
    learner = Learner(LearnerConfig(model=str(tiny_qwen2_dir), lr=1e-3, weight_decay=0.1))
    assert learner.optimizer.defaults["fused"] is True
    params = [p for p in learner.policy.parameters() if p.requires_grad]
    copies = [p.detach().clone().requires_grad_(True) for p in params]
    loop = torch.optim.AdamW(copies, lr=1e-3, weight_decay=0.1, foreach=False)  # torch's CPU default
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # the same gradients into both
        for p, c in zip(params, copies, strict=True):
            p.grad = torch.randn(p.shape, generator=g)
            c.grad = p.grad.clone()
        learner.optimizer.step(), loop.step()
    for p, c in zip(params, copies, strict=True):
        torch.testing.assert_close(p, c, atol=1e-7, rtol=1e-6)


def test_exact_logits_positions_equal_the_full_forward(tiny_qwen2_dir):
    model = load_causal_lm(str(tiny_qwen2_dir)).eval()
    prompts, completions = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13]]
    mb = pad_rows(prompts, completions, 0, "cpu")
    with torch.no_grad():
        got = completion_logprobs(model, mb, torch.no_grad)  # (2, 3)
        logits = model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"],
                       position_ids=mb["position_ids"]).logits  # fmt: skip
    expected = torch.log_softmax(logits[:, 2:5].float(), -1).gather(-1, mb["input_ids"][:, 3:, None])[..., 0]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


def test_export_without_copy_gives_views_of_the_parameters(tiny_qwen2_dir):
    learner = Learner(LearnerConfig(model=str(tiny_qwen2_dir)))
    params = dict(learner.policy.named_parameters())
    name = "model.layers.0.mlp.up_proj.weight"
    views = dict(x for b in learner.export_weights(copy=False)[1] for x in b)
    copies = dict(x for b in learner.export_weights()[1] for x in b)
    assert views[name].data_ptr() == params[name].data_ptr()  # what ray.put serialises at once
    assert copies[name].data_ptr() != params[name].data_ptr() and torch.equal(copies[name], params[name])
    halves = dict(x for b in learner.export_weights(dtype=torch.bfloat16, copy=False)[1] for x in b)
    assert halves[name].dtype == torch.bfloat16 and torch.equal(halves[name], params[name].to(torch.bfloat16))


def test_num_threads_sets_the_learner_process_threads(tiny_qwen2_dir):
    before = torch.get_num_threads()
    try:
        Learner(LearnerConfig(model=str(tiny_qwen2_dir), num_threads=2))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(pydantic.ValidationError, match="num_threads"):
        LearnerConfig(model=str(tiny_qwen2_dir), num_threads=0)


def test_update_reports_its_phases(tiny_qwen2_dir):
    m = Learner(LearnerConfig(model=str(tiny_qwen2_dir), micro_batch_size=2)).update(_batch([3, 4, 2]))
    phases = [m[f"{p}_seconds"] for p in ("ref_pass", "policy_forward", "policy_backward", "optimizer")]
    assert all(t > 0 for t in phases)
    assert sum(phases) <= m["update_seconds"]
