"""Print deploy/README.md's sizing table: bytes per learner rank for the 7B omni policy on 8 x A100-80GB.

Run from the repo root: `python scripts/sizing_table.py [--config configs/a100-cluster.yaml]`.
Parameter counts come from transformers' own Qwen2.5-Omni thinker built on the meta device (no
weights) with the Qwen2.5-Omni-7B dimensions below; the byte model is policy/sizing.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policy.sizing import GB, Decoder, Workload, per_rank_bytes  # noqa: E402

# Qwen2.5-Omni-7B thinker (its config.json): the language model, the vision and the audio encoders.
TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
            num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)  # fmt: skip
VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584)
AUDIO = dict(encoder_layers=32, d_model=1280, encoder_ffn_dim=5120, num_mel_bins=128, output_dim=3584)
HBM = 80e9  # A100-80GB


def thinker_counts() -> tuple[int, int, dict[str, int]]:
    """(total parameters, parameters of the largest FSDP unit, per top-level module)."""
    import torch
    from transformers.models.qwen2_5_omni import configuration_qwen2_5_omni as c
    from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as m

    config = c.Qwen2_5OmniThinkerConfig(text_config=TEXT, vision_config=VISION, audio_config=AUDIO)
    with torch.device("meta"):
        model = m.Qwen2_5OmniThinkerForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    # policy/sharding.py: fully_shard on every _no_split_modules class, then the root; a unit owns the
    # parameters not already owned by a unit inside it.
    units = [mod for mod in model.modules() if type(mod).__name__ in set(model._no_split_modules)]
    seen, owned = set(), []
    for module in units[::-1] + [model]:  # modules() lists parents first: reversed, inner units come first
        own = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in own)
        owned.append(sum(p.numel() for p in own))
    parts = {name: sum(p.numel() for p in sub.parameters()) for name, sub in model.named_children()}
    return total, max(owned), parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/a100-cluster.yaml")
    args = parser.parse_args()
    from orchestrator.config import load_config

    cfg = load_config(args.config, ["reward.address=x:1"])
    d = Decoder(TEXT["hidden_size"], TEXT["intermediate_size"], TEXT["num_hidden_layers"],
                TEXT["num_attention_heads"], TEXT["num_key_value_heads"], TEXT["vocab_size"], False)  # fmt: skip
    w = Workload(cfg.learner.micro_batch_size, cfg.rollout.max_model_len, cfg.rollout.max_tokens,
                 cfg.learner.gradient_checkpointing)  # fmt: skip
    total, unit, parts = thinker_counts()
    world = cfg.ray.num_learners
    print(f"thinker parameters {total:,} ({', '.join(f'{k} {v:,}' for k, v in parts.items())}); "
          f"language model by hand {d.params():,}; largest FSDP unit {unit:,}")  # fmt: skip
    print(
        f"micro-batch {w.micro_batch} x {w.seq_len} tokens, logits for {w.completion_len + 1} positions, "
        f"gradient checkpointing {w.gradient_checkpointing}, {world} ranks\n"
    )
    rows = {f"ddp x{world}": per_rank_bytes(total, unit, d, w, "ddp", world),
            f"fsdp x{world}": per_rank_bytes(total, unit, d, w, "fsdp", world),
            f"fsdp x{world}, reference_offload: cpu": per_rank_bytes(total, unit, d, w, "fsdp", world, True)}  # fmt: skip
    keys = list(next(iter(rows.values())))
    print("| per rank (GB) | " + " | ".join(keys) + " | fits 80 GB |")
    print("|---" * (len(keys) + 2) + "|")
    for name, r in rows.items():
        cells = " | ".join(f"{r[k] / GB:.1f}" for k in keys)
        print(f"| {name} | {cells} | {'yes' if r['total'] < 0.9 * HBM else 'no'} |")


if __name__ == "__main__":
    main()
