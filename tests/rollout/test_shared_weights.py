"""`run.weight_transport: shared_memory` inside one process: the learner's parameters live in the shared file,
a RolloutWorker maps it and loads each version from it into its vLLM engine (tied and untied tiny Qwen2);
a load during a write fails and leaves the engine marked as holding no version."""

import pytest

from common.shared_weights import SharedWeightsError, share_parameters
from policy.export import export_tensors
from tests.rollout.test_weight_sync import mean_abs_diff, perturb

pytestmark = pytest.mark.slow


def test_an_engine_loads_each_version_from_the_learners_shared_parameters(pair, worker, tmp_path):
    kind, learner, engine = pair
    path = tmp_path / "weights"
    named = export_tensors(learner.policy, learner.export_prefix)
    shared = share_parameters(named, list(learner.policy.parameters()), path, learner.version)
    plan = shared.plan.to_bytes()
    assert worker.map_shared_weights(str(path), plan)
    assert not worker.map_shared_weights(str(tmp_path / "elsewhere"), plan)  # another node: object store
    shared.unlink()
    for seed in (41, 51):  # two updates, each written in place by the learner
        shared.begin_write()
        perturb(learner.policy.get_output_embeddings().weight, seed=seed)  # the embedding itself when tied
        perturb(learner.policy.model.layers[1].mlp.down_proj.weight, seed=seed + 1)
        learner._version += 1
        shared.end_write(learner.version)
        before = mean_abs_diff(learner, engine, seed=seed)
        assert worker.load_shared_weights(learner.version) == learner.version == engine.version
        after = mean_abs_diff(learner, engine, seed=seed + 2)
        print(f"{kind} shared_memory: mean |engine - learner| logprob {before:.2e} before, {after:.2e} after")
        assert before > 1e-3  # the update is visible: the check can fail
        assert after <= 1e-4

    shared.begin_write()  # an update under way: refused before the engine is touched
    with pytest.raises(SharedWeightsError, match="being written"):
        worker.load_shared_weights(learner.version)
    shared.end_write(learner.version)

    load = engine.load_weights

    def written_meanwhile(version, buckets):
        load(version, buckets)
        shared.begin_write()
        shared.end_write(learner.version)

    engine.load_weights = written_meanwhile
    try:
        with pytest.raises(SharedWeightsError, match="torn"):
            worker.load_shared_weights(learner.version)
    finally:
        engine.load_weights = load
    assert engine.version == -1  # not trusted until the next good load
    assert worker.load_shared_weights(learner.version) == learner.version
