"""ErvModel: the Emotional Rationale Verifier, tokenised and batched here, run by a backend.

Runs in the reward-service process (and in `erv-grpo erv export` to verify an export). Loads a
model folder written by `reward_service.erv.export` (model.onnx, tokenizer.json, labels.json, and
config.json + model.safetensors for torch), tokenises with the `tokenizers` library, pads
length-sorted batches and returns sigmoid probabilities per output column. The forward pass is
the backend's: ONNX Runtime (reward_service.erv.onnx_backend, CPU or CUDA execution provider) or
PyTorch (reward_service.erv.torch_backend, CUDA or CPU, fp32/bf16/fp16); each is imported only
when chosen, so this module imports neither onnxruntime nor torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from reward_service.errors import RewardServiceError

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
LABELS_FILE = "labels.json"
DEFAULT_BATCH_SIZE = 64
BACKENDS = ("onnx", "torch")
DTYPES = ("float32", "bfloat16", "float16")
# Pad token names tried, in order, when tokenizer.json carries no padding settings.
_PAD_TOKENS = ("[PAD]", "<pad>")


class ErvModelError(RewardServiceError, ValueError):
    """A model folder is missing a file or holds inconsistent metadata."""


@dataclass(frozen=True)
class ErvMeta:
    """Content of labels.json: output columns, their canonical labels and the label-set rule."""

    columns: list[str]
    labels: list[str]
    tau: float
    top_k: int
    max_length: int
    version: str

    @classmethod
    def read(cls, path: Path) -> ErvMeta:
        try:
            raw = json.loads(path.read_text())
            meta = cls(
                columns=[str(c) for c in raw["columns"]],
                labels=[str(lab) for lab in raw["labels"]],
                tau=float(raw["tau"]),
                top_k=int(raw["top_k"]),
                max_length=int(raw["max_length"]),
                version=str(raw["version"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ErvModelError(f"{path}: not a valid ERV labels.json ({exc!r})") from exc
        if len(meta.columns) != len(meta.labels):
            raise ErvModelError(f"{path}: 'columns' and 'labels' differ in length")
        return meta


class Runner(Protocol):
    """One backend's forward pass over a padded batch (onnx_backend.OnnxRunner, torch_backend.TorchRunner)."""

    input_names: set[str] | frozenset[str]  # of input_ids, attention_mask, token_type_ids
    num_outputs: int | None  # output columns, None when the backend cannot tell before a run
    providers: list[str]

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray: ...  # {name: (B, T) int64} -> (B, L)


