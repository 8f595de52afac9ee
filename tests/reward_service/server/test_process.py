"""The reward service as a real process: kill -9 and restart under load, SIGTERM drain, CLI errors."""

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reward_service.client import RewardClient
from reward_service.core import reward
from reward_service.erv.model import ErvModel
from reward_service.proto_gen import reward_pb2, reward_pb2_grpc
from tests.support.service_helpers import free_port, make_group

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(300)  # a hung server fails the test instead of the whole run


def start_server(model_dir, grpc_port, http_port, ready_file, *extra):
    ready_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "reward_service.server", "--model-dir", str(model_dir), "--host", "127.0.0.1",
           "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--num-threads", "1",
           "--ready-file", str(ready_file), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(2400):  # up to 120 s: imports and model load are slow on a busy CI box
        if ready_file.exists() and ready_file.read_text().strip():
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not become ready")


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_kill_9_and_restart_under_load_every_completion_scored_once(tiny_erv_dir, tmp_path):
    rng = random.Random(0)
    grpc_port, http_port = free_port(), free_port()
    ready = tmp_path / "ready"
    clients, per_client = 8, 12  # 8 * 12 * 16 = 1,536 completions
    groups = {(c, r): make_group(rng, f"k{c}-{r}") for c in range(clients) for r in range(per_client)}
    done = []
    procs = [start_server(tiny_erv_dir, grpc_port, http_port, ready)]

    async def one_client(c, client):
        results = {}
        async with client.stream() as stream:
            for r in range(per_client):  # paced, so the kill lands in the middle of the run
                scores = await stream.score(groups[c, r], request_id=f"k{c}-{r}", deadline_s=120)
                for cid in scores:
                    assert cid not in results, f"{cid} delivered twice"
                results.update(scores)
                done.append(1)
                await asyncio.sleep(0.05)
        return results

    async def killer():
        while len(done) < clients * per_client // 4:
            await asyncio.sleep(0.01)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        killed_at = len(done)
        await asyncio.sleep(0.5)  # clients now hit UNAVAILABLE and back off
        procs.append(await asyncio.to_thread(start_server, tiny_erv_dir, grpc_port, http_port, ready))
        return killed_at

    async def main():
        rewards = [RewardClient(f"127.0.0.1:{grpc_port}", max_attempts=200, backoff_initial_s=0.05, backoff_max_s=0.5)
                   for _ in range(clients)]  # fmt: skip
        try:
            results = await asyncio.gather(killer(), *(one_client(c, rewards[c]) for c in range(clients)))
        finally:
            for client in rewards:
                await client.close()
        return results[0], results[1:], sum(client.retries for client in rewards)

    try:
        killed_at, per_client_results, retries = asyncio.run(main())
    finally:
        for proc in procs:
            stop(proc)
    assert killed_at < clients * per_client  # the kill happened with work outstanding
    assert retries > 0
    scored = {}
    for results in per_client_results:
        assert not scored.keys() & results.keys()
        scored.update(results)
    by_id = {c.id: c for g in groups.values() for c in g}
    assert set(scored) == set(by_id)
    model = ErvModel.load(tiny_erv_dir, num_threads=1)
    for cid in rng.sample(sorted(by_id), 200):  # same scores as in-process, before and after the restart
        c = by_id[cid]
        want = reward.score_completion(
            c.text, c.ground_truth, lambda s: (model.predict_proba(s), model.labels)
        )
        assert scored[cid].total == pytest.approx(want.total, abs=1e-9)


def test_sigterm_drains_in_flight_work_and_exits_0(tiny_erv_dir, tmp_path):
    grpc_port, http_port = free_port(), free_port()
    # a long batch wait keeps one request queued while we send SIGTERM
    proc = start_server(tiny_erv_dir, grpc_port, http_port, tmp_path / "ready", "--max-wait-ms", "3000",
                        "--drain-seconds", "20")  # fmt: skip
    completion = reward_pb2.Completion(
        id="a", text="<think>The man smiles.</think><answer>happy</answer>", ground_truth="happy"
    )

    async def main():
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = reward_pb2_grpc.RewardServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            in_flight = asyncio.ensure_future(
                stub.Score(reward_pb2.ScoreRequest(request_id="r", completions=[completion]))
            )
            async with httpx.AsyncClient() as http:
                while (
                    "erv_reward_queue_depth 1.0"
                    not in (await http.get(f"http://127.0.0.1:{http_port}/metrics")).text
                ):
                    await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            while (
                await health.Check(health_pb2.HealthCheckRequest())
            ).status != health_pb2.HealthCheckResponse.NOT_SERVING:
                await asyncio.sleep(0.02)
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await stub.Score(reward_pb2.ScoreRequest(request_id="late", completions=[completion]))
            return await in_flight, late.value.code()

    try:
        response, late_code = asyncio.run(main())
        exit_code = proc.wait(timeout=30)
    finally:
        stop(proc)
    assert [s.id for s in response.scores] == ["a"] and response.scores[0].format == 1.0
    assert late_code == grpc.StatusCode.UNAVAILABLE
    assert exit_code == 0


def test_cli_help_and_config_errors(tmp_path, tiny_erv_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "orchestrator.cli", "reward", "serve"]
    helped = subprocess.run([*cli, "--help"], capture_output=True, text=True, env=env, cwd=REPO)
    assert helped.returncode == 0
    for option in ("--model-dir", "--host", "--grpc-port", "--http-port", "--config", "--tls-cert", "--tls-key",
                   "--tls-client-ca", "--token-file", "--drain-seconds"):  # fmt: skip
        assert option in helped.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model_dir: {tiny_erv_dir}\nmax_wait_msec: 3\n")
    failed = subprocess.run([*cli, "--config", str(bad)], capture_output=True, text=True, env=env, cwd=REPO)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "erv-grpo: error:" in failed.stderr and "max_wait_msec" in failed.stderr
    missing = subprocess.run(
        [*cli, "--model-dir", str(tmp_path / "nope")], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert missing.returncode != 0 and "--model-dir" in missing.stderr and "Traceback" not in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run([*cli, "--model-dir", str(tiny_erv_dir), "--grpc-port", "0", "--http-port", str(port)],
                              capture_output=True, text=True, env=env, cwd=REPO)  # fmt: skip
    assert busy.returncode != 0 and f"cannot bind HTTP to 127.0.0.1:{port}" in busy.stderr
    assert "Traceback" not in busy.stderr
