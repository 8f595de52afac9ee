"""The collective sender under fsdp: 2 learner ranks over gloo, rank 0 sending to a receiver thread in its
own process; what arrives equals the (ddp) object-store export, bucket by bucket gathered from the shards."""

import socket
import threading

import pytest
import torch

from tests.support.ranks import run_ranks

pytestmark = pytest.mark.slow


def _send_sharded(rank: int, model: str, port: int) -> dict | None:
    from common import collective
    from policy import weight_transport
    from policy.config import LearnerConfig
    from policy.learner import Learner

    learner = Learner(LearnerConfig(model=model, device="cpu", strategy="fsdp"))
    if rank != 0:
        weight_transport.send(learner.policy, learner.version, 32 << 10, None)  # only the gathers
        return None
    got, groups = {}, {}
    joined = threading.Thread(
        target=lambda: groups.setdefault(1, collective.GlooGroup("127.0.0.1", port, 1, 2, 60))
    )
    joined.start()
    sender = weight_transport.WeightSender("127.0.0.1", port, 2, timeout_s=60)
    joined.join()
    receiver = threading.Thread(
        target=lambda: got.setdefault("version", collective.receive(
            groups[1], lambda weights: got.update({n: w.clone() for n, w in weights}))))  # fmt: skip
    receiver.start()
    plan = weight_transport.send(learner.policy, learner.version, 32 << 10, sender)
    receiver.join(timeout=60)
    return {"buckets": len(plan.buckets), "version": got.pop("version"), "weights": got}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_fsdp_sync_sends_the_whole_model_from_the_shards(tiny_qwen2_dir):
    from policy.config import LearnerConfig
    from policy.learner import Learner

    r0 = run_ranks(_send_sharded, 2, str(tiny_qwen2_dir), free_port())[0]
    _, buckets = Learner(LearnerConfig(model=str(tiny_qwen2_dir), device="cpu")).export_weights()
    want = {n: t for b in buckets for n, t in b}
    assert r0["buckets"] > 1 and r0["version"] == 0
    assert list(r0["weights"]) == list(want)
    for name, tensor in want.items():
        assert torch.equal(r0["weights"][name], tensor), name
