"""`erv-grpo bench async`: the summary of a run's records and the command's checks (the timed runs are the bench's)."""

import pytest

from orchestrator.bench.staleness import summarize
from orchestrator.cli import main


def _record(step, seconds, staleness, reward):
    return {"step": step, "step_seconds": seconds, "staleness/max": staleness, "reward/total": reward,
            "phase/generate": 1.0, "phase/update": 2.0, "phase/weight_sync": 0.5, "is_weight_mean": 1.0,
            "overlap_seconds": 0.5 * step}  # fmt: skip


def test_summary_leaves_out_the_warm_up_step_and_checks_the_bound():
    records = [_record(1, 100.0, 0, 1.0), _record(2, 10.0, 1, 1.5), _record(3, 20.0, 1, 2.0)]
    got = summarize(records, eta=1)
    assert got["steps_per_hour"] == pytest.approx(3600 * 2 / 30)  # steps 2 and 3 in 30 s
    assert got["mean_step_seconds"] == 15.0 and got["staleness_within_bound"]
    assert got["reward_total"] == [1.0, 1.5, 2.0] and got["staleness_max"] == [0, 1, 1]
    assert not summarize(records, eta=0)["staleness_within_bound"]


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(SystemExit, match="--model .* is not a folder"):
        main(["bench", "async", "--model", str(tmp_path / "none"), "--erv-dir", str(tmp_path)])
