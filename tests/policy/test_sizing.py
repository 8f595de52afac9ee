"""policy/sizing.py against hand-worked numbers (the Qwen2.5-7B language model of the omni thinker) and
against transformers' own parameter count of the same decoder built on the meta device."""

import pytest

from policy.sizing import Decoder, Workload, activation_bytes, per_rank_bytes

QWEN25_7B = Decoder(
    hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4, vocab=152064, tied=False
)


def test_the_7b_language_model_by_hand():
    # kv_dim = 3584 / 28 * 4 = 512
    # q 3584*3584 + 3584 = 12_848_640; k, v 2 * (3584*512 + 512) = 3_671_040; o 12_845_056;
    # mlp 3 * 3584 * 18944 = 203_685_888; norms 7_168  ->  233_057_792 per layer
    assert QWEN25_7B.layer_params() == 233_057_792
    # embedding and head 2 * 152064 * 3584 = 1_089_994_752; 28 layers 6_525_618_176; final norm 3_584
    assert QWEN25_7B.params() == 7_615_616_512


def test_the_count_equals_transformers_qwen2():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    d = QWEN25_7B
    config = Qwen2Config(hidden_size=d.hidden, intermediate_size=d.intermediate, num_hidden_layers=d.layers,
                         num_attention_heads=d.heads, num_key_value_heads=d.kv_heads, vocab_size=d.vocab,
                         tie_word_embeddings=False)  # fmt: skip
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == d.params()


def test_bytes_per_rank_follow_the_code_dtypes():
    d = Decoder(hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, vocab=10, tied=True)
    w = Workload(micro_batch=2, seq_len=5, completion_len=3, gradient_checkpointing=True)
    # per token per layer: 18h + 4kv + 8i = 144 + 16 + 128 = 288 B; tokens 10
    # checkpointed inputs 2 layers * 4 B * 8 * 10 = 640, one recomputed layer 2880, logits 2*4*10*14 = 1120
    assert activation_bytes(d, w) == 640 + 2880 + 1120
    ddp = per_rank_bytes(1000, 300, d, w, "ddp", 4)
    assert (ddp["parameters"], ddp["gradients"], ddp["optimizer"], ddp["reference"]) == (
        4000,
        4000,
        8000,
        4000,
    )
    fsdp = per_rank_bytes(1000, 300, d, w, "fsdp", 4)
    assert (fsdp["parameters"], fsdp["optimizer"], fsdp["fsdp_unsharded_unit"]) == (1000, 2000, 2400)
    offload = per_rank_bytes(1000, 300, d, w, "fsdp", 4, reference_offload=True)
    assert offload["reference"] == 0 and offload["total"] == fsdp["total"] - 1000
    assert ddp["total"] == 20_000 + 4640
    with pytest.raises(ValueError, match="'zero3'"):
        per_rank_bytes(1000, 300, d, w, "zero3", 4)
