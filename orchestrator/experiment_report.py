"""report.md and one PNG per metric of an ablation experiment folder (matplotlib, Agg). Orchestrator process.

Reads what the arms wrote (ARM/evals/step-N.json, ARM/metrics.jsonl, judge.json) and nothing else,
so it can be rerun on a finished or partly finished experiment. Numbers are percentages with
bootstrap 95% intervals; differences between arms are paired (same test prompts resampled together).
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.bootstrap import paired_difference_ci
from orchestrator.experiment_config import AblationConfig

METRICS = ("WAR", "UAR", "EEA", "EPC", "FCR")


def read_evals(arm_dir: Path) -> list[dict]:
    """The arm's finished evaluations, by step."""
    files = sorted((arm_dir / "evals").glob("step-[0-9]*[0-9].json"))
    return [json.loads(f.read_text()) for f in files]


def _sample(ev: dict) -> tuple[list, list, list]:
    rows = ev["samples"]
    return (
        [r["prediction"] for r in rows],
        [r["explanation_emotion"] for r in rows],
        [r["ground_truth"] for r in rows],
    )


def _cell(ev: dict, metric: str) -> str:
    lo, hi = ev["ci95"][metric]
    return f"{100 * ev['metrics'][metric]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def plot_metric(metric: str, evals: dict[str, list[dict]], path: Path) -> Path:
    """One metric over steps, one line per arm with its 95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    for arm, rows in evals.items():
        steps = [r["step"] for r in rows]
        ax.plot(steps, [100 * r["metrics"][metric] for r in rows], marker="o", label=arm)
        ax.fill_between(steps, [100 * r["ci95"][metric][0] for r in rows],
                        [100 * r["ci95"][metric][1] for r in rows], alpha=0.2)  # fmt: skip
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{metric} on the test prompts (bootstrap 95% band)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _mean_rewards(arm_dir: Path) -> dict[str, float] | None:
    path = arm_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        return None
    keys = ("reward/total", "reward/explanation", "reward/format", "reward/answer", "kl")
    return {k: sum(r[k] for r in records) / len(records) for k in keys} | {"steps": len(records)}


def write_report(config: AblationConfig, exp_dir: Path) -> Path:
    exp = config.experiment
    evals = {a.name: read_evals(exp_dir / a.name) for a in exp.arms}
    planned = config.eval_steps()
    lines = [
        f"# Ablation {exp.name}: {', '.join(a.name for a in exp.arms)}",
        "",
        "Arms (reward weights explanation, format, answer): "
        + "; ".join(f"`{a.name}` {a.weights.as_tuple()}" for a in exp.arms)
        + f". Same cold start, seeds and prompt order; {config.train.run.steps} GRPO steps of "
        f"{config.train.run.prompts_per_step} prompts x G = {config.train.rollout.group_size}. Judge of the "
        f"explanations: `{exp.judge}`. Percentages, bootstrap 95% intervals ({exp.bootstrap_resamples} resamples "
        "of the test prompts).",
        "",
    ]
    judge_file = exp_dir / "judge.json"
    if judge_file.is_file():
        j = json.loads(judge_file.read_text())
        line = (f"Judge held-out quality ({j['held_out_sentences']} sentences of the other half of data/erv): "
                f"decision accuracy {100 * j['decision_accuracy']:.1f}%, macro-F1@0.5 {100 * j['macro_f1_0.5']:.1f}%")  # fmt: skip
        if "agreement_with_erv" in j:
            line += (f"; agreement with the reward ERV {100 * j['agreement_with_erv_decision_sentences']:.1f}% "
                     f"on sentences with a dataset label (kappa {j['kappa_with_erv']:.2f} on all)")  # fmt: skip
        lines += [line + ".", ""]
    for arm, rows in evals.items():
        done = [r["step"] for r in rows]
        if done != planned:
            lines.append(f"- `{arm}`: evaluated at steps {done} of {planned} (experiment not finished)")
    lines += ["", "## Last evaluated step", "", "| arm | step | " + " | ".join(METRICS) + " |",
              "| --- | --- |" + " --- |" * len(METRICS)]  # fmt: skip
    first = next((rows[0] for rows in evals.values() if rows and rows[0]["step"] == 0), None)
    if first is not None:
        lines.append("| cold start | 0 | " + " | ".join(_cell(first, m) for m in METRICS) + " |")
    for arm, rows in evals.items():
        if rows:
            lines.append(
                f"| {arm} | {rows[-1]['step']} | " + " | ".join(_cell(rows[-1], m) for m in METRICS) + " |"
            )
    ref = evals.get(exp.reference_arm) or []
    others = [(arm, rows) for arm, rows in evals.items() if arm != exp.reference_arm and rows and ref]
    if others:
        lines += ["", f"## Paired differences (arm - {exp.reference_arm}) at the last step both reached", "",
                  "| arm | step | " + " | ".join(METRICS) + " |", "| --- | --- |" + " --- |" * len(METRICS)]  # fmt: skip
        for arm, rows in others:
            common = sorted({r["step"] for r in rows} & {r["step"] for r in ref})[-1]
            a = next(r for r in rows if r["step"] == common)
            b = next(r for r in ref if r["step"] == common)
            d = paired_difference_ci(_sample(a), _sample(b), exp.bootstrap_resamples, exp.bootstrap_seed)
            cells = [f"{100 * d[m][0]:+.1f} [{100 * d[m][1]:+.1f}, {100 * d[m][2]:+.1f}]" for m in METRICS]
            lines.append(f"| {arm} | {common} | " + " | ".join(cells) + " |")
    lines += ["", "## Every evaluation", "", "| arm | step | " + " | ".join(METRICS) + " |",
              "| --- | --- |" + " --- |" * len(METRICS)]  # fmt: skip
    for arm, rows in evals.items():
        lines += [f"| {arm} | {r['step']} | " + " | ".join(_cell(r, m) for m in METRICS) + " |" for r in rows]
    lines += ["", "## Training rewards (mean over the arm's steps; components unweighted)", "",
              "| arm | steps | R total (weighted) | R_explanation | R_format | R_answer | KL |",
              "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for a in exp.arms:
        m = _mean_rewards(exp_dir / a.name)
        if m:
            lines.append(f"| {a.name} | {m['steps']} | {m['reward/total']:.3f} | {m['reward/explanation']:.3f} | "
                         f"{m['reward/format']:.3f} | {m['reward/answer']:.3f} | {m['kl']:.5f} |")  # fmt: skip
    if any(evals.values()):
        lines += ["", "## Curves", ""]
        for metric in METRICS:
            plot_metric(metric, {k: v for k, v in evals.items() if v}, exp_dir / f"{metric}.png")
            lines.append(f"![{metric}]({metric}.png)")
    path = exp_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
