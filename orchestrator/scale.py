"""`erv-grpo scale RUN_DIR --rollout-workers N`: a resize request to a running job, through files in its run folder.

The CLI process (`request_scale`) writes RUN_DIR/control/scale-request.json and waits for
RUN_DIR/control/scale-answer.json with the same request id; the training driver
(`take_request` / `answer`, called by the loop at a step boundary) applies it and answers with
the pool's new size. A file protocol, because the job may run anywhere the run folder is shared
(a pod's volume) and needs no port of its own for this. No Ray here.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from common.errors import ConfigError
from orchestrator.errors import OrchestratorError

REQUEST = Path("control") / "scale-request.json"
ANSWER = Path("control") / "scale-answer.json"


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    tmp.replace(path)  # atomic: the reader never sees half a file


def max_workers(run_dir: Path) -> int:
    """The running job's bound on its pool (rollout.max_workers, else num_workers), from its config.json."""
    config_file = Path(run_dir) / "config.json"
    if not config_file.is_file():
        raise OrchestratorError(f"{run_dir} is not a run folder (no config.json)")
    rollout = json.loads(config_file.read_text())["rollout"]
    return int(rollout.get("max_workers") or rollout["num_workers"])


def request_scale(run_dir: Path, workers: int, timeout_s: float = 600.0, poll_s: float = 0.5) -> dict:
    """Ask the job in `run_dir` for `workers` rollout workers; return its answer (the new size)."""
    bound = max_workers(run_dir)
    if not 1 <= workers <= bound:
        raise ConfigError(
            f"--rollout-workers {workers}: must be between 1 and the run's rollout.max_workers ({bound})"
        )
    request = {"id": uuid.uuid4().hex, "rollout_workers": workers, "time": time.time()}
    _write(Path(run_dir) / REQUEST, request)
    deadline = time.monotonic() + timeout_s
    answer_file = Path(run_dir) / ANSWER
    while time.monotonic() < deadline:
        if answer_file.is_file():
            got = json.loads(answer_file.read_text())
            if got.get("id") == request["id"]:
                return got
        time.sleep(poll_s)
    raise OrchestratorError(
        f"no answer from the job in {run_dir} within {timeout_s:g} s (is it running? the request stays "
        f"in {Path(run_dir) / REQUEST} and is applied at its next step boundary)"
    )


def take_request(run_dir: Path) -> dict | None:
    """The driver's side: the pending request, removed from the folder (None when there is none)."""
    path = Path(run_dir) / REQUEST
    try:
        request = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    path.unlink(missing_ok=True)
    return request


def clamp(request: dict, rollout_config) -> int:
    """The size the driver aims for: the request bounded by [1, rollout.max_workers]."""
    bound = rollout_config.max_workers or rollout_config.num_workers
    return max(1, min(int(request["rollout_workers"]), bound))


def answer(run_dir: Path, request: dict, size: int, step: int, target: int) -> None:
    """Tell the requester the pool's size after the step boundary it was applied at."""
    _write(Path(run_dir) / ANSWER, {"id": request["id"], "rollout_workers": size, "target": target,
                                    "applied_after_step": step})  # fmt: skip
