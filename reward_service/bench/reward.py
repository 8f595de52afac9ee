"""`erv-grpo bench reward`: reward service throughput over loopback, four ways, in one run.

Runs in the user's shell process and starts each server as a subprocess on free loopback
ports (a fresh one per mode, so no mode finds another's sentences cached). Same workload for
every mode: GRPO groups of completions, either synthetic (about 8 explanation sentences each,
all distinct) or read from a file of sampled groups (`bench rollout --save-groups`):
  - grpc_stream: K concurrent clients, each with one ScoreStream, one request per group;
  - json_post_per_completion: K concurrent clients, one JSON POST per completion to our
    service's /v1/score (which joins the same cross-request batches);
  - baseline_post_per_completion: the same POSTs to a per-request server (bench/baseline.py),
    how RL frameworks call and serve a remote reward model: one model call per request;
  - bare_model: ErvModel in this process, one predict_proba per group, no server.
Writes completions/s, sentences/s and p50/p99 latency to a JSON file (bench/results/reward.json).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reward_service.core import reward
from reward_service.errors import BenchError

_SUBJECTS = ["The woman", "The man", "The speaker", "The girl", "The older man", "The young woman", "He", "She",
             "The boy", "The interviewer", "The actress", "Her friend"]  # fmt: skip
_ACTIONS = ["smiles broadly", "frowns and looks away", "clenches his jaw", "lowers her eyes", "raises both eyebrows",
            "speaks in a trembling voice", "laughs out loud", "sighs heavily", "stares at the floor",
            "shouts at the other person", "covers her mouth", "shakes his head slowly", "wrinkles her nose",
            "bites her lip", "leans back in the chair", "grips the table edge"]  # fmt: skip
_DETAILS = ["while the camera zooms in", "in a dim kitchen", "as the music swells", "after hearing the news",
            "with tears in her eyes", "near the window", "under bright office lights", "in front of a crowd",
            "while holding a phone", "before the scene cuts", "as his voice cracks", "in the quiet hallway"]  # fmt: skip
_TAILS = ["which suggests {e}", "a clear sign of {e}", "pointing to {e}", "consistent with {e}", "hinting at {e}",
          "so the mood reads as {e}", "and the tone conveys {e}"]  # fmt: skip
_EMOTIONS = ["happiness", "anger", "sadness", "surprise", "fear", "disgust", "anxiety", "disappointment", "calm",
             "contempt", "helplessness"]  # fmt: skip
_ANSWERS = ["happy", "angry", "sad", "surprise", "fear", "disgust", "anxiety", "disappointment", "neutral"]


def make_workload(num_requests: int, group_size: int, sentences: int, seed: int = 0) -> list[list[tuple]]:
    """num_requests groups of group_size (id, text, ground_truth); sentences are (almost) all distinct."""
    rng = random.Random(seed)
    groups = []
    for r in range(num_requests):
        truth = rng.choice(_ANSWERS)
        group = []
        for i in range(group_size):
            think = " ".join(
                f"{rng.choice(_SUBJECTS)} {rng.choice(_ACTIONS)} {rng.choice(_DETAILS)}, "
                f"{rng.choice(_TAILS).format(e=rng.choice(_EMOTIONS))} (shot {r}.{i}.{k})."
                for k in range(sentences)
            )
            group.append(
                (f"r{r}-c{i}", f"<think>{think}</think>\n<answer>{rng.choice(_ANSWERS)}</answer>", truth)
            )
        groups.append(group)
    return groups


def load_workload(path: Path) -> list[list[tuple]]:
    """Groups from a JSONL file, one {"prompt_id", "ground_truth", "completions": [text, ...]} per line."""
    if not path.is_file():
        raise BenchError(f"--workload {path} does not exist")
    groups = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            truth, texts, prompt_id = record["ground_truth"], record["completions"], record["prompt_id"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise BenchError(
                f"{path}:{n}: not a group line with prompt_id, ground_truth and completions "
                f"({type(err).__name__}: {err})"
            ) from None
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise BenchError(f"{path}:{n}: completions must be a non-empty list of strings")
        groups.append([(f"{prompt_id}-c{i}", text, truth) for i, text in enumerate(texts)])
    if not groups:
        raise BenchError(f"--workload {path} has no groups")
    return groups


def _summary(latencies: list[float], seconds: float, completions: int, sentences: int) -> dict:
    lat = np.asarray(latencies) * 1000
    return {
        "seconds": round(seconds, 3),
        "completions": completions,
        "sentences": sentences,
        "completions_per_s": round(completions / seconds, 2),
        "sentences_per_s": round(sentences / seconds, 2),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 2),
    }


def runtime_flags(args) -> list[str]:
    """--backend/--device/--dtype of the ERV under test, for the server subprocesses (defaults: none)."""
    flags = []
    for name in ("backend", "device", "dtype"):
        if getattr(args, name, None) is not None:
            flags += [f"--{name}", str(getattr(args, name))]
    return flags


def bench_bare_model(model_dir: Path, groups, num_threads: int | None, warm, args=None) -> dict:
    """One predict_proba per group in this process, as the per-request server does per request."""
    from reward_service.bench.baseline import score_per_request
    from reward_service.erv.model import ErvModel

    runtime = {
        k: getattr(args, k) for k in ("backend", "device", "dtype") if getattr(args, k, None) is not None
    }
    model = ErvModel.load(model_dir, num_threads=num_threads, **runtime)
    for group in warm:  # same warm-up as the served modes get
        score_per_request(model, group)
    latencies, n_sent = [], 0
    started = time.perf_counter()
    for group in groups:
        t0 = time.perf_counter()
        n_sent += sum(r.num_sentences for _, r in score_per_request(model, group))
        latencies.append(time.perf_counter() - t0)
    return _summary(latencies, time.perf_counter() - started, sum(len(g) for g in groups), n_sent)


def _sentences(groups) -> list[str]:
    """Every explanation sentence of the workload, in order."""
    return [s for g in groups for _, text, _ in g for s in reward.split_sentences(reward.extract_think(text))]


async def _bench_stream(address: str, groups, clients: int) -> dict:
    from reward_service.client import Completion, RewardClient

    latencies: list[float] = []
    n_sent = len(_sentences(groups))

    async def one_client(share):
        async with RewardClient(address, deadline_s=300) as client, client.stream() as stream:
            for group in share:
                t0 = time.perf_counter()
                scores = await stream.score([Completion(*c) for c in group])
                assert len(scores) == len(group)
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(one_client(groups[k::clients]) for k in range(clients)))
    return _summary(latencies, time.perf_counter() - started, sum(len(g) for g in groups), n_sent)


async def _bench_post(base_url: str, groups, clients: int, route: str = "/v1/score") -> dict:
    import httpx

    completions = [c for g in groups for c in g]
    latencies: list[float] = []
    n_sent = len(_sentences(groups))

    async def one_client(share):
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as http:
            for cid, text, truth in share:
                t0 = time.perf_counter()
                resp = await http.post(
                    route, json={"completions": [{"id": cid, "text": text, "ground_truth": truth}]}
                )
                resp.raise_for_status()
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(one_client(completions[k::clients]) for k in range(clients)))
    return _summary(latencies, time.perf_counter() - started, len(completions), n_sent)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, is_ready, what: str) -> None:
    for _ in range(1200):
        if is_ready():
            return
        if proc.poll() is not None:
            raise BenchError(f"{what} exited during start-up: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise BenchError(f"{what} did not become ready within 60 s")


@contextlib.contextmanager
def _reward_service(model_dir: Path, num_threads: int | None, cache_size: int, runtime: list[str] = ()):
    """Our reward service as a subprocess; yields (grpc_port, http_port) and stops it."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        cmd = [sys.executable, "-m", "reward_service.server", "--model-dir", str(model_dir), "--host", "127.0.0.1",
               "--grpc-port", str(_free_port()), "--http-port", str(_free_port()),
               "--sentence-cache-size", str(cache_size), "--ready-file", str(ready)]  # fmt: skip
        if num_threads:
            cmd += ["--num-threads", str(num_threads)]
        proc = subprocess.Popen(
            cmd + list(runtime), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_ready(proc, lambda: ready.exists() and ready.read_text().strip(), "reward server")
            grpc_port, http_port = (int(p) for p in ready.read_text().split())
            yield grpc_port, http_port
        finally:
            proc.terminate()
            proc.wait(timeout=60)


@contextlib.contextmanager
def _baseline_server(model_dir: Path, num_threads: int | None, runtime: list[str] = ()):
    """The per-request baseline (bench/baseline.py) as a subprocess; yields its base URL and stops it."""
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "reward_service.bench.baseline", "--model-dir", str(model_dir),
           "--port", str(port)] + (["--num-threads", str(num_threads)] if num_threads else [])  # fmt: skip
    cmd += list(runtime)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_ready(proc, ready, "baseline server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _scrape(http_port: int) -> dict:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        if family.name
        in ("erv_reward_batch_size", "erv_reward_sentence_cache_hits", "erv_reward_sentence_cache_misses")
        for sample in family.samples
        if not sample.labels  # the unlabelled _count, _sum and _total samples
    }
    count = values.get("erv_reward_batch_size_count", 0)
    hits, misses = (values.get(f"erv_reward_sentence_cache_{k}_total", 0) for k in ("hits", "misses"))
    return {
        "model_batches": int(count),
        "mean_batch_sentences": round(values.get("erv_reward_batch_size_sum", 0) / count, 1) if count else 0,
        "sentence_cache_hits": int(hits),
        "sentence_cache_misses": int(misses),
    }


