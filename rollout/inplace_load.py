"""The learner's tensors straight into a CPU vLLM engine's kernels: the weight sync's fast in-place load.

Runs in the vLLM worker process (rollout/engine.py's WeightSyncExtension calls it for every sync).
vLLM's own `reload_weights` rebuilds each processed layer from a meta snapshot, runs every weight
loader twice (once on meta tensors, to count what it would copy) and only then re-processes the
layer: 0.6-0.9 s for the 135M policy on 2 cores, of which the oneDNN repacking that any load needs
is about 0.3 s. Here a plan, made from the model's module tree alone, says where each Hugging Face
tensor goes (a shard of a packed projection, an embedding's rows, a norm's weight); each module's
kernel-format weight is assembled once as its tensors arrive and the layer's own
`process_weights_after_loading` packs it again.

Written by hand because vLLM has no load path without the meta round trip. What the plan does not
cover uses vLLM's reload: `plan_load` returns None for a GPU engine, tensor parallelism, quantised
layers or a parameter it cannot place, and a sync whose first tensor has no place in the plan (names
vLLM maps itself, e.g. an Omni thinker's) goes there too. A sync that starts in the plan must fit it
whole: a list is checked before anything is copied, a stream as it arrives.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from rollout.errors import RolloutError

UNQUANTIZED = {"UnquantizedLinearMethod", "UnquantizedEmbeddingMethod"}
log = logging.getLogger(__name__)


class WeightLoadError(RolloutError, ValueError):
    """A sync's tensors do not match the engine's model (an unknown, repeated, missing or misshapen one)."""


@dataclass(eq=False)
class Target:
    """One parameter of the engine's model and the checkpoint tensors that fill its rows, in order."""

    module_name: str
    param: str  # "weight" | "bias"
    sources: list[str]
    rows: list[int]  # rows each source fills
    shape: tuple[int, ...]  # the full parameter's shape (kernel format)
    got: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class LoadPlan:
    model: torch.nn.Module
    targets: list[Target]
    by_source: dict[str, tuple[Target, int]]
    # module name -> ids of the targets it waits for; processed (repacked) once they are all filled
    waits: dict[str, set[int]]
    owners: dict[int, list[str]]  # target id -> modules to process once it is filled (a tied head too)


def plan_load(model: torch.nn.Module) -> LoadPlan | None:
    """Where each checkpoint tensor goes in `model`; None when the model is not one this load covers."""
    packed = getattr(model, "packed_modules_mapping", {}) or {}
    modules = dict(model.named_modules())
    if not any(hasattr(m, "cpu_linear") for m in modules.values()):
        return None  # not vLLM's CPU kernels
    targets, by_source, waits, owners = [], {}, {}, {}
    first: dict[int, Target] = {}  # id(parameter) -> the target that loads it (a tied alias loads nothing)
    for name, module in modules.items():
        method = getattr(module, "quant_method", None)
        if method is not None and type(method).__name__ not in UNQUANTIZED:
            return None
        if getattr(module, "tp_size", 1) != 1:
            return None
        leaf = name.rpartition(".")[2]
        for pname, param in module._parameters.items():
            if param is None:
                continue
            if id(param) in first:  # tied: this module shares an earlier module's parameter
                target = first[id(param)]
            else:
                target = _target(name, leaf, pname, param, module, packed)
                if target is None:
                    return None
                first[id(param)] = target
                targets.append(target)
                for i, source in enumerate(target.sources):
                    by_source[source] = (target, i)
            # an input embedding's own packed copy is never used (the lookup reads the weight); the
            # output head (ParallelLMHead, a subclass) computes with its packed copy
            if method is not None and type(module).__name__ != "VocabParallelEmbedding":
                waits.setdefault(name, set()).add(id(target))
                owners.setdefault(id(target), []).append(name)
    return LoadPlan(model, targets, by_source, waits, owners)


