"""The reward math on attacker-shaped text: same results as the spec's regexes, cost linear in length.

Times are compared as a ratio to a plain text of the same length (never a wall-clock budget), so
the test holds on a loaded 2-core machine: a quadratic scan of 20,000 characters costs hundreds of
times the plain text; a linear one a small multiple.
"""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_service.core import reward

LIMIT = 20_000  # max_completion_chars, the longest text the service accepts
PLAIN = ("She smiles at the table. He frowns! " * 1000)[:LIMIT]

ADVERSARIAL = {
    "think opened, never closed": "<think>" * (LIMIT // 7),
    "answer opened, never closed": "<answer>" * (LIMIT // 8),
    "many answers": "<think>a</think>" + "<answer>x</answer>" * (LIMIT // 18),
    "close think then answer, no final close": "<think>" + "</think><answer>" * (LIMIT // 16),
    "nested tags": "<think>" * (LIMIT // 30) + "<answer>" * (LIMIT // 30) + "</think>" * (LIMIT // 30),
    "whitespace after every close": "<think>" + "</think>   \n\t " * (LIMIT // 14),
    "punctuation run": "<think>" + "." * LIMIT,
    "punctuation and spaces": "<think>" + ". " * (LIMIT // 2) + "</think>",
    "quotes and breaks": "<think>" + '" ! ' * (LIMIT // 4) + "</think>",
    "quote run": "<think>" + '"' * LIMIT + "</think>",
}


def _reward_math(text: str) -> None:
    """Every text-dependent step the service runs for one completion (the model excluded)."""
    reward.split_sentences(reward.extract_think(text))
    reward.format_reward(text)
    reward.predicted_emotion(text)


def _best_time(text: str, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        _reward_math(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_text_costs_a_small_multiple_of_plain_text(name):
    text = ADVERSARIAL[name][:LIMIT]
    text += "x" * (LIMIT - len(text))
    assert len(text) == len(PLAIN) == LIMIT
    # Floor the plain time at 50 us: below that, timer noise dominates the ratio.
    plain = max(_best_time(PLAIN), 50e-6)
    ratio = _best_time(text) / plain
    # Linear text handling stays within a small factor of plain text (measured <= ~3x); the old
    # regexes were 1,000-30,000x on these inputs.
    assert ratio < 25, f"{name}: {ratio:.1f}x the plain text"


PIECES = st.lists(
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "\u2003", "\x1c", "a", "happy", "<", ">"]),
    max_size=25,
).map("".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(PIECES)
def test_linear_extraction_equals_the_spec_regexes(text):
    think = reward.THINK_RE.search(text)
    answer = reward.ANSWER_RE.search(text)
    assert reward.extract_think(text) == (think.group(1).strip() if think else "")
    assert reward.extract_answer(text) == (answer.group(1).strip() if answer else None)
    assert reward.format_reward(text) == (1.0 if reward.FORMAT_RE.fullmatch(text) else 0.0)
