"""`erv-grpo bench reward` runs end to end on the tiny ERV and writes its JSON (numbers not asserted)."""

import json

import pytest

from orchestrator.cli import main
from reward_service.bench_reward import make_workload
from reward_service.reward import extract_think, split_sentences


def test_workload_is_grpo_shaped_with_distinct_sentences():
    groups = make_workload(num_requests=3, group_size=16, sentences=8)
    assert [len(g) for g in groups] == [16, 16, 16]
    sentences = [s for g in groups for _, text, _ in g for s in split_sentences(extract_think(text))]
    assert len(sentences) == 3 * 16 * 8 and len(set(sentences)) == len(sentences)
    assert len({cid for g in groups for cid, _, _ in g}) == 48


def test_bench_reward_writes_json(tiny_erv_dir, tmp_path):
    out = tmp_path / "reward.json"
    argv = ["bench", "reward", "--model-dir", str(tiny_erv_dir), "--requests", "4", "--clients", "2",
            "--group-size", "4", "--num-threads", "1", "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["modes"]) == {"grpc_stream", "json_post_per_completion", "baseline_post_per_completion", "bare_model"}
    for mode in result["modes"].values():
        assert mode["completions"] == 16 and mode["sentences"] == 128 and mode["completions_per_s"] > 0


def test_bench_reward_without_model_tells_the_user_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="erv-grpo models prepare"):
        main(["bench", "reward", "--model-dir", str(tmp_path / "missing")])
