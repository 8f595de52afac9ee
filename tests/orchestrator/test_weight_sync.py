"""The parity guard after a weight sync: the pure helpers and TrainingRun.check_parity over fake actors."""

import math
from types import SimpleNamespace

import pytest

from orchestrator.config import SyncGuardConfig
from orchestrator.data import PromptRecord
from orchestrator.loop import TrainingRun
from orchestrator.weight_sync import WeightSyncError, logprob_abs_diff, verdict


def test_logprob_abs_diff_by_hand():
    mean, largest = logprob_abs_diff([[-1.0, -2.0], [-0.5]], [[-1.1, -2.0], [-0.2]])
    assert mean == pytest.approx((0.1 + 0.0 + 0.3) / 3)
    assert largest == pytest.approx(0.3)


def test_logprob_abs_diff_rejects_ragged_or_empty_rows():
    with pytest.raises(ValueError, match="row 0"):
        logprob_abs_diff([[-1.0]], [[-1.0, -2.0]])
    with pytest.raises(ValueError, match="no tokens"):
        logprob_abs_diff([[]], [[]])


def test_verdict_thresholds():
    assert verdict(5e-6, 1e-4, 1e-3) == "ok"
    assert verdict(1e-4, 1e-4, 1e-3) == "ok"
    assert verdict(4.8e-4, 1e-4, 1e-3) == "warn"  # the demo's step-2 drift with the stale head
    assert verdict(0.49, 1e-4, 1e-3) == "stop"  # the stale head after an embedding change
    assert verdict(math.nan, 1e-4, 1e-3) == "stop"


def test_config_orders_thresholds():
    with pytest.raises(ValueError, match="below warn_above"):
        SyncGuardConfig(warn_above=1e-2, stop_above=1e-3)


class _Remote:
    def __init__(self, fn):
        self.remote = fn


class FakeWorker:
    """Answers probe() like RolloutWorker: its logprobs are the learner's plus `offset`."""

    def __init__(self, worker_id: int, offset: float):
        self.probe = _Remote(
            lambda prompts, max_tokens, seeds: {
                "worker_id": worker_id,
                "prompt_token_ids": [[1, 2]] * len(prompts),
                "token_ids": [[3] * max_tokens] * len(prompts),
                "logprobs": [[-1.0 + offset] * max_tokens] * len(prompts),
            }
        )


def fake_run(guard: SyncGuardConfig, precisions=frozenset({"fp32"})) -> TrainingRun:
    run = TrainingRun.__new__(TrainingRun)  # no Ray, no learner process: only what check_parity reads
    run.config = SimpleNamespace(sync_guard=guard, run=SimpleNamespace(seed=0))
    run._ray = SimpleNamespace(get=lambda calls: calls)
    run.sampler = SimpleNamespace(
        records=[PromptRecord(f"p{i}", f"prompt {i}", "happy", "test") for i in range(5)]
    )
    run.learner = SimpleNamespace(logprobs=lambda prompts, tokens: [[-1.0] * len(t) for t in tokens])
    run.version = 3
    run.precisions = precisions
    return run


def test_check_parity_returns_the_worst_engine(capsys):
    run = fake_run(SyncGuardConfig())
    assert run.check_parity([FakeWorker(0, 0.0), FakeWorker(1, 2e-6)]) == pytest.approx(2e-6)
    assert "warning" not in capsys.readouterr().err


def test_check_parity_warns_between_the_thresholds(capsys):
    run = fake_run(SyncGuardConfig())
    run.check_parity([FakeWorker(0, 0.0), FakeWorker(1, 5e-4)])
    err = capsys.readouterr().err
    assert "warning" in err and "rollout worker 1" in err and "version 3" in err


def test_check_parity_stops_above_the_stop_threshold():
    run = fake_run(SyncGuardConfig(warn_above=1e-3, stop_above=1e-2))
    with pytest.raises(WeightSyncError, match=r"rollout worker 0 .*5\.00e-02.*stop_above = 0\.01"):
        run.check_parity([FakeWorker(0, 0.05)])


def test_a_bf16_side_uses_the_bf16_limits(capsys):
    guard = SyncGuardConfig()
    assert guard.limits({"fp32"}) == (guard.warn_above, guard.stop_above, "")
    for precisions in ({"bf16"}, {"fp32", "bf16"}):  # a bf16 learner, or a bf16 engine beside an fp32 learner
        assert guard.limits(precisions) == (guard.bf16_warn_above, guard.bf16_stop_above, "bf16_")
    gap = (guard.warn_above + guard.bf16_warn_above) / 2  # stops an fp32 run, passes a bf16 one
    assert gap > guard.stop_above
    assert fake_run(guard, {"bf16"}).check_parity([FakeWorker(0, gap)]) == pytest.approx(gap)
    assert "warning" not in capsys.readouterr().err
    with pytest.raises(WeightSyncError, match="bf16_stop_above"):
        fake_run(guard, {"bf16"}).check_parity([FakeWorker(0, 2 * guard.bf16_stop_above)])
    with pytest.raises(ValueError, match="bf16_stop_above"):
        SyncGuardConfig(bf16_warn_above=1e-1, bf16_stop_above=1e-2)
