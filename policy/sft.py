"""SFT cold start (the paper's first stage): NLL on target tokens of (chat prompt, target) pairs.

Runs in the `erv-grpo sft` process (or the demo's, through `prepare_sft_policy`). Same code
as the GRPO learner where it can be: one model-loading path (policy.model_loading), the same
padded micro-batches and completion logprobs (policy.learner), and the output is the same
Hugging Face folder a learner checkpoint is, so GRPO, vLLM and `Learner.load` read it.

The embedded cold start deviates from the paper's recipe (5 epochs, lr 2e-5, batch 32) to fit
a shared 2-core CPU: see EMBEDDED_SFT below; configs/sft.yaml is the paper's recipe.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from pathlib import Path

import torch

from policy.config import SFTConfig
from policy.errors import PolicyError
from policy.forward import completion_logprobs, pad_rows
from policy.model_loading import load_causal_lm, load_tokenizer, resolve_device
from reward_service.core.reward import extract_answer, format_reward

REPORT_FILE = "sft_report.json"
SFT_FOLDER = "smollm2-135m-erv-sft"
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "sft"

# Embedded (CPU) cold start. Deviations from the paper (5 epochs, lr 2e-5, batch 32, all weights):
# 1 epoch, lr 3e-4, batch 16, only the last 8 of 30 layers trained, so backward stops early and
# a shared 2-core CPU finishes in minutes; enough to teach the short format-bearing targets
# (measured held-out format rate in the folder's sft_report.json).
EMBEDDED_SFT = {
    "epochs": 1,
    "lr": 3e-4,
    "warmup_ratio": 0.03,
    "schedule": "cosine",
    "batch_size": 16,
    "micro_batch_size": 8,
    "max_length": 256,
    "trainable_layers": 8,
    "eval_max_new_tokens": 80,
}


class SFTDataError(PolicyError, ValueError):
    """A malformed SFT JSONL file; the message names the file and line."""


def read_examples(path: str | Path) -> list[dict]:
    """JSONL rows {messages: [{role, content}, ...], target: str}; errors name the file and line."""
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SFTDataError(f"{path}:{n}: not JSON ({err.msg})") from None
            if not isinstance(row.get("messages"), list) or not isinstance(row.get("target"), str):
                raise SFTDataError(f"{path}:{n}: a row needs 'messages' (list) and 'target' (string)")
            rows.append(row)
    if not rows:
        raise SFTDataError(f"{path} has no examples")
    return rows


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    return list(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    )


def encode(tokenizer, row: dict, max_length: int) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids + EOS); the prompt is cut from the left when the pair is too long."""
    target = tokenizer(row["target"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    target = target[: max_length - 1]
    prompt = prompt_ids(tokenizer, row["messages"])[-(max_length - len(target)) :]
    return prompt, target


def lr_scheduler(optimizer, total: int, warmup_ratio: float, schedule: str):
    """The transformers scheduler of the SFT recipe: update s (0-based) of `total` runs at lr factor
    (s + 1) / W during the W = ceil(warmup_ratio * total) warm-up updates, then cosine from 1 to 0
    over the remaining total - W updates (or stays at 1: `constant`).

    The transformers warm-ups start at factor 0 (a wasted first update); the recipe's first update
    already learns, so the scheduler starts one step ahead (last_epoch=0), and the cosine is the
    decay phase of a warmup-stable-decay schedule with a single stable step (the W-th update at 1).
    Call `.step()` after every `optimizer.step()`.
    """
    from transformers import get_constant_schedule_with_warmup, get_wsd_schedule

    warmup = math.ceil(warmup_ratio * total)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    if schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, num_warmup_steps=warmup, last_epoch=0)
    return get_wsd_schedule(
        optimizer, num_warmup_steps=warmup, num_stable_steps=1, num_decay_steps=total - warmup, last_epoch=0
    )


def freeze_below(model, trainable_layers: int | None) -> None:
    """Train only the last N decoder layers and the final norm (None: everything)."""
    if trainable_layers is None:
        return
    model.requires_grad_(False)
    decoder = model.get_decoder()
    for layer in decoder.layers[-trainable_layers:]:
        layer.requires_grad_(True)
    decoder.norm.requires_grad_(True)


@torch.no_grad()
def format_rate(model, tokenizer, rows: list[dict], max_new_tokens: int, device: str, batch_size: int = 16):
    """Greedy-generate answers; share with R_format = 1 and share whose answer equals `label`."""
    model.eval()
    # One thread: step-by-step decoding is many tiny ops, and two OpenMP threads on a busy 2-core
    # machine were measured ~9x slower than one (spin-waiting at every barrier).
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    formatted, correct, samples = 0, 0, []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        ids = [prompt_ids(tokenizer, r["messages"]) for r in chunk]
        width = max(len(x) for x in ids)
        input_ids = torch.tensor(
            [[tokenizer.pad_token_id] * (width - len(x)) + x for x in ids], device=device
        )
        attention_mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        for row, seq in zip(chunk, out[:, width:], strict=True):
            text = tokenizer.decode(seq, skip_special_tokens=True)
            answer = extract_answer(text)
            formatted += format_reward(text) == 1.0
            correct += bool(answer and answer.lower() == row.get("label"))
            if len(samples) < 5:
                samples.append(text)
    torch.set_num_threads(threads)
    model.train()
    return {"format_rate": formatted / len(rows), "answer_accuracy": correct / len(rows), "samples": samples}


def run_sft(config: SFTConfig, log=print) -> dict:
    """Train, save to config.output_dir (HF folder + sft_report.json), return the report."""
    device = resolve_device(config.device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.model)
    model = load_causal_lm(config.model, device)
    model.train()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    freeze_below(model, config.trainable_layers)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    examples = [encode(tokenizer, r, config.max_length) for r in read_examples(config.train_file)]
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    scheduler = lr_scheduler(optimizer, total_steps, config.warmup_ratio, config.schedule)
    order: list[int] = []
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        if device == "cuda" and config.bf16
        else contextlib.nullcontext
    )
    losses, start, tokens_seen = [], time.perf_counter(), 0
    for step in range(total_steps):
        while len(order) < config.batch_size:  # reshuffle at each epoch boundary
            epoch_order = list(range(len(examples)))
            random.shuffle(epoch_order)
            order += epoch_order
        rows, order = [examples[i] for i in order[: config.batch_size]], order[config.batch_size :]
        optimizer.zero_grad(set_to_none=True)
        step_tokens = sum(len(t) for _, t in rows)  # token-mean over the whole step's targets
        step_loss = 0.0
        for j in range(0, len(rows), config.micro_batch_size):
            part = rows[j : j + config.micro_batch_size]
            mb = pad_rows([p for p, _ in part], [t for _, t in part], int(tokenizer.pad_token_id), device)
            logprobs = completion_logprobs(model, mb, autocast)  # (N, C)
            loss = -(logprobs * mb["completion_mask"]).sum() / step_tokens
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        losses.append(step_loss)
        tokens_seen += sum(len(p) + len(t) for p, t in rows)
        log(
            f"sft step {step + 1}/{total_steps} loss {step_loss:.4f} lr {optimizer.param_groups[0]['lr']:.2e}"
        )
        scheduler.step()
    train_seconds = time.perf_counter() - start

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if config.save_optimizer:
        torch.save(optimizer.state_dict(), out / "optimizer.pt")
    report = {
        "config": config.model_dump(),
        "steps": total_steps,
        "train_examples": len(examples),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "train_seconds": round(train_seconds, 1),
        "train_tokens_per_second": round(tokens_seen / train_seconds, 1),
    }
    if config.eval_file:
        heldout = read_examples(config.eval_file)[: config.eval_limit]
        t0 = time.perf_counter()
        report["heldout"] = {"examples": len(heldout)} | format_rate(
            model, tokenizer, heldout, config.eval_max_new_tokens, device
        )
        report["heldout"]["eval_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"held-out format rate {report['heldout']['format_rate']:.3f} on {len(heldout)} prompts")
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def prepare_sft_policy(
    cache_dir: str | Path,
    log=print,
    folder: str = SFT_FOLDER,
    train_file: str | Path = DATA_DIR / "train.jsonl",
    eval_file: str | Path = DATA_DIR / "heldout.jsonl",
) -> Path:
    """Return `<cache_dir>/<folder>/` (default smollm2-135m-erv-sft), running the embedded cold start on first use.

    Another train_file and folder give another cold start with the same recipe (the ablation's, whose
    SFT set has explanations that contradict the answer: data/sft/cold_start_train.jsonl).
    """
    from policy.embedded import prepare_policy

    target = Path(cache_dir) / folder
    if (target / REPORT_FILE).is_file():
        return target
    base = prepare_policy(cache_dir)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    config = SFTConfig(
        model=str(base),
        train_file=str(train_file),
        eval_file=str(eval_file),
        output_dir=str(tmp),
        **EMBEDDED_SFT,
    )
    run_sft(config, log=log)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # the report is written last, so a finished folder is never half written
    return target
