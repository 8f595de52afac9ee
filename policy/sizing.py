"""Bytes per learner rank under `strategy: ddp | fsdp`, from the dtypes the learner really uses.

Pure arithmetic, run by scripts/sizing_table.py (deploy/README.md's table) and tested by hand.
What the code holds (policy/learner.py, policy/sharding.py, policy/model_loading.py):
- policy parameters: fp32 master weights (load_causal_lm), 4 B/param; bf16 only inside autocast;
- gradients: fp32, 4 B/param (they take the parameters' dtype);
- AdamW: exp_avg + exp_avg_sq in fp32, 8 B/param;
- reference: a deepcopy of the policy, fp32, 4 B/param (fsdp: sharded too; reference_offload: cpu -> 0 on GPU);
- fsdp: each of these / world_size, plus the transient unsharded copy of the largest FSDP unit
  (bf16 parameters + bf16 gradients + their fp32 reduction copy: 2 + 2 + 4 B/param of that unit);
- activations of one micro-batch (estimate): with gradient checkpointing each layer keeps its input
  (fp32 residual stream, 4 B x hidden per token) and one layer's full set is live during its
  recompute; the output projection materialises logits only for the last C+1 positions.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass(frozen=True)
class Decoder:
    """A Qwen2-style decoder's dimensions (the thinker's language model)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def layer_params(self) -> int:
        """q (h x h + h), k and v (h x kv + kv each, Qwen2 has qkv biases), o (h x h), gate/up/down (3 h i), 2 norms."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * i + 2 * h

    def params(self) -> int:
        """Embedding (V h), layers, final norm (h), LM head (V h unless tied)."""
        head = 0 if self.tied else self.vocab * self.hidden
        return self.vocab * self.hidden + self.layers * self.layer_params() + self.hidden + head

    def activation_bytes_per_token_layer(self) -> int:
        """Tensors one decoder layer saves for backward, per token (bf16 = 2 B unless noted): attention
        norm input fp32 (4h), q/k/v input (2h), q k v (2(h + 2kv)), attention output (2h), o_proj input
        (2h); MLP norm input fp32 (4h), gate/up input (2h), gate and up (4i), act(gate) (2i), down input (2i)."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return 4 * h + 2 * h + 2 * (h + 2 * kv) + 2 * h + 2 * h + 4 * h + 2 * h + 4 * i + 2 * i + 2 * i


@dataclass(frozen=True)
class Workload:
    micro_batch: int  # learner.micro_batch_size
    seq_len: int  # prompt + completion tokens of a row (bounded by rollout.max_model_len)
    completion_len: int  # rollout.max_tokens: logits are kept for C + 1 positions
    gradient_checkpointing: bool


def activation_bytes(d: Decoder, w: Workload) -> int:
    """Peak activation bytes of one micro-batch's forward + backward (an estimate, see the module doc)."""
    tokens = w.micro_batch * w.seq_len
    per_layer = d.activation_bytes_per_token_layer() * tokens
    if w.gradient_checkpointing:
        layers = d.layers * 4 * d.hidden * tokens + per_layer  # checkpointed inputs + one recomputed layer
    else:
        layers = d.layers * per_layer
    # logits (N, C+1, V): bf16 out of the head, fp32 upcast and log-softmax kept, fp32 gradient in backward
    logits = w.micro_batch * (w.completion_len + 1) * d.vocab * (2 + 4 + 4 + 4)
    return layers + logits


def per_rank_bytes(
    total_params: int,
    largest_unit_params: int,
    d: Decoder,
    w: Workload,
    strategy: str,
    world_size: int,
    reference_offload: bool = False,
) -> dict[str, float]:
    """Bytes on one learner rank, by component (and their sum under "total")."""
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy must be ddp or fsdp, got {strategy!r}")
    share = world_size if strategy == "fsdp" else 1
    out = {
        "parameters": 4 * total_params / share,
        "gradients": 4 * total_params / share,
        "optimizer": 8 * total_params / share,
        "reference": 0.0 if reference_offload else 4 * total_params / share,
        "fsdp_unsharded_unit": (2 + 2 + 4) * largest_unit_params if strategy == "fsdp" else 0.0,
        "activations": float(activation_bytes(d, w)),
    }
    out["total"] = sum(out.values())
    return out
