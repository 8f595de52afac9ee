"""One tiny Qwen2 folder and one in-process vLLM engine shared by the rollout tests (engine start ~10 s),
and the learner + engine pairs of the weight-sync tests."""

import pytest
import torch

from rollout.config import CPU_VLLM_ENV
from tests.support.tiny_models import build_tiny_qwen2


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="module")
def engine(tiny_qwen2_dir):
    from rollout.engine import VllmEngine

    return VllmEngine(tiny_qwen2_dir, max_model_len=256, seed=0, env=CPU_VLLM_ENV)


@pytest.fixture(scope="module", params=["tied", "untied"])
def pair(request, tmp_path_factory):
    """(kind, learner, engine): a learner and a vLLM engine over the same tiny model folder, tied and
    untied (test_weight_transport.py overrides it with one that also holds a transport group)."""
    from policy.config import LearnerConfig
    from policy.learner import Learner
    from rollout.engine import VllmEngine

    path = build_tiny_qwen2(tmp_path_factory.mktemp(f"qwen2-{request.param}"), tied=request.param == "tied")
    torch.set_num_threads(1)
    learner = Learner(LearnerConfig(model=str(path), device="cpu"))
    engine = VllmEngine(path, max_model_len=256, seed=0, env=CPU_VLLM_ENV)
    yield request.param, learner, engine
    del engine


@pytest.fixture
def worker(pair):
    """An in-process RolloutWorker over the pair's engine (no reward service); closed after the test, so its
    reward-client thread does not outlive it (tests/conftest.py checks that)."""
    from rollout.worker import RolloutWorker

    worker = RolloutWorker(0, "", None, engine=pair[2], score_fn=lambda *a: None)
    yield worker
    worker.close()
