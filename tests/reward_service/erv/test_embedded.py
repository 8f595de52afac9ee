"""prepare_erv end to end on a tiny base and corpus: train, export, held-out eval, idempotent re-run."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from reward_service.core.labels import CANONICAL_LABELS
from reward_service.erv import embedded


def _corpus(folder, n_per_label):
    folder.mkdir()
    for name, n in (("train.jsonl", n_per_label), ("test.jsonl", 1)):
        rows = [
            json.dumps({"text": f"the speaker {lab} looks at the camera {i}.", "labels": [lab]})
            for lab in CANONICAL_LABELS
            for i in range(n)
        ]
        (folder / name).write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_prepare_erv_tiny_then_reuse(tiny_erv_dir, tmp_path, monkeypatch):
    data = _corpus(tmp_path / "erv", n_per_label=3)
    monkeypatch.setattr(embedded, "minilm_folder", lambda: tiny_erv_dir / "hf")
    monkeypatch.setattr(
        embedded, "SETTINGS", embedded.SETTINGS | {"epochs": 1, "probe_epochs": 2, "batch_size": 8}
    )
    logs = []
    quality = tmp_path / "quality.json"
    out = embedded.prepare_erv(
        tmp_path / "cache", data_dir=data, quality_out=quality, threads=1, log=logs.append
    )
    assert out == tmp_path / "cache" / "erv-minilm"
    meta = json.loads((out / "labels.json").read_text())
    assert meta["labels"] == list(CANONICAL_LABELS)
    assert meta["source"]["training_fingerprint"] == embedded.training_fingerprint(
        data / "train.jsonl", embedded.SETTINGS
    )
    result = json.loads((out / "eval.json").read_text())
    assert result == json.loads(quality.read_text())
    assert result["held_out"]["sentences"] == 11 and 0.0 <= result["held_out"]["contains_gold"] <= 1.0
    assert (tmp_path / "cache" / "erv-minilm-hf" / "config.json").is_file()

    logs.clear()
    assert (
        embedded.prepare_erv(tmp_path / "cache", data_dir=data, quality_out=quality, log=logs.append) == out
    )
    assert logs == [
        f"ERV: {out} is up to date (training fingerprint {meta['source']['training_fingerprint']})"
    ]


def test_fingerprint_follows_data_and_settings(tmp_path):
    data = _corpus(tmp_path / "erv", n_per_label=1)
    f = data / "train.jsonl"
    base = embedded.training_fingerprint(f, embedded.SETTINGS)
    assert embedded.training_fingerprint(f, embedded.SETTINGS | {"epochs": 99}) != base
    f.write_text(f.read_text() + json.dumps({"text": "new.", "labels": ["sad"]}) + "\n")
    assert embedded.training_fingerprint(f, embedded.SETTINGS) != base


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(embedded.EmbeddedErvError, match="train.jsonl: missing"):
        embedded.prepare_erv(tmp_path / "cache", data_dir=tmp_path)


def test_prepare_writes_nothing_outside_the_cache(tmp_path, monkeypatch):
    # `models prepare`, the demo and `bench rollout` call prepare_erv(cache_dir): the held-out result
    # stays next to the model; the committed bench/results/ changes only when a bench runs on purpose.
    from reward_service.erv import export as erv_export
    from reward_service.erv import train as erv_train

    def fake_export(hf_dir, out, **kwargs):
        Path(out).mkdir(parents=True)
        return {"version": "v1"}

    monkeypatch.setattr(embedded, "minilm_folder", lambda: tmp_path / "base")
    monkeypatch.setattr(erv_train, "train_erv", lambda *a, **k: {"best_epoch": 1, "train_examples": 11})
    monkeypatch.setattr(erv_train, "format_report", lambda metrics: "report")
    monkeypatch.setattr(erv_export, "export_erv", fake_export)
    monkeypatch.setattr(embedded, "evaluate_folder", lambda model_dir, test_file: {"sentences": 11})
    results = embedded.REPO_ROOT / "bench" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}

    out = embedded.prepare_erv(tmp_path / "cache", data_dir=_corpus(tmp_path / "erv", 1), log=lambda m: None)

    assert {p.name: p.stat().st_mtime_ns for p in results.iterdir()} == before
    assert json.loads((out / "eval.json").read_text())["held_out"] == {"sentences": 11}
    assert inspect.signature(embedded.prepare_erv).parameters["quality_out"].default is None
