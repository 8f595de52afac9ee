"""Generates the Grafana dashboard deploy/monitoring/grafana/erv-grpo.json with grafanalib.

Run on a developer machine (not in any service): `python deploy/monitoring/dashboard.py` rewrites
the JSON; tests/deploy/test_dashboard.py checks that the committed JSON equals this output and
that every metric it queries is exported by a running reward service and a training run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, RowPanel, Target, Template, Templating, Time, TimeSeries

OUT = Path(__file__).resolve().parent / "grafana" / "erv-grpo.json"
DATASOURCE = "${datasource}"
RATE = "$__rate_interval"


def panel(
    title: str, unit: str, targets: list[tuple[str, str]], pos: tuple[int, int, int, int], **kw
) -> TimeSeries:
    """A time series panel; targets are (PromQL, legend) pairs, pos is (x, y, w, h) on the 24-column grid."""
    x, y, w, h = pos
    return TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        targets=[
            Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i))
            for i, (expr, legend) in enumerate(targets)
        ],
        unit=unit,
        gridPos=GridPos(h=h, w=w, x=x, y=y),
        **kw,
    )


def reward_panels(y: int) -> list:
    return [
        RowPanel(title="Reward service", gridPos=GridPos(h=1, w=24, x=0, y=y)),
        panel(
            "Reward throughput",
            "ops",
            [
                ("erv_reward:completions:rate1m", "completions/s"),
                ("erv_reward:sentences:rate1m", "sentences/s"),
            ],
            (0, y + 1, 12, 8),
        ),
        panel(
            "Queue depth (sentences waiting)",
            "short",
            [("sum by (pod) (erv_reward_queue_depth)", "{{pod}}")],
            (12, y + 1, 12, 8),
        ),
        panel(
            "Model batch size (sentences)",
            "short",
            [
                (f"histogram_quantile(0.5, sum by (le) (rate(erv_reward_batch_size_bucket[{RATE}])))", "p50"),
                (
                    f"histogram_quantile(0.99, sum by (le) (rate(erv_reward_batch_size_bucket[{RATE}])))",
                    "p99",
                ),
                ("erv_reward:batch_size:mean_5m", "mean"),
            ],
            (0, y + 9, 8, 8),
        ),
        panel(
            "Request latency",
            "s",
            [
                ("erv_reward:request_seconds:p50_5m", "request p50"),
                ("erv_reward:request_seconds:p99_5m", "request p99"),
                (
                    f"histogram_quantile(0.99, sum by (le) (rate(erv_reward_queue_seconds_bucket[{RATE}])))",
                    "queue p99",
                ),
                (
                    f"histogram_quantile(0.99, sum by (le) (rate(erv_reward_inference_seconds_bucket[{RATE}])))",
                    "inference p99",
                ),
            ],
            (8, y + 9, 8, 8),
        ),
        panel(
            "Errors by code",
            "reqps",
            [
                (
                    f'sum by (code, rpc) (rate(erv_reward_requests_total{{code!="OK"}}[{RATE}]))',
                    "{{rpc}} {{code}}",
                )
            ],
            (16, y + 9, 8, 8),
        ),
        panel(
            "Sentence cache hit ratio",
            "percentunit",
            [
                (
                    f"sum(rate(erv_reward_sentence_cache_hits_total[{RATE}])) / clamp_min("
                    f"sum(rate(erv_reward_sentence_cache_hits_total[{RATE}]))"
                    f" + sum(rate(erv_reward_sentence_cache_misses_total[{RATE}])), 1e-9)",
                    "hit ratio",
                )
            ],
            (0, y + 17, 8, 7),
        ),
        panel(
            "Ready replicas / idempotent replays",
            "short",
            [
                ("erv_reward:ready_replicas", "ready replicas"),
                (f"sum(rate(erv_reward_idempotent_replays_total[{RATE}]))", "replays/s"),
            ],
            (8, y + 17, 8, 7),
        ),
        panel(
            "Reward values returned (mean by component)",
            "short",
            [
                (
                    f"sum by (component) (rate(erv_reward_value_sum[{RATE}]))"
                    f" / clamp_min(sum by (component) (rate(erv_reward_value_count[{RATE}])), 1e-9)",
                    "{{component}}",
                )
            ],
            (16, y + 17, 8, 7),
        ),
    ]


def training_panels(y: int) -> list:
    return [
        RowPanel(title="GRPO training", gridPos=GridPos(h=1, w=24, x=0, y=y)),
        panel("Reward components", "short", [("erv_grpo_reward", "{{component}}")], (0, y + 1, 12, 8)),
        panel(
            "KL to reference / clip fraction",
            "short",
            [("erv_grpo_kl", "kl"), ("erv_grpo_clip_fraction", "clip fraction")],
            (12, y + 1, 12, 8),
        ),
        panel(
            "Time per training phase (last step)",
            "s",
            [("erv_grpo_phase_seconds", "{{phase}}")],
            (0, y + 9, 12, 8),
            stacking={"mode": "normal", "group": "A"},
            fillOpacity=40,
        ),
        panel(
            "Rollout tokens/s per worker",
            "short",
            [
                ("erv_grpo_rollout_tokens_per_second", "worker {{worker}}"),
                ("erv_grpo_tokens_per_second", "step total"),
            ],
            (12, y + 9, 12, 8),
        ),
        panel(
            "Step / policy version / zero-signal groups / skipped clips",
            "short",
            [
                ("erv_grpo_step", "step"),
                ("erv_grpo_policy_version", "policy version"),
                ("erv_grpo_zero_signal_groups_total", "zero-signal groups (total)"),
                ("erv_grpo_media_errors_total", "unreadable clips skipped (total)"),
            ],
            (0, y + 17, 12, 7),
        ),
        panel(
            "Engine vs learner logprobs (mean |diff|; fp32 parity ~1e-5)",
            "short",
            [
                ("erv_grpo_sampler_logprob_abs_diff", "sampled batch"),
                ("erv_grpo_sync_logprob_abs_diff", "after weight sync"),
                ("erv_grpo_logprob_diff_warn_above", "warn threshold"),
            ],
            (12, y + 17, 12, 7),
        ),
        panel(
            "Rollout workers / restarts (dead actor or engine replaced)",
            "short",
            [
                ("erv_grpo_rollout_workers", "workers in the pool"),
                (
                    "sum by (worker) (increase(erv_grpo_rollout_worker_restarts_total[15m]))",
                    "restarts in 15 min, worker {{worker}}",
                ),
            ],
            (0, y + 24, 12, 7),
        ),  # fmt: skip
        panel(
            "Async rollouts: staleness, stale groups, overlap",
            "short",
            [
                (
                    f"histogram_quantile(0.99, sum by (le) (rate(erv_grpo_group_staleness_bucket[{RATE}])))",
                    "staleness p99 (versions)",
                ),
                (
                    f"sum(rate(erv_grpo_group_staleness_sum[{RATE}])) / "
                    f"clamp_min(sum(rate(erv_grpo_group_staleness_count[{RATE}])), 1e-9)",
                    "staleness mean",
                ),
                ("increase(erv_grpo_stale_groups_dropped_total[15m])", "stale groups dropped (15 min)"),
                ("erv_grpo_overlap_seconds", "generation during update (s)"),
                ('erv_grpo_is_weight{stat="mean"}', "IS weight mean"),
            ],
            (12, y + 24, 12, 7),
        ),  # fmt: skip
    ]


def build_dashboard() -> Dashboard:
    return Dashboard(
        title="erv-grpo: reward service and GRPO training",
        uid="erv-grpo",
        description="Reward throughput, queue, batching, latency and errors of the ERV reward service; "
        "reward components, KL, phase times and rollout throughput of training.",
        tags=["erv-grpo"],
        timezone="browser",
        refresh="30s",
        time=Time("now-6h", "now"),
        templating=Templating(
            list=[
                Template(
                    name="datasource", label="Prometheus", query="prometheus", type="datasource", default=""
                )
            ]
        ),
        panels=reward_panels(0) + training_panels(25),
    ).auto_panel_ids()


def render() -> str:
    """The dashboard JSON, deterministic (sorted keys), newline-terminated."""
    return json.dumps(build_dashboard().to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
