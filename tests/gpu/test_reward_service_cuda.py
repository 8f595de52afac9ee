"""The reward service on the CUDA torch backend serves a ScoreStream end to end over loopback.

Same path as `reward serve --backend torch --device cuda`: RewardService.from_config -> ErvModel on
CUDA -> batcher -> gRPC. In fp32 every score equals the ONNX-on-CPU scores of the same folder; in
bf16 every completion is still scored once (label sets may differ at the tau edge, so no equality).
"""

import random

import pytest

from reward_service.erv.model import ErvModel
from reward_service.server.config import RewardServiceConfig
from tests.support.service_helpers import assert_scores_equal, make_group, stream_from_config

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(300)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_stream_on_cuda(gpu_tiny_erv_dir, dtype, gpu_device):
    config = RewardServiceConfig(
        model_dir=gpu_tiny_erv_dir, grpc_port=0, http_port=0, backend="torch", device=gpu_device, dtype=dtype,
        max_wait_ms=2.0, drain_seconds=5.0,
    )  # fmt: skip
    rng = random.Random(5)
    groups = [make_group(rng, f"g{k}") for k in range(12)]
    providers, results = stream_from_config(config, groups)
    assert providers == [f"torch:{gpu_device}:{dtype}"]
    if dtype == "float32":
        assert_scores_equal(ErvModel.load(gpu_tiny_erv_dir, device="cpu"), groups, results)
    else:
        for group, scores in zip(groups, results, strict=True):
            assert set(scores) == {c.id for c in group}
            assert all(0.0 <= s.total <= 3.0 for s in scores.values())
