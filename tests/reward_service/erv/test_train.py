"""ERV training: JSONL validation (file:line errors), F1 arithmetic worked by hand, train CLI on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.cli import main
from reward_service.core.labels import CANONICAL_LABELS
from reward_service.erv.train import TrainError, evaluate_probs, read_jsonl, split_train_val

LABELS = list(CANONICAL_LABELS)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_jsonl_normalises_and_skips_blank_lines(tmp_path):
    f = _write(
        tmp_path / "d.jsonl",
        ['{"text": " She grins. ", "labels": ["Joy", "happy"]}', "", '{"text": "x", "labels": ["worried"]}'],
    )
    examples = read_jsonl(f)
    assert [(e.text, e.labels) for e in examples] == [("She grins.", ("happy",)), ("x", ("anxiety",))]
    assert examples[1].where == f"{f}:3"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"text": "a", "labels": ["bored"]}', r"d.jsonl:2: unknown label\(s\) \['bored'\]"),
        ('{"text": "a", "labels": []}', "d.jsonl:2: 'labels' must be a non-empty list"),
        ('{"text": "", "labels": ["sad"]}', "d.jsonl:2: 'text' must be a non-empty string"),
        ('{"text": "a", "labels": ["sad"]', "d.jsonl:2: not valid JSON"),
        ('["a", "sad"]', "d.jsonl:2: expected an object"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    f = _write(tmp_path / "d.jsonl", ['{"text": "fine", "labels": ["sad"]}', line])
    with pytest.raises(TrainError, match=message):
        read_jsonl(f)


def test_split_sizes_and_determinism(tmp_path):
    f = _write(tmp_path / "d.jsonl", [json.dumps({"text": f"s{i}", "labels": ["sad"]}) for i in range(20)])
    examples = read_jsonl(f)
    train, val = split_train_val(examples, 0.1, seed=3)
    assert (len(train), len(val)) == (18, 2)
    assert split_train_val(examples, 0.1, seed=3)[1] == val
    assert {e.text for e in train} | {e.text for e in val} == {f"s{i}" for i in range(20)}
    with pytest.raises(TrainError, match="--val-fraction"):
        split_train_val(examples, 1.0, seed=0)


def test_evaluate_probs_by_hand():
    # 4 sentences, gold: happy | sad | sad+helplessness | neutral.
    gold = np.zeros((4, 11), dtype=np.float32)
    for i, labs in enumerate([["happy"], ["sad"], ["sad", "helplessness"], ["neutral"]]):
        for lab in labs:
            gold[i, LABELS.index(lab)] = 1
    probs = np.full((4, 11), 0.01, dtype=np.float32)
    probs[0, LABELS.index("happy")] = 0.9  # set {happy}: hit
    probs[1, LABELS.index("angry")] = 0.3  # set {angry}: miss (0.3 > tau but < 0.5)
    probs[2, LABELS.index("sad")] = 0.8  # set {sad, anxiety}: hits sad only
    probs[2, LABELS.index("anxiety")] = 0.6
    probs[3, LABELS.index("neutral")] = 0.05  # nothing above tau: argmax fallback {neutral}
    m = evaluate_probs(probs, gold, LABELS, tau=0.1, top_k=2)
    assert m["contains_gold"] == 0.75  # sentences 0, 2, 3
    assert m["contains_all_gold"] == 0.5  # sentences 0, 3
    pl = m["per_label"]
    assert pl["happy"]["f1_set"] == 1.0
    assert pl["sad"]["f1_set"] == pytest.approx(2 / 3)  # tp 1, fp 0, fn 1
    assert pl["helplessness"]["f1_set"] == 0.0
    assert pl["neutral"]["f1_set"] == 1.0 and pl["neutral"]["f1_0.5"] == 0.0  # 0.05 < 0.5
    assert pl["angry"]["f1_set"] == 0.0 and pl["angry"]["support"] == 0
    assert pl["fear"]["f1_set"] is None  # neither present nor predicted
    # Macro over the 4 labels with support: (1 + 2/3 + 0 + 1) / 4.
    assert m["macro_f1_set"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    # 0.5 threshold: happy 1, sad (tp 1 of 2) 2/3, helplessness 0, neutral 0.
    assert m["macro_f1_0.5"] == pytest.approx((1 + 2 / 3) / 4)


@pytest.mark.slow
def test_train_cli_on_tiny_model_then_export(tiny_erv_dir, tmp_path, capsys):
    lines = []
    for i, lab in enumerate(LABELS * 3):
        lines.append(json.dumps({"text": f"the man {lab} looks {i} at the camera.", "labels": [lab]}))
    data = _write(tmp_path / "train.jsonl", lines)
    out = tmp_path / "trained"
    rc = main(
        ["erv", "train", "--data", str(data), "--base", str(tiny_erv_dir / "hf"), "--out", str(out)]
        + ["--epochs", "1", "--batch-size", "8", "--lr", "1e-3", "--val-fraction", "0.25", "--threads", "1"]
        + ["--no-progress", "--probe-epochs", "3", "--reset-pooler", "--freeze-embeddings"]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "macro F1 (set rule tau=0.1, top 2)" in printed and "disappointment" in printed
    report = json.loads((out / "erv_report.json").read_text())
    assert (report["train_examples"], report["val_examples"]) == (25, 8)
    assert report["validation"]["sentences"] == 8
    assert [row["epoch"] for row in report["history"]] == [0, 1]  # probe, then one fine-tuning epoch
    assert report["best_epoch"] in (0, 1)
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 11

    rc = main(["erv", "export", "--model", str(out), "--out", str(tmp_path / "onnx"), "--max-length", "64"])
    assert rc == 0
    meta = json.loads((tmp_path / "onnx" / "labels.json").read_text())
    assert meta["labels"] == LABELS and meta["max_length"] == 64


def test_train_cli_bad_data_is_one_line_error(tiny_erv_dir, tmp_path):
    data = _write(
        tmp_path / "bad.jsonl", ['{"text": "a", "labels": ["sad"]}', '{"text": "b", "labels": ["meh"]}']
    )
    with pytest.raises(SystemExit, match=r"erv-grpo: error: .*bad.jsonl:2: unknown label"):
        main(
            [
                "erv",
                "train",
                "--data",
                str(data),
                "--base",
                str(tiny_erv_dir / "hf"),
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_train_cli_hub_id_without_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = _write(
        tmp_path / "d.jsonl", ['{"text": "a", "labels": ["sad"]}', '{"text": "b", "labels": ["happy"]}']
    )
    with pytest.raises(SystemExit, match="not a local folder and could not be fetched from the model hub"):
        main(
            [
                "erv",
                "train",
                "--data",
                str(data),
                "--base",
                "no-such-org/no-such-model",
                "--out",
                str(tmp_path / "o"),
            ]
        )


def test_export_cli_errors(tmp_path, tiny_erv_dir):
    with pytest.raises(SystemExit, match="erv-grpo: error: --model .*no config.json"):
        main(["erv", "export", "--model", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="erv-grpo: error: head 'goemotions' needs 28 outputs"):
        main(
            [
                "erv",
                "export",
                "--model",
                str(tiny_erv_dir / "hf"),
                "--out",
                str(tmp_path / "o"),
                "--head",
                "goemotions",
            ]
        )
