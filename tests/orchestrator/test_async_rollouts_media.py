"""The rollout pipeline with clip prompts, on the fake pool of test_async_rollouts (no Ray, no engine, no
decoding: a fake loader): requests carry the typed prompt and the clip, also for steps generated ahead;
an unreadable clip is counted and replaced; media_of gives the consumed groups' clips."""

from types import SimpleNamespace

from orchestrator.async_rollouts import RolloutPipeline
from orchestrator.data import PromptRecord, PromptSampler, model_prompt
from orchestrator.errors import MediaError
from tests.orchestrator.test_async_rollouts import FakePool


class FakeLoader:
    def __init__(self, bad=()):
        self.bad, self.loads = set(bad), []

    def load(self, record):
        self.loads.append(record.id)
        if record.id in self.bad:
            raise MediaError(record.video, "undecodable")
        return {"video": f"frames of {record.id}", "cache_key": record.id}


def _pipeline(eta, loader):
    records = [PromptRecord(f"c{i}", "Which emotion?", "happy", "t", video=f"/clips/{i}.mp4",
                            audio="from_video", num_frames=8) for i in range(6)]  # fmt: skip
    config = SimpleNamespace(
        run=SimpleNamespace(max_staleness=eta, steps=3, prompts_per_step=2, seed=7, name="r"),
        dynamic_sampling=SimpleNamespace(enabled=False),
        data=SimpleNamespace(on_media_error="skip"),
    )
    pool = FakePool()
    requests = []
    submit = pool.submit
    pool.submit = lambda reqs, tag: (requests.extend(reqs), submit(reqs, tag))[1]
    sampler = PromptSampler(records, seed=7, shuffle=False)
    pipe = RolloutPipeline(pool, sampler, config, lambda: pool.version, lambda err: None, loader)
    return pipe, pool, records, requests


def test_requests_carry_the_typed_prompt_and_the_clip_also_ahead():
    pipe, pool, records, requests = _pipeline(eta=1, loader=FakeLoader())
    groups, stats = pipe.batch(1)  # starts step 2 ahead
    assert [r.prompt_id for r in requests] == ["c0", "c1", "c2", "c3"]
    for r, record in zip(requests, records, strict=False):
        assert r.prompt == model_prompt(record) and r.media == {
            "video": f"frames of {r.prompt_id}",
            "cache_key": r.prompt_id,
        }
    assert set(pipe.media_of(groups)) == {"c0", "c1"} and stats["media_errors"] == 0
    pool.version += 1
    groups, _ = pipe.batch(2)
    assert set(pipe.media_of(groups)) == {"c2", "c3"}
    assert set(pipe.media) == {"c2", "c3", "c4", "c5"}  # step 1's clips let go, step 3's taken ahead


def test_an_unreadable_clip_is_counted_and_its_prompt_replaced():
    pipe, _, _, requests = _pipeline(eta=0, loader=FakeLoader(bad={"c1"}))
    groups, stats = pipe.batch(1)
    assert [g.prompt_id for g in groups] == ["c0", "c2"] and stats["media_errors"] == 1
    assert all(r.media is not None for r in requests)
    _, stats = pipe.batch(2)
    assert stats["media_errors"] == 0  # counted once, in the step that met it


def test_text_prompts_without_a_loader_stay_text():
    pipe, _, _, requests = _pipeline(eta=0, loader=None)
    pipe.sampler.records = [PromptRecord(f"t{i}", f"prompt {i}", "sad", "t") for i in range(4)]
    groups, _ = pipe.batch(1)
    assert [r.prompt for r in requests] == ["prompt 0", "prompt 1"] and all(r.media is None for r in requests)
    assert pipe.media_of(groups) is None
