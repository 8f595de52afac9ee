"""Shared pytest setup: GPU tests are skipped without CUDA (unless ERV_GPU_TEST_DEVICE=cpu, the device
check's dry run); Ray runs without token auth locally."""

import os

import pytest

from tests.support.clips import clip_set  # noqa: F401  (the synthetic clips' session fixture)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
