"""The direct weight transport's wire protocol over gloo: what one receiver gets is what the sender sent;
a receiver that died makes the sender fail with WeightTransportError within the timeout, never hang."""

import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from common import collective
from common.errors import WeightTransportError
from common.weight_plan import plan_buckets

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_pair(timeout_s: float):
    """(sender group, receiver group) in this process: the two constructors rendezvous, so one runs in a thread."""
    port, groups = free_port(), {}
    t = threading.Thread(
        target=lambda: groups.setdefault(1, collective.GlooGroup("127.0.0.1", port, 1, 2, timeout_s))
    )
    t.start()
    groups[0] = collective.GlooGroup("127.0.0.1", port, 0, 2, timeout_s)
    t.join()
    return groups[0], groups[1]


def test_a_sync_delivers_every_tensor_and_the_version():
    g = torch.Generator().manual_seed(0)
    tensors = [("emb", torch.randn(50, 8, generator=g)), ("norm", torch.randn(8, generator=g).bfloat16()),
               ("head", torch.randn(20, 8, generator=g))]  # fmt: skip
    plan = plan_buckets([(n, str(t.dtype)[6:], tuple(t.shape)) for n, t in tensors], 1024, version=5)
    assert len(plan.buckets) == 2  # 1600 B fills one bucket, norm + head the next
    sender, receiver = open_pair(timeout_s=20)
    got = {}
    result = {}
    t = threading.Thread(
        target=lambda: result.setdefault(
            "version",
            collective.receive(receiver, lambda weights: got.update((n, w.clone()) for n, w in weights)),
        )
    )
    t.start()
    starts = [0, len(plan.buckets[0].slots)]
    collective.send(
        sender, plan, lambda i: [t for _, t in tensors[starts[i] : starts[i] + len(plan.buckets[i].slots)]]
    )
    t.join(timeout=20)
    assert result["version"] == 5
    assert list(got) == ["emb", "norm", "head"]
    for name, want in tensors:
        assert got[name].dtype == want.dtype and torch.equal(got[name], want)


def test_a_receiver_whose_load_fails_makes_the_sender_fail():
    plan = plan_buckets([("w", "float32", (4,))], 1024, version=1)
    sender, receiver = open_pair(timeout_s=20)
    errors = []

    def bad_load(weights):
        raise ValueError("no such parameter")

    def run():
        try:
            collective.receive(receiver, bad_load)
        except ValueError as err:
            errors.append(err)

    t = threading.Thread(target=run)
    t.start()
    with pytest.raises(WeightTransportError, match="1 of 1 receivers failed to load version 1"):
        collective.send(sender, plan, lambda i: [torch.ones(4)])
    t.join(timeout=20)
    assert errors


RECEIVER = """
import os, sys, time
from common import collective
group = collective.GlooGroup("127.0.0.1", int(sys.argv[1]), 1, 2, 30.0)
print("joined", flush=True)
if sys.argv[2] == "dies":
    os._exit(1)  # joined the group, then died before the sync
time.sleep(120)  # joined, then never takes part in the sync
"""


@pytest.mark.parametrize("how", ["dies", "hangs"])
@pytest.mark.parametrize("bucket_bytes", [64, 64 << 20])
def test_a_dead_receiver_fails_the_sync_within_the_timeout(bucket_bytes, how):
    port, timeout_s = free_port(), 5.0
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(RECEIVER), str(port), how], cwd=REPO,
                             env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE)  # fmt: skip
    try:
        sender = collective.GlooGroup("127.0.0.1", port, 0, 2, timeout_s)
        assert child.stdout.readline().strip() == b"joined"
        if how == "dies":
            child.wait(timeout=30)
        tensors = [torch.zeros(1 << 20)]  # 4 MiB: one bucket, or many small ones
        plan = plan_buckets([("w", "float32", (1 << 20,))], bucket_bytes, version=2)
        start = time.monotonic()
        with pytest.raises(WeightTransportError, match="a peer died or hung"):
            collective.send(sender, plan, lambda i: tensors)
        elapsed = time.monotonic() - start
        print(f"receiver that {how}: sync failed after {elapsed:.2f} s (timeout {timeout_s} s)")
        assert elapsed < timeout_s + 5
    finally:
        child.kill()
        child.wait()
