"""Export a Hugging Face sequence classifier to an ERV model folder and verify it against torch.

Runs in the `erv-grpo erv export` / `models prepare` process. Writes model.onnx (sigmoid
probabilities as output, dynamic batch and sequence axes), tokenizer.json (truncation and pad
token baked in), labels.json (columns, canonical label per column, tau, top_k, max_length and
a content hash as version) and, for the torch backend (reward_service.erv.torch_backend), the
classifier's config.json + model.safetensors. Fails loudly when ONNX Runtime and torch disagree by
more than 1e-4, or the torch backend and ONNX Runtime by more than that.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from reward_service.core.labels import (
    CANONICAL_LABELS,
    GOEMOTIONS_LABELS,
    goemotions_column_labels,
    normalize,
)
from reward_service.errors import RewardServiceError

HEADS = ("canonical", "goemotions")
OPSET = 17
ATOL = 1e-4
# Varied lengths (one past any small max_length) so the check covers padding and truncation.
CHECK_SENTENCES = [
    "She smiles warmly and laughs at the joke.",
    "In the audio, his voice trembles and breaks off mid-sentence.",
    "The man frowns and clenches his jaw.",
    "The room has white walls and a wooden table.",
    "Tears run down her face.",
    "He stares at the floor, shoulders slumped, and says nothing for a long time while the camera "
    "slowly pushes in on his face, which shows no sign of the excitement he had at the start of "
    "the scene, only a tired resignation that deepens as the other voices in the room grow louder.",
    "Wow!",
    "",
]


class ExportError(RewardServiceError, RuntimeError):
    """The export cannot be made or does not match the torch model."""


def column_labels(config, head: str) -> tuple[list[str], list[str]]:
    """(columns, labels): raw output names and the canonical label (or "other") of each column."""
    num_labels = int(config.num_labels)
    if head == "goemotions":
        if num_labels != len(GOEMOTIONS_LABELS):
            raise ExportError(f"head 'goemotions' needs 28 outputs, the model has {num_labels}")
        return list(GOEMOTIONS_LABELS), goemotions_column_labels()
    if head != "canonical":
        raise ExportError(f"head must be one of {HEADS}, got {head!r}")
    names = [str(config.id2label[i]) for i in range(num_labels)]
    labels = [normalize(name) for name in names]
    if "unknown" in labels:  # a fresh head is named LABEL_0..: fall back to the canonical order
        if num_labels != len(CANONICAL_LABELS):
            raise ExportError(
                f"head 'canonical': output names {names} are not canonical labels and the model has "
                f"{num_labels} outputs, not {len(CANONICAL_LABELS)}"
            )
        return list(CANONICAL_LABELS), list(CANONICAL_LABELS)
    return names, labels


class _ProbsModule(torch.nn.Module):
    """Wraps a classifier so the exported graph returns sigmoid probabilities (B, L)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, L)
        return torch.sigmoid(logits)


