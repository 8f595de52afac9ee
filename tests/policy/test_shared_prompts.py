"""Shared prompts (policy/forward.py): each distinct prompt runs once per micro-batch, its completions
attend to its keys and values; the logprobs and the update equal the row layout's."""

import contextlib

import pytest
import torch

from policy.config import LearnerConfig
from policy.forward import completion_logprobs, pad_rows, shared_prefix_rows
from policy.learner import Learner
from policy.model_loading import load_causal_lm
from policy.packed_attention import use_packed_attention, uses_packed_attention
from tests.policy.conftest import make_batch


def test_shared_prefix_layout_by_hand():
    mb = shared_prefix_rows([[5, 6], [7], [5, 6]], [[8], [9, 10, 11], [12, 13]], pad_id=0, device="cpu")
    assert mb["prefix_ids"].tolist() == [[5, 6], [0, 7]]  # two distinct prompts, left-padded
    assert mb["prefix_mask"].tolist() == [[1, 1], [0, 1]]
    assert mb["prefix_positions"].tolist() == [[0, 1], [0, 0]]
    assert mb["row_prefix"].tolist() == [0, 1, 0]
    assert mb["input_ids"].tolist() == [[8], [9], [12]]  # token 0: predicted by the prompt's last position
    assert mb["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1], [1, 1, 0]]
    # packed after its prompt, all but the last token of each row: prompt 0 has [12], prompt 1 [9, 10]
    assert mb["packed_ids"].tolist() == [[12, 0], [9, 10]]
    assert mb["packed_targets"].tolist() == [[13, 0], [10, 11]]
    assert mb["packed_positions"].tolist() == [[2, 0], [1, 2]]
    # keys [prompt | packed]: a row sees its prompt and itself causally; the padding query only itself
    assert mb["packed_allowed"].int().tolist() == [
        [[1, 1, 1, 0], [1, 1, 0, 1]],
        [[0, 1, 1, 0], [0, 1, 1, 1]],
    ]
    # row i's token j + 1 in the flattened (U * T) packed outputs
    assert mb["gather"][1].tolist() == [2, 3] and mb["gather"][2, 0].item() == 0
    assert mb["model_tokens"] == (2 + 1) + (0 + 2 + 1)
    # for the per-completion attention: the completions' packed lengths per prompt (row 0 has none)
    assert mb["packed_spans"].lengths == [[1], [2]]
    assert mb["packed_spans"].prefix_mask.tolist() == [[True, True], [False, True]]
    assert pad_rows([[5, 6], [7], [5, 6]], [[8], [9, 10, 11], [12, 13]], 0, "cpu")["model_tokens"] == 11
    with pytest.raises(ValueError, match="empty"):
        shared_prefix_rows([[5]], [[]], pad_id=0, device="cpu")


def test_shared_prompt_logprobs_equal_the_row_layout(tiny_qwen2_dir):
    model = load_causal_lm(str(tiny_qwen2_dir)).eval()
    prompts = [[5, 6, 7, 8], [9], [5, 6, 7, 8], [9], [5, 6, 7, 8]]
    completions = [[10, 11], [12, 13, 14, 15], [16], [17, 18], [19, 20, 21, 22, 23]]
    with torch.no_grad():
        rows = completion_logprobs(model, pad_rows(prompts, completions, 0, "cpu"), torch.no_grad)
        shared = completion_logprobs(model, shared_prefix_rows(prompts, completions, 0, "cpu"), torch.no_grad)
    assert shared.shape == rows.shape == (5, 5)
    mask = pad_rows(prompts, completions, 0, "cpu")["completion_mask"].bool()
    torch.testing.assert_close(shared[mask], rows[mask], atol=1e-5, rtol=1e-5)


def test_per_completion_attention_equals_the_dense_mask_values_and_gradients(tiny_qwen2_dir):
    # Two prompts of different lengths (one left-padded), completions of 1..6 tokens: the per-completion
    # attention must see exactly what the dense (U, T, P+T) mask allows, forward and backward.
    prompts = [[5, 6, 7, 8], [9, 3], [5, 6, 7, 8], [9, 3], [5, 6, 7, 8], [9, 3]]
    completions = [[10, 11, 12], [12], [16, 17, 18, 19, 20, 21], [17, 18], [19, 20], [22, 23, 24, 25]]
    mb = shared_prefix_rows(prompts, completions, 0, "cpu")
    mask = mb["completion_mask"].bool()
    results = []
    for packed in (False, True):
        model = load_causal_lm(str(tiny_qwen2_dir))
        assert model.config._attn_implementation == "sdpa"
        if packed:
            assert use_packed_attention(model) and uses_packed_attention(model)
        logprobs = completion_logprobs(model, mb, contextlib.nullcontext)
        logprobs[mask].sum().backward()
        results.append((logprobs.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (dense, dense_grads), (packed, packed_grads) = results
    torch.testing.assert_close(packed[mask], dense[mask], atol=1e-5, rtol=1e-5)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_the_learner_packs_attention_per_completion_only_with_shared_prompts(tiny_qwen2_dir):
    shared = Learner(LearnerConfig(model=str(tiny_qwen2_dir), share_prompts=True))
    rows = Learner(LearnerConfig(model=str(tiny_qwen2_dir), share_prompts=False))
    assert uses_packed_attention(shared.policy) and uses_packed_attention(shared.reference)
    assert not uses_packed_attention(rows.policy) and rows.policy.config._attn_implementation == "sdpa"
    eager = load_causal_lm(str(tiny_qwen2_dir))
    eager.set_attn_implementation("eager")
    assert not use_packed_attention(eager)  # another implementation keeps the dense mask


@pytest.mark.parametrize("checkpointing", [False, True])
def test_an_update_with_shared_prompts_equals_the_row_layout(tiny_qwen2_dir, checkpointing):
    # Under gradient checkpointing the prompt's keys reach the completion pass's replay: without that
    # (a reentrant checkpoint, or transformers dropping the cache) the prompt's gradient is lost.
    batch = make_batch(seed=4, prompts=3, group_size=4)
    cfg = {"model": str(tiny_qwen2_dir), "lr": 1e-3, "micro_batch_size": 5,
           "gradient_checkpointing": checkpointing}  # fmt: skip
    shared = Learner(LearnerConfig(**cfg, share_prompts=True))
    rows = Learner(LearnerConfig(**cfg, share_prompts=False))
    # the parity guard's logprobs (before the step: AdamW amplifies sum-order noise)
    probe = shared.logprobs(batch.prompt_token_ids[:3], batch.completion_token_ids[:3])
    expected = rows.logprobs(batch.prompt_token_ids[:3], batch.completion_token_ids[:3])
    for a, b in zip(probe, expected, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    ms, mr = shared.update(batch), rows.update(batch)
    for key in ("loss", "kl", "grad_norm", "sampler_logprob_abs_diff"):
        assert ms[key] == pytest.approx(mr[key], rel=1e-4, abs=1e-6), key
    for (name, a), b in zip(shared.policy.named_parameters(), rows.policy.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-4, msg=name)
    # the prompts run once per micro-batch: fewer tokens through the model than prompt + completion per row
    assert (
        ms["model_tokens"]
        < mr["model_tokens"]
        == sum(
            len(p) + len(c) for p, c in zip(batch.prompt_token_ids, batch.completion_token_ids, strict=True)
        )
    )
