"""`erv-grpo bench rollout --save-groups` writes the group file that `bench reward --workload` reads.

Runs the CLI in a subprocess (its own vLLM engine on the tiny random Qwen2, CPU).
"""

import json
import subprocess
import sys

import pytest

from reward_service.bench.reward import load_workload
from tests.support.tiny_models import build_tiny_qwen2


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_save_groups_writes_a_reward_workload(tmp_path):
    model = build_tiny_qwen2(tmp_path / "qwen2")
    out = tmp_path / "groups.jsonl"
    cmd = [sys.executable, "-m", "orchestrator.cli", "bench", "rollout", "--model", str(model), "--prompts", "2",
           "--group-size", "3", "--max-tokens", "8", "--save-groups", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    prompts = [json.loads(line) for line in open("data/prompts/train.jsonl").read().splitlines()[:2]]
    assert [(g["prompt_id"], g["ground_truth"]) for g in lines] == [
        (p["id"], p["ground_truth"]) for p in prompts
    ]
    assert [len(g["completions"]) for g in lines] == [3, 3]
    groups = load_workload(out)
    assert [[cid for cid, _, _ in g] for g in groups] == [
        [f"{p['id']}-c{i}" for i in range(3)] for p in prompts
    ]
