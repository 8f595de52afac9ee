"""ErvModel: the Emotional Rationale Verifier run with ONNX Runtime (an adapter module).

Runs in the reward-service process (and in `erv-grpo erv export` to verify an export). Loads a
model folder written by `reward_service.erv.export` (model.onnx, tokenizer.json, labels.json), tokenises with
the `tokenizers` library and returns sigmoid probabilities per output column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from reward_service.errors import RewardServiceError

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
LABELS_FILE = "labels.json"
DEFAULT_BATCH_SIZE = 64
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


def pick_providers(device: str) -> list[str]:
    """ONNX Runtime providers for device "auto" (CUDA when this build has it), "cpu" or "cuda"."""
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ErvModelError(f"device 'cuda' asked for but ONNX Runtime only has {available}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    raise ErvModelError(f"device must be auto, cpu or cuda, got {device!r}")


class ErvModel:
    """Multi-label sentence classifier: `predict_proba(sentences) -> (S, L)` sigmoid probabilities."""

    def __init__(
        self, session: ort.InferenceSession, tokenizer: Tokenizer, meta: ErvMeta, batch_size: int, pad_id: int
    ):
        self.session = session
        self.tokenizer = tokenizer  # truncating, not padding: predict_proba pads per batch
        self.meta = meta
        self.batch_size = batch_size
        self._input_names = {i.name for i in session.get_inputs()}
        unknown = self._input_names - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown or "input_ids" not in self._input_names:
            raise ErvModelError(
                f"ONNX graph inputs {sorted(self._input_names)}: need input_ids and at most "
                "attention_mask and token_type_ids besides"
            )
        self._pad_id = pad_id

    @classmethod
    def load(
        cls,
        folder: str | Path,
        num_threads: int | None = None,
        device: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> ErvModel:
        """Open a model folder. num_threads: ONNX Runtime intra-op threads (None = ORT's default)."""
        folder = Path(folder)
        for name in (MODEL_FILE, TOKENIZER_FILE, LABELS_FILE):
            if not (folder / name).is_file():
                raise ErvModelError(
                    f"ERV model folder {folder} has no {name} (write one with `erv-grpo erv export`)"
                )
        if batch_size < 1:
            raise ErvModelError(f"batch_size must be >= 1, got {batch_size}")
        meta = ErvMeta.read(folder / LABELS_FILE)
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        pad_id = _pad_id(tokenizer)
        # We pad per length-sorted batch ourselves; truncation follows labels.json.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=meta.max_length)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1  # one request graph at a time; parallelism is intra-op
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=pick_providers(device))
        n_out = session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(meta.labels):
            raise ErvModelError(
                f"{folder}: model has {n_out} outputs but labels.json lists {len(meta.labels)}"
            )
        return cls(session, tokenizer, meta, batch_size, pad_id)

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
        return self.session.get_providers()

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
            probs[idx] = self.session.run(None, feed)[0]  # (B, L)
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
