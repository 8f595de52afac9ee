"""RolloutWorker: samples G completions per prompt with vLLM and streams each finished group to the reward service.

Plain class, testable without Ray or sockets (pass `engine` and `score_fn`); rollout/actor.py
wraps it as a Ray actor, one per rollout process. Scoring overlaps generation: the reward
calls run on an asyncio loop in a background thread while the engine keeps decoding.
A reward failure is returned as an error, never turned into a made-up score.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from common.affinity import parse_cores, pin_process
from common.memory import release_free_memory
from reward_service.core.reward import Completion, RewardWeights
from rollout.config import RolloutConfig
from rollout.engine import SampledCompletion
from rollout.errors import RolloutError

# (inputs, request_id) -> {completion_id: score with .explanation .format .answer .total .predicted}
ScoreFn = Callable[[list[Completion], str], Awaitable[dict]]


@dataclass
class RolloutRequest:
    """One prompt to roll out; `seed` makes its group reproducible (resume, retries).

    `media`: the prompt's decoded clip ({"video": uint8 (T, H, W, 3), "audio": float32 (N,) at 16 kHz,
    optional "video_fps"}), sent once per prompt; the engine samples all G completions from it.
    """

    prompt_id: str
    prompt: str | list[dict]
    ground_truth: str
    seed: int
    media: dict | None = None


@dataclass
class RewardScore:
    explanation: float
    format: float
    answer: float
    total: float
    predicted: str | None


@dataclass
class ScoredGroup:
    """G completions of one prompt with their rewards, matched by completion id, tagged with the policy version."""

    prompt_id: str
    ground_truth: str
    prompt_token_ids: list[int]
    completion_ids: list[str]
    completions: list[SampledCompletion]
    rewards: list[RewardScore]
    policy_version: int
    prompt_text: str | None = None  # chat-templated text the engine got (multimodal prompts; else None)

    @property
    def totals(self) -> list[float]:
        return [r.total for r in self.rewards]


@dataclass
class RolloutResult:
    worker_id: int
    groups: list[ScoredGroup] = field(default_factory=list)
    error: str | None = None  # set when the reward service could not score; groups is then empty
    generate_seconds: float = 0.0  # engine busy time
    reward_wait_seconds: float = 0.0  # time after generation spent waiting for the last scores
    completion_tokens: int = 0
    started_at: float = 0.0  # wall clock (time.time()) of the call's start and end: the overlap metric
    finished_at: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.generate_seconds if self.generate_seconds > 0 else 0.0


class RolloutWorker:
    """One vLLM engine + a reward client; `rollout(requests)` returns scored groups."""

    def __init__(
        self,
        worker_id: int,
        model: str,
        config: RolloutConfig,
        reward_address: str | None = None,
        *,
        engine=None,
        score_fn: ScoreFn | None = None,
        seed: int = 0,
    ) -> None:
        self.worker_id = worker_id
        self.config = config
        if engine is None:
            from rollout.engine import VllmEngine

            if config.pin_process and config.num_gpus_per_worker == 0:
                try:  # every thread of this process, not only vLLM's OpenMP ones
                    pin_process(parse_cores(config.cpu_threads_bind))
                except ValueError as err:
                    raise RolloutError(f"rollout.cpu_threads_bind: {err}") from None

            dtype, why = config.engine_dtype()
            print(
                f"erv-grpo: rollout worker {worker_id}: engine dtype {dtype} ({why})",
                file=sys.stderr,
                flush=True,
            )
            engine = VllmEngine(
                model,
                dtype=dtype,
                max_model_len=config.max_model_len,
                enforce_eager=config.enforce_eager,
                gpu_memory_utilization=config.gpu_memory_utilization,
                kv_cache_bytes=config.kv_cache_bytes(),
                seed=seed,
                env=config.engine_env(),
                limit_mm_per_prompt=config.limit_mm_per_prompt,
                mm_processor_kwargs=config.mm_processor_kwargs,
            )
            release_free_memory()  # the start-up's buffers (checkpoint read, warm-up): ~0.1 GiB
        self.engine = engine
        self.shared = None  # the learner's shared weights file, once mapped (map_shared_weights)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reward-client", daemon=True)
        self._thread.start()
        self._client = None
        self._reward_address = reward_address
        self._client_stale = False
        if score_fn is None:
            if reward_address is None:
                raise ValueError("RolloutWorker needs reward_address or score_fn")
            self._client = self._call(self._make_client(reward_address))
            score_fn = self._client_score
        self._score_fn = score_fn

    # -- reward client (lives on the background loop) ---------------------------------------------
    async def _make_client(self, address: str):
        from reward_service.client import RewardClient

        token = None
        if self.config.reward_token_file:
            with open(self.config.reward_token_file) as f:
                token = f.read().strip()
        tls_ca = Path(self.config.reward_tls_ca) if self.config.reward_tls_ca else None
        return RewardClient(address, token=token, tls_ca=tls_ca)

    def _renew_client(self) -> None:
        # After an outage the old channel may sit in gRPC's reconnect backoff; a new one connects at once.
        self._call(self._client.close())
        self._client = self._call(self._make_client(self._reward_address))
        self._client_stale = False

    async def _client_score(self, completions: list[Completion], request_id: str) -> dict:
        return await self._client.score(
            completions, request_id=request_id, deadline_s=self.config.reward_deadline_s,
            weights=None if self.config.reward_weights is None else RewardWeights(*self.config.reward_weights),
        )  # fmt: skip

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # -- the work ---------------------------------------------------------------------------------
    def policy_version(self) -> int:
        return self.engine.version

    def precision(self) -> str:
        """The engine's compute precision (fp32 | bf16 | fp16): the parity guard's thresholds depend on it."""
        return {"bfloat16": "bf16", "float16": "fp16"}.get(getattr(self.engine, "dtype", "float32"), "fp32")

    def load_weights(self, version: int, buckets) -> int:
        """Update the engine in place to the learner's weights of `version` (buckets as to_wire made them)."""
        from common.weight_plan import from_wire  # torch: here, in the worker, not in the driver

        self.engine.load_weights(version, from_wire(buckets))
        del buckets
        release_free_memory()  # vLLM's load temporaries (the arrays themselves are shared memory)
        return self.engine.version

    def map_shared_weights(self, path: str, plan: bytes) -> bool:
        """Map the learner's shared weights file (run.weight_transport: shared_memory) for every later load;
        False where this process cannot see it (another node or /dev/shm): this worker keeps the object store."""
        from common.shared_weights import SharedWeightsReader

        if not Path(path).exists():
            return False
        self.shared = SharedWeightsReader(path, plan)
        return True

    def load_shared_weights(self, version: int) -> int:
        """Load `version` straight from the mapped file; fails (engine marked as holding no version) when the
        file holds another version or the learner wrote it during the load."""
        seq = self.shared.begin(version)
        try:
            self.engine.load_weights(version, [self.shared.tensors])
            self.shared.end(seq)
        except BaseException:
            self.engine.version = -1  # unknown weights: the parity guard and the driver's check see it
            raise
        return self.engine.version

    def open_weight_transport(
        self, address: str, port: int, rank: int, world_size: int, timeout_s: float
    ) -> int:
        """Join the direct weight transport's group (run.weight_transport: collective) as `rank`."""
        self.engine.open_weight_transport(address, port, rank, world_size, timeout_s)
        return rank

    def receive_weights(self) -> int:
        """Receive one sync over the group; returns the version now held."""
        return self.engine.receive_weights()

    def probe(self, prompts: list, *, max_tokens: int, seeds: list[int], media: list | None = None) -> dict:
        """Sample one completion per prompt (temperature 1) for the parity guard after a weight sync:
        prompt token ids, sampled token ids and the engine's logprob of each (and the prompt texts,
        which the learner's processor needs for prompts with media)."""
        kw = {"media": media} if media is not None else {}
        groups = self.engine.generate(prompts, n=1, temperature=1.0, max_tokens=max_tokens, seeds=seeds, **kw)
        out = {"prompt_texts": [g.prompt_text for g in groups]} if media is not None else {}
        return out | {
            "worker_id": self.worker_id,
            "prompt_token_ids": [g.prompt_token_ids for g in groups],
            "token_ids": [g.completions[0].token_ids for g in groups],
            "logprobs": [g.completions[0].logprobs for g in groups],
        }

    def generate(
        self, prompts: list, *, n: int, temperature: float, max_tokens: int, seeds=None, media=None
    ) -> list:
        """Plain sampling without rewards (evaluation); `media`: per prompt, as RolloutRequest.media."""
        kw = {"media": media} if media is not None else {}
        return self.engine.generate(prompts, n=n, temperature=temperature, top_p=self.config.top_p,
                                    max_tokens=max_tokens, seeds=seeds, **kw)  # fmt: skip

    def rollout(self, requests: list[RolloutRequest], request_tag: str) -> RolloutResult:
        """Sample G completions per request; send each group for scoring the moment it is finished."""
        cfg = self.config
        if self._client_stale and self._client is not None:
            self._renew_client()
        version = self.engine.version
        result = RolloutResult(worker_id=self.worker_id, started_at=time.time())
        pending: list[tuple[int, object, Future]] = []
        start = time.perf_counter()
        for i, samples in self.engine.iter_generate(
            [r.prompt for r in requests],
            n=cfg.group_size,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_tokens,
            seeds=[r.seed for r in requests],
            **({"media": [r.media for r in requests]} if any(r.media for r in requests) else {}),
        ):
            req = requests[i]
            ids = [f"{req.prompt_id}/{k}" for k in range(len(samples.completions))]
            completions = [
                Completion(cid, c.text, req.ground_truth)
                for cid, c in zip(ids, samples.completions, strict=True)
            ]
            future = asyncio.run_coroutine_threadsafe(
                self._score_fn(completions, f"{request_tag}/{req.prompt_id}"), self._loop
            )
            pending.append((i, samples, future))
            result.completion_tokens += sum(len(c.token_ids) for c in samples.completions)
        result.generate_seconds = time.perf_counter() - start

        wait_start = time.perf_counter()
        groups = []
        for i, samples, future in pending:
            req = requests[i]
            try:
                scores = future.result()
            except Exception as err:  # RewardUnavailableError and friends: report, never invent a score
                result.error = f"{type(err).__name__}: {err}"
                continue
            ids = [f"{req.prompt_id}/{k}" for k in range(len(samples.completions))]
            missing = [cid for cid in ids if cid not in scores]
            if missing:
                result.error = f"reward service returned no score for {missing[:3]}"
                continue
            rewards = [_reward_score(scores[cid]) for cid in ids]
            groups.append(ScoredGroup(req.prompt_id, req.ground_truth, samples.prompt_token_ids, ids,
                                      samples.completions, rewards, version, samples.prompt_text))  # fmt: skip
        result.reward_wait_seconds = time.perf_counter() - wait_start
        result.finished_at = time.time()
        self._client_stale = result.error is not None
        if result.error is None:
            order = {r.prompt_id: k for k, r in enumerate(requests)}
            result.groups = sorted(groups, key=lambda g: order[g.prompt_id])
        return result

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            self._call(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _reward_score(score) -> RewardScore:
    return RewardScore(
        explanation=float(score.explanation),
        format=float(score.format),
        answer=float(score.answer),
        total=float(score.total),
        predicted=getattr(score, "predicted", None),
    )
