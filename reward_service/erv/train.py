"""Fine-tune a Hugging Face encoder as the ERV: multi-label sentence classifier (sigmoid + BCE).

Runs in the `erv-grpo erv train` / `models prepare` process (torch, CPU or GPU). Reads JSONL lines
{"text": ..., "labels": [...]}, holds out a validation split, trains with AdamW and a linear
schedule, reports per-label and macro F1 (label-set rule of the spec, and a plain 0.5 threshold),
and saves a Hugging Face folder (weights, tokenizer, erv_report.json) for `erv export`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reward_service.core.labels import CANONICAL_LABELS, UNKNOWN, normalize
from reward_service.core.reward import label_sets
from reward_service.errors import RewardServiceError
from reward_service.erv.config import ErvTrainConfig
from reward_service.erv.export import torch_predict_proba

REPORT_FILE = "erv_report.json"
# Config fields recorded in erv_report.json's "settings" (in this order).
SETTING_KEYS = ("epochs", "batch_size", "lr", "val_fraction", "max_length", "seed", "threads", "probe_epochs",
                "probe_lr", "reset_pooler", "freeze_embeddings")  # fmt: skip


class TrainError(RewardServiceError, ValueError):
    """Bad training input (data file, base model, option); the message names the culprit."""


@dataclass(frozen=True)
class Example:
    text: str
    labels: tuple[str, ...]  # canonical labels
    where: str  # "file:line", for messages


def read_jsonl(path: str | Path) -> list[Example]:
    """Labelled sentences from JSONL; any bad line raises TrainError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such data file")
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TrainError(f"{where}: expected an object with 'text' and 'labels'")
            text, raw_labels = row.get("text"), row.get("labels")
            if not isinstance(text, str) or not text.strip():
                raise TrainError(f"{where}: 'text' must be a non-empty string")
            if (
                not isinstance(raw_labels, list)
                or not raw_labels
                or not all(isinstance(x, str) for x in raw_labels)
            ):
                raise TrainError(f"{where}: 'labels' must be a non-empty list of strings")
            labels = tuple(dict.fromkeys(normalize(x) for x in raw_labels))
            if UNKNOWN in labels:
                bad = [x for x in raw_labels if normalize(x) == UNKNOWN]
                raise TrainError(f"{where}: unknown label(s) {bad}; known: {', '.join(CANONICAL_LABELS)}")
            examples.append(Example(text.strip(), labels, where))
    if not examples:
        raise TrainError(f"{path}: no examples")
    return examples


def gold_matrix(examples: list[Example]) -> np.ndarray:
    """(N, 11) 0/1 float32 targets in CANONICAL_LABELS order."""
    index = {label: j for j, label in enumerate(CANONICAL_LABELS)}
    gold = np.zeros((len(examples), len(CANONICAL_LABELS)), dtype=np.float32)
    for i, ex in enumerate(examples):
        for label in ex.labels:
            gold[i, index[label]] = 1.0
    return gold


