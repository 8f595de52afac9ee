"""Fixtures of the policy tests: one tiny random Qwen2 folder per session, and a batch builder."""

import pytest
import torch

from policy.batch import RolloutBatch
from tests.support.tiny_models import build_tiny_qwen2


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models are many tiny ops: on a busy 2-core machine two OpenMP threads spin-wait at
    every op and were measured ~50x slower than one (80 tiny SFT steps: 358 s vs seconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"))


def make_batch(seed: int = 0, prompts: int = 2, group_size: int = 3, version: int = 0) -> RolloutBatch:
    """Random rows with prompts and completions of different lengths (exercises the padding)."""
    g = torch.Generator().manual_seed(seed)
    prompt_ids, completion_ids, sampler, ids = [], [], [], []
    for b in range(prompts):
        prompt = torch.randint(3, 480, (3 + 2 * b,), generator=g).tolist()
        for k in range(group_size):
            length = 2 + (b + k) % 4
            completion_ids.append(torch.randint(3, 480, (length,), generator=g).tolist())
            prompt_ids.append(prompt)
            sampler.append([-6.0] * length)
            ids.append(f"p{b}/{k}")
    advantages = torch.randn(len(ids), generator=g).tolist()
    return RolloutBatch(prompt_ids, completion_ids, advantages, sampler, ids, version)
