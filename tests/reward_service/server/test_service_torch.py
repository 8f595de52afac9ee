"""The reward service on the torch ERV backend (CPU here), end to end over a loopback gRPC stream.

`reward serve --backend torch` reaches ErvModel through RewardServiceConfig; the scores equal the
ONNX backend's on the same folder (probabilities agree within 1e-5, far below any label-set edge
of the tiny model's sentences). tests/gpu/test_reward_service_cuda.py runs the same on CUDA.
"""

import argparse
import random

import pytest

from reward_service.erv.model import ErvModel
from reward_service.server.cli import add_serve_options
from reward_service.server.config import RewardServiceConfig, load_service_config
from tests.support.service_helpers import assert_scores_equal, make_group, stream_from_config

pytestmark = pytest.mark.timeout(300)


def test_serve_flags_reach_the_config(tiny_erv_dir):
    parser = argparse.ArgumentParser()
    add_serve_options(parser)
    args = parser.parse_args(["--model-dir", str(tiny_erv_dir), "--backend", "torch", "--device", "cpu"])
    config = load_service_config(args)
    assert (config.backend, config.device, config.dtype) == ("torch", "cpu", "float32")
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "tensorrt"])


def test_stream_served_by_the_torch_backend(tiny_erv_dir):
    config = RewardServiceConfig(
        model_dir=tiny_erv_dir, grpc_port=0, http_port=0, backend="torch", device="cpu",
        num_threads=1, max_wait_ms=2.0, drain_seconds=5.0,
    )  # fmt: skip
    rng = random.Random(3)
    groups = [make_group(rng, f"g{k}") for k in range(6)]
    providers, results = stream_from_config(config, groups)
    assert providers == ["torch:cpu:float32"]
    assert_scores_equal(ErvModel.load(tiny_erv_dir, num_threads=1, device="cpu"), groups, results)
