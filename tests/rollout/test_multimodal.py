"""Multimodal prompts through a real vLLM CPU engine and the learner, on tiny random Qwen2.5-Omni (video + audio)
and Qwen2.5-VL (video) models in fp32: the engine's expanded prompt ids equal the learner's processor ids,
sampler and learner logprobs agree, placeholder tokens are never sampled, weight sync covers the towers.
"""

import pytest
import torch

from orchestrator.weight_sync import logprob_abs_diff
from policy.config import LearnerConfig
from policy.learner import Learner
from policy.tiny_omni import MAX_PIXELS, MIN_PIXELS, build_tiny_omni, build_tiny_vl
from rollout.config import CPU_VLLM_ENV
from tests.support.tiny_media import clip_messages, make_media

pytestmark = pytest.mark.slow

SIZES = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
PARITY = 1e-3  # mean |sampler - learner| logprob over completion tokens (fp32)


def make_pair(family, path):
    from rollout.engine import VllmEngine

    torch.set_num_threads(1)
    learner = Learner(LearnerConfig(model=str(path), device="cpu", mm_processor_kwargs=SIZES))
    limit = {"video": 1, "audio": 1} if family == "omni" else {"video": 1}
    engine = VllmEngine(path, max_model_len=512, seed=0, env=CPU_VLLM_ENV, limit_mm_per_prompt=limit,
                        mm_processor_kwargs=SIZES)  # fmt: skip
    return learner, engine


@pytest.fixture(scope="module")
def omni(tmp_path_factory):
    learner, engine = make_pair("omni", build_tiny_omni(tmp_path_factory.mktemp("omni")))
    yield learner, engine
    del engine


def sample(engine, audio: bool, seed: int = 0, n_prompts: int = 2, max_tokens: int = 24, fps=None):
    media = [make_media(seed=seed + i, audio=audio) for i in range(n_prompts)]
    for m in media if fps is not None else []:
        m["video_fps"] = fps  # as the clip decoder reports it (8 frames of a 2 s clip: 4 fps)
    prompts = [clip_messages(audio=audio)] * n_prompts
    groups = engine.generate(prompts, n=2, temperature=1.0, max_tokens=max_tokens,
                             seeds=[seed + i for i in range(n_prompts)], media=media)  # fmt: skip
    return groups, media


def parity(learner, groups, media) -> float:
    """Mean |engine - learner| over every completion token of every group, via Learner.logprobs with media."""
    rows = [(g, m, c) for g, m in zip(groups, media, strict=True) for c in g.completions]
    learner_lps = learner.logprobs([g.prompt_token_ids for g, _, _ in rows], [c.token_ids for _, _, c in rows],
                                   media=[m for _, m, _ in rows], prompt_texts=[g.prompt_text for g, _, _ in rows])  # fmt: skip
    return logprob_abs_diff([c.logprobs for _, _, c in rows], learner_lps)[0]


def test_omni_parity_on_video_and_audio_prompts(omni):
    learner, engine = omni
    groups, media = sample(engine, audio=True)
    vocab = engine.tokenizer.get_vocab()
    assert all(g.prompt_token_ids.count(vocab["<|VIDEO|>"]) > 1 for g in groups)  # expanded by vLLM
    assert all(g.prompt_token_ids.count(vocab["<|AUDIO|>"]) > 1 for g in groups)
    diff = parity(learner, groups, media)  # also checks the learner's prompt ids equal the engine's
    print(f"omni parity (video + audio): mean |sampler - learner| = {diff:.3g}")
    assert diff <= PARITY


@pytest.mark.parametrize("fps", [4.0, 1.0])
def test_omni_parity_at_the_clips_frame_rate(omni, fps):
    # The frame rate sets the temporal rotary step; vLLM's Omni processor reads it only as a kwarg
    # (without it, 2 fps): a 4 fps clip was 2.4e-3 off before the engine passed it per request.
    learner, engine = omni
    groups, media = sample(engine, audio=True, fps=fps)
    assert parity(learner, groups, media) <= PARITY


def test_placeholders_are_never_sampled_even_when_heavily_favoured(omni):
    learner, engine = omni
    banned = engine.banned_token_ids
    assert {
        engine.tokenizer.convert_tokens_to_ids(t) for t in ("<|VIDEO|>", "<|AUDIO|>", "<|vision_bos|>")
    } <= set(banned)
    with torch.no_grad():  # an output layer that puts almost all mass on the placeholders
        head = learner.policy.lm_head.weight
        saved = head.clone()
        head[banned] = 50.0 * head[0].sign().expand(len(banned), -1) / head.shape[1] ** 0.5
        engine.load_weights(1, learner.export_weights()[1])
        prompt = engine.prompt_token_ids("Hello")
        lps = learner.logprobs([prompt] * len(banned), [[t] for t in banned])
        assert sum(torch.tensor(lp).exp().item() for lp in lps) > 0.9  # the policy would draw placeholders
        groups, _ = sample(engine, audio=True, max_tokens=8)
        head.copy_(saved)
        engine.load_weights(2, learner.export_weights()[1])
    drawn = {t for g in groups for c in g.completions for t in c.token_ids}
    assert drawn and not drawn & set(banned)


@torch.no_grad()
def perturb(tensor: torch.Tensor, seed: int, scale: float = 0.05) -> None:
    tensor.add_(scale * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(seed)))


