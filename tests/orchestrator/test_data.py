"""Prompt JSONL validation and the resumable sampler."""

import json

import pytest

from orchestrator.data import PromptSampler, load_prompts
from orchestrator.errors import OrchestratorError


def _write(tmp_path, rows):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_embedded_prompt_files_are_valid_and_large_enough():
    train = load_prompts("data/prompts/train.jsonl")
    test = load_prompts("data/prompts/test.jsonl")
    assert len(train) >= 500 and len(test) >= 150
    assert {r.ground_truth for r in train} == {
        "happy",
        "sad",
        "neutral",
        "angry",
        "surprise",
        "disgust",
        "fear",
    }
    assert not {r.prompt for r in train} & {r.prompt for r in test}
    assert all("<think> </think>" in r.prompt for r in test)


def test_labels_are_normalised_and_chat_messages_accepted(tmp_path):
    rows = [
        {"id": "a", "prompt": "text", "ground_truth": "Happiness"},
        {"id": "b", "prompt": [{"role": "user", "content": "hi"}], "ground_truth": "afraid", "dataset": "x"},
    ]
    recs = load_prompts(_write(tmp_path, rows))
    assert [r.ground_truth for r in recs] == ["happy", "fear"]
    assert recs[0].dataset == "p" and recs[1].dataset == "x"


@pytest.mark.parametrize(
    "row, message",
    [
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "image": "x.png"},
            "field 'image' is not supported",
        ),
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "video": 3},
            "field 'video' must be a file path",
        ),
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "audio": ""},
            "field 'audio' must be a file path",
        ),
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "audio": "from_video"},
            "'from_video' needs a 'video'",
        ),
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "video": "c.mp4", "num_frames": 0},
            "field 'num_frames'",
        ),
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "video": "c.mp4", "num_frames": True},
            "field 'num_frames'",
        ),
        ({"id": "a", "prompt": "t", "ground_truth": "happy", "video": "c.mp4", "fps": 1e999}, "field 'fps'"),
        ({"id": "a", "prompt": "t", "ground_truth": "happy", "video": "c.mp4", "fps": -1}, "field 'fps'"),
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "video": "c.mp4", "fps": 2, "num_frames": 4},
            "give one of them, not both",
        ),
        (
            {"id": "a", "prompt": "t", "ground_truth": "happy", "num_frames": 4},
            "field 'num_frames' needs a 'video'",
        ),
        (
            {
                "id": "a",
                "prompt": "<video>\n<audio>\nWhich emotion?",
                "ground_truth": "happy",
                "video": "c.mp4",
            },
            "field 'prompt' holds the placeholder <video>",
        ),
        ({"id": "a", "prompt": "t"}, "missing field 'ground_truth'"),
        ({"id": "a", "prompt": "t", "ground_truth": "bored"}, "unknown emotion 'bored'"),
        ({"id": "a", "prompt": 3, "ground_truth": "sad"}, "field 'prompt'"),
    ],
)
def test_bad_lines_are_named(tmp_path, row, message):
    with pytest.raises(OrchestratorError, match=message) as err:
        load_prompts(_write(tmp_path, [row]))
    assert ":1:" in str(err.value)


def test_clip_rows_resolve_paths_and_default_to_8_frames(tmp_path):
    rows = [
        {
            "id": "a",
            "prompt": "Which emotion?",
            "ground_truth": "sad",
            "video": "clips/a.mp4",
            "audio": "from_video",
        },
        {
            "id": "b",
            "prompt": "q",
            "ground_truth": "angry",
            "video": "/data/b.mkv",
            "audio": "sound/b.wav",
            "fps": 2,
        },
        {"id": "c", "prompt": "q", "ground_truth": "fear", "audio": "c.flac"},
        {"id": "d", "prompt": "q", "ground_truth": "happy", "video": "d.mp4", "num_frames": 16},
        {"id": "e", "prompt": "q", "ground_truth": "happy"},
    ]
    a, b, c, d, e = load_prompts(_write(tmp_path, rows))  # the files need not exist yet: `data check` decodes
    assert (a.video, a.audio, a.audio_path) == (str(tmp_path / "clips/a.mp4"), "from_video", a.video)
    assert (a.num_frames, a.fps, a.has_media) == (8, None, True)
    assert (b.video, b.audio, b.num_frames, b.fps) == (
        "/data/b.mkv",
        str(tmp_path / "sound/b.wav"),
        None,
        2.0,
    )
    assert (c.video, c.audio_path, c.num_frames) == (None, str(tmp_path / "c.flac"), None)
    assert d.num_frames == 16
    assert not e.has_media and e.video is None and e.audio is None


def test_sampler_resumes_at_the_exact_position_across_epochs():
    recs = load_prompts("data/prompts/test.jsonl")[:5]
    a = PromptSampler(recs, seed=3)
    first = [r.id for r in a.take(4)]
    state = a.state()
    rest = [r.id for r in a.take(7)]  # crosses into epoch 1
    b = PromptSampler(recs, seed=3)
    b.load_state(state)
    assert [r.id for r in b.take(7)] == rest
    assert sorted(first + rest[:1]) == sorted(r.id for r in recs)  # epoch 0 is a permutation
