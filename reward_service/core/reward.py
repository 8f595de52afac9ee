"""The ERV reward: R = w_E R_E (explanation) + w_F R_format + w_A R_answer, as docs/REWARD_SPEC.md.

The weights default to 1, 1, 1 (the paper's reward); an ablation sets one to 0 (R1-Omni's
reward: w_E = 0). The per-component values never depend on the weights, only `total` does.

Pure functions, no I/O and no model: the classifier is passed in (`classify`) or its output
(`probs`, `labels`) is. Runs wherever completions are scored: the reward service's worker
thread, evaluation, tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from reward_service.core.labels import UNKNOWN, normalize

NEUTRAL = "neutral"
DEFAULT_TAU = 0.1
DEFAULT_TOP_K = 2

# The spec's patterns (docs/REWARD_SPEC.md). They define the reward but are not run on completions:
# on attacker-shaped text (an opening tag repeated without its closing one) `re` backtracks
# quadratically, ~1 s per 20,000-character completion. extract_think, extract_answer and
# format_reward compute the same result with str.find in time linear in the text; the tests hold
# them equal to these patterns.
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_WHITESPACE = re.compile(r"\s*")  # used with .match(text, pos): one greedy run, linear
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")  # a candidate break: whitespace after . ! or ?

# classify(sentences) -> (probs (S, L) sigmoid probabilities, labels: canonical label or "other" per column)
Classify = Callable[[list[str]], tuple[np.ndarray, Sequence[str]]]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Completion:
    """One completion to score. The one type for it everywhere: client, rollout worker, scorer, HTTP body."""

    id: str = Field(description="caller-chosen id, unique within the request")
    text: str = Field(description="the completion: <think>...</think><answer>...</answer>")
    ground_truth: str = Field(description="ground-truth emotion label")


class RewardWeightsError(ValueError):
    """A reward weight that is not a finite number >= 0; the message names the component."""


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the three components in the total (default 1, 1, 1: the paper's reward)."""

    explanation: float = 1.0  # w_E
    format: float = 1.0  # w_F
    answer: float = 1.0  # w_A

    def __post_init__(self) -> None:
        for name in ("explanation", "format", "answer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RewardWeightsError(f"weights.{name}: must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise RewardWeightsError(f"weights.{name}: must be finite and >= 0, got {value!r}")


DEFAULT_WEIGHTS = RewardWeights()


def weighted_total(explanation: float, fmt: float, answer: float, weights: RewardWeights) -> float:
    """w_E R_E + w_F R_format + w_A R_answer."""
    return weights.explanation * explanation + weights.format * fmt + weights.answer * answer


@dataclass(frozen=True)
class RewardBreakdown:
    """Reward of one completion with what it was computed from."""

    explanation: float  # R_E in [0, 1]
    format: float  # R_format in {0, 1}
    answer: float  # R_answer in {0, 1}
    total: float  # w_E R_E + w_F R_format + w_A R_answer (in [0, 3] with the default weights)
    predicted: str | None  # canonical label (or "unknown") parsed from <answer>; None without an answer tag
    sentences: tuple[str, ...]  # the explanation's sentences, in order
    label_sets: tuple[frozenset[str], ...]  # ERV label set of each sentence
    num_sentences: int  # S
    num_non_neutral: int  # N = S - sentences whose set is exactly {neutral}
    num_matching: int  # M = sentences whose set contains the ground truth

    @property
    def num_neutral(self) -> int:
        return self.num_sentences - self.num_non_neutral


def _first_block(text: str, open_tag: str, close_tag: str) -> str | None:
    """Inside of the first open_tag...close_tag (THINK_RE / ANSWER_RE's group 1), in linear time.

    The leftmost match starts at the first open tag: a closing tag after any later open tag also
    follows the first one; the lazy group ends at the first closing tag after it.
    """
    start = text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    return None if end < 0 else text[start:end]


def extract_think(text: str) -> str:
    """The explanation E: text inside the first <think>...</think>, stripped; "" without a think block."""
    inside = _first_block(text, "<think>", "</think>")
    return "" if inside is None else inside.strip()


def extract_answer(text: str) -> str | None:
    """Text inside the first <answer>...</answer>, stripped; None without an answer block."""
    inside = _first_block(text, "<answer>", "</answer>")
    return None if inside is None else inside.strip()


def split_sentences(text: str) -> list[str]:
    """Split on whitespace after . ! ? unless inside an open double quote; empty pieces dropped."""
    text = text.strip()
    # A break is inside a quote when an odd number of double quotes follows it; count them in one pass.
    quotes_after = text.count('"')
    pieces, start, counted_to = [], 0, 0
    for match in _SENTENCE_BREAK.finditer(text):
        quotes_after -= text.count('"', counted_to, match.end())
        counted_to = match.end()
        if quotes_after % 2 == 0:
            pieces.append(text[start : match.start()])
            start = match.end()
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def format_reward(text: str) -> float:
    """1.0 when the whole completion is <think>...</think> then <answer>...</answer>, else 0.0.

    FORMAT_RE.fullmatch in linear time: the text starts with <think> and ends with </answer>, and
    some </think> (the think part may hold others) is followed by whitespace and an <answer> that
    ends before the final </answer>. The whitespace runs after different </think> are disjoint.
    """
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return 0.0
    last = len(text) - len("</answer>") - len("<answer>")  # the latest an <answer> may start
    close = text.find("</think>", len("<think>"))
    while 0 <= close:
        answer = _WHITESPACE.match(text, close + len("</think>")).end()
        if answer > last:
            return 0.0  # every later </think> ends even later
        if text.startswith("<answer>", answer):
            return 1.0
        close = text.find("</think>", close + 1)
    return 0.0


def predicted_emotion(text: str) -> str | None:
    """Canonical label of the first answer ("unknown" when it has none); None without an answer tag."""
    answer = extract_answer(text)
    return None if answer is None else normalize(answer)


def answer_reward(text: str, ground_truth: str) -> float:
    """1.0 when the first answer normalises to the ground truth's label; unknown never matches."""
    predicted = predicted_emotion(text)
    if predicted is None or predicted == UNKNOWN:
        return 0.0
    return 1.0 if predicted == normalize(ground_truth) else 0.0


def label_sets(
    probs: np.ndarray, labels: Sequence[str], tau: float = DEFAULT_TAU, top_k: int = DEFAULT_TOP_K
) -> list[frozenset[str]]:
    """Label set of each sentence: columns with prob > tau; the argmax if none; the top_k if more.

    probs: (S, L) sigmoid probabilities; labels[j]: canonical label or "other" of column j.
    Ties are broken towards the lower column index (stable sort), so results are deterministic.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must have shape (S, {len(labels)}) to match labels, got {probs.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    order = np.argsort(-probs, axis=1, kind="stable")  # (S, L) columns by falling probability
    # Columns above tau form a prefix of `order`; keep 1 (the argmax) to top_k of them.
    num_above = (np.take_along_axis(probs, order, axis=1) > tau).sum(axis=1)  # (S,)
    keep = np.clip(num_above, 1, top_k)  # (S,)
    return [
        frozenset(labels[j] for j in row[:k]) for row, k in zip(order.tolist(), keep.tolist(), strict=True)
    ]


def explanation_counts(
    sentence_label_sets: Sequence[frozenset[str]], ground_truth: str
) -> tuple[int, int, int]:
    """(S, N, M): sentences, non-neutral sentences, sentences whose set contains the ground truth."""
    gold = normalize(ground_truth)
    num_sentences = len(sentence_label_sets)
    num_neutral = sum(1 for s in sentence_label_sets if s == {NEUTRAL})
    num_matching = 0 if gold == UNKNOWN else sum(1 for s in sentence_label_sets if gold in s)
    return num_sentences, num_sentences - num_neutral, num_matching


def explanation_reward(sentence_label_sets: Sequence[frozenset[str]], ground_truth: str) -> float:
    """R_E: M/S for a neutral ground truth, else M/N (0 when S = 0 or N = 0)."""
    num_sentences, num_non_neutral, num_matching = explanation_counts(sentence_label_sets, ground_truth)
    if num_sentences == 0:
        return 0.0
    if normalize(ground_truth) == NEUTRAL:
        return num_matching / num_sentences
    return num_matching / num_non_neutral if num_non_neutral else 0.0


def score_from_probs(
    text: str,
    ground_truth: str,
    sentences: Sequence[str],
    probs: np.ndarray,
    labels: Sequence[str],
    tau: float = DEFAULT_TAU,
    top_k: int = DEFAULT_TOP_K,
    weights: RewardWeights = DEFAULT_WEIGHTS,
) -> RewardBreakdown:
    """Reward of `text` given its explanation `sentences` already classified into `probs` (S, L)."""
    sets = label_sets(probs, labels, tau, top_k) if len(sentences) else []
    return score_from_label_sets(text, ground_truth, sentences, sets, weights)


def score_from_label_sets(
    text: str,
    ground_truth: str,
    sentences: Sequence[str],
    sets: Sequence[frozenset[str]],
    weights: RewardWeights = DEFAULT_WEIGHTS,
) -> RewardBreakdown:
    """Reward of `text` given the ERV label set of each of its explanation `sentences`."""
    num_sentences, num_non_neutral, num_matching = explanation_counts(sets, ground_truth)
    explanation = explanation_reward(sets, ground_truth)
    fmt = format_reward(text)
    answer = answer_reward(text, ground_truth)
    return RewardBreakdown(
        explanation=explanation,
        format=fmt,
        answer=answer,
        total=weighted_total(explanation, fmt, answer, weights),
        predicted=predicted_emotion(text),
        sentences=tuple(sentences),
        label_sets=tuple(sets),
        num_sentences=num_sentences,
        num_non_neutral=num_non_neutral,
        num_matching=num_matching,
    )


def score_completion(
    text: str,
    ground_truth: str,
    classify: Classify,
    tau: float = DEFAULT_TAU,
    top_k: int = DEFAULT_TOP_K,
    weights: RewardWeights = DEFAULT_WEIGHTS,
) -> RewardBreakdown:
    """Reward of one completion, classifying its explanation sentences with `classify`."""
    sentences = split_sentences(extract_think(text))
    if sentences:
        probs, labels = classify(sentences)
    else:  # nothing to classify: R_E is 0 by definition and the model is not called
        probs, labels = np.zeros((0, 0)), []
    return score_from_probs(text, ground_truth, sentences, probs, labels, tau, top_k, weights)
