"""Reward math against numbers worked out by hand (docs/REWARD_SPEC.md)."""

import numpy as np
import pytest

from reward_service.core import reward
from reward_service.core.labels import goemotions_column_labels

LABELS = ["happy", "sad", "neutral", "angry"]


def test_extract_think_first_block_stripped_and_multiline():
    text = "<think>\n  He smiles.\nShe laughs. </think><think>second</think><answer>happy</answer>"
    assert reward.extract_think(text) == "He smiles.\nShe laughs."


def test_extract_think_missing_or_empty():
    assert reward.extract_think("<answer>sad</answer>") == ""
    assert reward.extract_think("<think>   </think><answer>sad</answer>") == ""
    assert reward.extract_think("<think>unclosed") == ""


def test_extract_answer():
    assert reward.extract_answer("<think>x</think><answer> Sad. </answer>") == "Sad."
    assert reward.extract_answer("<answer>a</answer><answer>b</answer>") == "a"
    assert reward.extract_answer("no tags") is None


def test_split_sentences_basic_and_quotes():
    text = 'He frowns. The subtitle says "Stop it. Now!" and she leaves! Is he angry?  Yes.'
    assert reward.split_sentences(text) == [
        "He frowns.",
        'The subtitle says "Stop it. Now!" and she leaves!',
        "Is he angry?",
        "Yes.",
    ]


def test_split_sentences_quote_ending_sentence_and_no_break_without_space():
    text = 'She whispers "I\'m fine." Her hands shake.Then silence.'
    # The break after the closing quote is not after . ! ?, so it is not split there;
    # "shake.Then" has no whitespace, so it is not split either.
    assert reward.split_sentences(text) == ['She whispers "I\'m fine." Her hands shake.Then silence.']
    assert reward.split_sentences('She says "no." Then she cries.') == ['She says "no." Then she cries.']
    assert reward.split_sentences("A. B") == ["A.", "B"]


def test_split_sentences_empty():
    assert reward.split_sentences("") == []
    assert reward.split_sentences("   \n ") == []


def test_format_reward():
    assert reward.format_reward("<think>a\nb</think>\n<answer>sad</answer>") == 1.0
    assert reward.format_reward("<think></think><answer></answer>") == 1.0
    assert reward.format_reward("Sure! <think>a</think><answer>sad</answer>") == 0.0  # full match only
    assert reward.format_reward("<think>a</think><answer>sad</answer> extra") == 0.0
    assert reward.format_reward("<answer>sad</answer><think>a</think>") == 0.0
    assert reward.format_reward("<think>a</think>") == 0.0


def test_answer_reward_synonyms_and_unknown():
    assert reward.answer_reward("<answer>Happiness</answer>", "happy") == 1.0
    assert reward.answer_reward("<answer> worried. </answer>", "anxiety") == 1.0
    assert reward.answer_reward("<answer>sad</answer>", "Sadness") == 1.0
    assert reward.answer_reward("<answer>sad</answer>", "happy") == 0.0
    assert reward.answer_reward("<answer>bored</answer>", "bored") == 0.0  # unknown never matches
    assert reward.answer_reward("no answer tag", "sad") == 0.0


def test_label_sets_threshold_argmax_and_top_k():
    probs = np.array(
        [
            [0.9, 0.05, 0.05, 0.2],  # happy, angry above 0.1
            [0.05, 0.08, 0.09, 0.01],  # none above tau -> argmax neutral
            [0.5, 0.6, 0.7, 0.8],  # 4 above -> top 2: angry, neutral
            [0.1, 0.1, 0.1, 0.1],  # exactly tau is not above -> argmax, tie -> lowest index happy
        ]
    )
    assert reward.label_sets(probs, LABELS) == [
        frozenset({"happy", "angry"}),
        frozenset({"neutral"}),
        frozenset({"angry", "neutral"}),
        frozenset({"happy"}),
    ]


