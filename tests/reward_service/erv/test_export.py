"""Export of tiny random classifiers (both heads): labels.json content and torch/ONNX agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reward_service.core.labels import CANONICAL_LABELS, GOEMOTIONS_LABELS
from reward_service.erv.export import (
    CHECK_SENTENCES,
    ExportError,
    content_version,
    export_erv,
    load_classifier,
    torch_predict_proba,
    verify_export,
)
from reward_service.erv.model import ErvModel


def test_canonical_labels_json(tiny_erv_dir):
    meta = json.loads((tiny_erv_dir / "labels.json").read_text())
    assert meta["columns"] == list(CANONICAL_LABELS)
    assert meta["labels"] == list(CANONICAL_LABELS)
    assert (meta["tau"], meta["top_k"], meta["max_length"]) == (0.1, 2, 128)
    assert meta["version"] == content_version(tiny_erv_dir, meta["columns"], meta["labels"])
    assert len(meta["version"]) == 16


def test_goemotions_labels_json_maps_by_index(tiny_goemotions_erv_dir):
    meta = json.loads((tiny_goemotions_erv_dir / "labels.json").read_text())
    assert meta["columns"] == list(GOEMOTIONS_LABELS)
    labels = meta["labels"]
    assert len(labels) == 28
    # The spec's index map, spelled out: 11 mapped columns, 17 "other".
    expected = {17: "happy", 2: "angry", 11: "disgust", 14: "fear", 25: "sad", 26: "surprise", 27: "neutral"}
    expected |= {19: "anxiety", 16: "helplessness", 9: "disappointment", 10: "contempt"}
    assert {i: lab for i, lab in enumerate(labels) if lab != "other"} == expected
    assert labels.count("other") == 17


@pytest.mark.parametrize("fixture", ["tiny_erv_dir", "tiny_goemotions_erv_dir"])
def test_onnx_equals_torch(fixture, request):
    folder = request.getfixturevalue(fixture)
    model, tokenizer = load_classifier(folder / "hf")
    sentences = CHECK_SENTENCES + ["The camera pans across a quiet kitchen.", "He yells, and she flinches!"]
    ref = torch_predict_proba(model, tokenizer, sentences, max_length=128)
    got = ErvModel.load(folder, num_threads=1).predict_proba(sentences)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4
    # Rows must differ between sentences, or the comparison above would prove little.
    assert np.abs(ref[0] - ref[1]).max() > 1e-3


def test_version_changes_with_weights(tiny_erv_dir, tmp_path):
    model, tokenizer = load_classifier(tiny_erv_dir / "hf")
    with torch.no_grad():
        model.classifier.bias.add_(0.5)
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    meta = export_erv(tmp_path / "hf", tmp_path / "out", max_length=64, tau=0.2, top_k=3)
    old = json.loads((tiny_erv_dir / "labels.json").read_text())
    assert meta["version"] != old["version"]
    assert (meta["tau"], meta["top_k"], meta["max_length"]) == (0.2, 3, 64)
    assert ErvModel.load(tmp_path / "out").max_length == 64


def test_verify_fails_loudly_on_mismatch(tiny_erv_dir):
    model, tokenizer = load_classifier(tiny_erv_dir / "hf")
    with torch.no_grad():
        model.classifier.bias.add_(1e-2)  # torch side now differs from the exported graph
    with pytest.raises(ExportError, match="disagrees with torch"):
        verify_export(tiny_erv_dir, model, tokenizer, CHECK_SENTENCES)


def test_goemotions_head_needs_28_outputs(tiny_erv_dir, tmp_path):
    with pytest.raises(ExportError, match="28 outputs"):
        export_erv(tiny_erv_dir / "hf", tmp_path, head="goemotions")


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ExportError, match="no config.json"):
        export_erv(tmp_path, tmp_path / "out")