def _served(run, http_port: int) -> dict:
    """Run one mode against a fresh reward service; add what its /metrics say about the run."""
    before = _scrape(http_port)
    result = asyncio.run(run)
    after = _scrape(http_port)
    result["model_batches"] = after["model_batches"] - before["model_batches"]
    hits, misses = (after[k] - before[k] for k in ("sentence_cache_hits", "sentence_cache_misses"))
    result["sentence_cache_hit_rate"] = round(hits / (hits + misses), 3) if hits + misses else 0.0
    return result


def _print(name: str, r: dict, latency_unit: str) -> None:
    print(f"{name:<30}{r['completions_per_s']:8.1f} completions/s  {r['sentences_per_s']:8.1f} sentences/s"
          f"  p50 {r['latency_ms_p50']} ms  p99 {r['latency_ms_p99']} ms ({latency_unit})", flush=True)  # fmt: skip


def measure_modes(model_dir: Path, groups, warm, args) -> dict:
    """Every mode on `model_dir` (a fresh server each), and streaming's throughput over each other mode."""
    warm_posts = [[c for g in warm for c in g][: 4 * args.clients]]
    threads, cache, runtime = args.num_threads, args.sentence_cache_size, runtime_flags(args)
    with _reward_service(model_dir, threads, cache, runtime) as (grpc_port, http_port):
        address = f"127.0.0.1:{grpc_port}"
        asyncio.run(_bench_stream(address, warm, args.clients))  # warm-up: connections, ORT arenas
        stream = _served(_bench_stream(address, groups, args.clients), http_port)
    _print("gRPC streaming:", stream, "per request")
    with _reward_service(model_dir, threads, cache, runtime) as (grpc_port, http_port):
        base = f"http://127.0.0.1:{http_port}"
        asyncio.run(_bench_post(base, warm_posts, args.clients))
        post = _served(_bench_post(base, groups, args.clients), http_port)
    _print("JSON POST per completion:", post, "per completion")
    with _baseline_server(model_dir, threads, runtime) as base:
        asyncio.run(_bench_post(base, warm_posts, args.clients, route="/score"))
        baseline = asyncio.run(_bench_post(base, groups, args.clients, route="/score"))
    _print("per-request server, POST:", baseline, "per completion")
    bare = bench_bare_model(model_dir, groups, threads, warm, args)  # servers gone: no CPU sharing
    _print("bare ErvModel:", bare, "per request")
    modes = {"grpc_stream": stream, "json_post_per_completion": post,
             "baseline_post_per_completion": baseline, "bare_model": bare}  # fmt: skip
    ratio = {name: stream["completions_per_s"] / mode["completions_per_s"] for name, mode in modes.items()}
    print(f"streaming / POST to our service: {ratio['json_post_per_completion']:.2f}x; streaming / POST to a "
          f"per-request server: {ratio['baseline_post_per_completion']:.2f}x; streaming / bare model: "
          f"{ratio['bare_model']:.2f}", flush=True)  # fmt: skip
    return {
        "modes": modes,
        "stream_vs_post_throughput": round(ratio["json_post_per_completion"], 2),
        "stream_vs_baseline_post_throughput": round(ratio["baseline_post_per_completion"], 2),
        "stream_vs_bare_throughput": round(ratio["bare_model"], 3),
        "serving_overhead": round(1 - ratio["bare_model"], 3),
    }


