"""Checks that data/erv/ (the synthetic ERV corpus) meets the constraints of issue 2 §3."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from reward_service.core.labels import CANONICAL_LABELS

DATA = Path(__file__).resolve().parents[3] / "data" / "erv"
CANONICAL = set(CANONICAL_LABELS)


def _load(name: str) -> list[dict]:
    return [
        json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


@pytest.fixture(scope="module")
def splits() -> tuple[list[dict], list[dict]]:
    return _load("train.jsonl"), _load("test.jsonl")


def test_rows_are_well_formed_with_canonical_labels(splits):
    for row in splits[0] + splits[1]:
        assert set(row) == {"text", "labels"}
        assert isinstance(row["text"], str) and row["text"].strip()
        assert row["labels"] and set(row["labels"]) <= CANONICAL
        assert len(set(row["labels"])) == len(row["labels"])


def test_size_and_per_label_counts(splits):
    rows = splits[0] + splits[1]
    assert len(rows) >= 3000
    counts = Counter(label for row in rows for label in row["labels"])
    assert set(counts) == CANONICAL
    assert min(counts.values()) >= 150, counts
    multi = sum(len(row["labels"]) > 1 for row in rows) / len(rows)
    assert 0.05 <= multi <= 0.3


def test_deduplicated_and_no_text_in_both_splits(splits):
    train, test = splits
    keys = [_norm(row["text"]) for row in train + test]
    assert len(keys) == len(set(keys))
    assert not {_norm(r["text"]) for r in train} & {_norm(r["text"]) for r in test}


def test_held_out_share_and_every_label_in_test(splits):
    train, test = splits
    assert len(test) >= 0.15 * (len(train) + len(test))
    assert {label for row in test for label in row["labels"]} == CANONICAL


def test_each_row_is_one_sentence_for_the_reward_splitter(splits):
    # docs/REWARD_SPEC.md step 2: the reward splits explanations with this regex before classifying
    split_re = re.compile(r'(?<=[.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)')
    for row in splits[0] + splits[1]:
        assert len(split_re.split(row["text"].strip())) == 1, row["text"]
        assert "{" not in row["text"] and "}" not in row["text"]
