"""rollout/inplace_load.py inside a real CPU vLLM engine (tiny Qwen2, tied and untied): the plan covers
exactly what the learner exports, the fast path is the one a sync takes (no silent fall back to vLLM's
reload), and a sync that does not fit the model fails with the tensor named, before the engine is touched.

Parity of the loaded weights (logprobs equal the learner's) is tested through the same path in
test_weight_sync.py and test_weight_transport.py.
"""

import pytest
import torch

from tests.rollout.test_weight_sync import mean_abs_diff, perturb

pytestmark = pytest.mark.slow


def planned_sources(worker) -> list[str] | None:
    """In vLLM's worker: the checkpoint names the fast load expects (None: it would fall back)."""
    from rollout.inplace_load import plan_load

    plan = plan_load(worker.model_runner.get_model())
    return None if plan is None else sorted(plan.by_source)


def exported(learner) -> list[tuple[str, torch.Tensor]]:
    _, buckets = learner.export_weights(64 << 10)
    return [(name, t) for bucket in buckets for name, t in bucket]


def load(engine, weights) -> list[str]:
    (repacked,) = engine.llm.collective_rpc("load_policy_weights", kwargs={"weights": weights})
    return repacked


def test_the_plan_expects_exactly_what_the_learner_exports(pair):
    kind, learner, engine = pair
    (sources,) = engine.llm.collective_rpc(planned_sources)
    assert sources == sorted(name for name, _ in exported(learner))
    assert ("lm_head.weight" in sources) == (kind == "untied")  # a tied head travels as the embedding


def test_a_sync_takes_the_fast_path_and_repacks_every_linear_and_the_head(pair):
    kind, learner, engine = pair
    repacked = load(engine, exported(learner))
    layers = learner.policy.config.num_hidden_layers
    assert "lm_head" in repacked  # tied: repacked although no tensor carries its name
    assert "model.embed_tokens" not in repacked  # the lookup reads the weight; its packed copy is unused
    assert (
        sum(name.endswith(("qkv_proj", "o_proj", "gate_up_proj", "down_proj")) for name in repacked)
        == 4 * layers
    )


def test_a_stream_is_loaded_as_it_arrives(pair):
    """The collective transport hands the load a generator: the same result as a list."""
    _, learner, engine = pair
    perturb(learner.policy.model.layers[0].self_attn.k_proj.weight, seed=51)
    learner._version += 1
    before = mean_abs_diff(learner, engine, seed=11)
    load(engine, (item for item in exported(learner)))
    assert before > 1e-3 and mean_abs_diff(learner, engine, seed=12) <= 1e-4


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda w: w + [("model.layers.0.mlp.extra.weight", torch.zeros(2, 2))],
            "is not a tensor of the engine",
        ),
        (lambda w: w[:-1], "never came"),
        (lambda w: w + w[:1], "was sent twice"),
        (lambda w: [(n, t[:-1] if n.endswith("k_proj.weight") else t) for n, t in w], "has shape"),
    ],
    ids=["unknown", "missing", "twice", "shape"],
)
def test_a_sync_that_does_not_fit_fails_named_and_leaves_the_engine_as_it_was(pair, change, message):
    from rollout.inplace_load import WeightLoadError

    _, learner, engine = pair
    load(engine, exported(learner))
    perturb(learner.policy.model.layers[1].mlp.up_proj.weight, seed=52)
    learner._version += 1
    stale = mean_abs_diff(learner, engine, seed=13)
    with pytest.raises(WeightLoadError, match=message):
        load(engine, change(exported(learner)))
    assert mean_abs_diff(learner, engine, seed=13) == pytest.approx(stale, abs=1e-6)  # nothing was loaded
