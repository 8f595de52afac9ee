"""Hostile-input probe of a running reward service: stall, poison and memory figures (issue 12).

Runs in the user's shell process: `python -m reward_service.bench.hostile --model-dir DIR`. It
starts `python -m reward_service.server` as a subprocess on loopback, then measures

- stall: one valid 64-completion request of `<think>` repeated without a closing tag, while
  /healthz is polled with a 1 s timeout (the liveness probe's view of the event loop);
- poison: 12 concurrent innocent gRPC requests beside one HTTP request with a lone surrogate;
- memory: server RSS after many rejected requests with ids, and after return_sentences results.

Prints one JSON object; figures are what docs/results/reward_service_hostile.md reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common.errors import error_line
from reward_service.client import Completion, RewardClient, RewardClientError
from reward_service.errors import BenchError

WORDS = "she he smiles cries laughs frowns at the table window door softly loudly warmly again".split()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _innocent(rng: random.Random, prefix: str) -> list[Completion]:
    def sentence() -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(5, 12))).capitalize() + "."

    return [
        Completion(f"{prefix}-{i}", f"<think>{' '.join(sentence() for _ in range(8))}</think><answer>happy</answer>", "happy")
        for i in range(16)
    ]  # fmt: skip


async def _poll_health(http: httpx.AsyncClient, stop: asyncio.Event, out: list) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            ok = (await http.get("/healthz", timeout=1.0)).status_code == 200
        except httpx.HTTPError:
            ok = False
        out.append((ok, time.monotonic() - started))
        await asyncio.sleep(0.25)


async def stall(grpc_address: str, http: httpx.AsyncClient) -> dict:
    text = ("<think>" * 3000)[:20_000]
    completions = [Completion(f"t{i}", text, "happy") for i in range(64)]
    probes: list = []
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_health(http, stop, probes))
    started = time.monotonic()
    async with RewardClient(grpc_address, max_attempts=1, deadline_s=600) as client:
        await client.score(completions, request_id="stall")
    seconds = time.monotonic() - started
    stop.set()
    await poller
    return {
        "request_s": round(seconds, 2),
        "health_probes": len(probes),
        "health_failed": sum(1 for ok, _ in probes if not ok),
        "health_max_s": round(max(s for _, s in probes), 3),
    }


async def poison(grpc_address: str, http: httpx.AsyncClient, rounds: int = 3) -> dict:
    rng = random.Random(0)
    outcomes: dict[str, int] = {}
    poison_status = []
    body = json.dumps(
        {
            "request_id": "",
            "completions": [
                {"id": "p", "text": "<think>She smiles. \\ud800 He waits.</think>", "ground_truth": "happy"}
            ],
        }  # fmt: skip
    ).replace("\\\\ud800", "\\ud800")
    async with RewardClient(grpc_address, max_attempts=1, deadline_s=120) as client:
        for r in range(rounds):

            async def one(i: int, r: int = r) -> str:
                try:
                    await client.score(_innocent(rng, f"r{r}-i{i}"))
                    return "OK"
                except RewardClientError as err:
                    return str(getattr(err, "code", type(err).__name__)).replace("StatusCode.", "")

            innocent = [asyncio.create_task(one(i)) for i in range(12)]
            await asyncio.sleep(0.002)
            resp = await http.post("/v1/score", content=body, headers={"content-type": "application/json"})
            poison_status.append(resp.status_code)
            for code in await asyncio.gather(*innocent):
                outcomes[code] = outcomes.get(code, 0) + 1
    return {"innocent": outcomes, "poison_http_status": poison_status}


async def memory(grpc_address: str, http: httpx.AsyncClient, pid: int, rejected: int, results: int) -> dict:
    text = ("She smiles warmly at him. " * 800)[:19_980]  # with the tags: under max_completion_chars
    start = _rss_mb(pid)
    for i in range(rejected):  # ~350 KB each, rejected (the last completion carries a lone surrogate)
        comps = [{"id": f"c{j}", "text": text, "ground_truth": "happy"} for j in range(16)]
        comps[-1]["text"] = text[:-10] + " \\ud800."
        raw = json.dumps({"request_id": f"rej-{i}", "completions": comps}).replace("\\\\ud800", "\\ud800")
        await http.post("/v1/score", content=raw, headers={"content-type": "application/json"})
    after_rejected = _rss_mb(pid)
    async with RewardClient(grpc_address, max_attempts=1, deadline_s=600) as client:
        for i in range(results):  # ~5 MB of sentences per result, kept for replays
            comps = [Completion(f"c{j}", f"<think>{text}</think>", "happy") for j in range(256)]
            await client.score(comps, request_id=f"big-{i}", return_sentences=True)
    after_results = _rss_mb(pid)
    return {
        "rss_start_mb": round(start),
        f"rss_growth_after_{rejected}_rejected_mb": round(after_rejected - start),
        f"rss_growth_after_{results}_return_sentences_mb": round(after_results - after_rejected),
    }


async def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        cmd = [sys.executable, "-m", "reward_service.server", "--model-dir", str(args.model_dir),
               "--grpc-port", "0", "--http-port", "0", "--ready-file", str(ready),
               "--num-threads", str(args.threads)]  # fmt: skip
        if args.config:
            cmd += ["--config", str(args.config)]
        proc = subprocess.Popen(cmd, env=os.environ.copy())
        try:
            while not ready.exists():
                if proc.poll() is not None:
                    raise BenchError(f"reward server exited with {proc.returncode} before it was ready")
                await asyncio.sleep(0.1)
            grpc_port, http_port = ready.read_text().split()
            address = f"127.0.0.1:{grpc_port}"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=600) as http:
                out = {}
                stages = {
                    "stall": lambda: stall(address, http),
                    "poison": lambda: poison(address, http),
                    "memory": lambda: memory(address, http, proc.pid, args.rejected, args.results),
                }
                for name in args.only:
                    try:
                        out[name] = await stages[name]()
                    except Exception as err:  # one failed stage still reports the others
                        out[name] = {"error": f"{type(err).__name__}: {err}"}
                    print(name, json.dumps(out[name]), file=sys.stderr, flush=True)
                return out
        finally:
            proc.terminate()
            proc.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reward_service.bench.hostile", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path(".cache/models/erv-minilm"))
    parser.add_argument("--config", type=Path, help="RewardServiceConfig YAML for the server")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the server")
    parser.add_argument("--rejected", type=int, default=1000, help="rejected requests with ids (memory)")
    parser.add_argument("--results", type=int, default=40, help="return_sentences requests (memory)")
    parser.add_argument("--only", nargs="+", default=["stall", "poison", "memory"])
    print(json.dumps(asyncio.run(run(parser.parse_args(argv))), indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        sys.exit(error_line(err))
