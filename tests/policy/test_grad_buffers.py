"""Gradient buffers kept across updates: the same step bit for bit, the same buffers, untouched tensors skipped."""

import torch

from policy.config import LearnerConfig
from policy.grad_buffers import GradBuffers
from policy.learner import Learner
from tests.policy.test_learner_step import _batch


class _FreedGrads:
    """torch's default, for comparison: gradients freed before every update."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def zero(self):
        self.optimizer.zero_grad(set_to_none=True)

    def drop_untouched(self):
        return 0


def test_kept_buffers_give_the_freed_buffers_step_and_stay_allocated(tiny_qwen2_dir):
    cfg = LearnerConfig(model=str(tiny_qwen2_dir), lr=1e-3, micro_batch_size=2)
    kept, freed = Learner(cfg), Learner(cfg)
    freed.grads = _FreedGrads(freed.optimizer)
    pointers = None
    for seed in (1, 2, 3):
        batch = _batch([5, 3, 7, 2, 6], seed=seed)
        mk, mf = kept.update(batch), freed.update(batch)
        assert mk["loss"] == mf["loss"] and mk["grad_norm"] == mf["grad_norm"]
        for a, b in zip(kept.policy.parameters(), freed.policy.parameters(), strict=True):
            assert torch.equal(a, b) and torch.equal(a.grad, b.grad)
        now = [p.grad.data_ptr() for p in kept.policy.parameters()]
        assert pointers is None or now == pointers  # the same tensors, zeroed, not new ones
        pointers = now


def test_a_tensor_without_gradient_in_an_update_is_not_stepped():
    torch.manual_seed(0)
    used, unused = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    params = [*used.parameters(), *unused.parameters()]
    buffers = GradBuffers(params)
    optimizer = torch.optim.AdamW(params, lr=0.1, weight_decay=0.5)
    x = torch.randn(4, 3)
    buffers.zero()
    (used(x) + unused(x)).sum().backward()  # both get a gradient
    assert buffers.drop_untouched() == 0
    optimizer.step()
    before = [p.detach().clone() for p in unused.parameters()]
    buffers.zero()
    used(x).sum().backward()  # `unused` is not in this graph
    assert buffers.drop_untouched() == 2
    assert all(p.grad is None for p in unused.parameters())
    optimizer.step()  # AdamW skips tensors without a gradient: no decay, no momentum step
    assert all(torch.equal(p, b) for p, b in zip(unused.parameters(), before, strict=True))
    assert all(p.grad is not None for p in used.parameters())
