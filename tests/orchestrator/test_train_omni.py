"""End to end on configs/tiny-omni.yaml: 3 GRPO steps on synthetic emotion clips with a tiny Qwen2.5-Omni
thinker, 2 vLLM rollout workers (video + audio prompts), the reward service (tiny ERV) and the learner.

A spy on the loop's build_batch sees every step's scored groups and the media the batch carries.
"""

import pytest

from orchestrator import loop
from orchestrator.config import load_config
from orchestrator.tracking import read_metrics
from tests.support.clips import write_rows
from tests.support.tiny_erv import build_tiny_erv
from tests.support.tiny_omni_policy import build_tiny_formatted_omni

pytestmark = pytest.mark.slow
G, B = 4, 2


@pytest.fixture(scope="module")
def omni_run(clip_set, tmp_path_factory):
    return _run(clip_set, tmp_path_factory.mktemp("omni"))


@pytest.fixture(scope="module")
def omni_async_run(clip_set, tmp_path_factory):
    """The same with run.max_staleness=1: step s+1's clip prompts are generated during step s's update."""
    return _run(clip_set, tmp_path_factory.mktemp("omni-async"), "run.max_staleness=1")


def _run(clip_set, tmp, *more):
    import ray

    rows = [dict(r, video=str(clip_set.dir / r["video"])) for r in clip_set.rows("train")[:4]]
    config = load_config("configs/tiny-omni.yaml", [
        f"learner.model={build_tiny_formatted_omni(tmp / 'policy')}",
        f"reward.model_dir={build_tiny_erv(tmp / 'erv')}",
        f"run.output_dir={tmp / 'runs'}",
        f"data.train_file={write_rows(tmp / 'train.jsonl', rows)}",
        f"data.media_cache_dir={tmp / 'media'}",
        *more,
    ])  # fmt: skip
    seen, versions = [], []
    real = loop.build_batch

    def spy(groups, group_size, version, media=None):
        seen.append((groups, media))
        return real(groups, group_size, version, media=media)

    def on_step(step, run):
        versions.append(ray.get([w.policy_version.remote() for w in run.cluster.workers]))

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "build_batch", spy)
    try:
        run_dir = loop.train(config, on_step=on_step)
    finally:
        mp.undo()
        ray.shutdown()
    return read_metrics(run_dir), seen, versions


def test_every_completion_of_every_clip_prompt_is_scored(omni_run):
    records, seen, _ = omni_run
    assert [r["step"] for r in records] == [1, 2, 3] and len(seen) == 3
    for groups, media in seen:
        assert len(groups) == B
        assert all(len(g.rewards) == len(g.completions) == G for g in groups)  # B*G rewards, none missing
        assert all(0.0 <= r.total <= 3.0 for g in groups for r in g.rewards)
        # the batch carries each prompt's clip (frames and audio) and the engine's expanded prompt
        assert media is not None and set(media) == {g.prompt_id for g in groups}
        for g in groups:
            assert media[g.prompt_id]["video"].ndim == 4 and media[g.prompt_id]["audio"].ndim == 1
            assert "<|VIDEO|>" in g.prompt_text and "<|AUDIO|>" in g.prompt_text
    for r in records:
        assert r["num_sequences"] == B * G and r["media_errors"] == 0
        assert r["reward/total"] == pytest.approx(
            r["reward/explanation"] + r["reward/format"] + r["reward/answer"]
        )


def test_the_loss_moves_and_the_engines_get_the_new_weights_with_parity(omni_run):
    records, seen, versions = omni_run
    for r, (groups, _) in zip(records, seen, strict=True):
        print(
            f"step {r['step']}: rewards {[round(x, 3) for g in groups for x in g.totals]}, loss {r['loss']:.4g}, "
            f"kl {r['kl']:.3g}, sync parity {r['sync_logprob_abs_diff']:.3g}, "
            f"sampler parity {r['sampler_logprob_abs_diff']:.3g}, media_errors {r['media_errors']}"
        )
    assert versions == [[1, 1], [2, 2], [3, 3]]
    for r in records:
        assert r["sampled_version"] == r["step"] - 1 and r["policy_version"] == r["step"]
        # parity guard on multimodal probes after each sync, and the sampler-vs-learner gap of the batch
        assert r["sync_logprob_abs_diff"] <= 1e-3 and r["sampler_logprob_abs_diff"] <= 1e-3
    assert len({r["loss"] for r in records}) > 1
    assert records[-1]["kl"] > 0  # the policy left the reference: the update was applied


def test_async_rollouts_carry_the_clips_too(omni_async_run):
    records, seen, versions = omni_async_run
    assert [r["step"] for r in records] == [1, 2, 3] and versions == [[1, 1], [2, 2], [3, 3]]
    for groups, media in seen:
        assert len(groups) == B and all(len(g.rewards) == G for g in groups)
        assert media is not None and set(media) == {g.prompt_id for g in groups}
        assert all("<|VIDEO|>" in g.prompt_text for g in groups)
    for r in records:
        assert r["media_errors"] == 0 and r["staleness/max"] <= 1
        assert r["sync_logprob_abs_diff"] <= 1e-3
    assert records[-1]["kl"] > 0
