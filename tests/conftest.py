"""Shared pytest setup: GPU tests are skipped without CUDA (unless ERV_GPU_TEST_DEVICE=cpu, the device
check's dry run); Ray runs without token auth locally."""

import os
import threading

import pytest

import common  # noqa: F401  (hooks the first torchvision import: common/torchvision_ops.py)
from tests.support.clips import clip_set  # noqa: F401  (the synthetic clips' session fixture)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _reward_client_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "reward-client"}


@pytest.fixture(autouse=True)
def rollout_workers_are_closed():
    """A RolloutWorker built in this process is closed by its test: its reward-client thread (an asyncio
    loop) would otherwise run until the interpreter's exit, where a daemon thread can crash the finalisation
    (the CI run of 254ab6f segfaulted after all its tests had passed; that tree left two, from
    test_shared_weights)."""
    before = _reward_client_threads()
    yield
    left = _reward_client_threads() - before
    assert not left, (
        f"{len(left)} RolloutWorker(s) left open: call close() (their reward-client threads still run)"
    )


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests either way
        has_cuda = False
    # The device check's dry run (scripts/device_check.sh --cpu) runs the gpu tests' code on CPU.
    if has_cuda or os.environ.get("ERV_GPU_TEST_DEVICE") == "cpu":
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
