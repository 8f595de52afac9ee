"""Clip prompts: the question gets the model's typed video/audio parts (text rows unchanged), and eval
generation passes each record's media with its prompt."""

from types import SimpleNamespace

import pytest

from orchestrator.config import EvalConfig
from orchestrator.data import PromptRecord, model_prompt
from orchestrator.evaluate import evaluate_policy
from tests.support.tiny_media import make_media

Q = "Which emotion is the most obvious?"
CLIP = PromptRecord("c", Q, "happy", "d", video="/clips/a.mp4", audio="from_video", num_frames=8)


def test_text_rows_are_unchanged():
    assert model_prompt(PromptRecord("t", Q, "sad", "d")) == Q


def test_a_clip_row_gets_video_and_audio_parts_before_its_question():
    assert model_prompt(CLIP) == [
        {"role": "user", "content": [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": Q}]}
    ]
    video_only = PromptRecord("v", Q, "happy", "d", video="/clips/a.mp4", num_frames=8)
    assert model_prompt(video_only)[0]["content"] == [{"type": "video"}, {"type": "text", "text": Q}]


def test_chat_messages_get_the_parts_in_the_last_user_turn_and_are_not_mutated():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": Q}]
    record = PromptRecord("m", messages, "happy", "d", video="/clips/a.mp4", audio="from_video", num_frames=8)
    out = model_prompt(record)
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[1]["content"] == [{"type": "video"}, {"type": "audio"}, {"type": "text", "text": Q}]
    assert messages[1]["content"] == Q


def test_the_tiny_omni_template_renders_the_parts_as_its_placeholders(tmp_path):
    from transformers import AutoTokenizer

    from policy.tiny_omni import build_tiny_omni

    tok = AutoTokenizer.from_pretrained(build_tiny_omni(tmp_path / "omni"))
    text = tok.apply_chat_template(model_prompt(CLIP), add_generation_prompt=True, tokenize=False)
    assert "<|vision_bos|><|VIDEO|><|vision_eos|><|audio_bos|><|AUDIO|><|audio_eos|>" + Q in text


@pytest.mark.parametrize("with_media", [True, False])
def test_eval_generation_passes_each_records_media(with_media):
    records = [CLIP, PromptRecord("t", Q, "sad", "d")]
    media = [make_media(0), None] if with_media else None
    calls = []

    def generate(prompts, **kw):
        calls.append((prompts, kw))
        text = "<think>She smiles.</think><answer>happy</answer>"
        return [SimpleNamespace(completions=[SimpleNamespace(text=text)]) for _ in prompts]

    metrics = evaluate_policy(
        generate, records, lambda xs: ["happy"] * len(xs), EvalConfig(), "m", media=media
    )
    ((prompts, kw),) = calls
    assert prompts == [model_prompt(CLIP), Q]
    if with_media:
        assert kw["media"][0] is media[0] and kw["media"][1] is None
    else:
        assert "media" not in kw
    assert set(metrics) >= {"WAR", "UAR", "EEA", "EPC", "FCR"} and metrics["WAR"] == 0.5
