"""`erv-grpo experiment ablation` end to end on tiny models: 2 arms x 2 steps, K = 1, stopped and resumed.

One invocation is stopped (KeyboardInterrupt) while arm no-erv evaluates step 1, after its step-1
checkpoint; the same command then continues it without redoing the finished arm.
"""

import json

import pytest

pytest.importorskip("sklearn", reason="the judge extra: pip install -e '.[judge]' (make venv installs it)")

from orchestrator import experiment  # noqa: E402
from orchestrator.experiment_config import load_ablation_config  # noqa: E402
from orchestrator.tracking import read_metrics  # noqa: E402
from tests.support.tiny_erv import build_tiny_erv  # noqa: E402
from tests.support.tiny_policy import build_tiny_formatted_policy  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablation")
    config = load_ablation_config(
        "configs/ablation-tiny.yaml",
        [
            f"cold_start.model={build_tiny_formatted_policy(tmp / 'policy')}",
            f"train.reward.model_dir={build_tiny_erv(tmp / 'erv')}",
            f"experiment.output_dir={tmp / 'runs'}",
        ],
    )
    real = experiment.evaluate_now
    calls = []

    def stop_at_no_erv_step_1(cluster, records, judge, cfg, arm_dir, step):
        calls.append((arm_dir.name, step))
        if (arm_dir.name, step) == ("no-erv", 1) and calls.count(("no-erv", 1)) == 1:
            raise KeyboardInterrupt  # the user stops the experiment
        return real(cluster, records, judge, cfg, arm_dir, step)

    experiment.evaluate_now = stop_at_no_erv_step_1
    try:
        with pytest.raises(KeyboardInterrupt):
            experiment.run_ablation(config)
        exp_dir = config.experiment_dir()
        stopped = {p.name: p.read_text() for p in (exp_dir / "erv" / "evals").glob("*.json")}
        stopped["no-erv step 1"] = (exp_dir / "no-erv" / "metrics.jsonl").read_text().splitlines()[0]
        first_calls = list(calls)
        experiment.run_ablation(config)  # the same command again
    finally:
        experiment.evaluate_now = real
    return config, exp_dir, stopped, first_calls, calls[len(first_calls) :]


def test_stopped_experiment_continues_where_it_stopped(finished):
    config, exp_dir, stopped, first_calls, second_calls = finished
    assert first_calls == [("erv", 0), ("erv", 1), ("erv", 2), ("no-erv", 0), ("no-erv", 1)]
    assert second_calls == [("no-erv", 1), ("no-erv", 2)]  # erv is not touched again
    step1 = stopped.pop("no-erv step 1")
    assert {p.name: p.read_text() for p in (exp_dir / "erv" / "evals").glob("*.json")} == stopped
    # no-erv continued from its step-1 checkpoint: step 1 was not trained again (its record, timings
    # included, is the one written before the stop).
    assert (exp_dir / "no-erv" / "metrics.jsonl").read_text().splitlines()[0] == step1
    for arm in ("erv", "no-erv"):
        assert sorted(p.name for p in (exp_dir / arm / "evals").glob("*.json")) == [
            "step-000000.json", "step-000001.json", "step-000002.json",
        ]  # fmt: skip
        assert [r["step"] for r in read_metrics(exp_dir / arm)] == [1, 2]


def test_arms_share_prompts_and_cold_start_and_differ_only_in_weights(finished):
    _, exp_dir, *_ = finished
    erv, no_erv = read_metrics(exp_dir / "erv"), read_metrics(exp_dir / "no-erv")
    assert [r["prompt_ids"] for r in erv] == [r["prompt_ids"] for r in no_erv]  # same prompt order
    step1 = erv[0], no_erv[0]  # the same cold start and seeds sample the same first step
    for key in ("reward/explanation", "reward/format", "reward/answer"):
        assert step1[0][key] == pytest.approx(step1[1][key])
    for r in erv:
        assert r["reward/total"] == pytest.approx(
            r["reward/explanation"] + r["reward/format"] + r["reward/answer"]
        )
    for r in no_erv:  # weights (0, 1, 1) reached the reward service: R_E is reported but not in the total
        assert r["reward/total"] == pytest.approx(r["reward/format"] + r["reward/answer"])
    zero = [json.loads((exp_dir / a / "evals" / "step-000000.json").read_text()) for a in ("erv", "no-erv")]
    assert zero[0]["samples"] == zero[1]["samples"] and zero[0]["metrics"] == zero[1]["metrics"]


def test_evals_have_intervals_and_the_report_has_table_and_curves(finished):
    _, exp_dir, *_ = finished
    ev = json.loads((exp_dir / "no-erv" / "evals" / "step-000002.json").read_text())
    assert ev["prompts"] == 4 and ev["judge"] == "tfidf" and len(ev["samples"]) == 4
    for metric, (lo, hi) in ev["ci95"].items():
        assert 0.0 <= lo <= ev["metrics"][metric] <= hi <= 1.0
    judge = json.loads((exp_dir / "judge.json").read_text())
    assert judge["judge"] == "tfidf" and 0.0 <= judge["agreement_with_erv"] <= 1.0
    report = (exp_dir / "report.md").read_text()
    assert "| cold start | 0 |" in report and "| erv | 2 |" in report and "| no-erv | 2 |" in report
    assert "## Paired differences (arm - no-erv)" in report and "not finished" not in report
    for metric in ("WAR", "UAR", "EEA", "EPC", "FCR"):
        assert (exp_dir / f"{metric}.png").stat().st_size > 1000 and f"({metric}.png)" in report


def test_a_changed_config_is_refused_on_the_same_folder(finished):
    config, *_ = finished
    from orchestrator.errors import OrchestratorError

    changed = config.model_copy(deep=True)
    changed.train.learner.lr = 0.5
    with pytest.raises(OrchestratorError, match="train.learner.lr"):
        experiment.check_same_experiment(config.experiment_dir(), changed)
