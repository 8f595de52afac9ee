"""The parity guard after a weight sync: the pure helpers and TrainingRun.check_parity over fake actors."""

import math
from types import SimpleNamespace

import pytest

from orchestrator.config import SyncGuardConfig
from orchestrator.data import PromptRecord
from orchestrator.loop import TrainingRun
from orchestrator.weight_sync import WeightSyncError, export_dtype, logprob_abs_diff, verdict


def test_logprob_abs_diff_by_hand():
    mean, largest = logprob_abs_diff([[-1.0, -2.0], [-0.5]], [[-1.1, -2.0], [-0.2]])
    assert mean == pytest.approx((0.1 + 0.0 + 0.3) / 3)
    assert largest == pytest.approx(0.3)


def test_logprob_abs_diff_rejects_ragged_or_empty_rows():
    with pytest.raises(ValueError, match="row 0"):
        logprob_abs_diff([[-1.0]], [[-1.0, -2.0]])
    with pytest.raises(ValueError, match="no tokens"):
        logprob_abs_diff([[]], [[]])


def test_export_dtype_is_the_engines_when_they_all_agree():
    assert export_dtype({"bf16"}) == "bfloat16"
    assert export_dtype({"fp16"}) == "float16"
    assert export_dtype({"fp32"}) is None
    assert export_dtype({"bf16", "fp32"}) is None  # one fp32 engine: every engine gets the fp32 weights


def test_an_engine_loading_fp32_rounds_as_the_bf16_export_does():
    """vLLM's weight loader copies (param.copy_) an fp32 tensor into its bf16 parameter: the bits it
    lands on must be those of the learner's `.to(bfloat16)` export, or exporting bf16 changes the run."""
    import torch

    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 3
    x[:4] = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1e-40])  # ties to even, a subnormal
    engine = torch.empty(4096, dtype=torch.bfloat16).copy_(x)
    assert torch.equal(engine.view(torch.int16), x.to(torch.bfloat16).view(torch.int16))


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
    run.bf16_floor = None
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


def test_a_bf16_run_measures_its_floor_at_the_first_sync_then_judges_by_it(capsys):
    guard = SyncGuardConfig()
    assert guard.limits({"fp32"}, None)[:2] == (guard.warn_above, guard.stop_above)
    assert not guard.calibrates({"fp32"}) and guard.calibrates({"fp32", "bf16"})
    run = fake_run(guard, {"bf16"})  # a bf16 engine beside an fp32 learner counts as bf16
    floor = 0.04  # SmolLM2-135M's bf16 gap is about this: far above the fp32 stop limit
    assert run.check_parity([FakeWorker(0, floor / 2), FakeWorker(1, floor)]) == pytest.approx(floor)
    assert run.bf16_floor == pytest.approx(floor)
    assert "bf16 parity floor 4.00e-02" in capsys.readouterr().err
    assert run.check_parity([FakeWorker(0, 1.5 * floor)]) == pytest.approx(1.5 * floor)  # noise: ok
    assert "warning" not in capsys.readouterr().err
    run.check_parity([FakeWorker(0, 3 * floor)])  # between 2.5x and 4x
    assert "above sync_guard.bf16_warn_factor x the bf16 floor 4.00e-02" in capsys.readouterr().err
    with pytest.raises(WeightSyncError, match="bf16_stop_factor x the bf16 floor"):
        run.check_parity([FakeWorker(0, 8 * floor)])  # SmolLM2's stale tied head: ~0.35


def test_a_first_bf16_gap_beyond_rounding_stops_the_run():
    with pytest.raises(WeightSyncError, match="bf16_max_floor"):
        fake_run(SyncGuardConfig(), {"bf16"}).check_parity([FakeWorker(0, 0.35)])


def test_fixed_bf16_limits_replace_the_floor():
    guard = SyncGuardConfig(bf16_warn_above=0.02, bf16_stop_above=0.1)
    assert not guard.calibrates({"bf16"})
    assert guard.limits({"bf16"}, None)[:2] == (0.02, 0.1)
    with pytest.raises(ValueError, match="bf16_stop_above"):
        SyncGuardConfig(bf16_warn_above=1e-1, bf16_stop_above=1e-2)
