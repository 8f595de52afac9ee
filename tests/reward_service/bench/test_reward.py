"""`erv-grpo bench reward` runs end to end on the tiny ERV and writes its JSON (numbers not asserted)."""

import json

import pytest

from orchestrator.cli import main
from reward_service.bench.baseline import score_per_request
from reward_service.bench.reward import load_workload, make_workload
from reward_service.core.reward import extract_think, score_completion, split_sentences
from reward_service.errors import BenchError
from reward_service.erv.model import ErvModel

MODES = {"grpc_stream", "json_post_per_completion", "baseline_post_per_completion", "bare_model"}


def test_workload_is_grpo_shaped_with_distinct_sentences():
    groups = make_workload(num_requests=3, group_size=16, sentences=8)
    assert [len(g) for g in groups] == [16, 16, 16]
    sentences = [s for g in groups for _, text, _ in g for s in split_sentences(extract_think(text))]
    assert len(sentences) == 3 * 16 * 8 and len(set(sentences)) == len(sentences)
    assert len({cid for g in groups for cid, _, _ in g}) == 48


def test_baseline_server_scores_like_score_completion(tiny_erv_dir):
    """The per-request baseline computes the same rewards as the reward math (a fair comparison)."""
    model = ErvModel.load(tiny_erv_dir, num_threads=1)
    group = make_workload(1, 6, 3)[0] + [("empty", "<answer>sad</answer>", "sad")]
    got = score_per_request(model, group)
    for (cid, text, truth), (got_id, score) in zip(group, got, strict=True):
        want = score_completion(
            text, truth, lambda s: (model.predict_proba(s), model.labels), model.tau, model.top_k
        )
        assert got_id == cid and score.total == pytest.approx(want.total, abs=1e-9)


def test_bench_reward_writes_json_with_workload_file_and_serving_ceiling(tiny_erv_dir, tmp_path):
    workload = tmp_path / "groups.jsonl"
    texts = [
        "<think>He smiles. She laughs.</think><answer>happy</answer>",
        "<think>He frowns.</think><answer>sad</answer>",
    ]
    workload.write_text("".join(json.dumps({"prompt_id": f"p{i}", "ground_truth": "happy", "completions": texts}) + "\n"
                                for i in range(3)))  # fmt: skip
    out = tmp_path / "reward.json"
    argv = ["bench", "reward", "--model-dir", str(tiny_erv_dir), "--workload", str(workload), "--clients", "2",
            "--num-threads", "1", "--sentence-cache-size", "1000", "--serving-ceiling", str(tiny_erv_dir / "hf"),
            "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert (
        result["workload"]["completions"] == 6 and result["workload"]["distinct_sentence_share"] == 0.333
    )  # 3 of 9
    for measured in (result, result["serving_ceiling"]):
        assert set(measured["modes"]) == MODES
        for mode in measured["modes"].values():
            assert mode["completions"] == 6 and mode["sentences"] == 9 and mode["completions_per_s"] > 0
    # Three identical groups: after the first, every sentence comes from the cache.
    assert result["modes"]["grpc_stream"]["sentence_cache_hit_rate"] > 0
    assert set(result["goals"]) == {"stream_at_least_5x_baseline_post", "stream_at_least_5x_our_post",
                                    "serving_overhead_at_most_20pct", "serving_ceiling_stream_at_least_5x_baseline_post"}  # fmt: skip


def test_bench_reward_synthetic_workload(tiny_erv_dir, tmp_path):
    out = tmp_path / "reward.json"
    argv = ["bench", "reward", "--model-dir", str(tiny_erv_dir), "--requests", "2", "--clients", "2",
            "--group-size", "4", "--sentences", "2", "--num-threads", "1", "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["workload"]["source"] == "synthetic" and result["modes"]["grpc_stream"]["sentences"] == 16
    assert "serving_ceiling" not in result


@pytest.mark.parametrize(
    "line, message",
    [("not json", "not a group line"), ('{"prompt_id": "p", "completions": ["x"]}', "not a group line"),
     ('{"prompt_id": "p", "ground_truth": "sad", "completions": []}', "non-empty list")],
)  # fmt: skip
def test_bad_workload_lines_are_named(tmp_path, line, message):
    path = tmp_path / "w.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(BenchError, match=f"w.jsonl:1: .*{message}"):
        load_workload(path)


def test_bench_reward_without_model_tells_the_user_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="erv-grpo models prepare"):
        main(["bench", "reward", "--model-dir", str(tmp_path / "missing")])
