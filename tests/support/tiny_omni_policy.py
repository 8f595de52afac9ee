"""A tiny random Qwen2.5-Omni thinker that already answers in the <think>/<answer> format, with a random label.

Same reason as tests/support/tiny_policy.py: a random model never writes the tags, every reward would be
0 and no group would carry signal. A few seconds of supervised fitting of the thinker's language model
on the clip question (text only: the target depends on nothing but the opened assistant turn) makes
rewards differ within a group on real clip prompts. Runs in the test process.
"""

from __future__ import annotations

import random
from pathlib import Path

from policy.tiny_omni import build_tiny_omni
from tests.support.tiny_policy import fit_format_step

QUESTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the characters "
    "is the most obvious to you? Output the thinking process in <think> </think> and final emotion in "
    "<answer> </answer> tags."
)


def build_tiny_formatted_omni(path: str | Path, steps: int = 60, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2_5OmniForConditionalGeneration

    path = build_tiny_omni(path, seed=seed)
    tok = AutoTokenizer.from_pretrained(path)
    full = Qwen2_5OmniForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    model = full.thinker
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    lm = [*model.model.parameters(), *model.lm_head.parameters()]  # the language model only
    opt = torch.optim.AdamW(lm, lr=3e-3)
    model.train()
    for _ in range(steps):
        fit_format_step(model, opt, tok, [p_ids] * 4, rng)
    full.save_pretrained(path)
    return path
