"""report.md and the PNGs from hand-made eval files (no training): table, paired differences, partial runs."""

import json

from orchestrator.experiment_config import load_ablation_config
from orchestrator.experiment_report import write_report

TRUTHS = ["sad", "happy", "sad", "fear"]


def write_eval(exp_dir, arm, step, predictions, explanations):
    from orchestrator.bootstrap import bootstrap_ci
    from orchestrator.eval_metrics import all_metrics

    rows = [{"prediction": p, "explanation_emotion": x, "ground_truth": g}
            for p, x, g in zip(predictions, explanations, TRUTHS, strict=True)]  # fmt: skip
    ci = bootstrap_ci(predictions, explanations, TRUTHS, 50)
    path = exp_dir / arm / "evals" / f"step-{step:06d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": step, "metrics": all_metrics(predictions, explanations, TRUTHS),
                                "ci95": {m: list(v) for m, v in ci.items()}, "samples": rows}))  # fmt: skip


def test_report_table_differences_and_curves(tmp_path):
    config = load_ablation_config(
        "configs/ablation-tiny.yaml", ["train.reward.model_dir=/e", f"experiment.output_dir={tmp_path}"]
    )
    exp_dir = config.experiment_dir()
    cold = (["sad", "happy", "happy", "fear"], ["happy", "happy", "sad", "sad"])
    for arm in ("erv", "no-erv"):
        write_eval(exp_dir, arm, 0, *cold)
    write_eval(exp_dir, "erv", 1, ["sad", "happy", "happy", "fear"], ["sad", "happy", "happy", "fear"])
    write_eval(exp_dir, "erv", 2, ["sad", "happy", "happy", "fear"], ["sad", "happy", "happy", "fear"])
    write_eval(exp_dir, "no-erv", 1, *cold)  # no-erv stopped after step 1
    report = write_report(config, exp_dir).read_text()
    assert "| cold start | 0 | 75.0 [" in report  # WAR 3/4
    assert "| erv | 2 | 75.0 [" in report and "| no-erv | 1 | 75.0 [" in report
    # Paired at step 1 (the last both reached): EPC 100% vs 25% -> +75.0; WAR equal -> +0.0 [+0.0, +0.0].
    diff_row = next(line for line in report.splitlines() if line.startswith("| erv | 1 | +"))
    assert diff_row.split(" | ")[2].startswith("+0.0 [+0.0, +0.0]") and "+75.0 [" in diff_row
    assert "`no-erv`: evaluated at steps [0, 1] of [0, 1, 2] (experiment not finished)" in report
    for metric in ("WAR", "UAR", "EEA", "EPC", "FCR"):
        assert (exp_dir / f"{metric}.png").is_file()
