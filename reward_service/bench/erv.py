"""`erv-grpo bench erv`: sentences/s of ErvModel (ONNX Runtime) vs the same weights in PyTorch eager.

Runs in the bench CLI process. Both sides classify the same sentences at the same intra-op thread
count and batch size. The torch side is what a Hugging Face user writes: tokenizer + model on
batches in the given order. A third figure, torch on length-sorted batches, separates the gain of
the batching from the gain of the runtime.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np

from reward_service.errors import BenchError

# Used when the corpus is absent (e.g. benchmarking a tiny model in a fresh clone).
FALLBACK_SENTENCES = [
    "She smiles warmly and laughs at the joke her friend just told.",
    "In the audio, his voice trembles and breaks off mid-sentence.",
    "The man frowns and clenches his jaw.",
    "The room has white walls and a wooden table near the window.",
    "Tears run down her face as she looks away from the camera.",
    "He shouts and slams his fist on the desk, his face red.",
    "Her eyes widen and she gasps when the door bursts open.",
    "He wears a grey jacket and sits in a dim office.",
]


def load_sentences(data: Path, n: int, seed: int = 0) -> list[str]:
    """n sentences: the texts of `data` (JSONL) shuffled and cycled, or the fallback list."""
    texts = []
    if data.is_file():
        with open(data, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f if line.strip()]
    texts = texts or list(FALLBACK_SENTENCES)
    random.Random(seed).shuffle(texts)
    return [texts[i % len(texts)] for i in range(n)]


def machine_info() -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews both rates
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _best_rate(fn, sentences: list[str], repeats: int) -> tuple[float, np.ndarray]:
    """(best sentences/s over `repeats` passes, probabilities of the last pass)."""
    best, probs = 0.0, None
    for _ in range(repeats):
        start = time.perf_counter()
        probs = fn(sentences)
        best = max(best, len(sentences) / (time.perf_counter() - start))
    return best, probs


def run_bench(
    model_dir: Path,
    torch_dir: Path | None,
    threads: int = 2,
    n_sentences: int = 1024,
    batch_size: int = 64,
    repeats: int = 3,
    data: Path = Path("data/erv/test.jsonl"),
) -> dict:
    """Time both runtimes on the same sentences; return the JSON-ready result."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from reward_service.erv.export import torch_predict_proba
    from reward_service.erv.model import ErvModel, ErvModelError

    if torch_dir is None:
        candidates = [model_dir / "hf", model_dir.parent / f"{model_dir.name}-hf"]
        torch_dir = next((c for c in candidates if (c / "config.json").is_file()), candidates[-1])
    if not (torch_dir / "config.json").is_file():
        raise BenchError(
            f"--torch-dir {torch_dir}: no Hugging Face model there (run `erv-grpo models prepare`)"
        )
    if min(threads, n_sentences, batch_size, repeats) < 1:
        raise BenchError("--threads, --sentences, --batch-size and --repeats must be >= 1")
    try:
        erv = ErvModel.load(model_dir, num_threads=threads, device="cpu", batch_size=batch_size)
    except ErvModelError as exc:
        raise BenchError(str(exc)) from None

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(torch_dir))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(torch_dir)
    ).eval()  # default (sdpa) attention
    sentences = load_sentences(data, n_sentences)

    def torch_given_order(batch):
        return torch_predict_proba(model, tokenizer, batch, erv.max_length, batch_size)

    def torch_sorted(batch):
        order = np.argsort([len(s) for s in batch], kind="stable")
        probs = np.empty((len(batch), len(erv.labels)), dtype=np.float32)
        probs[order] = torch_given_order([batch[i] for i in order])
        return probs

    warm = sentences[: 2 * batch_size]
    for fn in (erv.predict_proba, torch_given_order, torch_sorted):
        fn(warm)
    onnx_rate, onnx_probs = _best_rate(erv.predict_proba, sentences, repeats)
    torch_rate, torch_probs = _best_rate(torch_given_order, sentences, repeats)
    sorted_rate, _ = _best_rate(torch_sorted, sentences, repeats)
    return {
        "benchmark": "erv",
        "model_dir": str(model_dir),
        "torch_dir": str(torch_dir),
        "model_version": erv.version,
        "sentences": len(sentences),
        "mean_chars": float(np.mean([len(s) for s in sentences])),
        "threads": threads,
        "batch_size": batch_size,
        "repeats": repeats,
        "onnx_sentences_per_s": round(onnx_rate, 1),
        "torch_sentences_per_s": round(torch_rate, 1),
        "torch_length_sorted_sentences_per_s": round(sorted_rate, 1),
        "speedup": round(onnx_rate / torch_rate, 3),
        "speedup_vs_torch_length_sorted": round(onnx_rate / sorted_rate, 3),
        "max_abs_prob_diff": float(np.abs(onnx_probs - torch_probs).max()),
        "onnx_providers": erv.providers,
        "machine": machine_info(),
        "notes": "best of `repeats` passes each; torch = HF tokenizer + AutoModelForSequenceClassification "
        "(default attention) in batches of the given order; ONNX = ErvModel (length-sorted batches).",
    }
