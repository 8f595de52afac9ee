"""GRPO math: values worked out by hand on 2x3 tensors, finite-difference gradients, sharding."""

import math

import pytest
import torch

from policy.grpo import grpo_loss, kl_k3, token_logprobs


def test_kl_k3_by_hand():
    logp = torch.zeros(2, 3)
    ref = torch.tensor([[0.0, 1.0, -1.0], [math.log(2), 0.0, 2.0]])
    expected = torch.tensor(
        [[0.0, math.e - 2, math.exp(-1)], [2 - math.log(2) - 1, 0.0, math.exp(2) - 3]]
    )  # exp(d) - d - 1
    torch.testing.assert_close(kl_k3(logp, ref), expected)


@pytest.mark.parametrize("chunk_rows", [1, 2, 32])
def test_token_logprobs_by_hand(chunk_rows):
    logits = torch.tensor([[[0.0, 0.0], [math.log(3), 0.0]]], requires_grad=True)  # (1, 2, V=2)
    got = token_logprobs(logits, torch.tensor([[1, 0]]), chunk_rows=chunk_rows)
    torch.testing.assert_close(got, torch.tensor([[math.log(0.5), math.log(0.75)]]))
    # d logp / d logits = onehot(token) - softmax: [0, 1] - [.5, .5] and [1, 0] - [.75, .25]
    (got * torch.tensor([[1.0, 2.0]])).sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[[-0.5, 0.5], [2 * 0.25, 2 * -0.25]]]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_token_logprobs_equal_log_softmax_and_its_gradient(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 11, generator=g) * 4).to(dtype).requires_grad_(True)  # (N, T, V)
    tokens = torch.randint(0, 11, (3, 5), generator=g)
    weights = torch.randn(3, 5, generator=g)
    got = token_logprobs(logits, tokens, chunk_rows=4)  # 15 rows: chunks of 4, 4, 4, 3
    (got * weights).sum().backward()
    grad, logits.grad = logits.grad, None
    full = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    (full * weights).sum().backward()
    assert got.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(got, full, atol=1e-6, rtol=1e-6)
    tol = 1e-6 if dtype == torch.float64 else 1e-2  # bf16: both round the fp32 gradient once
    torch.testing.assert_close(grad, logits.grad, atol=tol, rtol=tol)