class ErvModel:
    """Multi-label sentence classifier: `predict_proba(sentences) -> (S, L)` sigmoid probabilities."""

    def __init__(self, runner: Runner, tokenizer: Tokenizer, meta: ErvMeta, batch_size: int, pad_id: int):
        self.runner = runner
        self.tokenizer = tokenizer  # truncating, not padding: predict_proba pads per batch
        self.meta = meta
        self.batch_size = batch_size
        self._input_names = set(runner.input_names)
        self._pad_id = pad_id

    @classmethod
    def load(
        cls,
        folder: str | Path,
        num_threads: int | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        backend: str = "onnx",
        dtype: str = "float32",
    ) -> ErvModel:
        """Open a model folder with `backend` ("onnx" or "torch") on `device` ("auto", "cpu", "cuda").

        num_threads: intra-op threads (None = the runtime's default). batch_size: sentences per
        forward pass (None = 64, or 1024 for torch on CUDA). dtype: the torch backend's compute
        precision ("float32", "bfloat16", "float16" under autocast); ONNX Runtime runs the graph as
        exported (float32) and accepts only "float32".
        """
        folder = Path(folder)
        if backend not in BACKENDS:
            raise ErvModelError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if dtype not in DTYPES:
            raise ErvModelError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if backend == "onnx" and dtype != "float32":
            raise ErvModelError(f"dtype {dtype!r} needs backend 'torch'; the ONNX graph is float32")
        needed = (
            (MODEL_FILE, TOKENIZER_FILE, LABELS_FILE) if backend == "onnx" else (TOKENIZER_FILE, LABELS_FILE)
        )
        for name in needed:
            if not (folder / name).is_file():
                raise ErvModelError(
                    f"ERV model folder {folder} has no {name} (write one with `erv-grpo erv export`)"
                )
        if batch_size is not None and batch_size < 1:
            raise ErvModelError(f"batch_size must be >= 1, got {batch_size}")
        meta = ErvMeta.read(folder / LABELS_FILE)
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        pad_id = _pad_id(tokenizer)
        # We pad per length-sorted batch ourselves; truncation follows labels.json.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=meta.max_length)
        if backend == "onnx":
            from reward_service.erv.onnx_backend import OnnxRunner

            runner: Runner = OnnxRunner.open(folder / MODEL_FILE, num_threads=num_threads, device=device)
            default_batch = DEFAULT_BATCH_SIZE
        else:
            try:
                from reward_service.erv.torch_backend import CUDA_BATCH_SIZE, TorchRunner
            except ImportError as exc:  # e.g. the reward image, which ships ONNX Runtime only
                raise ErvModelError(
                    f"backend 'torch' needs torch and transformers installed ({exc})"
                ) from exc

            runner = TorchRunner.open(folder, num_threads=num_threads, device=device, dtype=dtype)
            default_batch = CUDA_BATCH_SIZE if runner.device.type == "cuda" else DEFAULT_BATCH_SIZE
        if runner.num_outputs is not None and runner.num_outputs != len(meta.labels):
            raise ErvModelError(
                f"{folder}: model has {runner.num_outputs} outputs but labels.json lists {len(meta.labels)}"
            )
        return cls(runner, tokenizer, meta, batch_size or default_batch, pad_id)

    @property
    def labels(self) -> list[str]:
        return self.meta.labels

    @property
    def columns(self) -> list[str]:
        return self.meta.columns

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def tau(self) -> float:
        return self.meta.tau

    @property
    def top_k(self) -> int:
        return self.meta.top_k

    @property
    def max_length(self) -> int:
        return self.meta.max_length

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers, or ["torch:DEVICE:DTYPE"] for the torch backend."""
        return self.runner.providers

    def predict_proba(self, sentences: list[str]) -> np.ndarray:
        """(S, L) float32 sigmoid probabilities, row i for sentences[i]; S = 0 gives shape (0, L)."""
        n_labels = len(self.meta.labels)
        if not sentences:
            return np.zeros((0, n_labels), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(sentences))
        lengths = np.array([len(e.ids) for e in encodings])
        # Sorting by length keeps similar lengths in a batch, so little compute goes into padding.
        order = np.argsort(lengths, kind="stable")
        probs = np.empty((len(sentences), n_labels), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]  # (B,) positions in the caller's order
            width = int(lengths[idx].max())
            input_ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)  # (B, T)
            attention_mask = np.zeros((len(idx), width), dtype=np.int64)  # (B, T)
            for row, i in enumerate(idx):
                ids = encodings[i].ids
                input_ids[row, : len(ids)] = ids
                attention_mask[row, : len(ids)] = 1
            # Feed what the graph declares: some exports want token_type_ids, a graph that never
            # reads attention_mask (e.g. no attention layers) has no such input.
            feed = {"input_ids": input_ids}
            if "attention_mask" in self._input_names:
                feed["attention_mask"] = attention_mask
            if "token_type_ids" in self._input_names:
                feed["token_type_ids"] = np.zeros_like(input_ids)
            probs[idx] = self.runner.run(feed)  # (B, L)
        return probs


def _pad_id(tokenizer: Tokenizer) -> int:
    """Pad token id baked into tokenizer.json by the export, else a conventional pad token, else 0."""
    padding = tokenizer.padding
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    for token in _PAD_TOKENS:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    return 0
