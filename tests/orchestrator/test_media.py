"""The pure media parts: uniform frame indices, frame sizes, cache keys and the .npz cache store."""

import numpy as np
import pytest

from orchestrator.media import MediaCache, MediaSpec, cache_key, fit_within, uniform_frame_indices


@pytest.mark.parametrize(
    "total, count, expected",
    [
        (10, 4, [0, 3, 6, 9]),  # linspace(0, 9, 4) = 0, 3, 6, 9
        (30, 8, [0, 4, 8, 12, 17, 21, 25, 29]),  # 29 * i / 7 rounded
        (5, 1, [2]),  # one frame: the middle one
        (3, 8, [0, 1, 2]),  # fewer frames than asked: all of them
        (0, 8, []),
    ],
)
def test_uniform_frame_indices_by_hand(total, count, expected):
    assert uniform_frame_indices(total, count) == expected


def test_frame_count_from_num_frames_or_fps():
    assert MediaSpec(num_frames=8).frame_count(total_frames=30, duration_s=2.0) == 8
    assert MediaSpec(num_frames=None, fps=5.0).frame_count(30, 2.0) == 10  # 2 s at 5 fps
    assert MediaSpec(num_frames=None, fps=0.1).frame_count(30, 2.0) == 1  # at least one
    assert MediaSpec(num_frames=None, fps=100.0).frame_count(30, 2.0) == 30  # never more than exist
    assert MediaSpec(num_frames=8).frame_count(0, 0.0) == 0


@pytest.mark.parametrize(
    "h, w, limit, expected",
    [
        (96, 96, 96 * 96, (96, 96)),  # within the limit: unchanged
        (96, 96, 48 * 48, (48, 48)),
        (720, 1280, 384 * 384, (288, 512)),  # sqrt(147456 / 921600) = 0.4
        (100, 50, 10, (4, 2)),  # aspect kept, product within the limit
        (40, 40, 100000, (40, 40)),  # never scaled up
    ],
)
def test_fit_within_keeps_aspect_and_limit(h, w, limit, expected):
    got = fit_within(h, w, limit)
    assert got == expected
    assert got[0] * got[1] <= limit


def test_cache_key_changes_with_content_and_every_setting():
    spec = MediaSpec(num_frames=8)
    base = cache_key("a" * 64, None, spec, "pyav-x", audio_from_video=True)
    assert base == cache_key("a" * 64, None, MediaSpec(num_frames=8), "pyav-x", audio_from_video=True)
    others = [
        cache_key("b" * 64, None, spec, "pyav-x", audio_from_video=True),  # other bytes
        cache_key("a" * 64, None, MediaSpec(num_frames=4), "pyav-x", audio_from_video=True),
        cache_key("a" * 64, None, MediaSpec(num_frames=None, fps=8.0), "pyav-x", audio_from_video=True),
        cache_key("a" * 64, None, MediaSpec(max_pixels=100), "pyav-x", audio_from_video=True),
        cache_key("a" * 64, None, spec, "pyav-y", audio_from_video=True),  # another decoder
        cache_key("a" * 64, None, spec, "pyav-x"),  # no audio
        cache_key("a" * 64, "c" * 64, spec, "pyav-x"),  # a separate audio file
    ]
    assert len({base, *others}) == len(others) + 1
    # Audio-only: the video settings do not matter.
    assert cache_key(None, "c" * 64, MediaSpec(num_frames=8), "d") == cache_key(
        None, "c" * 64, MediaSpec(4), "d"
    )


def test_cache_round_trip_is_bit_identical_and_atomic(tmp_path):
    cache = MediaCache(tmp_path)
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    audio = rng.standard_normal(17).astype(np.float32)
    key = "ab" + "0" * 62
    assert cache.get(key) is None
    path = cache.put(key, {"video": video, "audio": audio}, {"duration_s": 2.0})
    assert path == tmp_path / "ab" / f"{key}.npz"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    arrays, info = cache.get(key)
    assert arrays["video"].dtype == np.uint8 and arrays["audio"].dtype == np.float32
    assert np.array_equal(arrays["video"], video) and arrays["audio"].tobytes() == audio.tobytes()
    assert info == {"duration_s": 2.0}


def test_a_damaged_cache_entry_is_a_miss(tmp_path):
    cache = MediaCache(tmp_path)
    key = "cd" + "1" * 62
    cache.put(key, {"audio": np.zeros(3, np.float32)}, {})
    cache.path_for(key).write_bytes(b"not an npz")
    assert cache.get(key) is None
