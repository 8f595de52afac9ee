"""The rollout worker pool of a run: hands out rollout calls, replaces a worker that dies, resizes between steps.

Runs in the orchestrator (Ray driver) process; the Ray adapter of the loop's rollouts. A worker
whose actor process dies (crash, OOM kill, SIGKILL, node loss: Ray's RayActorError) or whose vLLM
engine dies inside it is killed and replaced by a new actor with the same worker id, which gets
the learner's current weights before anything else; every call the dead worker had not answered is
re-issued to the replacement with the same requests (same prompts, same seeds), so no group is
lost, duplicated or scored without a reward. A slot failing `rollout.max_restarts` + 1 times in a
row stops the run with RolloutWorkerFailedError naming the worker and the last cause.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray
from ray.exceptions import RayActorError, RayTaskError

from orchestrator.errors import OrchestratorError
from rollout.worker import RolloutRequest, RolloutResult


class RolloutWorkerFailedError(OrchestratorError):
    """A rollout worker died more than rollout.max_restarts times in a row."""


@dataclass
class Call:
    """One chunk of rollout requests on one worker slot; `result` once it answered."""

    worker_id: int
    requests: list[RolloutRequest]
    tag: str
    handle: object = None
    ref: object = None
    result: RolloutResult | None = None
    reissued: int = 0


def _death_cause(err: Exception) -> str | None:
    """Why a worker is dead (one line), or None when `err` is an ordinary task error (a bug, a bad prompt)."""
    if isinstance(err, RayActorError):
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    # vLLM's engine core died inside a live actor: the actor can serve no more rollouts.
    if isinstance(err, RayTaskError) and "EngineDeadError" in f"{type(err.cause).__name__} {err}":
        return f"EngineDeadError in the rollout worker: {str(err.cause).splitlines()[0] if err.cause else ''}"
    return None


@dataclass
class RolloutPool:
    """The cluster's rollout workers (cluster.workers, worker id = index) seen through supervision.

    `load_weights(handles)` gives fresh actors the learner's current weights (TrainingRun.sync_weights).
    """

    cluster: object
    load_weights: Callable[[list], None]
    max_restarts: int
    restarts: dict[int, int] = field(default_factory=dict)  # worker id -> restarts over the run
    _failures: dict[int, int] = field(default_factory=dict)  # worker id -> failures in a row
    _pending: list[Call] = field(default_factory=list)

    @property
    def workers(self) -> list:
        return self.cluster.workers

    # -- rollouts ---------------------------------------------------------------------------------
    def submit(self, requests: list[RolloutRequest], tag: str) -> list[Call]:
        """Split `requests` over the workers (worker i gets requests i, i + n, ...) and start the calls."""
        n = len(self.workers)
        calls = [Call(i, requests[i::n], tag) for i in range(n) if requests[i::n]]
        for call in calls:
            self._start(call)
        return calls

    def _start(self, call: Call) -> None:
        call.handle = self.workers[call.worker_id]
        tag = call.tag if not call.reissued else f"{call.tag}/w{call.reissued}"
        call.ref = call.handle.rollout.remote(call.requests, tag)
        self._pending.append(call)

    def reissue(self, call: Call) -> None:
        """Start an answered call again on its slot (same requests): its groups were too stale."""
        call.result, call.reissued = None, call.reissued + 1
        self._start(call)

    def wait(self, calls: list[Call]) -> list[RolloutResult]:
        """The calls' results in order; a call whose worker died is re-issued to its replacement."""
        for call in calls:
            while call.result is None:
                try:
                    result = ray.get(call.ref)
                except Exception as err:  # noqa: BLE001 - sorted below: a dead worker, or re-raised
                    self._on_error(call, err)
                    continue
                call.result = result
                self._pending.remove(call)
                self._failures[call.worker_id] = 0
        return [c.result for c in calls]

    def poll(self, calls: list[Call]) -> list[Call]:
        """Resolve, without waiting, the calls that have already answered; return them."""
        waiting = [c for c in calls if c.result is None]
        if not waiting:
            return []
        ready, _ = ray.wait([c.ref for c in waiting], num_returns=len(waiting), timeout=0)
        done = [c for c in waiting if c.ref in set(ready)]
        self.wait(done)
        return done

    def _on_error(self, call: Call, err: Exception) -> None:
        cause = _death_cause(err)
        if cause is None:
            self._pending.remove(call)
            raise err
        self._pending.remove(call)
        if self.workers[call.worker_id] is call.handle:  # first news of this death: replace the worker
            self.replace(call.worker_id, cause)
        call.reissued += 1
        self._start(call)

    def replace(self, worker_id: int, cause: str) -> None:
        """Kill slot `worker_id`'s actor, start a new one with the current weights; count the restart."""
        failures = self._failures.get(worker_id, 0) + 1
        self._failures[worker_id] = failures
        if failures > self.max_restarts:
            raise RolloutWorkerFailedError(
                f"rollout worker {worker_id} failed {failures} times in a row "
                f"(rollout.max_restarts = {self.max_restarts}); last cause: {cause}"
            )
        print(f"erv-grpo: rollout worker {worker_id} died ({cause}); starting a replacement",
              file=sys.stderr, flush=True)  # fmt: skip
        try:
            ray.kill(self.workers[worker_id], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        start = time.monotonic()
        new = self.cluster.start_worker(worker_id)
        self.workers[worker_id] = new
        self.restarts[worker_id] = self.restarts.get(worker_id, 0) + 1
        try:
            self.load_weights([new])
        except Exception as err:  # noqa: BLE001 - the replacement died as well: another failure in a row
            again = _death_cause(err)
            if again is None:
                raise
            return self.replace(worker_id, again)
        print(f"erv-grpo: rollout worker {worker_id} replaced in {time.monotonic() - start:.1f} s",
              file=sys.stderr, flush=True)  # fmt: skip

    def call_each(self, method: str, *args, **kwargs) -> list:
        """`method` on every worker (weights, probes); a dead worker is replaced and asked again."""
        refs = [getattr(w, method).remote(*args, **kwargs) for w in self.workers]
        out = []
        for i, ref in enumerate(refs):
            while True:
                try:
                    out.append(ray.get(ref))
                    break
                except Exception as err:  # noqa: BLE001 - sorted by _death_cause
                    cause = _death_cause(err)
                    if cause is None:
                        raise
                    self.replace(i, cause)
                    ref = getattr(self.workers[i], method).remote(*args, **kwargs)
        return out

    @property
    def total_restarts(self) -> int:
        return sum(self.restarts.values())

    # -- elastic size -----------------------------------------------------------------------------
    def resize(self, target: int) -> int:
        """Between steps: grow to `target` while Ray has room for a worker, or retire the newest ones."""
        while len(self.workers) > target:
            retiring = self.workers[-1]
            self.wait([c for c in list(self._pending) if c.handle is retiring])  # keep what it generated
            ray.kill(retiring, no_restart=True)
            self.workers.pop()
        grow = 0
        while len(self.workers) + grow < target and self._room_for(grow + 1):
            grow += 1
        if grow:
            self.load_weights(self.cluster.add_workers(grow))
        return len(self.workers)

    def _room_for(self, count: int) -> bool:
        cfg, free = self.cluster.config.rollout, ray.available_resources()
        return free.get("CPU", 0.0) + 1e-9 >= count * cfg.num_cpus_per_worker and (
            free.get("GPU", 0.0) + 1e-9 >= count * cfg.num_gpus_per_worker
        )
