"""A new run never overwrites a previous run's output, but may start in a folder the demo prepared."""

import pytest

from orchestrator.config import load_config
from orchestrator.errors import OrchestratorError
from orchestrator.loop import TrainingRun


class _NoCluster:
    def start_learner(self):
        raise AssertionError("reached the cluster")


def _config(tmp_path):
    return load_config(
        "configs/demo.yaml",
        [f"run.output_dir={tmp_path}", "run.name=r", "learner.model=/m", "reward.model_dir=/e"],
    )


@pytest.mark.parametrize("previous", ["metrics.jsonl", "checkpoints"])
def test_previous_run_output_is_protected(tmp_path, previous):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / previous).touch()
    with pytest.raises(OrchestratorError, match="holds a run"):
        TrainingRun(_config(tmp_path), None, _NoCluster())


def test_folder_with_service_log_and_eval_is_accepted(tmp_path):
    (tmp_path / "r").mkdir()
    for name in ("reward_service.log", "reward.ready", "eval_before.json"):
        (tmp_path / "r" / name).touch()
    (tmp_path / "r" / "logs").mkdir()  # the cluster's and the demo's library logs
    with pytest.raises(AssertionError, match="reached the cluster"):
        TrainingRun(_config(tmp_path), None, _NoCluster())
