"""The torch backend of ErvModel: the exported ERV's Hugging Face weights run by PyTorch (CUDA or CPU).

Runs in the reward-service process when `backend` is "torch" (and in `erv-grpo erv export`, which
checks it against ONNX Runtime). It exists because a CUDA machine may have torch but no
onnxruntime-gpu. It reads config.json and model.safetensors, which `erv-grpo erv export` writes
next to model.onnx, and runs one padded batch: `run(feed) -> (B, L)` sigmoid probabilities.
dtype "bfloat16" / "float16" runs the forward under torch.autocast (weights stay fp32, matrix
products in the low precision, norms and softmax in fp32). Tokenising, sorting and padding live in
reward_service.erv.model, shared with the ONNX backend.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from reward_service.erv.model import DTYPES, ErvModelError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TORCH_FILES = (CONFIG_FILE, WEIGHTS_FILE)
# Sentences per forward when the caller leaves it open: GPU kernels need big batches to fill the chip.
CUDA_BATCH_SIZE = 1024
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """torch device for "auto" (CUDA when there is one), "cpu" or "cuda"."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ErvModelError(f"device 'cuda' asked for but torch {torch.__version__} sees no CUDA device")
        return torch.device("cuda")
    raise ErvModelError(f"device must be auto, cpu or cuda, got {device!r}")


class TorchRunner:
    """A Hugging Face sequence classifier in eval mode on one device, fed input_ids and attention_mask."""

    input_names = frozenset({"input_ids", "attention_mask"})

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: str):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.num_outputs = int(model.config.num_labels)

    @classmethod
    def open(
        cls, folder: Path, num_threads: int | None = None, device: str = "auto", dtype: str = "float32"
    ) -> TorchRunner:
        """Load folder's config.json + model.safetensors. num_threads: torch intra-op threads on CPU."""
        if dtype not in DTYPES:
            raise ErvModelError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        for name in TORCH_FILES:
            if not (folder / name).is_file():
                raise ErvModelError(
                    f"ERV model folder {folder} has no {name}, which backend 'torch' needs "
                    "(re-export it with `erv-grpo erv export`, which writes it next to model.onnx)"
                )
        where = resolve_device(device)
        if num_threads and where.type == "cpu":
            torch.set_num_threads(int(num_threads))  # process-wide, as ORT's intra-op pool is per session
        from transformers import AutoModelForSequenceClassification

        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), attn_implementation="sdpa", dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ErvModelError(f"{folder}: cannot load {CONFIG_FILE} + {WEIGHTS_FILE} ({exc})") from exc
        return cls(model.eval().to(where), where, dtype)

    @property
    def providers(self) -> list[str]:
        """What runs the model, in the shape of ONNX Runtime's provider list: ["torch:cuda:bfloat16"]."""
        return [f"torch:{self.device.type}:{self.dtype}"]

    def _autocast(self):
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_TORCH_DTYPES[self.dtype])

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """(B, L) float32 probabilities of one padded batch (int64 input_ids and attention_mask, (B, T))."""
        non_blocking = self.device.type == "cuda"
        input_ids = torch.from_numpy(feed["input_ids"]).to(self.device, non_blocking=non_blocking)  # (B, T)
        mask = torch.from_numpy(feed["attention_mask"]).to(self.device, non_blocking=non_blocking)  # (B, T)
        with torch.inference_mode(), self._autocast():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits  # (B, L)
        return torch.sigmoid(logits.float()).cpu().numpy()
