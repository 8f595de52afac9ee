"""Bounded staleness on a fake pool (no Ray, no engine): what is started when, admission and consumption checks,
re-draws, the sampler state a checkpoint keeps, the overlap of intervals."""

from types import SimpleNamespace

import pytest

from orchestrator.async_rollouts import RolloutPipeline, admissible, interval_overlap, staleness
from orchestrator.data import PromptRecord, PromptSampler
from orchestrator.groups import request_seed
from rollout.engine import SampledCompletion
from rollout.worker import RewardScore, RolloutResult, ScoredGroup


class FakePool:
    """Answers each call with one group per request, tagged with the engine version when the call started."""

    def __init__(self):
        self.version = 0  # what the engines hold
        self.submitted = []  # (tag, prompt ids, seeds)

    def submit(self, requests, tag):
        self.submitted.append((tag, [r.prompt_id for r in requests], [r.seed for r in requests]))
        call = SimpleNamespace(requests=requests, tag=tag, result=None, version=self.version, reissued=0)
        return [call]

    def _answer(self, call):
        groups = [
            ScoredGroup(r.prompt_id, "happy", [1], [f"{r.prompt_id}/{k}" for k in range(2)],
                        [SampledCompletion([3], "x", [-1.0], "stop")] * 2,
                        [RewardScore(0, 0, 0, float(k), None) for k in range(2)], call.version)
            for r in call.requests
        ]  # fmt: skip
        return RolloutResult(worker_id=0, groups=groups, started_at=10.0, finished_at=20.0)

    def wait(self, calls):
        for c in calls:
            c.result = c.result or self._answer(c)
        return [c.result for c in calls]

    def poll(self, calls):
        done = [c for c in calls if c.result is None]
        self.wait(done)
        return done

    def reissue(self, call):
        call.result, call.version, call.reissued = None, self.version, call.reissued + 1
        self.submitted.append((call.tag + "/again", [r.prompt_id for r in call.requests], None))


def _pipeline(eta, steps=4, learner=None):
    records = [PromptRecord(f"p{i}", f"prompt {i}", "happy", "t") for i in range(8)]
    config = SimpleNamespace(
        run=SimpleNamespace(max_staleness=eta, steps=steps, prompts_per_step=2, seed=7, name="r"),
        dynamic_sampling=SimpleNamespace(enabled=False),
    )
    pool, sampler = FakePool(), PromptSampler(records, seed=7, shuffle=False)
    learner = learner if learner is not None else pool  # the learner's version (== the engines' after a sync)
    pipe = RolloutPipeline(pool, sampler, config, lambda: learner.version, lambda err: None)
    return pipe, pool, sampler


def test_staleness_bound_by_hand():
    assert staleness(3, 5) == 2 and admissible(3, 5, 2) and not admissible(3, 5, 1) and admissible(5, 5, 0)


def test_interval_overlap_by_hand():
    assert interval_overlap([(0, 4), (2, 6), (9, 12)], (3, 10)) == pytest.approx(3 + 1)  # 3..6 and 9..10
    assert interval_overlap([(0, 1)], (2, 3)) == 0.0 and interval_overlap([(0, 5)], None) == 0.0


def test_eta_zero_starts_each_step_alone_with_todays_tags_and_seeds():
    pipe, pool, _ = _pipeline(eta=0)
    for step in (1, 2):
        groups, stats = pipe.batch(step)
        assert [g.prompt_id for g in groups] == [f"p{2 * step - 2}", f"p{2 * step - 1}"]
        pool.version += 1  # the update and the sync
    assert [s[0] for s in pool.submitted] == ["r/s1/r0/a0/v0", "r/s2/r0/a0/v1"]  # nothing ahead
    assert pool.submitted[1][2] == [request_seed(7, 2, "p2", 0), request_seed(7, 2, "p3", 0)]
    assert stats["staleness/max"] == 0 and "overlap_seconds" not in stats


def test_eta_one_generates_the_next_step_before_the_update():
    pipe, pool, sampler = _pipeline(eta=1)
    pipe.batch(1)
    assert [s[0] for s in pool.submitted] == ["r/s1/r0/a0/v0", "r/s2/r0/a0/v0"]  # step 2 runs during update 1
    assert pipe.state()["sampler"] == {"epoch": 0, "cursor": 2} and sampler.state()["cursor"] == 4
    assert pipe.state()["in_flight_groups"] == 2
    pool.version = 1
    pipe.update_window = (15.0, 30.0)
    groups, stats = pipe.batch(2)
    assert [g.policy_version for g in groups] == [0, 0] and stats["staleness/groups"] == [1, 1]
    assert stats["stale_groups_dropped"] == 0 and stats["overlap_seconds"] == pytest.approx(5.0)  # 15..20
    assert [s[0] for s in pool.submitted][-1] == "r/s3/r0/a0/v1"
    assert len(pool.submitted) == 3  # step 4 is not started before step 3 is consumed


def test_a_group_older_than_eta_is_dropped_at_consumption_and_redrawn_with_the_same_seed():
    learner = SimpleNamespace(version=0)
    pipe, pool, _ = _pipeline(eta=1, learner=learner)
    pipe.batch(1)  # step 2 started at version 0
    learner.version = pool.version = 2  # two updates went by (e.g. a step redone): step 2's groups are 2 old
    groups, stats = pipe.batch(2)
    assert stats["stale_groups_dropped"] == 2 and pipe.totals["stale_groups_dropped"] == 2
    assert [g.policy_version for g in groups] == [2, 2] and stats["staleness/max"] == 0
    tag, ids, seeds = pool.submitted[2]
    assert tag == "r/s2/r0/a0/v2/stale1" and ids == ["p2", "p3"]
    assert seeds == [request_seed(7, 2, "p2", 0), request_seed(7, 2, "p3", 0)]


def test_admission_drops_a_call_that_answered_too_stale():
    learner = SimpleNamespace(version=0)
    pipe, pool, _ = _pipeline(eta=1, learner=learner)
    pipe.batch(1)
    learner.version = pool.version = 2
    assert pipe.admit() == 2  # step 2's answered call is started again with the current weights
    assert pool.submitted[-1][0] == "r/s2/r0/a0/v0/again"
    groups, stats = pipe.batch(2)
    assert [g.policy_version for g in groups] == [2, 2] and stats["stale_groups_dropped"] == 0
    assert pipe.totals["stale_groups_dropped"] == 2


def test_resume_counts_what_was_in_flight_as_dropped():
    pipe, _, _ = _pipeline(eta=2)
    pipe.batch(1)
    state = pipe.state()
    assert state["in_flight_groups"] == 4 and state["sampler"]["cursor"] == 2
    fresh, _, _ = _pipeline(eta=2)
    assert fresh.restore(state) == 4 and fresh.totals["resume_dropped_groups"] == 4
