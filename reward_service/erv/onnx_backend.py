"""The ONNX Runtime backend of ErvModel (an adapter module: the only ERV module importing onnxruntime).

Runs in the reward-service process (and in `erv-grpo erv export` to verify an export) when
`backend` is "onnx", the default. Opens model.onnx of an exported ERV folder on the CPU or CUDA
execution provider and runs one padded batch: `run(feed) -> (B, L)` sigmoid probabilities (the
exported graph ends in the sigmoid). Tokenising, sorting and padding live in
reward_service.erv.model, shared with the torch backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from reward_service.erv.model import ErvModelError

ALLOWED_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}


def pick_providers(device: str) -> list[str]:
    """ONNX Runtime providers for device "auto" (CUDA when this build has it), "cpu" or "cuda"."""
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ErvModelError(
                f"device 'cuda' asked for but ONNX Runtime only has {available} "
                "(install onnxruntime-gpu, or serve with backend 'torch')"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    raise ErvModelError(f"device must be auto, cpu or cuda, got {device!r}")


class OnnxRunner:
    """One ONNX Runtime session over model.onnx; feeds only the inputs the graph declares."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self.input_names = {i.name for i in session.get_inputs()}
        unknown = self.input_names - ALLOWED_INPUTS
        if unknown or "input_ids" not in self.input_names:
            raise ErvModelError(
                f"ONNX graph inputs {sorted(self.input_names)}: need input_ids and at most "
                "attention_mask and token_type_ids besides"
            )
        n_out = session.get_outputs()[0].shape[-1]
        self.num_outputs = n_out if isinstance(n_out, int) else None  # a symbolic axis says nothing

    @classmethod
    def open(cls, path: Path, num_threads: int | None = None, device: str = "auto") -> OnnxRunner:
        """Session over `path`. num_threads: intra-op threads (None = ORT's default)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1  # one request graph at a time; parallelism is intra-op
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        return cls(ort.InferenceSession(str(path), options, providers=pick_providers(device)))

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """(B, L) float32 probabilities of one padded batch; `feed` holds exactly `input_names`."""
        return self.session.run(None, feed)[0]
