"""Summarise a device-check run: the steps, the ERV and reward-service figures, and the goals.

Runs as its own process at the end of scripts/device_check.sh: `python scripts/device_summary.py
RESULTS_DIR MODE`. Reads RESULTS_DIR/steps.tsv, erv-torch-*.json and reward-torch-*.json; writes
RESULTS_DIR/summary.json and prints a Markdown summary (which the script saves as summary.md).
Goals (issue 17, one H200, RoBERTa-base size): ERV >= 40,000 sentences/s; the reward stream >= 5x
the per-request POST baseline with the real-size model. In the CPU dry run they are not goals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ERV_GOAL = 40_000
STREAM_GOAL = 5.0


def main(results: Path, mode: str) -> dict:
    steps = [line.split("\t") for line in (results / "steps.tsv").read_text().splitlines()[1:] if line]
    summary: dict = {
        "mode": mode,
        "steps": {name: {"rc": int(rc), "seconds": int(s)} for name, rc, s in steps},
    }
    for path in sorted(results.glob("erv-torch-*.json")):
        r = json.loads(path.read_text())
        summary[path.stem] = {k: r.get(k) for k in (
            "device", "dtype", "batch_size", "sentences", "mean_tokens", "erv_sentences_per_s", "erv_tokens_per_s",
            "torch_sentences_per_s", "speedup", "max_abs_prob_diff", "max_abs_prob_diff_vs_onnx_cpu",
        )}  # fmt: skip
        summary[path.stem]["gpu"] = r.get("machine", {}).get("gpu")
    for path in sorted(results.glob("reward-torch-*.json")):
        r = json.loads(path.read_text())
        entry = {"stream_vs_baseline_post": r.get("stream_vs_baseline_post_throughput"),
                 "stream_vs_our_post": r.get("stream_vs_post_throughput"),
                 "stream_completions_per_s": r["modes"]["grpc_stream"]["completions_per_s"],
                 "baseline_completions_per_s": r["modes"]["baseline_post_per_completion"]["completions_per_s"],
                 "bare_model_completions_per_s": r["modes"]["bare_model"]["completions_per_s"]}  # fmt: skip
        if "serving_ceiling" in r:
            entry["ceiling_stream_vs_baseline_post"] = r["serving_ceiling"][
                "stream_vs_baseline_post_throughput"
            ]
        summary[path.stem] = entry
    bf16 = summary.get("erv-torch-cuda-bfloat16", {})
    reward = next((v for k, v in summary.items() if k.startswith("reward-torch-cuda")), {})
    if mode == "device":
        rate, ratio = bf16.get("erv_sentences_per_s"), reward.get("stream_vs_baseline_post")
        summary["goals"] = {
            "erv_sentences_per_s_at_least_40000": None if rate is None else rate >= ERV_GOAL,
            "stream_at_least_5x_baseline_post": None if ratio is None else ratio >= STREAM_GOAL,
        }
    else:
        summary["goals"] = "not applicable: CPU dry run (2-layer model, tiny workloads)"
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    lines = [f"# device check ({mode})", "", "| step | rc | seconds |", "| --- | --- | --- |"]
    lines += [f"| {n} | {v['rc']} | {v['seconds']} |" for n, v in summary["steps"].items()]
    for key, value in summary.items():
        if key.startswith(("erv-torch", "reward-torch")):
            lines += ["", f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items())]
    lines += ["", f"goals: {summary['goals']}"]
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
