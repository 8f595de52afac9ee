"""The learner on a tiny random Qwen2.5-Omni thinker: processor tensors, the prompt-id check, frozen towers,
one processor run per prompt, export names for vLLM. No vLLM here (tests/rollout/test_multimodal.py has it)."""

import pytest
import torch

from policy.batch import RolloutBatch
from policy.config import LearnerConfig
from policy.learner import Learner
from policy.multimodal import PromptIdsMismatchError
from policy.tiny_omni import MAX_PIXELS, MIN_PIXELS, build_tiny_omni
from tests.support.tiny_media import clip_messages, make_media

SIZES = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}


@pytest.fixture(scope="module")
def omni_dir(tmp_path_factory):
    return build_tiny_omni(tmp_path_factory.mktemp("tiny-omni"))


def learner_for(path, **kw) -> Learner:
    return Learner(LearnerConfig(model=str(path), device="cpu", lr=1e-2, mm_processor_kwargs=SIZES, **kw))


def mm_batch(learner: Learner, prompts: int = 2, group_size: int = 3) -> RolloutBatch:
    """Rows whose prompt ids are what the processor expands (as vLLM's are; checked in tests/rollout)."""
    g = torch.Generator().manual_seed(0)
    media, texts, rows = [], [], {"p": [], "c": [], "ids": [], "group": []}
    for b in range(prompts):
        media.append(make_media(seed=b))
        texts.append(
            learner.tokenizer.apply_chat_template(clip_messages(), add_generation_prompt=True, tokenize=False)
        )
        ids = learner.processor(texts[-1], media[-1])["input_ids"][0].tolist()
        for k in range(group_size):
            rows["p"].append(ids)
            rows["c"].append(torch.randint(3, 480, (2 + (b + k) % 3,), generator=g).tolist())
            rows["ids"].append(f"p{b}/{k}")
            rows["group"].append(b)
    n = len(rows["c"])
    return RolloutBatch(rows["p"], rows["c"], torch.randn(n, generator=g).tolist(), [[-6.0] * len(c) for c in rows["c"]],
                        rows["ids"], 0, media=media, prompt_texts=texts, row_group=rows["group"])  # fmt: skip


def test_a_prompt_id_difference_fails_naming_the_completion_and_position(omni_dir):
    learner = learner_for(omni_dir)
    batch = mm_batch(learner)
    batch.prompt_token_ids[4] = list(batch.prompt_token_ids[4])
    batch.prompt_token_ids[4][7] += 1
    with pytest.raises(PromptIdsMismatchError, match=r"'p1/1'.*position 7"):
        learner.update(batch)
    batch.prompt_token_ids[4] = batch.prompt_token_ids[4][:-2]  # shorter: the end is the first difference
    batch.prompt_token_ids[4][7] -= 1
    with pytest.raises(PromptIdsMismatchError, match=r"'p1/1'.*position"):
        learner.update(batch)


def test_update_trains_the_language_model_and_leaves_frozen_towers_alone(omni_dir):
    learner = learner_for(omni_dir)
    batch = mm_batch(learner)
    calls = []
    process = learner.processor.__class__.__call__
    learner.processor.__class__.__call__ = lambda self, *a: calls.append(1) or process(self, *a)
    try:
        before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
        metrics = learner.update(batch)
    finally:
        learner.processor.__class__.__call__ = process
    assert len(calls) == 2  # one processor run per prompt for its 3 completions and all passes
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    after = learner.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.layers.") for k in changed)
    assert not any(k.startswith(("visual.", "audio_tower.")) for k in changed)
    state = learner.optimizer.state
    for name, p in learner.policy.named_parameters():
        if name.startswith(("visual.", "audio_tower.")):
            assert not p.requires_grad and p.grad is None and p not in state, name
    assert all(not p.requires_grad for p in learner.reference.parameters())


def test_unfrozen_towers_get_gradients_and_move(omni_dir):
    learner = learner_for(omni_dir, freeze_vision=False, freeze_audio=False)
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    learner.update(mm_batch(learner))
    after = learner.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("visual.") for k in changed)
    assert any(k.startswith("audio_tower.") for k in changed)


def test_logprobs_of_multimodal_rows_depend_on_the_media(omni_dir):
    learner = learner_for(omni_dir)
    batch = mm_batch(learner, prompts=1, group_size=1)
    args = (batch.prompt_token_ids, batch.completion_token_ids)
    a = learner.logprobs(*args, media=batch.media, prompt_texts=batch.prompt_texts)
    b = learner.logprobs(*args, media=[make_media(seed=5)], prompt_texts=batch.prompt_texts)
    assert len(a[0]) == len(batch.completion_token_ids[0])
    assert max(abs(x - y) for x, y in zip(a[0], b[0], strict=True)) > 1e-6


