"""ErvModel (ONNX Runtime): order restored, padding-independent rows, empty input, metadata, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from reward_service.erv.model import ErvModel, ErvModelError

SENTENCES = [
    "She smiles.",
    "In the audio, his voice trembles and breaks off mid-sentence while he stares at the floor.",
    "The man frowns and clenches his jaw, shouting at the people behind the door.",
    "A white wall.",
    "Tears run down her face as she whispers something quietly to the camera.",
    "Wow!",
]


def test_metadata(tiny_erv_dir):
    erv = ErvModel.load(tiny_erv_dir)
    meta = json.loads((tiny_erv_dir / "labels.json").read_text())
    assert erv.labels == meta["labels"] and erv.columns == meta["columns"]
    assert (erv.version, erv.tau, erv.top_k, erv.max_length) == (meta["version"], 0.1, 2, 128)
    assert erv.providers == ["CPUExecutionProvider"]


def test_empty_list(tiny_erv_dir):
    probs = ErvModel.load(tiny_erv_dir).predict_proba([])
    assert probs.shape == (0, 11) and probs.dtype == np.float32


def test_order_restored_across_length_sorted_batches(tiny_erv_dir):
    erv = ErvModel.load(tiny_erv_dir, batch_size=2)  # 3 batches, each sorted by length
    probs = erv.predict_proba(SENTENCES)
    assert probs.shape == (len(SENTENCES), 11)
    for i, sentence in enumerate(SENTENCES):
        alone = erv.predict_proba([sentence])[0]
        np.testing.assert_allclose(probs[i], alone, atol=1e-5, rtol=0)
    # Reversing the input reverses the rows (rows are distinct, so a mix-up would show).
    np.testing.assert_allclose(erv.predict_proba(SENTENCES[::-1]), probs[::-1], atol=1e-5, rtol=0)
    assert np.abs(probs[0] - probs[1]).max() > 1e-3


@pytest.mark.parametrize("fixture", ["tiny_erv_dir", "tiny_goemotions_erv_dir"])
def test_alone_equals_in_big_padded_batch(fixture, request):
    erv = ErvModel.load(request.getfixturevalue(fixture), num_threads=2, batch_size=256)
    long_one = " ".join(["the man looks at the camera and sighs"] * 20)  # ~160 words: truncated to 128
    batch = SENTENCES + [long_one] * 40 + ["Wow!"] * 40
    big = erv.predict_proba(batch)
    for i, sentence in enumerate(SENTENCES):
        np.testing.assert_allclose(big[i], erv.predict_proba([sentence])[0], atol=1e-5, rtol=0)
    # The truncated sentence equals itself alone too (truncation happens before padding).
    np.testing.assert_allclose(big[len(SENTENCES)], erv.predict_proba([long_one])[0], atol=1e-5, rtol=0)


def test_missing_file_names_it(tiny_erv_dir, tmp_path):
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(tiny_erv_dir / name, tmp_path / name)
    with pytest.raises(ErvModelError, match="labels.json"):
        ErvModel.load(tmp_path)


def test_label_count_mismatch(tiny_erv_dir, tmp_path):
    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(tiny_erv_dir / name, tmp_path / name)
    meta = json.loads((tiny_erv_dir / "labels.json").read_text())
    meta["columns"], meta["labels"] = meta["columns"][:3], meta["labels"][:3]
    (tmp_path / "labels.json").write_text(json.dumps(meta))
    with pytest.raises(ErvModelError, match="11 outputs"):
        ErvModel.load(tmp_path)


def test_bad_device(tiny_erv_dir):
    with pytest.raises(ErvModelError, match="device"):
        ErvModel.load(tiny_erv_dir, device="tpu")


def test_graph_without_attention_mask_is_fed_only_what_it_declares(tiny_erv_dir, tmp_path):
    # A 0-layer model never reads attention_mask, so the exporter drops that input from the graph.
    from reward_service.bench.ceiling import build_zero_layer_erv

    folder = build_zero_layer_erv(tiny_erv_dir / "hf", tmp_path / "zero")
    model = ErvModel.load(folder, num_threads=1)
    assert "attention_mask" not in {i.name for i in model.runner.session.get_inputs()}
    probs = model.predict_proba(["He smiles.", "She is sad and tired today."])
    assert probs.shape == (2, len(model.labels)) and np.all((probs > 0) & (probs < 1))


def test_graph_with_an_unknown_input_is_rejected_naming_it(tiny_erv_dir, tmp_path):
    import onnx

    folder = tmp_path / "extra-input"
    shutil.copytree(tiny_erv_dir, folder, ignore=shutil.ignore_patterns("hf"))
    graph = onnx.load(str(folder / "model.onnx"))
    graph.graph.input.append(
        onnx.helper.make_tensor_value_info("position_ids", onnx.TensorProto.INT64, ["B", "T"])
    )
    onnx.save(graph, str(folder / "model.onnx"))
    with pytest.raises(ErvModelError, match="position_ids"):
        ErvModel.load(folder)
