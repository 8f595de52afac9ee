"""`erv-grpo bench erv`: sentences/s of ErvModel (ONNX Runtime or torch backend) vs the same weights in PyTorch eager.

Runs in the bench CLI process. Both sides classify the same sentences at the same intra-op thread
count and batch size. The torch side is what a Hugging Face user writes: tokenizer + model on
batches in the given order (fp32, on the device ErvModel runs on). A third figure, torch on
length-sorted batches, separates the gain of the batching from the gain of the runtime. With
`--backend torch` (e.g. `--device cuda --dtype bfloat16`) the ErvModel side is the torch backend,
and its probabilities are also compared with ONNX Runtime on CPU over the first 256 sentences.
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

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
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
        "gpu": gpu,
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
    backend: str = "onnx",
    device: str = "cpu",
    dtype: str = "float32",
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
        erv = ErvModel.load(
            model_dir, num_threads=threads, device=device, batch_size=batch_size, backend=backend, dtype=dtype
        )
    except ErvModelError as exc:
        raise BenchError(str(exc)) from None

    torch.set_num_threads(threads)
    on = getattr(erv.runner, "device", None) or torch.device("cpu")  # the reference runs where ErvModel does
    tokenizer = AutoTokenizer.from_pretrained(str(torch_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(torch_dir)).eval().to(on)  # sdpa attention
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
    erv_rate, erv_probs = _best_rate(erv.predict_proba, sentences, repeats)
    torch_rate, torch_probs = _best_rate(torch_given_order, sentences, repeats)
    sorted_rate, _ = _best_rate(torch_sorted, sentences, repeats)
    tokens = [len(e.ids) for e in erv.tokenizer.encode_batch(sentences)]
    result = {
        "benchmark": "erv",
        "model_dir": str(model_dir),
        "torch_dir": str(torch_dir),
        "model_version": erv.version,
        "backend": backend,
        "device": str(on),
        "dtype": dtype,
        "sentences": len(sentences),
        "mean_chars": float(np.mean([len(s) for s in sentences])),
        "mean_tokens": float(np.mean(tokens)),
        "threads": threads,
        "batch_size": batch_size,
        "repeats": repeats,
        "erv_sentences_per_s": round(erv_rate, 1),
        "erv_tokens_per_s": round(erv_rate * float(np.mean(tokens)), 1),
        "torch_sentences_per_s": round(torch_rate, 1),
        "torch_length_sorted_sentences_per_s": round(sorted_rate, 1),
        "speedup": round(erv_rate / torch_rate, 3),
        "speedup_vs_torch_length_sorted": round(erv_rate / sorted_rate, 3),
        "max_abs_prob_diff": float(np.abs(erv_probs - torch_probs).max()),
        "providers": erv.providers,
        "machine": machine_info(),
        "notes": "best of `repeats` passes each; torch = HF tokenizer + AutoModelForSequenceClassification "
        "(default attention, fp32) in batches of the given order on the same device; erv = ErvModel "
        f"(backend {backend}, length-sorted batches).",
    }
    if backend == "onnx":
        result["onnx_sentences_per_s"] = result["erv_sentences_per_s"]
    else:
        check = sentences[:256]
        onnx_cpu = ErvModel.load(model_dir, num_threads=threads, device="cpu").predict_proba(check)
        result["max_abs_prob_diff_vs_onnx_cpu"] = float(np.abs(erv.predict_proba(check) - onnx_cpu).max())
    return result
