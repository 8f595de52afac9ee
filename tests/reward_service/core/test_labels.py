"""Label lists and normalisation (docs/REWARD_SPEC.md, "Labels")."""

import pytest

from reward_service.core import labels


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("happy", "happy"),
        ("Happiness", "happy"),
        (" JOY. ", "happy"),
        ("anger!", "angry"),
        ("sadness", "sad"),
        ("Surprised", "surprise"),
        ("disgusted", "disgust"),
        ("fearful", "fear"),
        ("afraid", "fear"),
        ("contemptuous", "contempt"),
        ("anxious", "anxiety"),
        ("worried", "anxiety"),
        ("nervous...", "anxiety"),
        ("helpless", "helplessness"),
        ("disappointed", "disappointment"),
        ("Neutral", "neutral"),
        ("bored", "unknown"),
        ("", "unknown"),
        ("happy sad", "unknown"),
        ("other", "unknown"),
    ],
)
def test_normalize(raw, expected):
    assert labels.normalize(raw) == expected


def test_dataset_label_lists():
    assert len(labels.CANONICAL_LABELS) == 11
    assert set(labels.DFEW_LABELS) == {"happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"}
    assert len(labels.MAFW_LABELS) == 11 and set(labels.MAFW_LABELS) == set(labels.CANONICAL_LABELS)
    assert labels.EMER_LABELS == ("angry", "sad", "surprise", "anxiety", "happy")
    assert labels.normalize("worried") in labels.EMER_LABELS


def test_goemotions_map():
    assert len(labels.GOEMOTIONS_LABELS) == 28
    names = labels.GOEMOTIONS_LABELS
    assert (names[17], names[2], names[27], names[19], names[16], names[10]) == (
        "joy",
        "anger",
        "neutral",
        "nervousness",
        "grief",
        "disapproval",
    )
    cols = labels.goemotions_column_labels()
    assert cols.count("other") == 17
    assert sorted(c for c in cols if c != "other") == sorted(labels.CANONICAL_LABELS)
    assert cols[9] == "disappointment" and cols[25] == "sad" and cols[26] == "surprise"
