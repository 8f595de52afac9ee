"""Weight sync through the real path (Learner.export_weights -> VllmEngine.load_weights) keeps the
engine's sampling logprobs equal to the learner's, for tied and untied tiny Qwen2 models.

The tied case is the one vLLM's in-place reload got wrong: the LM head shares the input embedding, so
no weight is ever sent under its name, and its CPU GEMM kept the weights packed at engine start.
"""

import pytest
import torch

from orchestrator.weight_sync import logprob_abs_diff, verdict
from policy.config import LearnerConfig
from policy.learner import Learner
from rollout.config import CPU_VLLM_ENV
from tests.support.tiny_models import build_tiny_qwen2

pytestmark = pytest.mark.slow

PROMPTS = ["The man smiles and laughs loudly.", "She cries and looks down.", "He frowns.", "Wide eyes."]


def mean_abs_diff(learner: Learner, engine, seed: int) -> float:
    """Sample 4 prompts x 40 tokens with the engine; mean |engine - learner| logprob of the sampled tokens."""
    groups = engine.generate(PROMPTS, n=1, temperature=1.0, max_tokens=40, seeds=[seed + i for i in range(4)])
    completions = [g.completions[0] for g in groups]
    learner_lps = learner.logprobs([g.prompt_token_ids for g in groups], [c.token_ids for c in completions])
    return logprob_abs_diff([c.logprobs for c in completions], learner_lps)[0]


def sync(learner: Learner, engine, bucket_bytes: int = 64 << 10) -> None:
    version, buckets = learner.export_weights(bucket_bytes)
    engine.load_weights(version, buckets)


@torch.no_grad()
def perturb(tensor: torch.Tensor, seed: int) -> None:
    tensor.add_(0.02 * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed)))


def test_parity_after_perturbing_the_input_embedding(pair):
    kind, learner, engine = pair
    assert learner.policy.config.tie_word_embeddings == (kind == "tied")
    assert mean_abs_diff(learner, engine, seed=1) <= 1e-4  # same weights at start

    perturb(learner.policy.get_input_embeddings().weight, seed=11)
    learner._version += 1
    sync(learner, engine)
    assert mean_abs_diff(learner, engine, seed=2) <= 1e-4


def test_parity_after_perturbing_the_output_layer_and_an_mlp(pair):
    kind, learner, engine = pair
    perturb(learner.policy.get_output_embeddings().weight, seed=12)  # the embedding itself when tied
    perturb(learner.policy.model.layers[0].mlp.down_proj.weight, seed=13)
    learner._version += 1
    sync(learner, engine)
    assert mean_abs_diff(learner, engine, seed=3) <= 1e-4


def test_the_guard_defaults_stop_a_run_on_the_old_reload_path(pair, worker):
    """vLLM's plain in-place reload (what load_weights did before) leaves a tied head stale; the parity
    guard's default thresholds must stop such a run, and pass the fixed path."""
    from orchestrator.config import SyncGuardConfig

    kind, learner, engine = pair
    guard = SyncGuardConfig()

    def check() -> str:
        probe = worker.probe(PROMPTS[: guard.probe_prompts], max_tokens=guard.probe_tokens, seeds=[4, 5])
        mean, _ = logprob_abs_diff(
            probe["logprobs"], learner.logprobs(probe["prompt_token_ids"], probe["token_ids"])
        )
        return verdict(mean, guard.warn_above, guard.stop_above)

    perturb(learner.policy.get_input_embeddings().weight, seed=14)
    _, buckets = learner.export_weights()
    weights = [(name, t) for bucket in buckets for name, t in bucket]
    engine.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
    assert check() == ("stop" if kind == "tied" else "ok")
    sync(learner, engine)
    assert check() == "ok"


def test_a_bf16_engine_samples_the_same_from_a_bf16_export_as_from_fp32(tmp_path):
    """The object-store sync exports bf16 to bf16 engines (orchestrator/weight_sync.export_dtype): the
    engine must land on the bits its own fp32 -> bf16 load gives, so seeded samples are identical."""
    from rollout.engine import VllmEngine

    path = build_tiny_qwen2(tmp_path / "qwen2", tied=True)
    torch.set_num_threads(1)
    learner = Learner(LearnerConfig(model=str(path), device="cpu"))
    engine = VllmEngine(path, dtype="bfloat16", max_model_len=256, seed=0, env=CPU_VLLM_ENV)
    try:
        perturb(learner.policy.get_input_embeddings().weight, seed=21)
        perturb(learner.policy.model.layers[0].mlp.down_proj.weight, seed=22)

        def sample(dtype, engine=engine) -> list:
            version, buckets = learner.export_weights(64 << 10, dtype=dtype)
            engine.load_weights(version, buckets)
            groups = engine.generate(PROMPTS, n=1, temperature=1.0, max_tokens=24, seeds=[7, 8, 9, 10])
            return [(g.completions[0].token_ids, g.completions[0].logprobs) for g in groups]

        before = sample(None)  # fp32 export: the engine rounds
        assert sample(torch.bfloat16) == before  # bf16 export: the learner rounded
        perturb(learner.policy.model.layers[0].mlp.down_proj.weight, seed=23)
        assert sample(torch.bfloat16) != before  # the weights did change what it samples
    finally:
        del engine