def load_classifier(model_dir: str | Path):
    """(model in eval mode, fast tokenizer) from a local HF folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"--model {model_dir}: not a Hugging Face model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"--model {model_dir}: needs a fast tokenizer (tokenizer.json)")
    # Eager attention: the classic masked-softmax graph, which the TorchScript exporter handles.
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation="eager")
    return model.eval(), tokenizer


@torch.inference_mode()
def torch_predict_proba(
    model, tokenizer, sentences: list[str], max_length: int, batch_size: int = 64
) -> np.ndarray:
    """Sigmoid probabilities (S, L) the way a Hugging Face user computes them: tokenizer + model in batches
    (on the model's device)."""
    out = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(
            sentences[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(model.device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out.append(torch.sigmoid(logits).float().cpu().numpy())  # (B, L)
    if not out:
        return np.zeros((0, int(model.config.num_labels)), dtype=np.float32)
    return np.concatenate(out)


def content_version(folder: Path, columns: list[str], labels: list[str]) -> str:
    """Model version: sha256 over model.onnx, tokenizer.json and the label map (first 16 hex digits)."""
    digest = hashlib.sha256()
    for name in ("model.onnx", "tokenizer.json"):
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps({"columns": columns, "labels": labels}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def export_erv(
    model_dir: str | Path,
    out_dir: str | Path,
    head: str = "canonical",
    tau: float = 0.1,
    top_k: int = 2,
    max_length: int = 128,
    check_sentences: list[str] | None = None,
    atol: float = ATOL,
    extra: dict | None = None,
) -> dict:
    """Write model.onnx, tokenizer.json and labels.json to out_dir; verify; return labels.json content.

    extra: more keys for labels.json (e.g. where the weights came from); not part of the version.
    """
    if not 0.0 <= tau < 1.0:
        raise ExportError(f"--tau must be in [0, 1), got {tau}")
    if top_k < 1:
        raise ExportError(f"--top-k must be >= 1, got {top_k}")
    model, tokenizer = load_classifier(model_dir)
    limit = int(getattr(model.config, "max_position_embeddings", max_length))
    if max_length < 2 or max_length > limit:
        raise ExportError(f"--max-length must be in [2, {limit}] for this model, got {max_length}")
    columns, labels = column_labels(model.config, head)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if tokenizer.pad_token_id is None:
        raise ExportError(f"--model {model_dir}: the tokenizer has no pad token")
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(max_length=max_length)
    backend.enable_padding(pad_id=int(tokenizer.pad_token_id), pad_token=str(tokenizer.pad_token))
    backend.save(str(out / "tokenizer.json"))

    sample = tokenizer(["a b c", "a"], padding=True, return_tensors="pt")
    tmp = out / "model.onnx.tmp"
    # eval() on the wrapper too: the exporter restores the wrapper's mode, and a fresh Module is in train mode.
    # The tracer warns about shape-dependent Python branches in the mask code; verify_export below
    # checks other batch and sequence shapes, so the warnings are noise here. The TorchScript exporter
    # is chosen on purpose (dynamo=True needs onnxscript), so its deprecation notice is too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            _ProbsModule(model).eval(),
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["probs"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "probs": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, out / "model.onnx")
    model.save_pretrained(str(out))  # config.json + model.safetensors: what backend "torch" loads

    meta = {
        "columns": columns,
        "labels": labels,
        "tau": float(tau),
        "top_k": int(top_k),
        "max_length": int(max_length),
        "version": content_version(out, columns, labels),
        **(extra or {}),
    }
    (out / "labels.json").write_text(json.dumps(meta, indent=2) + "\n")
    try:
        verify_export(out, model, tokenizer, check_sentences or CHECK_SENTENCES, atol=atol)
    except ExportError:
        (out / "labels.json").unlink()  # a folder that failed verification must not load as a model
        raise
    return meta


def verify_export(folder: Path, model, tokenizer, sentences: list[str], atol: float = ATOL) -> float:
    """Max |ONNX - torch| over `sentences` (HF reference and torch backend); raises ExportError above atol."""
    from reward_service.erv.model import ErvModel

    erv = ErvModel.load(folder, device="cpu", batch_size=4)  # small batches: sorting and padding both run
    onnx_probs = erv.predict_proba(sentences)  # (S, L)
    ref = torch_predict_proba(model.eval(), tokenizer, sentences, erv.max_length)  # (S, L)
    backend = ErvModel.load(folder, device="cpu", batch_size=4, backend="torch").predict_proba(sentences)
    worst = 0.0
    for what, other in (("torch", ref), ("the torch backend", backend)):
        diff = float(np.abs(onnx_probs - other).max()) if len(sentences) else 0.0
        if not diff <= atol:  # also catches NaN
            raise ExportError(
                f"ONNX export of {folder} disagrees with {what}: max abs diff {diff:.3g} > {atol:g} "
                f"on {len(sentences)} check sentences"
            )
        worst = max(worst, diff)
    return worst
