"""Decoding built clips (shapes, dtypes, frame choice, 16 kHz), the cache (decoded once, identical arrays),
and take_with_media: a clip that becomes unreadable mid-run is skipped and counted, or fails the run."""

import urllib.request
from dataclasses import replace

import numpy as np
import pytest

from orchestrator.data import PromptSampler, load_prompts
from orchestrator.errors import MediaError
from orchestrator.media import SAMPLE_RATE
from orchestrator.media_loader import MediaLoader, take_with_media
from orchestrator.tracking import MetricsSink
from tests.support.clips import copy_rows


@pytest.fixture
def record(clip_set):
    return load_prompts(clip_set.train)[0]


def test_decode_gives_8_uniform_rgb_frames_and_16khz_mono_audio(clip_set, record, tmp_path):
    media = MediaLoader(tmp_path / "cache").load(record)
    assert set(media) == {"video", "audio", "video_fps", "cache_key", "info"}
    video, audio = media["video"], media["audio"]
    assert video.dtype == np.uint8 and video.shape == (8, 96, 96, 3)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # The clip is 2.0 s: 32000 samples at 16 kHz, plus at most the AAC encoder's padding (< 0.1 s).
    assert 2.0 * SAMPLE_RATE <= audio.size <= 2.1 * SAMPLE_RATE
    assert 0.05 < np.abs(audio).max() <= 1.0  # speech, not silence
    assert media["info"]["source_frames"] == 30 and media["info"]["source_sample_rate"] == 22050
    assert media["video_fps"] == pytest.approx(8 / 2.0)
    assert len(media["cache_key"]) == 64
    assert len({frame.tobytes() for frame in video}) > 1  # the face moves: distinct frames


def test_the_sampled_frames_are_the_uniform_ones(record, tmp_path):
    loader = MediaLoader(tmp_path / "cache")
    every = loader.load(replace(record, num_frames=30))["video"]
    four = loader.load(replace(record, num_frames=4))["video"]
    assert every.shape[0] == 30
    assert np.array_equal(four, every[[0, 10, 19, 29]])  # round(29 * i / 3)
    by_fps = loader.load(replace(record, num_frames=None, fps=5.0))
    assert by_fps["video"].shape[0] == 10 and by_fps["video_fps"] == pytest.approx(5.0)


def test_frames_are_resized_within_the_pixel_limit(record, tmp_path):
    small = MediaLoader(tmp_path / "cache", max_pixels=48 * 48).load(record)["video"]
    assert small.shape == (8, 48, 48, 3)


def test_audio_file_only_row(record, tmp_path):
    audio_only = replace(record, video=None, audio=record.video, num_frames=None)  # the clip as an audio file
    media = MediaLoader(tmp_path / "cache").load(audio_only)
    assert set(media) == {"audio", "cache_key", "info"}
    assert media["audio"].dtype == np.float32


def test_cache_decodes_once_and_returns_identical_arrays(clip_set, tmp_path):
    rows = copy_rows(clip_set, tmp_path, count=2)
    first, second = load_prompts(rows)
    cold = MediaLoader(tmp_path / "cache")
    a = cold.load(first)
    cold.load(second)
    assert (cold.decodes, cold.hits) == (2, 0)
    again = cold.load(first)
    warm = MediaLoader(tmp_path / "cache")  # another run (or the learner's side) on the same cache
    b = warm.load(first)
    assert (cold.decodes, cold.hits, warm.decodes, warm.hits) == (2, 1, 0, 1)
    for other in (again, b):
        assert other["cache_key"] == a["cache_key"]
        for name in ("video", "audio"):
            assert other[name].dtype == a[name].dtype and other[name].tobytes() == a[name].tobytes()
    # Other sampling settings, or other bytes under the same name, are another entry: decoded again.
    warm.load(replace(first, num_frames=4))
    assert warm.decodes == 1
    (tmp_path / first.video).write_bytes((tmp_path / second.video).read_bytes())
    c = warm.load(first)
    assert warm.decodes == 1 and warm.hits == 2  # same bytes as `second`: its entry
    assert c["cache_key"] != a["cache_key"] and np.array_equal(c["video"], cold.load(second)["video"])


def test_unreadable_clips_mid_run_are_skipped_and_counted(clip_set, tmp_path):
    path = copy_rows(clip_set, tmp_path, count=4)
    records = load_prompts(path)
    loader = MediaLoader(tmp_path / "cache")
    assert [loader.load(r)["video"].shape for r in records] == [(8, 96, 96, 3)] * 4  # all good at the start
    # Mid-run one clip disappears and another is overwritten with garbage (its cache entry is keyed by
    # the old bytes, so it is decoded again and fails).
    (tmp_path / records[1].video).unlink()
    (tmp_path / records[2].video).write_bytes(b"\x00garbage" * 100)
    sampler = PromptSampler(records, seed=0, shuffle=False)
    taken, media, errors = take_with_media(sampler, 2, loader)
    assert [r.id for r in taken] == [records[0].id, records[3].id]  # the next prompts replaced them
    assert [m["cache_key"] for m in media] == [loader.load(r)["cache_key"] for r in taken]
    assert [(e.path, e.problem) for e in errors] == [
        (records[1].video, "missing file"),
        (records[2].video, "undecodable"),
    ]
    assert sampler.state() == {"epoch": 0, "cursor": 4}


def test_fail_raises_naming_the_file(clip_set, tmp_path):
    records = load_prompts(copy_rows(clip_set, tmp_path, count=2))
    (tmp_path / records[0].video).unlink()
    sampler = PromptSampler(records, seed=0, shuffle=False)
    with pytest.raises(MediaError, match="missing file") as err:
        take_with_media(sampler, 1, MediaLoader(tmp_path / "cache"), on_media_error="fail")
    assert records[0].video in str(err.value) and "on_media_error=fail" in str(err.value)


def test_every_clip_unreadable_stops_instead_of_looping(clip_set, tmp_path):
    records = load_prompts(copy_rows(clip_set, tmp_path, count=2))
    for r in records:
        (tmp_path / r.video).unlink()
    sampler = PromptSampler(records, seed=0, shuffle=False)
    with pytest.raises(MediaError, match="no readable clip"):
        take_with_media(sampler, 1, MediaLoader(tmp_path / "cache"))


def test_text_prompts_pass_through_without_media(tmp_path):
    records = load_prompts("data/prompts/test.jsonl")[:3]
    taken, media, errors = take_with_media(PromptSampler(records, 0, False), 3, MediaLoader(tmp_path))
    assert taken == records and media == [None] * 3 and errors == []


def test_media_errors_counter_on_the_metrics_page(tmp_path):
    sink = MetricsSink(tmp_path, prometheus_port=0, tensorboard=False)
    try:
        for errors in (2, 1):
            sink.log({"step": 1, "media_errors": errors})
        with urllib.request.urlopen(f"http://127.0.0.1:{sink.prometheus_port}/metrics", timeout=10) as resp:
            page = resp.read().decode()
    finally:
        sink.close()
    assert "erv_grpo_media_errors_total 3.0" in page
