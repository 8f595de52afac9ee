"""FSDP2 set-up of the learner (`learner.strategy: fsdp`): sharding, clipping, gathering, byte counts.

Runs in each learner rank's process (a Ray actor or a plain process) after torch.distributed is
initialised. `fully_shard` wraps every decoder layer (the model's `_no_split_modules`), then the
root, so at most one layer is unsharded at a time. On CUDA parameters compute in bf16 with fp32
gradient reduction (`MixedPrecisionPolicy`); on CPU everything is fp32 over gloo. Gradients are
reduce-scattered as sums (the loss already divides by the whole batch's counts), so a sharded
step equals the data-parallel one. The frozen reference is sharded the same way without
gradients, its shards optionally kept in CPU memory (`reference_offload: cpu`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor


def _decoder_layers(model) -> list[torch.nn.Module]:
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} names no decoder layer class (_no_split_modules)")
    return layers


def _mesh(device: str):
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device, (dist.get_world_size(),))


def shard(model, device: str, bf16: bool, trainable: bool, offload: bool = False):
    """`fully_shard` each decoder layer, then the root, in place; returns the model."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mesh = _mesh(device)
    mp = MixedPrecisionPolicy()
    if device == "cuda" and bf16:
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    kwargs = {
        "mesh": mesh,
        "mp_policy": mp,
        "offload_policy": CPUOffloadPolicy(pin_memory=False) if offload else OffloadPolicy(),
        # a frozen model never runs backward: reshard right after each layer's forward
        "reshard_after_forward": True,
    }
    units = [fully_shard(layer, **kwargs) for layer in _decoder_layers(model)]
    units.append(fully_shard(model, **kwargs))
    if trainable:
        for unit in units:  # each FSDP unit reduces its own parameter group
            unit.set_gradient_divide_factor(1.0)  # sum, not mean, over ranks
            unit.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (gloo has no PREMUL_SUM)
    return model


def is_sharded(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, DTensor)


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a DTensor is all-gathered (a collective: every rank must call), else as is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor, else the tensor itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def clip_grad_norm(parameters, max_norm: float) -> float:
    """Clip the global gradient norm (over all shards of all ranks); returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)
    return float(full(norm))


def local_bytes(model, optimizer) -> dict[str, int]:
    """Bytes this rank holds of the model's parameters, their gradients and the optimizer state."""

    def nbytes(t) -> int:
        t = local(t)
        return t.numel() * t.element_size()

    params = list({id(p): p for p in model.parameters()}.values())
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    return {
        "parameters": sum(nbytes(p) for p in params),
        "gradients": sum(nbytes(p.grad) for p in params if p.grad is not None),
        "optimizer": sum(nbytes(t) for t in state),
    }