def run_bench(args) -> int:
    model_dir = Path(args.model_dir)
    if not (model_dir / "model.onnx").is_file():
        raise BenchError(
            f"no ERV model at {model_dir}; run `erv-grpo models prepare` first (or pass --model-dir)"
        )
    if args.clients < 1 or args.requests < 1 or args.group_size < 1 or args.sentences < 1:
        raise BenchError("--clients, --requests, --group-size and --sentences must be >= 1")
    if args.sentence_cache_size < 0:
        raise BenchError("--sentence-cache-size must be >= 0 (0 = off)")
    load_before = os.getloadavg()[0]  # other work on the machine slows every mode; recorded with the result
    if args.workload is not None:
        groups = load_workload(args.workload)[: args.requests]
    else:
        groups = make_workload(args.requests, args.group_size, args.sentences)
    warm = make_workload(max(2, args.clients), args.group_size, args.sentences, seed=1)  # never in `groups`
    n_completions = sum(len(g) for g in groups)
    print(f"workload: {len(groups)} requests, {n_completions} completions "
          f"({args.workload or f'synthetic, ~{args.sentences} sentences each'}); K={args.clients}, "
          f"sentence cache {args.sentence_cache_size or 'off'}", flush=True)  # fmt: skip
    print(f"ERV {model_dir}:", flush=True)
    measured = measure_modes(model_dir, groups, warm, args)
    n_sentences = measured["modes"]["grpc_stream"]["sentences"]
    result = {
        "benchmark": "reward",
        "model_dir": str(model_dir),
        "model_version": json.loads((model_dir / "labels.json").read_text()).get("version"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_1m_before": round(load_before, 2),
        },
        "workload": {
            "source": str(args.workload) if args.workload else "synthetic",
            "requests": len(groups),
            "completions": n_completions,
            "mean_sentences_per_completion": round(n_sentences / n_completions, 2),
            "distinct_sentence_share": _distinct_share(groups),
            "clients": args.clients,
            "num_threads": args.num_threads,
            "sentence_cache_size": args.sentence_cache_size,
        },
        "erv_runtime": {k: getattr(args, k, None) for k in ("backend", "device", "dtype")},
        **measured,
        "goals": {
            "stream_at_least_5x_baseline_post": measured["stream_vs_baseline_post_throughput"] >= 5,
            "stream_at_least_5x_our_post": measured["stream_vs_post_throughput"] >= 5,
            "serving_overhead_at_most_20pct": measured["serving_overhead"] <= 0.2,
        },
    }
    if args.serving_ceiling is not None:
        from reward_service.bench.ceiling import build_zero_layer_erv

        with tempfile.TemporaryDirectory() as tmp:
            zero = build_zero_layer_erv(args.serving_ceiling, Path(tmp))
            print(
                f"serving ceiling: 0-layer copy of {args.serving_ceiling} (the model costs ~nothing):",
                flush=True,
            )
            ceiling = measure_modes(zero, groups, warm, args)
        result["serving_ceiling"] = {"hf_dir": str(args.serving_ceiling), **ceiling}
        result["goals"]["serving_ceiling_stream_at_least_5x_baseline_post"] = (
            ceiling["stream_vs_baseline_post_throughput"] >= 5
        )
    result["machine"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"goals: {result['goals']}; wrote {args.output}")
    return 0


def _distinct_share(groups) -> float:
    """Distinct explanation sentences / all of them: what a sentence cache can save at most."""
    sentences = _sentences(groups)
    return round(len(set(sentences)) / len(sentences), 3) if sentences else 1.0