def _hand_case():
    # ratios row 0: 1.5, 1.1, 0.5; row 1: 1.5, 0.7, (2.0 masked); advantages 1, -2; eps 0.2
    old = torch.zeros(2, 3, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.5, 1.1, 0.5], [1.5, 0.7, 2.0]], dtype=torch.float64))
    delta = torch.tensor([[0.0, 1.0, -1.0], [math.log(2), 0.0, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    return logp, old, logp + delta, adv, mask


def test_grpo_loss_by_hand_sequence_mean_and_token_mean():
    logp, old, ref, adv, mask = _hand_case()
    # per-token surrogate min(r*A, clip(r)*A): row 0: 1.2, 1.1, 0.5; row 1: -3.0, -1.6
    # per-token k3: row 0: 0, e-2, 1/e; row 1: 1-ln2, 0
    k = [0.0, math.e - 2, math.exp(-1), 1 - math.log(2), 0.0]
    row0 = [-(1.2 - 0.04 * k[0]), -(1.1 - 0.04 * k[1]), -(0.5 - 0.04 * k[2])]
    row1 = [-(-3.0 - 0.04 * k[3]), -(-1.6 - 0.04 * k[4])]
    seq_mean = (sum(row0) / 3 + sum(row1) / 2) / 2
    tok_mean = (sum(row0) + sum(row1)) / 5
    assert seq_mean == pytest.approx(0.693642937, abs=1e-8)
    assert tok_mean == pytest.approx(0.371144113, abs=1e-8)

    loss, metrics = grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, kl_coef=0.04)
    assert loss.item() == pytest.approx(seq_mean, abs=1e-10)
    loss_t, _ = grpo_loss(logp, old, ref, adv, mask, aggregation="token-mean")
    assert loss_t.item() == pytest.approx(tok_mean, abs=1e-10)
    # clipping is active for (row 0, r=1.5, A>0) and (row 1, r=0.7, A<0): 2 of 5 tokens
    assert metrics["clip_fraction"].item() == pytest.approx(0.4)
    assert metrics["ratio_mean"].item() == pytest.approx(5.3 / 5)
    assert metrics["kl"].item() == pytest.approx(sum(k) / 5)
    assert metrics["num_tokens"].item() == 5


def test_one_update_per_batch_is_reference_trainer_loss():
    # the reference trainer: per token -(exp(logp - logp.detach()) * A - beta * k3), sequence mean;
    # its value is mean_seq(mean_tok(-A + beta * k3)) and the ratio still carries the gradient A
    torch.manual_seed(0)
    logp = (torch.randn(2, 3, dtype=torch.float64) - 2).requires_grad_()
    ref = torch.randn(2, 3, dtype=torch.float64) - 2
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv = torch.tensor([0.5, -1.0], dtype=torch.float64)
    loss, metrics = grpo_loss(logp, logp.detach(), ref, adv, mask)
    per_tok = -(torch.exp(logp - logp.detach()) * adv[:, None] - 0.04 * kl_k3(logp, ref)) * mask
    expected = (per_tok.sum(1) / mask.sum(1)).mean()
    torch.testing.assert_close(loss, expected)
    assert metrics["ratio_mean"].item() == pytest.approx(1.0)
    assert metrics["clip_fraction"].item() == 0.0
    (g1,) = torch.autograd.grad(loss, logp)
    (g2,) = torch.autograd.grad(expected, logp)
    torch.testing.assert_close(g1, g2)
    assert g1[1, 1] == 0 and g1[0, 0] != 0  # padding gets no gradient


@pytest.mark.parametrize("aggregation", ["sequence-mean", "token-mean"])
def test_grpo_loss_gradient_matches_finite_differences(aggregation):
    torch.manual_seed(1)
    old = torch.randn(3, 4, dtype=torch.float64) - 1
    # ratios in (0.9, 1.1) and well inside/outside the clip range, away from its kinks
    logp = (old + torch.tensor([[0.05, -0.05, 0.5, -0.5]] * 3, dtype=torch.float64)).requires_grad_()
    ref = old + 0.3 * torch.randn(3, 4, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]])

    def f(x):
        return grpo_loss(x, old, ref, adv, mask, aggregation=aggregation)[0]

    assert torch.autograd.gradcheck(f, (logp,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("aggregation", ["sequence-mean", "token-mean"])
def test_sharded_loss_equals_global(aggregation):
    torch.manual_seed(2)
    n, t = 6, 5
    old = torch.randn(n, t, dtype=torch.float64) - 1
    logp = (old + 0.3 * torch.randn(n, t, dtype=torch.float64)).requires_grad_()
    ref = old + 0.2 * torch.randn(n, t, dtype=torch.float64)
    adv = torch.randn(n, dtype=torch.float64)
    mask = (torch.rand(n, t) > 0.3).long()
    mask[:, 0] = 1
    full, _ = grpo_loss(logp, old, ref, adv, mask, aggregation=aggregation)
    (g_full,) = torch.autograd.grad(full, logp)

    total_tokens = int(mask.sum())
    parts = []
    for rows in (slice(0, 2), slice(2, 6)):
        part, _ = grpo_loss(
            logp[rows],
            old[rows],
            ref[rows],
            adv[rows],
            mask[rows],
            aggregation=aggregation,
            num_sequences=n,
            num_tokens=total_tokens,
        )
        parts.append(part)
    torch.testing.assert_close(parts[0] + parts[1], full)
    (g_parts,) = torch.autograd.grad(parts[0] + parts[1], logp)
    torch.testing.assert_close(g_parts, g_full)


def test_unknown_aggregation_is_rejected():
    z = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="aggregation"):
        grpo_loss(z, z, z, torch.zeros(1), z, aggregation="sum")


def test_decoupled_loss_by_hand():
    # proximal = old = 0; behaviour mu gives w = exp(old - mu): row 0: 1, 0.5, 4 -> cap 2; row 1: 1.5, 1, (masked)
    logp, old, ref, adv, mask = _hand_case()
    mu = torch.tensor([[0.0, math.log(2), -math.log(4)], [-math.log(1.5), 0.0, -5.0]], dtype=torch.float64)
    # surrogates of the on-policy case (1.2, 1.1, 0.5; -3.0, -1.6) times w: 1.2, 0.55, 1.0; -4.5, -1.6
    k = [0.0, math.e - 2, math.exp(-1), 1 - math.log(2), 0.0]
    row0 = [-(1.2 - 0.04 * k[0]), -(0.55 - 0.04 * k[1]), -(1.0 - 0.04 * k[2])]
    row1 = [-(-4.5 - 0.04 * k[3]), -(-1.6 - 0.04 * k[4])]
    seq_mean = (sum(row0) / 3 + sum(row1) / 2) / 2
    assert seq_mean == pytest.approx(1.076976270, abs=1e-8)  # (-2.706554 / 3 + 6.112274 / 2) / 2

    loss, metrics = grpo_loss(logp, old, ref, adv, mask, behavior_logprobs=mu, is_cap=2.0)
    assert loss.item() == pytest.approx(seq_mean, abs=1e-10)
    assert metrics["is_weight_mean"].item() == pytest.approx((1 + 0.5 + 2 + 1.5 + 1) / 5)
    assert metrics["is_weight_max"].item() == pytest.approx(2.0)  # the masked w = e^5 does not count
    assert metrics["is_truncated_fraction"].item() == pytest.approx(1 / 5)
    # the clip is against the proximal policy, unchanged by the weight
    assert metrics["clip_fraction"].item() == pytest.approx(0.4)
    # a larger cap keeps the raw weight 4 of (row 0, token 2): surrogate 0.5 * 4 = 2.0 instead of 1.0
    loss4, m4 = grpo_loss(logp, old, ref, adv, mask, behavior_logprobs=mu, is_cap=4.0)
    assert loss4.item() == pytest.approx(seq_mean - (2.0 - 1.0) / 3 / 2, abs=1e-10)
    assert m4["is_truncated_fraction"].item() == 0.0


def test_decoupled_loss_with_fresh_rows_is_todays_loss_bit_for_bit():
    # eta = 0, one update: proximal = behaviour = the current logprobs detached, w = exp(0) = 1 exactly
    torch.manual_seed(3)
    logp = (torch.randn(3, 4) - 2).requires_grad_()
    ref = torch.randn(3, 4) - 2
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    adv = torch.tensor([0.5, -1.0, 2.0])
    today, m0 = grpo_loss(logp, logp.detach(), ref, adv, mask)
    decoupled, m1 = grpo_loss(logp, logp.detach(), ref, adv, mask, behavior_logprobs=logp.detach())
    assert torch.equal(today, decoupled)
    (g0,) = torch.autograd.grad(today, logp)
    (g1,) = torch.autograd.grad(decoupled, logp)
    assert torch.equal(g0, g1)
    assert m1["is_weight_mean"].item() == 1.0 and m1["is_truncated_fraction"].item() == 0.0
    assert m0["is_weight_max"].item() == 1.0


def test_decoupled_loss_gradient_matches_finite_differences():
    torch.manual_seed(4)
    old = torch.randn(2, 4, dtype=torch.float64) - 1
    logp = (old + torch.tensor([[0.05, -0.05, 0.5, -0.5]] * 2, dtype=torch.float64)).requires_grad_()
    mu = old + torch.tensor([[0.3, -0.3, 1.5, 0.0]] * 2, dtype=torch.float64)  # w: 0.74, 1.35, cap, 1
    ref = old + 0.3 * torch.randn(2, 4, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])

    def f(x):
        return grpo_loss(x, old, ref, adv, mask, behavior_logprobs=mu)[0]

    assert torch.autograd.gradcheck(f, (logp,), eps=1e-6, atol=1e-7)


def test_is_cap_below_one_is_rejected():
    z = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="is_cap"):
        grpo_loss(z, z, z, torch.zeros(1), z, behavior_logprobs=z, is_cap=0.5)
