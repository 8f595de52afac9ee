"""The GRPO learner: policy + frozen reference, AdamW, `update(batch) -> metrics`.

Runs in the learner process (a Ray actor, see policy/actor.py, or any plain process: the
class needs no Ray). Data parallel: when torch.distributed is initialised (by the actor),
each rank gets a shard of the batch, counts are summed so the loss uses global
denominators, and gradients are summed before clipping and the step. With
`strategy: ddp` every rank then holds the same weights; with `strategy: fsdp` each holds
a shard of them (policy/sharding.py) and `logprobs`, `export_weights`, `save` and `load`
are collectives every rank calls (policy/checkpoint.py writes the sharded checkpoints).

Memory layout of a micro-batch: prompts left-padded to the longest prompt, completions
right-padded to the longest completion, so every completion starts at the same column and
only the C positions before the last need the output projection (`logits_to_keep`); rows are
sorted by length into micro-batches (`policy.batch.micro_batches`) so that less of each is padding.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from common.precision import choose_precision, cpu_flags
from policy import checkpoint, multimodal, sharding
from policy.batch import RolloutBatch, micro_batches
from policy.config import LearnerConfig
from policy.export import export_buckets
from policy.forward import (
    allow_prefix_under_checkpointing,
    completion_logprobs,
    hold_linears_in_bf16,
    pad_rows,
    shared_prefix_rows,
)
from policy.grad_buffers import GradBuffers
from policy.grpo import grpo_loss
from policy.model_loading import load_causal_lm, load_tokenizer, resolve_device
from policy.packed_attention import use_packed_attention

STATE_FILE = "learner_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"


class Learner:
    """Policy + frozen reference + AdamW. Stable API: update, export_weights, save, load, version."""

    def __init__(self, config: LearnerConfig):
        self.config = config
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.sharded = config.strategy == "fsdp" and self.world_size > 1
        # bf16 = autocast over fp32 master weights and AdamW state; auto resolved for this device here.
        self.precision, why = choose_precision(config.precision, self.device, cpu_flags())
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        if self.rank == 0:
            print(f"erv-grpo: learner precision {self.precision} ({why}), {torch.get_num_threads()} torch "
                  "threads", file=sys.stderr, flush=True)  # fmt: skip
        mm = multimodal.architecture(config.model)
        self.processor, self.export_prefix, self._saved, self._mrope = None, "", None, None
        if mm is None:
            self.tokenizer = load_tokenizer(config.model)
            self.policy = load_causal_lm(config.model, self.device)
        else:
            self.processor = multimodal.MediaProcessor(config.model, config.mm_processor_kwargs)
            self.tokenizer = self.processor.tokenizer
            self.policy, self._saved = multimodal.load_model(config.model, mm[0], self.device)
            self.export_prefix = mm[1]
            self._mrope = multimodal.mrope_settings(self.policy, mm[0])
            # Frozen towers: no gradient and, as the optimizer only gets trainable tensors, no AdamW state.
            multimodal.freeze_towers(self.policy, config.freeze_vision, config.freeze_audio)
        self.policy.train()
        if config.gradient_checkpointing:  # non-reentrant: a shared prompt's keys reach its replay's graph
            self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            allow_prefix_under_checkpointing(self.policy)
        if mm is None and config.share_prompts and not self.sharded:  # the packed pass, per completion
            use_packed_attention(self.policy)
        # Frozen copy of the initial weights: the KL anchor, never updated or saved.
        self.reference = copy.deepcopy(self.policy).eval()
        self.reference.requires_grad_(False)
        if self.precision == "bf16" and mm is None and not self.sharded:
            hold_linears_in_bf16(self.reference)  # the same logprobs bit for bit, ~half the bytes
        if self.sharded:
            sharding.shard(self.policy, self.device, self.precision == "bf16", trainable=True)
            offload = config.reference_offload == "cpu"
            sharding.shard(
                self.reference, self.device, self.precision == "bf16", trainable=False, offload=offload
            )
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        # fsdp: its sharded gradients are freed (DTensors); unsharded: buffers kept (policy/grad_buffers.py)
        self.grads = None if self.sharded else GradBuffers(trainable)
        self.optimizer = torch.optim.AdamW(
            trainable,
            lr=config.lr,
            betas=config.adam_betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
            # One vectorised kernel over all tensors (CPU and CUDA); torch's CPU default is a Python loop
            # of ~6 ops per tensor. The fsdp shards (DTensors) keep the default.
            fused=None if self.sharded else True,
        )
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                          else self.tokenizer.eos_token_id)  # fmt: skip
        self.step = 0  # optimizer steps taken
        self._version = 0  # weights version: +1 per update() call

    @property
    def version(self) -> int:
        return self._version

    def _autocast(self):
        if self.precision == "bf16":  # one forward per context uses each weight once: a cache of bf16
            # weight copies saves no cast, only holds ~2 bytes/parameter until the forward ends
            return torch.autocast(self.device, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def _all_reduce(self, t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(t, op=op)
        return t

    def _pad(self, prompts, completions, processed=None) -> dict:
        """shared_prefix_rows (text, share_prompts) or pad_rows, plus the media kwargs of a multimodal policy."""
        # fsdp keeps the row layout: its update differed from ddp's with shared prompts (test_fsdp, not yet found why)
        if self.processor is None and self.config.share_prompts and not self.sharded:
            return shared_prefix_rows(prompts, completions, self.pad_id, self.device)
        mb = pad_rows(prompts, completions, self.pad_id, self.device)
        if self.processor is not None:
            multimodal.attach_media(
                mb, [len(p) for p in prompts], processed or [None] * len(prompts), self._mrope
            )
        return mb

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """One GRPO update on this rank's rows of the batch; returns metrics of the whole batch."""
        batch.validate()
        cfg = self.config
        start = time.perf_counter()
        n = len(batch)
        micro = micro_batches(batch, cfg.micro_batch_size)
        processed = [None] * n
        if batch.media is not None:  # one processor run per prompt for the whole update
            g = batch.row_group
            processed = multimodal.process_rows(self.processor, batch.prompt_token_ids, batch.completion_ids,
                                           [batch.media[g[i]] for i in range(n)],
                                           [batch.prompt_texts[g[i]] for i in range(n)])  # fmt: skip
        mbs = []
        for rows in micro:
            mb = self._pad(
                [batch.prompt_token_ids[i] for i in rows],
                [batch.completion_token_ids[i] for i in rows],
                [processed[i] for i in rows],
            )
            c = mb["completion_mask"].shape[1]
            mb["advantages"] = torch.tensor([batch.advantages[i] for i in rows], dtype=torch.float32).to(
                self.device
            )
            sampler = torch.zeros((len(rows), c), dtype=torch.float32)
            for j, i in enumerate(rows):
                sampler[j, : len(batch.sampler_logprobs[i])] = torch.tensor(batch.sampler_logprobs[i])
            mb["sampler_logprobs"] = sampler.to(self.device)
            # Rows sampled by older weights than these (async rollouts) get the decoupled-PPO weight.
            mb["stale"] = torch.tensor(
                [batch.row_version(i) < self._version for i in rows], device=self.device
            )
            mbs.append(mb)
        if self.sharded:  # every forward is a collective: all ranks run as many micro-batches
            most = int(self._all_reduce(torch.tensor([len(mbs)], device=self.device), dist.ReduceOp.MAX))
            mbs += [dict(mbs[-1], idle=True)] * (most - len(mbs))

        # Global denominators: every rank and micro-batch divides by the whole batch's counts.
        # model_tokens: the real tokens one pass over the micro-batches runs (a shared prompt counts once).
        model_tokens = sum(mb["model_tokens"] for mb in mbs if not mb.get("idle"))
        prompt_tokens = sum(len(p) for p in batch.prompt_token_ids)
        counts = torch.tensor([n, batch.num_completion_tokens, prompt_tokens, model_tokens],
                              dtype=torch.float64, device=self.device)  # fmt: skip
        num_sequences, num_tokens, num_prompt_tokens, model_tokens = self._all_reduce(counts).tolist()

        phases = dict.fromkeys(("ref_pass", "policy_forward", "policy_backward", "optimizer"), 0.0)
        tick = time.perf_counter()
        with torch.no_grad():
            ref_lps = [completion_logprobs(self.reference, mb, self._autocast) for mb in mbs]
            # With one update the old logprobs are the current ones, detached (taken in the loss pass).
            old_lps = None
            if cfg.updates_per_batch > 1:
                old_lps = [completion_logprobs(self.policy, mb, self._autocast) for mb in mbs]
        tick = _lap(phases, "ref_pass", tick)

        # sums: loss, kl*tok, clip*tok, ratio*tok, |sampler - learner|, is_weight*tok, truncated*tok;
        # maxima: |sampler - learner|, is_weight
        sums = torch.zeros(7, dtype=torch.float64, device=self.device)
        mismatch_max = torch.zeros(2, dtype=torch.float64, device=self.device)
        grad_norms = []
        for it in range(cfg.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True) if self.grads is None else self.grads.zero()
            for k, mb in enumerate(mbs):
                logprobs = completion_logprobs(self.policy, mb, self._autocast)
                if mb.get("idle"):  # a padding micro-batch of fsdp: collectives only, no gradient
                    (logprobs.sum() * 0).backward()
                    tick = _lap(phases, "policy_backward", tick)
                    continue
                old = old_lps[k] if old_lps is not None else logprobs.detach()
                mask = mb["completion_mask"]
                behavior = None  # every row fresh: no weight at all, the on-policy loss bit for bit
                if bool(mb["stale"].any()):
                    behavior = torch.where(mb["stale"].unsqueeze(1), mb["sampler_logprobs"], old.detach())
                loss, m = grpo_loss(
                    logprobs,
                    old,
                    ref_lps[k],
                    mb["advantages"],
                    mask,
                    clip_eps=cfg.clip_eps,
                    kl_coef=cfg.kl_coef,
                    aggregation=cfg.aggregation,
                    num_sequences=int(num_sequences),
                    num_tokens=int(num_tokens),
                    behavior_logprobs=behavior,
                    is_cap=cfg.is_cap,
                )
                tick = _lap(phases, "policy_forward", tick)
                loss.backward()
                tick = _lap(phases, "policy_backward", tick)
                tok = m["num_tokens"].double()
                sums[0] += loss.detach().double()
                sums[1] += m["kl"].double() * tok
                sums[2] += m["clip_fraction"].double() * tok
                sums[3] += m["ratio_mean"].double() * tok
                sums[5] += m["is_weight_mean"].double() * tok
                sums[6] += m["is_truncated_fraction"].double() * tok
                mismatch_max[1] = torch.maximum(mismatch_max[1], m["is_weight_max"].double())
                if it == 0:  # sampler vs learner on the weights that sampled (before any step)
                    diff = (mb["sampler_logprobs"] - logprobs.detach()).abs() * mask
                    sums[4] += diff.sum().double()
                    mismatch_max[0] = torch.maximum(mismatch_max[0], diff.max().double())
            if not self.sharded:  # fsdp reduce-scatters (sums) the gradients in backward
                self.grads.drop_untouched()
                for p in self.policy.parameters():
                    if p.grad is not None:
                        self._all_reduce(p.grad)
            grad_norms.append(sharding.clip_grad_norm(self.policy.parameters(), cfg.max_grad_norm))
            self.optimizer.step()
            tick = _lap(phases, "optimizer", tick)
            self.step += 1
        self._version += 1

        self._all_reduce(sums)
        if self.world_size > 1:
            dist.all_reduce(mismatch_max, op=dist.ReduceOp.MAX)
        iters = cfg.updates_per_batch
        tokens = max(num_tokens, 1.0)
        elapsed = time.perf_counter() - start
        return {
            "loss": float(sums[0]) / iters,
            "kl": float(sums[1]) / (tokens * iters),
            "clip_fraction": float(sums[2]) / (tokens * iters),
            "ratio_mean": float(sums[3]) / (tokens * iters),
            "grad_norm": grad_norms[-1],
            "sampler_logprob_abs_diff": float(sums[4]) / tokens,
            "sampler_logprob_max_abs_diff": float(mismatch_max[0]),
            "is_weight_mean": float(sums[5]) / (tokens * iters),
            "is_weight_max": float(mismatch_max[1]),
            "is_truncated_fraction": float(sums[6]) / (tokens * iters),
            "num_sequences": num_sequences,
            "num_completion_tokens": num_tokens,
            "tokens_per_second": (num_tokens + num_prompt_tokens) / elapsed,
            "model_tokens": model_tokens,
            "update_seconds": elapsed,
            **{f"{k}_seconds": v for k, v in phases.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "step": self.step,
            "policy_version": self._version,
            "staleness": self._version - 1 - batch.policy_version,
        }

    @torch.no_grad()
    def logprobs(
        self,
        prompt_token_ids: list[list[int]],
        completion_token_ids: list[list[int]],
        media: list[dict | None] | None = None,
        prompt_texts: list[str | None] | None = None,
    ) -> list[list[float]]:
        """The policy's logprob of each completion token given its prompt: one list per row, no gradient.

        What the sampler's logprobs are compared with after a weight sync (the parity guard).
        Rows with media (per row: media dict and the engine's prompt text) go through the processor.
        Under fsdp every rank calls it with the same rows.
        """
        processed = None
        if media is not None:
            ids = [f"probe/{i}" for i in range(len(prompt_token_ids))]
            processed = multimodal.process_rows(
                self.processor, prompt_token_ids, ids, media, prompt_texts or [None] * len(media)
            )
        mb = self._pad(prompt_token_ids, completion_token_ids, processed)
        lps = completion_logprobs(self.policy, mb, self._autocast).float().cpu()  # (N, C)
        return [lps[i, : len(c)].tolist() for i, c in enumerate(completion_token_ids)]

    def export_weights(
        self, bucket_bytes: int = 256 << 20, dtype: torch.dtype | None = None, device: str = "cpu",
        copy: bool = True,
    ) -> tuple[int, list[list[tuple[str, torch.Tensor]]]]:  # fmt: skip
        """(version, buckets): policy/export.py's buckets as copies in `dtype`. copy=False: views of the live
        parameters where no conversion is needed, for a caller that serialises them at once (ray.put).

        Under fsdp every rank calls it: each parameter is gathered (full_tensor) in turn, rank 0 keeps
        the copies and the other ranks return no buckets.
        """
        buckets = []
        for planned in export_buckets(self.policy, self.export_prefix, bucket_bytes, dtype):
            bucket = []
            for name, t in planned:
                if sharding.is_sharded(t):  # gathered: a fresh tensor, so no second copy
                    t, copy_it = sharding.full(t), False
                    if self.rank != 0:
                        continue
                else:
                    t, copy_it = t.detach(), copy
                bucket.append((name, t.to(device=device, dtype=dtype or t.dtype, copy=copy_it)))
            if bucket:
                buckets.append(bucket)
        return self._version, buckets

    def save(self, directory: str | Path) -> Path:
        """Checkpoint: HF folder (safetensors + config + tokenizer, loadable as a model by the learner,
        SFT and vLLM) plus optimizer state, step/version and RNG state. Under strategy fsdp: a sharded
        checkpoint (policy/checkpoint.py) that every rank writes its part of."""
        if self.config.strategy == "fsdp":
            return checkpoint.save_sharded(self, directory)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (self._saved or self.policy).save_pretrained(directory)  # the Omni wrapper holds the trained thinker
        (self.processor.processor if self.processor else self.tokenizer).save_pretrained(directory)
        torch.save(self.optimizer.state_dict(), directory / OPTIMIZER_FILE)
        torch.save(checkpoint.rng_state(), directory / RNG_FILE)
        state = {"step": self.step, "version": self._version, "reference_model": self.config.model}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        return directory

    def load(self, directory: str | Path) -> None:
        """Resume from `save(directory)`; the reference stays the one of config.model."""
        from safetensors.torch import load_file

        directory = Path(directory)
        if checkpoint.is_sharded(directory):
            return checkpoint.load_sharded(self, directory)  # any world size: DCP reshards
        if self.sharded:
            raise checkpoint.CheckpointError(
                f"{directory} is a ddp checkpoint; resume it with strategy ddp, or `erv-grpo export-hf` it "
                "and start the fsdp run from that folder"
            )
        files = sorted(directory.glob("model*.safetensors"))
        if not files or not (directory / STATE_FILE).is_file():
            raise FileNotFoundError(
                f"{directory} is not a learner checkpoint (model*.safetensors, {STATE_FILE})"
            )
        weights = {}
        for f in files:
            weights.update(load_file(f, device=str(self.device)))
        model = self._saved or self.policy
        missing, unexpected = model.load_state_dict(weights, strict=False)
        tied = {"lm_head.weight"} if getattr(self.policy.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:
            raise ValueError(
                f"checkpoint {directory} does not fit the model: missing={missing} unexpected={unexpected}"
            )
        self.optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, map_location=self.device))
        checkpoint.restore_rng(torch.load(directory / RNG_FILE, weights_only=False))
        state = json.loads((directory / STATE_FILE).read_text())
        self.step, self._version = int(state["step"]), int(state["version"])


def _lap(phases: dict[str, float], phase: str, since: float) -> float:
    """Add the time since `since` to `phases[phase]`; returns now (the next phase's start)."""
    now = time.perf_counter()
    phases[phase] += now - since
    return now