def _target(name: str, leaf: str, pname: str, param, module, packed: dict) -> Target | None:
    full = f"{name}.{pname}" if name else pname
    prefix = name[: len(name) - len(leaf)]
    if param.numel() == 0:  # a weight the CPU kernel packed and removed: rebuilt in its kernel shape
        out, inp = (
            getattr(module, "output_size_per_partition", None),
            getattr(module, "input_size_per_partition", None),
        )
        if out is None or inp is None or pname != "weight":
            return None
        shape = (out, inp)
    else:
        shape = tuple(param.shape)
    if leaf in packed:  # e.g. qkv_proj <- q_proj, k_proj, v_proj, stacked along the output rows
        sizes = list(getattr(module, "output_sizes", []))
        if len(sizes) != len(packed[leaf]) or sum(sizes) != shape[0]:
            return None
        return Target(name, pname, [f"{prefix}{s}.{pname}" for s in packed[leaf]], sizes, shape)
    rows = getattr(module, "org_vocab_size", None) if hasattr(module, "num_embeddings_padded") else None
    if rows is not None and getattr(module, "num_added_embeddings", 0) == 0:  # vocab padded to a multiple
        return Target(name, pname, [full], [rows], shape)
    return Target(name, pname, [full], [shape[0]] if shape else [1], shape)


def peek(weights: Iterable[tuple[str, torch.Tensor]]) -> tuple[str | None, Iterable]:
    """The first tensor's name (None: no tensors) and the weights to load, a stream not consumed."""
    if isinstance(weights, list | tuple):
        return (weights[0][0] if weights else None), weights
    stream = iter(weights)
    first = next(stream, None)
    return (None, stream) if first is None else (first[0], itertools.chain([first], stream))


@torch.inference_mode()
def load(plan: LoadPlan, weights: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Copy `weights` (checkpoint names, as the learner exports them; a list or a stream) into the
    engine; returns the names of the modules whose kernels were repacked. Raises WeightLoadError
    naming the first tensor that does not fit, or the ones that never came."""
    if isinstance(weights, list | tuple):  # all at hand: checked before the engine is touched
        seen: set[str] = set()
        for name, tensor in weights:
            _check(plan, name, tensor, seen)
        _check_complete(plan, seen)
    start = time.perf_counter()
    modules = dict(plan.model.named_modules())
    waiting = {name: set(ids) for name, ids in plan.waits.items()}
    seen, repacked = set(), []
    for name, tensor in weights:
        target, i = _check(plan, name, tensor, seen)
        target.got[i] = tensor
        if len(target.got) < len(target.sources):
            continue
        _fill(modules[target.module_name], target)
        for owner in plan.owners.get(id(target), []):
            waiting[owner].discard(id(target))
            if not waiting[owner]:
                module = modules[owner]
                module.quant_method.process_weights_after_loading(module)  # repacks the CPU GEMM
                repacked.append(owner)
    for target in plan.targets:
        target.got.clear()
    _check_complete(plan, seen)
    log.info("weight sync: %d tensors loaded in place, %d layers repacked in %.3f s",
             len(seen), len(repacked), time.perf_counter() - start)  # fmt: skip
    return repacked


def _check(plan: LoadPlan, name: str, tensor: torch.Tensor, seen: set[str]) -> tuple[Target, int]:
    """The target and shard index of one incoming tensor; WeightLoadError if it has no place."""
    if name not in plan.by_source:
        raise WeightLoadError(f"weight sync: {name!r} is not a tensor of the engine's model")
    if name in seen:
        raise WeightLoadError(f"weight sync: {name!r} was sent twice")
    seen.add(name)
    target, i = plan.by_source[name]
    want = (target.rows[i], *target.shape[1:]) if target.shape else ()
    if tuple(tensor.shape) != want:
        raise WeightLoadError(f"weight sync: {name!r} has shape {tuple(tensor.shape)}, the engine's "
                              f"{target.module_name}.{target.param} needs {want}")  # fmt: skip
    return target, i


def _check_complete(plan: LoadPlan, seen: set[str]) -> None:
    missing = [s for s in plan.by_source if s not in seen]
    if missing:
        raise WeightLoadError(
            f"weight sync: {len(missing)} of the engine's tensors never came, e.g. {missing[:3]}"
        )


def _fill(module: torch.nn.Module, target: Target) -> None:
    """Write the target's tensors into its parameter: in place where the module kept it (embeddings,
    norms, biases, a tied head's shared weight), else as a new parameter in the kernel shape."""
    param = getattr(module, target.param)
    if param.numel() == 0:
        dest = torch.empty(target.shape, dtype=param.dtype, device=param.device)
        setattr(module, target.param, torch.nn.Parameter(dest, requires_grad=False))
    else:
        dest = param.data
    if not target.shape:  # a scalar parameter
        dest.copy_(target.got[0])
        return
    offset = 0
    for i, rows in enumerate(target.rows):
        dest[offset : offset + rows].copy_(target.got[i])  # converts to the engine's dtype (bf16)
        offset += rows