def split_train_val(
    examples: list[Example], val_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Shuffled split; val gets round(val_fraction * N) examples (at least 1 when val_fraction > 0)."""
    if not 0.0 <= val_fraction < 1.0:
        raise TrainError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(examples))) if val_fraction > 0 else 0
    if n_val >= len(examples):
        raise TrainError(f"--val-fraction {val_fraction} leaves no training examples out of {len(examples)}")
    return [examples[i] for i in order[n_val:]], [examples[i] for i in order[:n_val]]


def _f1(pred: np.ndarray, gold: np.ndarray) -> float | None:
    """F1 of one label from 0/1 vectors; None when the label is neither present nor predicted."""
    tp = float((pred * gold).sum())
    denom = float(pred.sum() + gold.sum())
    return None if denom == 0 else 2 * tp / denom


def evaluate_probs(
    probs: np.ndarray, gold: np.ndarray, labels: list[str], tau: float = 0.1, top_k: int = 2
) -> dict:
    """Quality of (S, L) probabilities against (S, 11) canonical gold.

    set rule: a label is predicted when it is in the sentence's label set (tau, top_k, argmax
    fallback; the reward's rule). Macro F1 averages labels with support in `gold`.
    contains_gold: share of sentences whose label set holds at least one gold label (the reward's
    M counts such sentences); contains_all_gold: holds every gold label.
    """
    sets = label_sets(probs, labels, tau=tau, top_k=top_k)
    set_pred = np.array(
        [[label in s for label in CANONICAL_LABELS] for s in sets], dtype=np.float32
    )  # (S, 11)
    # Plain threshold: column j of probs counts for its canonical label when its prob > 0.5.
    thr_pred = np.zeros_like(set_pred)
    for j, label in enumerate(labels):
        if label in CANONICAL_LABELS:
            k = CANONICAL_LABELS.index(label)
            thr_pred[:, k] = np.maximum(thr_pred[:, k], (probs[:, j] > 0.5).astype(np.float32))
    per_label = {}
    for k, label in enumerate(CANONICAL_LABELS):
        per_label[label] = {
            "support": int(gold[:, k].sum()),
            "f1_set": _f1(set_pred[:, k], gold[:, k]),
            "f1_0.5": _f1(thr_pred[:, k], gold[:, k]),
        }
    present = [lab for lab in CANONICAL_LABELS if per_label[lab]["support"] > 0]

    def macro(key: str) -> float:
        return float(np.mean([per_label[lab][key] or 0.0 for lab in present])) if present else 0.0

    hits = (set_pred * gold).sum(1)  # (S,) gold labels inside each set
    return {
        "sentences": int(len(gold)),
        "macro_f1_set": macro("f1_set"),
        "macro_f1_0.5": macro("f1_0.5"),
        "contains_gold": float((hits > 0).mean()) if len(gold) else 0.0,
        "contains_all_gold": float((hits == gold.sum(1)).mean()) if len(gold) else 0.0,
        "tau": tau,
        "top_k": top_k,
        "per_label": per_label,
    }


def load_base(base: str, num_labels: int):
    """(model with a fresh multi-label head, fast tokenizer) from a local folder or a hub id."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = list(CANONICAL_LABELS)
    kwargs = dict(
        num_labels=num_labels,
        problem_type="multi_label_classification",
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True,  # a base with another head (e.g. 28 GoEmotions) gets a new one
    )
    local = Path(base).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(base, **kwargs)
    except (OSError, ValueError) as exc:
        if local:
            raise TrainError(f"--base {base}: cannot load a model from this folder ({exc})") from None
        raise TrainError(
            f"--base {base!r} is not a local folder and could not be fetched from the model hub "
            f"(no hub reachable, or HF_HUB_OFFLINE=1?): {str(exc).splitlines()[0]}"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise TrainError(f"--base {base}: needs a fast tokenizer (tokenizer.json) for export")
    return model, tokenizer


def _reset_pooler(model) -> None:
    pooler = getattr(model.base_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    if not isinstance(dense, torch.nn.Linear) or dense.in_features != dense.out_features:
        raise TrainError("--reset-pooler: this model has no square pooler.dense layer")
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.in_features))
        dense.bias.zero_()


def fit_head(model, tokenizer, texts, targets, max_length, batch_size, epochs, lr) -> float:
    """Train model.classifier alone on cached inputs of the frozen body; returns the last epoch's mean loss."""
    cached = []
    hook = model.classifier.register_forward_hook(lambda _m, inputs, _out: cached.append(inputs[0].detach()))
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            model(**batch)
    hook.remove()
    optimizer = torch.optim.Adam(model.classifier.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.classifier.train()
    for _ in range(epochs):
        total = 0.0
        for i, features in enumerate(cached):  # features: the classifier's input for batch i
            loss = loss_fn(model.classifier(features), targets[i * batch_size : (i + 1) * batch_size])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total += loss.item()
    return total / len(cached)


def train_erv(config: ErvTrainConfig, log: Callable[[str], None] = print) -> dict:
    """Fine-tune `config.base` on `config.data`, keep the epoch with the best validation macro F1, save to `config.out`.

    probe_epochs > 0: first fit only the head on frozen features (linear probe, then fine-tune:
    LP-FT), so fine-tuning starts from a head that already separates the labels.
    reset_pooler: set a BERT pooler to identity (for encoders trained with mean pooling, whose
    pooler squashes the [CLS] state). freeze_embeddings: keep the token embeddings fixed (half of
    MiniLM's weights; cheaper steps and less overfitting on a small corpus).
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    c = config  # the fields as locals: the training code below reads them by name
    data, base, out, epochs, batch_size, lr = c.data, c.base, c.out, c.epochs, c.batch_size, c.lr
    val_fraction, max_length, seed, threads = c.val_fraction, c.max_length, c.seed, c.threads
    probe_epochs, probe_lr, progress = c.probe_epochs, c.probe_lr, c.progress
    examples = read_jsonl(data)
    train, val = split_train_val(examples, val_fraction, seed)
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    model, tokenizer = load_base(base, len(CANONICAL_LABELS))
    if c.reset_pooler:
        _reset_pooler(model)
    if c.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    targets = torch.from_numpy(gold_matrix(train))  # (N, 11)
    val_gold = gold_matrix(val)
    texts = [ex.text for ex in train]
    steps_per_epoch = -(-len(train) // batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total_steps = epochs * steps_per_epoch
    scheduler = get_linear_schedule_with_warmup(optimizer, int(c.warmup_fraction * total_steps), total_steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(seed)
    history, best, best_state = [], None, None
    started = time.perf_counter()

    def validate(row: dict) -> None:
        nonlocal best, best_state
        if val:
            probs = torch_predict_proba(
                model.eval(), tokenizer, [ex.text for ex in val], max_length, batch_size
            )
            metrics = evaluate_probs(probs, val_gold, list(CANONICAL_LABELS))
            row |= {k: metrics[k] for k in ("macro_f1_set", "macro_f1_0.5", "contains_gold")}
            if best is None or metrics["macro_f1_set"] > best[1]["macro_f1_set"]:
                best = (row["epoch"], metrics)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(row)
        log(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))

    if probe_epochs > 0:  # epoch 0 = the linear probe alone
        loss = fit_head(model, tokenizer, texts, targets, max_length, batch_size, probe_epochs, probe_lr)
        validate({"epoch": 0, "train_loss": loss})
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False)
        total_loss = 0.0
        for step in bar:
            idx = order[step * batch_size : (step + 1) * batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            logits = model(**batch).logits  # (B, 11)
            loss = loss_fn(logits, targets[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total_loss += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        validate({"epoch": epoch, "train_loss": total_loss / steps_per_epoch})
    if best_state is not None:
        model.load_state_dict(best_state)
    report = {
        "data": str(data),
        "base": str(base),
        "train_examples": len(train),
        "val_examples": len(val),
        "settings": c.model_dump(include=set(SETTING_KEYS)),
        "seconds": round(time.perf_counter() - started, 1),
        "history": history,
        "best_epoch": best[0] if best else epochs,
        "validation": best[1] if best else None,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_report(metrics: dict) -> str:
    """Per-label table + macro line of an `evaluate_probs` result."""

    def cell(v):
        return "   -  " if v is None else f"{v:6.3f}"

    lines = [f"{'label':<15}{'support':>8}{'F1(set)':>9}{'F1(0.5)':>9}"]
    for label, row in metrics["per_label"].items():
        lines.append(f"{label:<15}{row['support']:>8}  {cell(row['f1_set'])} {cell(row['f1_0.5'])}")
    lines.append(
        f"macro F1 (set rule tau={metrics['tau']}, top {metrics['top_k']}): {metrics['macro_f1_set']:.3f}   "
        f"macro F1 (0.5): {metrics['macro_f1_0.5']:.3f}   "
        f"label set contains gold: {metrics['contains_gold']:.3f} (all gold: {metrics['contains_all_gold']:.3f}) "
        f"over {metrics['sentences']} sentences"
    )
    return "\n".join(lines)