def test_label_sets_tau_and_top_k_are_parameters():
    probs = np.array([[0.5, 0.6, 0.7, 0.8]])
    assert reward.label_sets(probs, LABELS, top_k=1) == [frozenset({"angry"})]
    assert reward.label_sets(probs, LABELS, top_k=4) == [frozenset(LABELS)]
    assert reward.label_sets(probs, LABELS, tau=0.65, top_k=3) == [frozenset({"neutral", "angry"})]
    assert reward.label_sets(probs, LABELS, tau=0.9) == [frozenset({"angry"})]  # argmax fallback


def test_label_sets_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        reward.label_sets(np.zeros((2, 3)), LABELS)
    with pytest.raises(ValueError, match="top_k"):
        reward.label_sets(np.zeros((1, 4)), LABELS, top_k=0)


def test_split_sentences_equals_the_one_regex_definition_on_random_texts():
    """The one-pass splitter against the definition as a single regex (a break is whitespace after
    . ! ? followed by an even number of double quotes), which rescans the rest of the text per break."""
    import random
    import re

    definition = re.compile(r'(?<=[.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)')
    rng = random.Random(0)
    alphabet = ["a", "b", " ", "  ", ".", "!", "?", '"', "\n", "\t", "x y", ". ", '." ']
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        want = [piece.strip() for piece in definition.split(text.strip()) if piece.strip()]
        assert reward.split_sentences(text) == want, repr(text)


def test_label_sets_of_a_matrix_equal_the_definition_row_by_row():
    """The vectorised label_sets against the spec's wording, one sentence at a time (ties included)."""
    rng = np.random.default_rng(0)
    labels = goemotions_column_labels()
    probs = rng.integers(0, 12, size=(300, 28)) / 20  # coarse values: many ties, many exactly tau (0.1)
    for tau, top_k in [(0.1, 2), (0.3, 1), (0.5, 5), (0.6, 28)]:
        want = []
        for row in probs:
            ranked = sorted(range(len(row)), key=lambda j: (-row[j], j))  # falling, ties to lower index
            above = [j for j in ranked if row[j] > tau]
            want.append(frozenset(labels[j] for j in (above[:top_k] or ranked[:1])))
        assert reward.label_sets(probs, labels, tau, top_k) == want


def test_goemotions_unmapped_labels_are_other():
    labels = goemotions_column_labels()
    probs = np.zeros((2, 28))
    probs[0, 0] = 0.9  # admiration: unmapped -> other
    probs[0, 17] = 0.5  # joy -> happy
    probs[1, 4] = 0.3  # approval: unmapped
    probs[1, 27] = 0.2  # neutral
    sets = reward.label_sets(probs, labels)
    assert sets == [frozenset({"other", "happy"}), frozenset({"other", "neutral"})]
    # "other" makes both non-neutral; only the first matches happy: M/N = 1/2.
    assert reward.explanation_reward(sets, "happy") == 0.5
    assert reward.explanation_counts(sets, "happy") == (2, 2, 1)


def test_explanation_reward_non_neutral_ground_truth():
    sets = [frozenset({"sad"}), frozenset({"neutral"}), frozenset({"sad", "angry"}), frozenset({"happy"})]
    # S=4, neutral=1 -> N=3, M=2 -> 2/3
    assert reward.explanation_counts(sets, "sad") == (4, 3, 2)
    assert reward.explanation_reward(sets, "sad") == pytest.approx(2 / 3)
    assert reward.explanation_reward(sets, "Sadness") == pytest.approx(2 / 3)


def test_explanation_reward_neutral_ground_truth_uses_s():
    sets = [frozenset({"neutral"}), frozenset({"neutral", "sad"}), frozenset({"sad"})]
    # g neutral: M = 2 (both sets containing neutral), S = 3 -> 2/3
    assert reward.explanation_reward(sets, "neutral") == pytest.approx(2 / 3)