def test_weight_sync_covers_vision_audio_and_language_model(omni):
    learner, engine = omni
    params = dict(learner.policy.named_parameters())
    touched = ["visual.blocks.0.mlp.gate_proj.weight", "visual.merger.mlp.0.weight",
               "audio_tower.layers.0.fc1.weight", "audio_tower.proj.weight", "model.layers.1.mlp.up_proj.weight"]  # fmt: skip
    for k, name in enumerate(touched):
        perturb(params[name], seed=k, scale=0.5)
    version, buckets = learner.export_weights(64 << 10)
    # Skipping the towers' names leaves the engine's encoders stale: the guard sees it.
    text_only = [
        [(n, t) for n, t in b if not n.startswith(("thinker.visual.", "thinker.audio_tower."))]
        for b in buckets
    ]
    engine.load_weights(version, text_only)
    stale = parity(learner, *sample(engine, audio=True, seed=3))
    engine.load_weights(version, buckets)
    synced = parity(learner, *sample(engine, audio=True, seed=3))
    print(f"after sync: {synced:.3g}; towers skipped: {stale:.3g}")
    assert synced <= PARITY < stale


def test_worker_sends_media_once_per_prompt_and_the_learner_updates_on_its_groups(omni):
    from policy.advantages import group_advantages
    from policy.batch import RolloutBatch
    from rollout.config import RolloutConfig
    from rollout.worker import RewardScore, RolloutRequest, RolloutWorker

    learner, engine = omni
    engine.load_weights(learner.version, learner.export_weights()[1])
    seen = []

    class Spy:
        version = engine.version

        def iter_generate(self, prompts, **kw):
            seen.append(kw["media"])
            yield from engine.iter_generate(prompts, **kw)

    async def score(inputs, request_id):
        return {x.id: RewardScore(0.0, 0.0, 0.0, float(len(x.text) % 3), None) for x in inputs}

    requests = [
        RolloutRequest(f"c{i}", clip_messages(), "happy", seed=i, media=make_media(seed=i)) for i in range(2)
    ]
    config = RolloutConfig(group_size=3, max_tokens=12, max_model_len=512)
    worker = RolloutWorker(0, "unused", config, engine=Spy(), score_fn=score)
    try:
        result = worker.rollout(requests, request_tag="t")
    finally:
        worker.close()
    assert result.error is None and len(result.groups) == 2
    assert len(seen) == 1 and [m is r.media for m, r in zip(seen[0], requests, strict=True)] == [True, True]
    groups = result.groups
    assert all(g.prompt_text and "<|VIDEO|>" in g.prompt_text for g in groups)
    rows = [(gi, g, c) for gi, g in enumerate(groups) for c in g.completions]
    batch = RolloutBatch(
        prompt_token_ids=[g.prompt_token_ids for _, g, _ in rows],
        completion_token_ids=[c.token_ids for _, _, c in rows],
        advantages=group_advantages(torch.tensor([t for g in groups for t in g.totals]), 3).tolist(),
        sampler_logprobs=[c.logprobs for _, _, c in rows],
        completion_ids=[cid for g in groups for cid in g.completion_ids],
        policy_version=groups[0].policy_version,
        media=[r.media for r in requests],
        prompt_texts=[g.prompt_text for g in groups],
        row_group=[gi for gi, _, _ in rows],
    )
    metrics = learner.update(batch)
    print(f"update on vLLM's groups: sampler_logprob_abs_diff = {metrics['sampler_logprob_abs_diff']:.3g}")
    assert metrics["sampler_logprob_abs_diff"] <= PARITY


def test_the_collective_transport_syncs_the_towers_too(omni):
    from policy import weight_transport
    from tests.rollout.test_weight_transport import free_port, in_thread

    learner, engine = omni
    port = free_port()
    sender = in_thread(lambda: weight_transport.WeightSender("127.0.0.1", port, 2, timeout_s=60))
    engine.open_weight_transport("127.0.0.1", port, 1, 2, 60)
    sender = sender()
    params = dict(learner.policy.named_parameters())
    for k, name in enumerate(["visual.blocks.1.mlp.up_proj.weight", "audio_tower.layers.1.fc2.weight"]):
        perturb(params[name], seed=10 + k, scale=0.5)
    learner._version += 1  # a new version to send (as an update would make)
    sent = in_thread(lambda: weight_transport.send(learner.policy, learner.version, 64 << 10, sender,
                                                   prefix=learner.export_prefix))  # fmt: skip
    assert engine.receive_weights() == learner.version
    assert all(s.name.startswith("thinker.") for b in sent().buckets for s in b.slots)
    diff = parity(learner, *sample(engine, audio=True, seed=7))
    print(f"after a collective sync: {diff:.3g}")
    assert diff <= PARITY
    sender.close()


def test_vl_parity_on_video_prompts(tmp_path):
    # Last in the module: a second engine in the process; deleting it tears down vLLM's parallel state.
    learner, engine = make_pair("vl", build_tiny_vl(tmp_path / "vl"))
    try:
        for fps in (None, 4.0):
            groups, media = sample(engine, audio=False, fps=fps)
            diff = parity(learner, groups, media)
            print(f"Qwen2.5-VL parity (video, fps {fps}): mean |sampler - learner| = {diff:.3g}")
            assert diff <= PARITY
    finally:
        del engine
