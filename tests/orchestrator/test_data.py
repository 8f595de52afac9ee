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
        ({"id": "a", "prompt": "t", "ground_truth": "happy", "video": "clip.mp4"}, "field 'video'"),
        ({"id": "a", "prompt": "t"}, "missing field 'ground_truth'"),
        ({"id": "a", "prompt": "t", "ground_truth": "bored"}, "unknown emotion 'bored'"),
        ({"id": "a", "prompt": 3, "ground_truth": "sad"}, "field 'prompt'"),
    ],
)
def test_bad_lines_are_named(tmp_path, row, message):
    with pytest.raises(OrchestratorError, match=message) as err:
        load_prompts(_write(tmp_path, [row]))
    assert ":1:" in str(err.value)


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
