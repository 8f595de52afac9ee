"""Every metric the dashboard, the rules and the autoscaler use is exported: scraped from a real
reward service (`erv-grpo reward serve`, tiny ERV, loopback) and from the training exporter.

A name with a colon must be recorded by a rule (whose own expression is checked in turn); any
other name must appear on a /metrics page. So the dashboards cannot silently go blank.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

import httpx
import pytest

from tests.deploy.conftest import DEPLOY, ROOT
from tests.support.metric_names import (
    autoscaler_names,
    dashboard_exprs,
    exported_names,
    promql_metric_names,
    rules_names,
)

RULES = DEPLOY / "monitoring/rules/erv-grpo.rules.yml"
DASHBOARD = DEPLOY / "monitoring/grafana/erv-grpo.json"
ADAPTER = DEPLOY / "monitoring/prometheus-adapter.yaml"


def test_promql_scan():
    expr = (
        'sum by (le, rpc) (rate(a_bucket{code!="OK", x=~"b|c"}[5m])) / clamp_min(rec:b:rate1m, 1e-9)'
        " and on() (d > 0.5 * avg_over_time(e[1h] offset 15m)) or vector(0) unless f_total offset 1h"
    )
    assert promql_metric_names(expr) == {"a_bucket", "rec:b:rate1m", "d", "e", "f_total"}
    assert promql_metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))"
    ) == {"x_bucket"}


def test_exported_names_expand_types():
    page = (
        "# HELP r_total c\n# TYPE r_total counter\n"
        "# HELP h s\n# TYPE h histogram\n"
        "# HELP g x\n# TYPE g gauge\ng 1.0\n"
    )
    assert exported_names(page) >= {"r_total", "h_bucket", "h_sum", "h_count", "g"}
    assert "h" in exported_names(page) and "r" in exported_names(page)


def used_names(rendered_objects) -> dict[str, set[str]]:
    """{source: raw metric names}, with recording-rule names replaced by what they read."""
    rule_used, recorded = rules_names(RULES)
    sources = {
        "dashboard": set().union(*(promql_metric_names(e) for e in dashboard_exprs(DASHBOARD))),
        "rules": rule_used,
        "autoscaler": autoscaler_names(rendered_objects, ADAPTER),
    }
    for source, names in sources.items():
        missing_records = {n for n in names if ":" in n} - recorded
        assert not missing_records, f"{source} uses recording rules that no rule defines: {missing_records}"
        sources[source] = {n for n in names if ":" not in n}
    return sources


@pytest.fixture(scope="module")
def reward_metrics_page(tmp_path_factory) -> str:
    """/metrics of a real `erv-grpo reward serve` after gRPC and HTTP traffic (OK and an error)."""
    from tests.support.tiny_erv import build_tiny_erv

    tmp = tmp_path_factory.mktemp("reward_scrape")
    model_dir = build_tiny_erv(tmp / "erv")
    ready = tmp / "ready"
    cmd = [sys.executable, "-m", "orchestrator.cli", "reward", "serve", "--model-dir", str(model_dir),
           "--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0", "--num-threads", "1",
           "--drain-seconds", "1", "--ready-file", str(ready)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (ready.is_file() and ready.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"reward service did not start:\n{proc.stdout.read() if proc.poll() is not None else ''}"
                )
            time.sleep(0.2)
        grpc_port, http_port = ready.read_text().split()
        _traffic(grpc_port, http_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as resp:
            return resp.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _traffic(grpc_port: str, http_port: str) -> None:
    from reward_service.client import Completion, RewardClient

    text = "<think>She smiles and laughs. The music is bright.</think><answer>happy</answer>"

    async def grpc_calls():
        async with RewardClient(f"127.0.0.1:{grpc_port}") as client:
            await client.wait_ready(60)
            scores = await client.score([Completion("c1", text, "happy"), Completion("c2", "no tags", "sad")])
            assert set(scores) == {"c1", "c2"}
            await client.score([Completion("c1", text, "happy")], request_id="same")
            await client.score([Completion("c1", text, "happy")], request_id="same")  # replay

    asyncio.run(grpc_calls())
    url = f"http://127.0.0.1:{http_port}/v1/score"
    ok = httpx.post(
        url, json={"completions": [{"id": "h1", "text": text, "ground_truth": "happy"}]}, timeout=30
    )
    assert ok.status_code == 200, ok.text
    bad = httpx.post(
        url, json={"completions": [{"id": "h1", "text": text, "ground_truth": "happy"}] * 2}, timeout=30
    )
    assert bad.status_code >= 400  # duplicate ids: an error code in erv_reward_requests_total


@pytest.fixture(scope="module")
def training_metrics_page(tmp_path_factory) -> str:
    """/metrics of the training exporter (orchestrator/tracking.py MetricsSink) after one logged step."""
    from orchestrator.tracking import MetricsSink

    sink = MetricsSink(tmp_path_factory.mktemp("train_scrape"), prometheus_port=0, tensorboard=False)
    try:
        record = {"step": 1, "policy_version": 1, "kl": 0.01, "clip_fraction": 0.1, "tokens_per_second": 50.0,
                  "zero_signal_groups": 1, "worker_tokens_per_second/0": 25.0, "worker_tokens_per_second/1": 25.0,
                  "rollout_worker_restarts/0": 1, "rollout_workers": 2, "staleness/groups": [0, 1]}  # fmt: skip
        record.update({f"reward/{c}": 0.5 for c in ("explanation", "format", "answer", "total")})
        record.update({f"phase/{p}": 1.0 for p in ("generate", "reward_wait", "update", "weight_sync")})
        sink.log(record)
        with urllib.request.urlopen(f"http://127.0.0.1:{sink.prometheus_port}/metrics", timeout=10) as resp:
            return resp.read().decode()
    finally:
        sink.close()


@pytest.mark.slow
def test_every_used_metric_is_exported(rendered, reward_metrics_page, training_metrics_page):
    exported = exported_names(reward_metrics_page) | exported_names(training_metrics_page)
    sources = used_names(rendered["a100"])
    for source, names in sources.items():
        assert names, source
        missing = sorted(names - exported)
        assert not missing, f"{source} uses metrics nobody exports: {missing}"
    # The services' pages really carry samples for the headline series, not only declarations.
    assert 'erv_reward_requests_total{code="OK",rpc=' in reward_metrics_page
    assert "erv_reward_completions_total 4.0" in reward_metrics_page
    assert 'erv_grpo_phase_seconds{phase="reward_wait"} 1.0' in training_metrics_page


def test_a_made_up_name_would_be_caught(rendered):
    sources = used_names(rendered["a100"])
    assert "erv_reward_queue_depth" in sources["autoscaler"]
    assert "erv_reward_queue_dpth" not in exported_names(
        "# TYPE erv_reward_queue_depth gauge\nerv_reward_queue_depth 0\n"
    )
