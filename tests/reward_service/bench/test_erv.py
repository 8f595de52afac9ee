"""`bench erv` on the tiny model: the JSON has both rates, the thread count and agreeing probabilities."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli import main


def test_bench_erv_writes_json(tiny_erv_dir, tmp_path, capsys):
    out = tmp_path / "erv.json"
    rc = main(
        ["bench", "erv", "--model-dir", str(tiny_erv_dir), "--threads", "1", "--sentences", "24"]
        + ["--batch-size", "8", "--repeats", "1", "--data", str(tmp_path / "absent.jsonl"), "--out", str(out)]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["torch_dir"] == str(tiny_erv_dir / "hf")
    assert (result["threads"], result["batch_size"], result["sentences"]) == (1, 8, 24)
    assert result["onnx_sentences_per_s"] > 0 and result["torch_sentences_per_s"] > 0
    assert result["speedup"] == pytest.approx(
        result["onnx_sentences_per_s"] / result["torch_sentences_per_s"], rel=0.01
    )
    assert result["max_abs_prob_diff"] <= 1e-4  # same weights, same sentences
    assert "cpu_count" in result["machine"]
    assert "speedup" in capsys.readouterr().out


def test_bench_erv_without_torch_weights(tmp_path):
    with pytest.raises(SystemExit, match="erv-grpo: error: --torch-dir .*no Hugging Face model"):
        main(["bench", "erv", "--model-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o.json")])


def test_bench_erv_torch_backend(tiny_erv_dir, tmp_path):
    out = tmp_path / "erv-torch.json"
    rc = main(
        ["bench", "erv", "--model-dir", str(tiny_erv_dir), "--threads", "1", "--sentences", "16"]
        + ["--batch-size", "8", "--repeats", "1", "--data", str(tmp_path / "absent.jsonl"), "--out", str(out)]
        + ["--backend", "torch", "--device", "cpu"]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert (result["backend"], result["device"], result["providers"]) == (
        "torch",
        "cpu",
        ["torch:cpu:float32"],
    )
    assert result["erv_sentences_per_s"] > 0 and result["mean_tokens"] > 2
    assert result["max_abs_prob_diff"] <= 1e-4 and result["max_abs_prob_diff_vs_onnx_cpu"] <= 1e-5
