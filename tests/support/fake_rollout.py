"""A stand-in rollout worker actor for the pool's supervision tests: answers, or dies the way vLLM's engine does.

Runs inside a Ray actor process started by tests/orchestrator/test_supervisor.py. `dies`: the
first `rollout` call raises an EngineDeadError as vLLM's engine client does when its engine core died
(the actor stays alive, its engine is gone; named as vLLM names it, without importing vLLM),
or an ordinary ValueError (a bug: must not be mistaken for a dead worker).
"""

from __future__ import annotations

from rollout.worker import RolloutResult, ScoredGroup


class EngineDeadError(RuntimeError):
    """vLLM's vllm.v1.engine.exceptions.EngineDeadError, by name (test_supervisor checks the name still holds)."""


class FakeRolloutWorker:
    def __init__(self, worker_id: int, dies: str | None = None):
        self.worker_id, self.dies = worker_id, dies
        self.loaded = 0

    def load_weights(self, *_args) -> int:
        self.loaded += 1
        return self.loaded

    def rollout(self, requests, tag: str) -> RolloutResult:
        if self.dies == "engine":
            raise EngineDeadError(
                "EngineCore encountered an issue. See stack trace (above) for the root cause."
            )
        if self.dies == "bug":
            raise ValueError("a bug in the worker")
        groups = [ScoredGroup(prompt_id=r.prompt_id, ground_truth=r.ground_truth, prompt_token_ids=[r.seed],
                              completion_ids=[], completions=[], rewards=[], policy_version=self.loaded)
                  for r in requests]  # fmt: skip
        return RolloutResult(worker_id=self.worker_id, groups=groups, completion_tokens=len(requests))
