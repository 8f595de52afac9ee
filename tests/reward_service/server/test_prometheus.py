"""A real, independent client: Prometheus scrapes the service's /metrics and PromQL reads the throughput back.

Needs the Debian package `prometheus` (`make sysdeps`); our own prometheus binary runs on a free
loopback port with its own storage folder, and is stopped by the test.
"""

import asyncio
import random
import shutil
import subprocess

import httpx
import pytest

from reward_service.client import RewardClient
from reward_service.erv.model import ErvModel
from tests.support.service_helpers import free_port, make_group, running_service

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("promtool") is None,
        reason="needs the Debian package prometheus (make sysdeps)",
    ),
]


async def query(http: httpx.AsyncClient, promql: str) -> float | None:
    data = (await http.get("/api/v1/query", params={"query": promql})).json()
    assert data["status"] == "success", data
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_reward_throughput(tiny_erv_dir, tmp_path):
    erv = ErvModel.load(tiny_erv_dir, num_threads=1)
    prom_port = free_port()
    rng = random.Random(0)
    requests = 24  # 24 groups of 16 completions, spread over a few scrape intervals

    async def main():
        async with running_service(erv) as svc:
            async with httpx.AsyncClient() as http:
                metrics_text = (await http.get(f"http://127.0.0.1:{svc.http_port}/metrics")).text
            lint = subprocess.run(
                ["promtool", "check", "metrics"], input=metrics_text, capture_output=True, text=True
            )
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
                f"  - job_name: erv-reward\n    static_configs:\n      - targets: ['127.0.0.1:{svc.http_port}']\n"
            )
            checked = subprocess.run(
                ["promtool", "check", "config", str(config)], capture_output=True, text=True
            )
            prom = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}", timeout=5) as http:
                    for _ in range(600):  # until Prometheus is ready and has scraped the target once
                        try:
                            # Before /-/ready, the query API answers 503 "Service Unavailable" (not JSON).
                            ready_now = (await http.get("/-/ready")).status_code == 200
                            if ready_now and await query(http, 'up{job="erv-reward"}') == 1.0:
                                break
                        except httpx.TransportError:
                            pass
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError("prometheus never scraped the reward service")
                    async with (
                        RewardClient(f"127.0.0.1:{svc.grpc_port}") as client,
                        client.stream() as stream,
                    ):
                        for i in range(requests):  # ~4 s of load: several scrapes see the counter rise
                            await stream.score(make_group(rng, f"p{i}"))
                            await asyncio.sleep(0.15)
                    scored = svc.metrics.completions._value.get()
                    total = rate = None
                    for _ in range(100):  # wait for a scrape after the last request
                        total = await query(
                            http, 'max_over_time(erv_reward_completions_total{job="erv-reward"}[1m])'
                        )
                        rate = await query(
                            http, 'sum(rate(erv_reward_completions_total{job="erv-reward"}[1m]))'
                        )
                        if total == scored and rate:
                            break
                        await asyncio.sleep(0.2)
                    ok = await query(http, 'sum(erv_reward_requests_total{job="erv-reward",code="OK"})')
                    ready = await query(http, 'erv_reward_ready{job="erv-reward"}')
                    p99 = await query(
                        http,
                        "histogram_quantile(0.99, sum by (le) (rate(erv_reward_request_seconds_bucket[1m])))",
                    )
            finally:
                prom.terminate()
                prom.wait(timeout=20)
            return lint, checked, scored, total, rate, ok, ready, p99

    lint, checked, scored, total, rate, ok, ready, p99 = asyncio.run(main())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert scored == requests * 16
    assert total == scored  # the throughput counter, read back through PromQL
    assert rate is not None and rate > 0
    assert ok == requests and ready == 1.0
    assert p99 is not None and p99 > 0
