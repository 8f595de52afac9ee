"""Bounded-staleness rollouts: each step's scored groups, with the next steps' generation running during the update.

Runs in the orchestrator (Ray driver) process, over a RolloutPool (orchestrator/supervisor.py) or
anything with its `submit / wait / poll` methods; no Ray here. With run.max_staleness = eta:

- eta = 0: a step's rollouts start after the previous step's weight sync and are waited for at once:
  the synchronous loop, call for call (same requests, seeds, tags and order).
- eta >= 1: once step s's groups are in, the rollouts of steps s+1 .. s+eta are started before the
  learner updates. A worker runs its calls in order, so the weight load of the sync queued behind
  them comes after its in-flight requests: an engine finishes the groups of version v, then loads v+1.
  A group is admitted when its call answers only if its policy version >= current - eta, and checked
  again when the learner consumes it (time spent queued counts); a stale group is dropped, counted,
  and re-drawn (same prompt and seed) with the current weights.

A checkpoint stores the prompt sampler as it was before the not-yet-consumed steps took their
prompts: after a resume those steps take the same prompts again and generate them with the resumed
weights; the groups that were in flight are dropped and counted (`resume_dropped_groups`).

Clip prompts (a `media_loader` given): prompts are taken with their decoded media (take_with_media: an
unreadable clip is counted in the step's `media_errors` and its prompt replaced), each request carries
the question with the model's typed video/audio parts and its clip once, and `media_of(groups)` gives
the consumed groups' clips to the learner's batch.
"""

from __future__ import annotations

import copy
import sys
from collections import Counter

from orchestrator.data import model_prompt
from orchestrator.groups import dynamic_sampling, is_zero_signal, request_seed
from orchestrator.media_loader import take_with_media
from rollout.worker import RolloutRequest, ScoredGroup


def staleness(group_version: int, current_version: int) -> int:
    """How many learner updates the weights that sampled a group are behind the current ones."""
    return current_version - group_version


def admissible(group_version: int, current_version: int, max_staleness: int) -> bool:
    """The bound of bounded-staleness training: version >= current - eta."""
    return staleness(group_version, current_version) <= max_staleness


def interval_overlap(intervals: list[tuple[float, float]], window: tuple[float, float] | None) -> float:
    """Seconds of `window` covered by the union of `intervals` (each (start, end)); 0 without a window."""
    if window is None:
        return 0.0
    w0, w1 = window
    clipped = sorted((max(a, w0), min(b, w1)) for a, b in intervals if min(b, w1) > max(a, w0))
    total, end = 0.0, w0
    for a, b in clipped:
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return total


