"""A tiny Qwen2 policy that already answers in the <think>/<answer> format, with a random label.

A random tiny model never writes the tags, so every reward would be 0 and every group would carry
no signal. A few seconds of supervised fitting on the project's prompts (target: a short
explanation and answer with a label drawn at random) makes rewards differ within a group, so the
tiny end-to-end runs really update the policy. Runs in the test process.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.support.tiny_models import build_tiny_qwen2

LABELS = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
# More explanation sentences make longer completions (bench async balances generation against the update).
SENTENCES = ["The person looks {label}.", "The eyes and the mouth agree.", "The voice sounds {label} as well.",
             "Nothing else in the scene says otherwise.", "The gestures fit that reading.",
             "So the feeling shown is {label}."]  # fmt: skip


def build_tiny_formatted_policy(path: str | Path, steps: int = 80, seed: int = 0, sentences: int = 1) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_qwen2(path, seed=seed)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = [json.loads(line) for line in Path("data/prompts/train.jsonl").read_text().splitlines()[:64]]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        prompts = [
            tok.apply_chat_template(
                [{"role": "user", "content": row["prompt"]}], add_generation_prompt=True, tokenize=False
            )
            for row in rng.sample(rows, 4)
        ]
        fit_format_step(
            model, opt, tok, [tok(p, add_special_tokens=False)["input_ids"] for p in prompts], rng, sentences
        )
    model.save_pretrained(path)
    return path


def fit_format_step(
    model, opt, tok, prompt_ids: list[list[int]], rng: random.Random, sentences: int = 1
) -> None:
    """One AdamW step of supervised fitting: each prompt -> an explanation of `sentences` sentences and an
    answer with a random label (loss on the target tokens only). Shared by the text and omni tiny policies."""
    import torch

    seqs, masks = [], []
    for p_ids in prompt_ids:
        label = rng.choice(LABELS)
        think = " ".join(SENTENCES[:sentences]).format(label=label)
        target = f"<think>{think}</think><answer>{label}</answer><|im_end|>"
        t_ids = tok(target, add_special_tokens=False)["input_ids"]
        seqs.append(p_ids + t_ids)
        masks.append([0] * len(p_ids) + [1] * len(t_ids))
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    mask = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.float32)
    logits = model(input_ids=ids).logits[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    loss = (nll * mask[:, 1:]).sum() / mask[:, 1:].sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
