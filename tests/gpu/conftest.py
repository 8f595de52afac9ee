"""Fixtures of the CUDA tests (every test here is marked `gpu` and skipped without CUDA)."""

import pytest

from tests.support.tiny_models import build_tiny_qwen2


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2-gpu"))
