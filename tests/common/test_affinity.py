"""common/affinity.py: core lists by hand, and a whole process (threads started before and after) pinned."""

import os
import subprocess
import sys
import textwrap

import pytest

from common.affinity import parse_cores
from policy.config import LearnerConfig
from rollout.config import RolloutConfig


def test_parse_cores_by_hand():
    assert parse_cores("1") == [1]
    assert parse_cores("0-2,5") == [0, 1, 2, 5]
    assert parse_cores(" 3 , 1-2 ") == [1, 2, 3]


@pytest.mark.parametrize("spec", ["", "a", "2-1", "-1", "1,,2", "0-"])
def test_a_bad_core_list_is_rejected_naming_it(spec):
    with pytest.raises(ValueError, match="is not a list of CPU cores"):
        parse_cores(spec)


def test_the_configs_reject_a_bad_core_list_naming_the_field():
    with pytest.raises(ValueError, match="cpu_bind"):
        LearnerConfig(model="m", cpu_bind="one")
    with pytest.raises(ValueError, match="cpu_threads_bind"):
        RolloutConfig(cpu_threads_bind="0..1")


PROBE = textwrap.dedent(
    """
    import os, threading, time, json
    from common.affinity import pin_process
    stop = threading.Event()
    before = threading.Thread(target=stop.wait); before.start()   # a thread that exists before pinning
    pinned = pin_process([CORE])
    after = threading.Thread(target=stop.wait); after.start()     # one started after
    masks = {tid: sorted(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")}
    stop.set(); before.join(); after.join()
    print(json.dumps({"pinned": pinned, "masks": list(masks.values()), "threads": len(masks)}))
    """
)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to see a narrower mask")
def test_every_thread_of_the_process_is_pinned():
    import json

    core = max(os.sched_getaffinity(0))
    out = subprocess.run([sys.executable, "-c", PROBE.replace("CORE", str(core))], capture_output=True,
                         text=True, check=True, cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    got = json.loads(out.stdout)
    assert got["pinned"] == [core] and got["threads"] >= 3
    assert all(mask == [core] for mask in got["masks"])


def test_a_core_the_process_may_not_use_is_refused():
    from common.affinity import pin_process

    with pytest.raises(ValueError, match="not available"):
        pin_process([max(os.sched_getaffinity(0)) + 64])


def test_the_engine_gets_one_openmp_thread_per_bound_core():
    # more threads than bound cores spin against each other (bench async: generation 0.2 s -> 3.7-9 s)
    assert RolloutConfig(cpu_threads_bind="0").engine_env()["OMP_NUM_THREADS"] == "1"
    assert RolloutConfig(cpu_threads_bind="0-2,5").engine_env()["OMP_NUM_THREADS"] == "4"