def test_explanation_reward_neutral_plus_x_set_is_not_neutral():
    sets = [frozenset({"neutral", "angry"}), frozenset({"neutral"})]
    # {neutral, angry} is not exactly {neutral}: N = 1, M = 1 -> 1.0
    assert reward.explanation_counts(sets, "angry") == (2, 1, 1)
    assert reward.explanation_reward(sets, "angry") == 1.0


def test_explanation_reward_all_neutral_and_empty():
    assert reward.explanation_reward([frozenset({"neutral"})] * 3, "sad") == 0.0  # N = 0
    assert reward.explanation_reward([frozenset({"neutral"})] * 3, "neutral") == 1.0
    assert reward.explanation_reward([], "sad") == 0.0
    assert reward.explanation_reward([], "neutral") == 0.0
    assert reward.explanation_reward([frozenset({"sad"})], "bored") == 0.0  # unknown never matches


class FakeClassifier:
    """Gives each sentence a fixed probability row by keyword; records what it was asked."""

    def __init__(self):
        self.calls = []

    def __call__(self, sentences):
        self.calls.append(list(sentences))
        rows = []
        for s in sentences:
            if "tears" in s:
                rows.append([0.01, 0.9, 0.02, 0.01])
            elif "shouts" in s:
                rows.append([0.01, 0.3, 0.02, 0.95])
            else:
                rows.append([0.02, 0.03, 0.8, 0.01])
        return np.array(rows), LABELS


def test_score_completion_end_to_end_by_hand():
    text = (
        "<think>She wipes away tears. The room is dim. He shouts at her, and she flinches.</think>\n"
        "<answer>Sadness</answer>"
    )
    classify = FakeClassifier()
    result = reward.score_completion(text, "sad", classify)
    assert classify.calls == [
        ["She wipes away tears.", "The room is dim.", "He shouts at her, and she flinches."]
    ]
    # sets: {sad}, {neutral}, {angry, sad} -> S=3, N=2, M=2 -> R_E = 1
    assert (result.num_sentences, result.num_non_neutral, result.num_matching, result.num_neutral) == (
        3,
        2,
        2,
        1,
    )
    assert result.explanation == 1.0
    assert result.format == 1.0
    assert result.answer == 1.0
    assert result.total == 3.0
    assert result.predicted == "sad"
    assert result.label_sets[2] == frozenset({"angry", "sad"})


def test_score_completion_missing_think_does_not_call_classifier():
    classify = FakeClassifier()
    result = reward.score_completion("<answer>happy</answer>", "happy", classify)
    assert classify.calls == []
    assert (result.explanation, result.format, result.answer, result.total) == (0.0, 0.0, 1.0, 1.0)
    assert result.num_sentences == 0
    assert result.predicted == "happy"


def test_score_completion_unknown_answer_and_no_answer():
    classify = FakeClassifier()
    unknown = reward.score_completion("<think>He shouts.</think><answer>bored</answer>", "angry", classify)
    assert unknown.predicted == "unknown"
    assert (unknown.explanation, unknown.format, unknown.answer) == (1.0, 1.0, 0.0)
    none = reward.score_completion("<think>The room is dim.</think>", "angry", classify)
    assert none.predicted is None
    assert (none.explanation, none.format, none.answer, none.total) == (0.0, 0.0, 0.0, 0.0)


def test_score_completion_tau_top_k_passed_through():
    classify = FakeClassifier()
    text = "<think>He shouts.</think><answer>angry</answer>"
    # row [0.01, 0.3, 0.02, 0.95]: top_k=1 -> {angry}; M=1 for sad? no -> 0
    assert reward.score_completion(text, "sad", classify, top_k=1).explanation == 0.0
    assert reward.score_completion(text, "sad", classify, top_k=2).explanation == 1.0
    assert reward.score_completion(text, "sad", classify, tau=0.5).explanation == 0.0
