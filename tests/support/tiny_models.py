"""Tiny random Qwen2 causal LM folder for tests (policy learner, vLLM rollout, orchestrator).

`build_tiny_qwen2(path)` writes a Hugging Face folder that both transformers and vLLM load:
config.json (hidden 128, 2 heads of size 64, 1 KV head, 2 layers; head size 64 because the
vLLM CPU attention kernels reject 16), model.safetensors (seeded random weights, fp32),
generation_config.json, and a byte-level BPE tokenizer trained offline on a small built-in
corpus (tokenizer.json + tokenizer_config.json with a ChatML chat template).
Deterministic: the same call writes the same files. Runs in the test process; ~1 s.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LABELS = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
_CORPUS = [
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters "
    "is the most obvious to you? Output the thinking process in <think> </think> and final emotion in "
    "<answer> </answer> tags.",
    "The subtitle says the man is smiling and his voice is loud. The woman frowns and looks down.",
    "Visual cues: raised eyebrows, wide open eyes, a trembling voice, tears, clenched fists, laughter.",
] + [f"<think>The person looks {w}.</think><answer>{w}</answer>" for w in _LABELS]


def _build_tokenizer():
    from policy.tiny_omni import train_byte_bpe

    return train_byte_bpe(_CORPUS * 4, VOCAB_SIZE, SPECIAL_TOKENS)


def build_tiny_qwen2(path: str | Path, seed: int = 0, tied: bool = True) -> Path:
    """Write the tiny Qwen2 folder at `path` (created if needed) and return it.

    `tied`: the LM head shares the input embedding (as SmolLM2 and Qwen2.5 up to 3B), else its own weight.
    """
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = _build_tokenizer()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(path)
    eos_id = tok.token_to_id("<|im_end|>")
    pad_id = tok.token_to_id("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=1024,
        tie_word_embeddings=tied,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(path)
    (path / "README.md").write_text("Tiny random Qwen2 built by tests/support/tiny_models.py, for tests.\n")
    json.loads((path / "config.json").read_text())  # written and readable
    return path
