"""The cold-start SFT set with headroom: exact share of mismatched explanations, deterministic, committed file current."""

import importlib.util
import json
from pathlib import Path

import pytest

from reward_service.core.reward import extract_answer, extract_think, format_reward

BUILD = Path(__file__).resolve().parents[2] / "data" / "sft" / "build.py"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("sft_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def explains(build, think: str) -> set[str]:
    """The emotions whose noun the explanation names (each template names exactly one)."""
    return {label for label, noun in build.NOUN.items() if noun in think}


@pytest.mark.parametrize("share", [0.0, 0.4, 1.0])
def test_exactly_the_share_supports_another_emotion_and_answers_are_kept(build, share):
    train, _ = build.build()
    cold = build.mismatch(train, share)
    assert len(cold) == len(train)
    off = [r for r in cold if r["explanation_label"] != r["label"]]
    assert len(off) == round(share * len(train))
    for before, row in zip(train, cold, strict=True):
        assert format_reward(row["target"]) == 1.0 and extract_answer(row["target"]) == before["label"]
        assert explains(build, extract_think(row["target"])) == {row["explanation_label"]}
        assert row["messages"] == before["messages"]
        if row["explanation_label"] == row["label"]:
            assert row["target"] == before["target"]


def test_deterministic_and_seeded(build):
    train, _ = build.build()
    assert build.mismatch(train, 0.4) == build.mismatch(train, 0.4)
    assert build.mismatch(train, 0.4, seed=1) != build.mismatch(train, 0.4)
    with pytest.raises(ValueError, match="share"):
        build.mismatch(train, 1.5)


def test_committed_cold_start_file_is_the_builders_output(build):
    train, _ = build.build()
    committed = [json.loads(line) for line in (BUILD.parent / build.COLD_START_FILE).read_text().splitlines()]
    assert committed == build.mismatch(train, build.COLD_START_SHARE)
