"""`erv-grpo scale`: the request/answer files between the CLI and a running job, and the CLI's checks."""

import json
import threading

import pytest

from common.errors import ConfigError
from orchestrator.cli import main
from orchestrator.scale import answer, clamp, request_scale, take_request
from rollout.config import RolloutConfig


def _run_dir(tmp_path, num_workers=1, max_workers=3):
    (tmp_path / "config.json").write_text(
        json.dumps({"rollout": {"num_workers": num_workers, "max_workers": max_workers}})
    )
    return tmp_path


def _driver(run_dir, size, seen):
    """What the loop does at a step boundary: take the request, answer with the pool's size."""
    while (request := take_request(run_dir)) is None:
        pass
    seen.append(request)
    answer(run_dir, request, size, step=7, target=request["rollout_workers"])


def test_request_is_answered_with_the_new_size(tmp_path):
    run_dir, seen = _run_dir(tmp_path), []
    driver = threading.Thread(target=_driver, args=(tmp_path, 2, seen))
    driver.start()
    got = request_scale(run_dir, 2, timeout_s=30, poll_s=0.01)
    driver.join()
    assert got["rollout_workers"] == 2 and got["applied_after_step"] == 7 and got["id"] == seen[0]["id"]
    assert take_request(run_dir) is None  # consumed once


def test_cli_prints_the_new_size(tmp_path, capsys):
    run_dir, seen = _run_dir(tmp_path), []
    driver = threading.Thread(target=_driver, args=(tmp_path, 3, seen))
    driver.start()
    assert main(["scale", str(run_dir), "--rollout-workers", "3", "--timeout", "30"]) == 0
    driver.join()
    assert capsys.readouterr().out.strip() == "rollout workers: 3, after step 7"


def test_a_size_above_max_workers_fails_naming_the_field(tmp_path, capsys):
    run_dir = _run_dir(tmp_path, max_workers=2)
    with pytest.raises(SystemExit) as exc:
        main(["scale", str(run_dir), "--rollout-workers", "5"])
    assert "--rollout-workers 5" in str(exc.value) and "rollout.max_workers (2)" in str(exc.value)
    assert take_request(run_dir) is None  # nothing was asked
    with pytest.raises(ConfigError, match="between 1 and"):
        request_scale(run_dir, 0)


def test_no_answer_times_out_with_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="no answer from the job"):
        request_scale(_run_dir(tmp_path), 2, timeout_s=0.05, poll_s=0.01)
    with pytest.raises(Exception, match="not a run folder"):
        request_scale(tmp_path / "nowhere", 2)


def test_driver_clamps_to_max_workers():
    cfg = RolloutConfig(num_workers=1, max_workers=2)
    assert clamp({"rollout_workers": 5}, cfg) == 2 and clamp({"rollout_workers": 0}, cfg) == 1
    with pytest.raises(ValueError, match="max_workers"):
        RolloutConfig(num_workers=3, max_workers=2)
