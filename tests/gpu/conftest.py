"""Fixtures of the CUDA tests (every test here is marked `gpu` and skipped without CUDA).

Models are built from configs during the session (no hub): a tiny Qwen2 for the learner, the tiny
random BERT ERV and a GoEmotions-style RoBERTa ERV (hidden 256, 4 layers, default init) exported
with the real exporter, so each folder carries model.onnx and the torch backend's files.
`gpu_device` is "cuda", or "cpu" under ERV_GPU_TEST_DEVICE=cpu (the device check's dry run, which
exercises these tests' code without a GPU; their precision claims are about CUDA).
"""

import os

import pytest

from tests.support.tiny_models import build_tiny_qwen2


@pytest.fixture(scope="session")
def gpu_device() -> str:
    return os.environ.get("ERV_GPU_TEST_DEVICE", "cuda")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2-gpu"))


@pytest.fixture(scope="session")
def gpu_tiny_erv_dir(tmp_path_factory):
    from tests.support.tiny_erv import build_tiny_erv

    return build_tiny_erv(tmp_path_factory.mktemp("tiny-erv-gpu"), head="canonical")


@pytest.fixture(scope="session")
def gpu_roberta_erv_dir(tmp_path_factory):
    from tests.support.tiny_erv import build_goemotions_roberta_erv

    folder = tmp_path_factory.mktemp("roberta-erv-gpu")
    return build_goemotions_roberta_erv(folder, hidden=256, layers=4, heads=4, ffn=1024)
