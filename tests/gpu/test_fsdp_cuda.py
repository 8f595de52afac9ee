"""FSDP2 on NCCL at world size 1: the learner's sharding (policy/sharding.py) runs a training step on CUDA.

One process, a one-rank process group (NCCL on CUDA, gloo under ERV_GPU_TEST_DEVICE=cpu). The tiny
Qwen2 is sharded per decoder layer and at the root, with bf16 parameters and fp32 reduction on CUDA;
forward, backward, DTensor-aware clipping and an AdamW step must give the loss and gradient norm of
the same step on the unsharded model (bf16 tolerance on CUDA) and move every weight.
"""

import copy
import socket

import pytest
import torch
import torch.distributed as dist

from policy.model_loading import load_causal_lm
from policy.sharding import clip_grad_norm, full, is_sharded, shard

pytestmark = pytest.mark.gpu


@pytest.fixture
def one_rank_group(gpu_device):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "nccl" if gpu_device == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield gpu_device
    dist.destroy_process_group()


def step(model, ids: torch.Tensor, device: str, bf16: bool) -> tuple[float, float]:
    """One next-token-loss step with AdamW: (loss, gradient norm before clipping)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device == "cuda")
    with autocast:
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    norm = clip_grad_norm(model.parameters(), 1.0)
    optimizer.step()
    return float(loss), norm


def test_fsdp2_step_at_world_size_one(one_rank_group, tiny_qwen2_dir):
    device = one_rank_group
    torch.manual_seed(0)
    ids = torch.randint(3, 480, (4, 32), device=device)
    plain = load_causal_lm(str(tiny_qwen2_dir), device)
    sharded = shard(copy.deepcopy(plain), device, bf16=True, trainable=True)
    before = {n: full(p).detach().clone() for n, p in sharded.named_parameters()}
    assert all(is_sharded(p) for p in sharded.parameters())

    loss_plain, norm_plain = step(plain, ids, device, bf16=True)
    loss_sharded, norm_sharded = step(sharded, ids, device, bf16=True)
    tol = 2e-2 if device == "cuda" else 1e-5  # bf16 parameters on CUDA; fp32 under the CPU dry run
    assert loss_sharded == pytest.approx(loss_plain, rel=tol)
    assert norm_sharded == pytest.approx(norm_plain, rel=tol)
    for name, p in sharded.named_parameters():
        after = full(p).detach()
        assert after.dtype == torch.float32 and torch.isfinite(after).all(), name  # fp32 master weights
        assert not torch.equal(after, before[name]), name
