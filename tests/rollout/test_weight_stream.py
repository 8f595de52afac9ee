"""The streamed object-store sync holds no finished bucket: RolloutWorker.load_weights -> VllmEngine.load_weights.

A streamed bucket lives in Ray's object store until every view of it is gone, and the store keeps
the pages it touched: a bucket still referenced while the next arrives raises the run's peak by one
bucket per worker. vLLM's loader itself holds the tensor it is loading (its loop variable); nothing
else may. The engine's vLLM is replaced by a stand-in that consumes the weights as vLLM's loader does.
"""

import weakref

import torch

from common.weight_plan import to_wire
from rollout.config import RolloutConfig
from rollout.engine import VllmEngine
from rollout.worker import RolloutWorker


class LoaderStandIn:
    """collective_rpc("load_policy_weights") consumed like vLLM's load_weights loop: one item bound at a time."""

    def __init__(self):
        self.loaded, self.llm_engine = {}, self

    def collective_rpc(self, method, kwargs):
        assert method == "load_policy_weights"
        for name, tensor in kwargs["weights"]:
            self.loaded[name] = tensor.clone()

    def reset_prefix_cache(self):
        pass

    def reset_encoder_cache(self):
        pass


def test_a_streamed_bucket_is_let_go_before_the_next_is_fetched():
    sizes = [(3, 5), (4,), (2, 2)]
    weights = [[(f"b{k}.w{i}", torch.randn(s)) for i, s in enumerate(sizes)] for k in range(3)]
    held_when_fetching = []

    def stream():  # what WeightStream yields: each bucket as to_wire arrays, fetched when asked for
        previous = []
        for bucket in weights:
            # all of the previous bucket but the item the loader is on must be gone by now
            held_when_fetching.append(sum(ref() is not None for ref in previous[:-1]))
            (wire,) = to_wire([bucket])
            previous = [weakref.ref(array) for _, _, array in wire]
            yield wire
            del wire

    engine = object.__new__(VllmEngine)
    engine.llm = LoaderStandIn()
    worker = RolloutWorker(0, "unused", RolloutConfig(), engine=engine, score_fn=lambda *a: None)
    try:
        assert worker.load_weights(7, stream()) == 7
    finally:
        worker.close()
    assert held_when_fetching == [0, 0, 0]
    assert list(engine.llm.loaded) == [name for bucket in weights for name, _ in bucket]
    for name, tensor in (item for bucket in weights for item in bucket):
        assert torch.equal(engine.llm.loaded[name], tensor), name
