"""The TF-IDF judge: disjoint deterministic halves, the erv_judge decision rule, quality and agreement."""

import json

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the judge extra: pip install -e '.[judge]' (make venv installs it)")

from orchestrator.judge import (  # noqa: E402
    JudgeError,
    Sentence,
    TfidfJudge,
    argmax_judge,
    judge_quality,
    read_corpus,
    split_halves,
    train_judge,
)

LABELS = ["happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"]
WORDS = {"happy": "smiles laughs", "sad": "cries sobs", "angry": "shouts glares", "neutral": "reads types"}


def toy(n=40):
    return [
        Sentence(f"The man {WORDS[label]} number {i}.", frozenset([label]), "toy")
        for i in range(n)
        for label in WORDS
    ]


def test_halves_are_disjoint_deterministic_and_cover_the_corpus():
    corpus = read_corpus(["data/erv/train.jsonl", "data/erv/test.jsonl"])
    a, b = split_halves(corpus, seed=0)
    assert len(a) + len(b) == len(corpus) and abs(len(a) - len(b)) < 0.1 * len(corpus)
    assert not {s.text for s in a} & {s.text for s in b}
    assert split_halves(corpus, seed=0) == (a, b)
    assert split_halves(corpus, seed=1) != (a, b)


def test_decision_is_the_argmax_over_the_dataset_labels_and_empty_is_neutral():
    columns = ["contempt", "happy", "sad"]

    def proba(texts):  # contempt is highest but not a dataset label: sad wins over happy
        return np.array([[0.9, 0.2, 0.3] for _ in texts])  # (S, 3)

    assert argmax_judge(proba, columns, LABELS)(["x", " ", "y"]) == ["sad", "neutral", "sad"]
    with pytest.raises(JudgeError, match="no output"):
        argmax_judge(proba, ["contempt"], LABELS)


def test_judge_learns_a_separable_corpus_and_agreement_is_counted_by_hand():
    judge = TfidfJudge().fit(toy())
    assert judge.judge(LABELS)(["She smiles.", "He sobs.", ""]) == ["happy", "sad", "neutral"]
    held = [Sentence("He shouts.", frozenset(["angry"]), "t"), Sentence("She laughs.", frozenset(["happy"]), "t"),
            Sentence("It is contempt.", frozenset(["contempt"]), "t")]  # fmt: skip

    class AlwaysAngry:  # a stand-in ERV: agrees on the first sentence only (judge: angry, happy, ?)
        labels = judge.labels

        def predict_proba(self, texts):
            return np.array([[1.0 if label == "angry" else 0.0 for label in self.labels] for _ in texts])

    report = judge_quality(judge, held, LABELS, AlwaysAngry())
    assert report["decision_sentences"] == 2 and report["decision_accuracy"] == 1.0
    assert report["erv_decision_accuracy"] == 0.5
    assert report["agreement_with_erv_decision_sentences"] == 0.5


def test_corpus_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"text": "ok", "labels": ["happy"]})
        + "\n"
        + json.dumps({"text": "x", "labels": ["bliss"]})
        + "\n"
    )
    with pytest.raises(JudgeError, match=f"{bad}:2: labels"):
        read_corpus([bad])


def test_trained_on_the_real_corpus_it_beats_chance_on_the_held_out_half():
    judge, held = train_judge(".", seed=0)
    report = judge_quality(judge, held, LABELS)
    assert report["decision_accuracy"] > 0.5  # 7 labels: chance is about 0.14