def test_export_names_carry_the_thinker_prefix_and_every_tower(omni_dir):
    learner = learner_for(omni_dir)
    _, buckets = learner.export_weights()
    names = [n for bucket in buckets for n, _ in bucket]
    assert all(n.startswith("thinker.") for n in names)
    assert any(n.startswith("thinker.visual.") for n in names)
    assert any(n.startswith("thinker.audio_tower.") for n in names)
    assert "thinker.lm_head.weight" in names  # untied: sent under its own name


def test_select_keeps_each_rows_media():
    media = [{"video": 1}, {"video": 2}, None]
    batch = RolloutBatch([[1]] * 4, [[2]] * 4, [0.0] * 4, [[0.0]] * 4, ["a", "b", "c", "d"], 0,
                         media=media, prompt_texts=["x", "y", None], row_group=[0, 1, 1, 2])  # fmt: skip
    sub = batch.select([1, 3])
    sub.validate()
    assert sub.media == [{"video": 2}, None] and sub.row_group == [0, 1] and sub.prompt_texts == ["y", None]
    with pytest.raises(ValueError, match="row_group"):
        RolloutBatch([[1]], [[2]], [0.0], [[0.0]], ["a"], 0, media=media, prompt_texts=["x", "y", None],
                     row_group=[5]).validate()  # fmt: skip


def test_a_checkpoint_is_an_omni_folder_and_resumes(omni_dir, tmp_path):
    import json

    learner = learner_for(omni_dir)
    learner.update(mm_batch(learner))
    learner.save(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5OmniForConditionalGeneration"]  # what vLLM serves
    assert (tmp_path / "ckpt" / "processor_config.json").is_file()
    resumed = learner_for(omni_dir)
    resumed.load(tmp_path / "ckpt")
    assert resumed.version == 1
    for (name, a), (_, b) in zip(
        learner.policy.state_dict().items(), resumed.policy.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_reference_mrope_positions_continue_after_the_videos_last_frame():
    from policy.multimodal import reference_mrope_positions

    V = 7  # video token id; a (2, 4, 4) grid merged 2x2 is 2 x 2 x 2 = 8 tokens, 4 rotary steps per frame pair
    ids = [1, 2, 3] + [V] * 8 + [4, 5]
    settings = {"image": 6, "video": V, "merge": 2, "tokens_per_second": 4}
    processed = {"video_grid_thw": torch.tensor([[2, 4, 4]]), "second_per_grid_ts": torch.tensor([1.0])}
    pos = reference_mrope_positions(ids, processed, settings)
    assert pos[:, :3].tolist() == [[0, 1, 2]] * 3
    assert pos[0, 3:11].tolist() == [3, 3, 3, 3, 7, 7, 7, 7]  # t: 0, 4 (+3)
    assert pos[1, 3:11].tolist() == [3, 3, 4, 4, 3, 3, 4, 4]  # h
    assert pos[2, 3:11].tolist() == [3, 4, 3, 4, 3, 4, 3, 4]  # w
    assert pos[:, 11:].tolist() == [[8, 9]] * 3  # largest position 7, + 1 (transformers 5.19 says 5)


def test_a_clip_seen_again_reuses_its_processor_tensors_keyed_by_content_and_prompt(omni_dir):
    learner = learner_for(omni_dir)
    proc = learner.processor
    text = learner.tokenizer.apply_chat_template(clip_messages(), add_generation_prompt=True, tokenize=False)
    clip = {**make_media(seed=0), "cache_key": "a" * 64}
    first = proc(text, clip)
    again = proc(text, {**make_media(seed=0), "cache_key": "a" * 64})  # the next epoch: new arrays, same clip
    assert proc.calls == 1 and again is first
    other = proc(text, {**make_media(seed=1), "cache_key": "b" * 64})
    assert proc.calls == 2 and not torch.equal(other["input_features"], first["input_features"])
    proc(text + " ", clip)  # another prompt text around the same clip is processed on its own
    assert proc.calls == 3
    proc(text, make_media(seed=0))  # no content key (arrays made by hand): never cached
    proc(text, make_media(seed=0))
    assert proc.calls == 5
    proc.max_cache_bytes = 0  # bounded by bytes: nothing stays
    proc(text, {**make_media(seed=2), "cache_key": "c" * 64})
    assert proc.cache_bytes == 0 and not proc._cache
