"""One tiny Qwen2 folder and one in-process vLLM engine shared by the rollout tests (engine start ~10 s)."""

import pytest

from rollout.config import CPU_VLLM_ENV
from tests.support.tiny_models import build_tiny_qwen2


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module")
def engine(tiny_qwen2_dir):
    from rollout.engine import VllmEngine

    return VllmEngine(tiny_qwen2_dir, max_model_len=256, seed=0, env=CPU_VLLM_ENV)
