"""`bench erv` on the tiny model: the JSON has both rates, the thread count and agreeing probabilities."""

from __future__ import annotations

import json
import shutil

import pytest

from orchestrator.cli import main


def test_bench_erv_writes_json(tiny_erv_dir, tmp_path, capsys):
    out = tmp_path / "erv.json"
    rc = main(
        ["bench", "erv", "--model-dir", str(tiny_erv_dir), "--threads", "1", "--sentences", "24"]
        + ["--batch-size", "8", "--repeats", "1", "--data", str(tmp_path / "absent.jsonl"), "--out", str(out)]
        + ["--quality-out", str(tmp_path / "quality.json")]
    )
    assert rc == 0
    assert not (tmp_path / "quality.json").exists()  # the tiny model has no eval.json to copy
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


def test_bench_erv_refreshes_the_quality_file_from_the_models_eval(tiny_erv_dir, tmp_path):
    model = shutil.copytree(tiny_erv_dir, tmp_path / "erv")
    (model / "eval.json").write_text('{"held_out": {"sentences": 11}}\n')
    quality = tmp_path / "results" / "erv_quality.json"
    quality.parent.mkdir()
    rc = main(["bench", "erv", "--model-dir", str(model), "--threads", "1", "--sentences", "8", "--repeats", "1",
               "--out", str(tmp_path / "erv.json"), "--quality-out", str(quality)])  # fmt: skip
    assert rc == 0
    assert quality.read_text() == (model / "eval.json").read_text()