class RolloutPipeline:
    """Scored groups for each step: `batch(step)`, with up to max_staleness steps generated ahead."""

    def __init__(self, pool, sampler, config, current_version, pause_until_reward_service_is_back,
                 media_loader=None):  # fmt: skip
        self.pool, self.sampler, self.config = pool, sampler, config
        self.media_loader = media_loader  # None: text prompts only (no clip is ever decoded)
        self.media: dict[str, dict] = {}  # prompt_id -> decoded clip, of the prompts not yet consumed
        self.media_errors = 0  # clips that failed since the last step's stats
        self.eta = config.run.max_staleness
        self._version = current_version  # () -> the learner's (and engines') version now
        self._pause = pause_until_reward_service_is_back
        self._ahead: dict[int, tuple[list, list]] = {}  # step -> (prompts, calls) started early
        self._sampler_before: dict[int, dict] = {}  # step -> sampler state before it took its prompts
        self.update_window: tuple[float, float] | None = None  # the last update's wall-clock span
        self.totals = Counter()  # over the run (checkpointed): stale_groups_dropped, resume_dropped_groups

    # -- the step ---------------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[list[ScoredGroup], dict]:
        """Step `step`'s B scored groups and their stats; then start the next steps' rollouts (eta >= 1)."""
        if step in self._ahead:
            prompts, calls = self._ahead.pop(step)
            self._sampler_before.pop(step, None)
        else:
            prompts = self._take(self.config.run.prompts_per_step)
            calls = self.pool.submit(self._requests(prompts, step, 0), self._tag(step, 0, 0))
        groups, stats = self._collect(prompts, step, calls)
        if self.config.dynamic_sampling.enabled:

            def draw(count: int, round_: int) -> list[ScoredGroup]:
                more = self._take(count)
                extra, extra_stats = self._collect(more, step, None, round_)
                for key in ("phase/generate", "phase/reward_wait", "completion_tokens"):
                    stats[key] += extra_stats[key]
                return extra

            groups, counts = dynamic_sampling(groups, draw, self.config.dynamic_sampling.max_extra_rounds)
            stats.update(counts)
        else:
            stats["zero_signal_groups"] = sum(is_zero_signal(g) for g in groups)
        current = self._version()
        ages = [staleness(g.policy_version, current) for g in groups]
        stats.update({"staleness/max": max(ages), "staleness/mean": sum(ages) / len(ages),
                      "staleness/groups": ages})  # fmt: skip
        # Clips of this step's groups stay until media_of; those of prompts dropped here are let go.
        keep = {g.prompt_id for g in groups} | {p.id for prompts, _ in self._ahead.values() for p in prompts}
        self.media = {k: v for k, v in self.media.items() if k in keep}
        self._start_ahead(step)
        stats["media_errors"], self.media_errors = self.media_errors, 0
        return groups, stats

    def media_of(self, groups: list[ScoredGroup]) -> dict[str, dict] | None:
        """prompt_id -> clip of the groups' prompts, for build_batch; None in a text-only step."""
        media = {g.prompt_id: self.media[g.prompt_id] for g in groups if g.prompt_id in self.media}
        return media or None

    def _take(self, count: int) -> list:
        """The sampler's next `count` prompts; with a media loader, those whose clips decode."""
        if self.media_loader is None:
            return self.sampler.take(count)
        records, media, errors = take_with_media(
            self.sampler, count, self.media_loader, self.config.data.on_media_error
        )
        for err in errors:
            print(f"erv-grpo: warning: clip skipped: {err}", file=sys.stderr, flush=True)
        self.media_errors += len(errors)
        self.media.update({r.id: m for r, m in zip(records, media, strict=True) if m is not None})
        return records

    def _collect(self, prompts, step: int, calls, round_: int = 0) -> tuple[list[ScoredGroup], dict]:
        """Wait for the calls (start them when None), redo the lot after a reward outage, gate staleness."""
        requests = self._requests(prompts, step, round_)
        attempt = 0
        while True:
            if calls is None:
                calls = self.pool.submit(requests, self._tag(step, round_, attempt))
            results = self.pool.wait(calls)
            errors = [r.error for r in results if r.error]
            if not errors:
                break
            self._pause(errors[0])  # then redo the step's rollouts, same seeds
            attempt, calls = attempt + 1, None
        by_id = {g.prompt_id: g for r in results for g in r.groups}
        stats = {
            "phase/generate": max(r.generate_seconds for r in results),
            "phase/reward_wait": max(r.reward_wait_seconds for r in results),
            "completion_tokens": sum(r.completion_tokens for r in results),
            "reward_retries": attempt,
        }
        for r in results:
            stats[f"worker_tokens_per_second/{r.worker_id}"] = r.tokens_per_second
        if self.eta:
            spans = [(r.started_at, r.finished_at) for r in results]
            stats["overlap_seconds"] = interval_overlap(spans, self.update_window)
            stats["stale_groups_dropped"] = self._redraw_stale(by_id, requests, step, round_)
        return [by_id[p.id] for p in prompts], stats

    def _redraw_stale(self, by_id: dict, requests: list[RolloutRequest], step: int, round_: int) -> int:
        """Consumption check: drop groups older than current - eta, re-draw them now; return how many."""
        dropped = 0
        for tries in range(1, 4):
            current = self._version()
            stale = [
                r for r in requests if not admissible(by_id[r.prompt_id].policy_version, current, self.eta)
            ]
            if not stale:
                break
            dropped += len(stale)
            calls = self.pool.submit(stale, f"{self._tag(step, round_, 0)}/stale{tries}")
            by_id.update({g.prompt_id: g for r in self.pool.wait(calls) for g in r.groups})
        self.totals["stale_groups_dropped"] += dropped
        return dropped

    # -- generation ahead (eta >= 1) --------------------------------------------------------------
    def _start_ahead(self, step: int) -> None:
        last = min(step + self.eta, self.config.run.steps)
        for ahead in range(step + 1, last + 1):
            if ahead not in self._ahead:
                self._sampler_before[ahead] = copy.deepcopy(self.sampler.state())
                prompts = self._take(self.config.run.prompts_per_step)
                calls = self.pool.submit(self._requests(prompts, ahead, 0), self._tag(ahead, 0, 0))
                self._ahead[ahead] = (prompts, calls)

    def admit(self) -> int:
        """Between steps: admission check of the calls that answered while the learner updated.

        A call with a group older than current - eta is started again now (same requests);
        returns the number of groups dropped this way.
        """
        current, dropped = self._version(), 0
        for _prompts, calls in self._ahead.values():
            for call in self.pool.poll(calls):
                if call.result.error:
                    continue  # a reward outage: redone when the step is consumed
                old = [g for g in call.result.groups if not admissible(g.policy_version, current, self.eta)]
                if old:
                    dropped += len(old)
                    self.pool.reissue(call)
        self.totals["stale_groups_dropped"] += dropped
        return dropped

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict:
        """What a checkpoint keeps: the sampler before the steps not yet consumed, the run's counters."""
        first = min(self._ahead, default=None)
        sampler = self._sampler_before[first] if first is not None else self.sampler.state()
        in_flight = sum(len(prompts) for prompts, _ in self._ahead.values())
        return {"sampler": sampler, "totals": dict(self.totals), "in_flight_groups": in_flight}

    def restore(self, state: dict) -> int:
        """Resume: counters back, and the in-flight groups of the checkpoint counted as dropped."""
        self.totals.update(state.get("totals", {}))
        dropped = int(state.get("in_flight_groups", 0))
        self.totals["resume_dropped_groups"] += dropped
        return dropped

    def _requests(self, prompts, step: int, round_: int) -> list[RolloutRequest]:
        seed = self.config.run.seed
        return [RolloutRequest(p.id, model_prompt(p), p.ground_truth, request_seed(seed, step, p.id, round_),
                               self.media.get(p.id)) for p in prompts]  # fmt: skip

    def _tag(self, step: int, round_: int, attempt: int) -> str:
        # The reward requests' ids: the version makes a resumed run's redo of a step (other weights,
        # other completions) new requests to a reward service that still holds the first ones.
        return f"{self.config.run.name}/s{step}/r{round_}/a{attempt}/v{self._version()}"
