"""Emotion label vocabularies and normalisation (docs/REWARD_SPEC.md, "Labels").

Pure data and string handling, no I/O; imported by the reward math in every process that scores.
"""

from __future__ import annotations

import string

UNKNOWN = "unknown"
OTHER = "other"  # an ERV output column with no canonical label: non-neutral, never matches

# The 11 canonical MER labels; every label the reward compares is one of these.
CANONICAL_LABELS: tuple[str, ...] = (
    "happy",
    "angry",
    "sad",
    "neutral",
    "surprise",
    "disgust",
    "fear",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

DFEW_LABELS: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
MAFW_LABELS: tuple[str, ...] = DFEW_LABELS + ("contempt", "anxiety", "helplessness", "disappointment")
# EMER's "worried" is the canonical "anxiety".
EMER_LABELS: tuple[str, ...] = ("angry", "sad", "surprise", "anxiety", "happy")

DATASET_LABELS: dict[str, tuple[str, ...]] = {"dfew": DFEW_LABELS, "mafw": MAFW_LABELS, "emer": EMER_LABELS}

# Output order of the 28-way GoEmotions classifiers (the ERV authors' release, roberta-base-go_emotions).
GOEMOTIONS_LABELS: tuple[str, ...] = (
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
)

# GoEmotions output index -> canonical label; the other 17 outputs map to OTHER.
GOEMOTIONS_TO_CANONICAL: dict[int, str] = {
    17: "happy",
    2: "angry",
    11: "disgust",
    14: "fear",
    25: "sad",
    26: "surprise",
    27: "neutral",
    19: "anxiety",
    16: "helplessness",
    9: "disappointment",
    10: "contempt",
}

SYNONYMS: dict[str, str] = {
    "happiness": "happy",
    "joy": "happy",
    "anger": "angry",
    "sadness": "sad",
    "surprised": "surprise",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "contemptuous": "contempt",
    "anxious": "anxiety",
    "worried": "anxiety",
    "nervous": "anxiety",
    "helpless": "helplessness",
    "disappointed": "disappointment",
}

_TRAILING = string.punctuation + string.whitespace


def normalize(label: str) -> str:
    """Canonical label for `label` (case-insensitive, outer whitespace and trailing punctuation removed), else "unknown"."""
    key = label.strip().rstrip(_TRAILING).lower()
    if key in CANONICAL_LABELS:
        return key
    return SYNONYMS.get(key, UNKNOWN)


def goemotions_column_labels() -> list[str]:
    """Canonical label (or "other") of each of the 28 GoEmotions output columns, in output order."""
    return [GOEMOTIONS_TO_CANONICAL.get(i, OTHER) for i in range(len(GOEMOTIONS_LABELS))]
