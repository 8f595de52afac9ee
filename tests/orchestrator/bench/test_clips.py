"""`erv-grpo bench rollout --clips`: clip prompts through a vLLM engine on the tiny Omni thinker, timed per phase.

Runs the CLI in a subprocess (its own engine, CPU). Checks the counts the figures rest on (decodes in
the first pass, cache hits after), not the speed.
"""

import json
import subprocess
import sys

import pytest

from policy.tiny_omni import build_tiny_omni
from tests.support.clips import write_rows


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_clip_bench_decodes_each_clip_once_then_serves_the_cache(clip_set, tmp_path):
    model = build_tiny_omni(tmp_path / "omni")
    rows = [dict(r, video=str(clip_set.dir / r["video"])) for r in clip_set.rows("train")[:2]]
    out = tmp_path / "rollout_clips.json"
    cmd = [sys.executable, "-m", "orchestrator.cli", "bench", "rollout", "--clips", str(write_rows(tmp_path / "c.jsonl", rows)),
           "--model", str(model), "--group-size", "2", "--max-tokens", "4", "--epochs", "2", "--output", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    first, later = result["first_epoch"], result["after_first_epoch"]
    assert (first["decodes"], first["cache_hits"]) == (2, 0)  # prompts_per_step 2: one step per pass
    assert (later["decodes"], later["cache_hits"], later["cache_hit_rate"]) == (0, 2, 1.0)
    for part in (first, later):
        assert part["tokens_per_second"] > 0 and 0 < part["media_share"] < 1
        assert part["media_share"] == pytest.approx(part["decode_share"] + part["preprocess_share"])
    assert result["steps"][0]["completion_tokens"] > 0 and "load_average_before" in result["machine"]
