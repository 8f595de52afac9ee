"""A judge that is not the reward: TF-IDF + logistic regression trained on one half of the ERV corpus.

Runs in the orchestrator process (`erv-grpo experiment judge`, and the ablation's evaluations).
The reward's ERV is a fine-tuned MiniLM encoder; judging a policy trained on it with the same ERV
rewards reward hacking, so the ablation judges with a verifier of another family (a bag of word
n-grams, scikit-learn) trained on a disjoint half of the sentences of data/erv/. Its decision is
the one `evaluate.erv_judge` makes: the argmax over the dataset's labels for an explanation
(empty -> neutral), so EPC/EEA are computed the same way whoever judges.

scikit-learn instead of hand-written code: TF-IDF and one-vs-rest logistic regression are standard
and well tested there. It is an optional extra (`pip install -e '.[judge]'`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.errors import OrchestratorError
from reward_service.core.labels import CANONICAL_LABELS, normalize

CORPUS_FILES = ("data/erv/train.jsonl", "data/erv/test.jsonl")


class JudgeError(OrchestratorError):
    """The judge cannot be built (scikit-learn missing, a malformed corpus line)."""


@dataclass(frozen=True)
class Sentence:
    text: str
    labels: frozenset[str]
    source: str  # the corpus file it came from


def read_corpus(files: Sequence[str | Path]) -> list[Sentence]:
    """Sentences of the ERV corpus files ({"text", "labels"} per line); errors name the file and line."""
    out = []
    for path in files:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    labels = frozenset(normalize(x) for x in row["labels"])
                    text = row["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise JudgeError(f"{path}:{n}: not a {{text, labels}} line ({err})") from None
                if "unknown" in labels or not labels:
                    raise JudgeError(f"{path}:{n}: labels {row['labels']!r} are not canonical emotion labels")
                out.append(Sentence(text, labels, str(path)))
    return out


def half_of(text: str, seed: int) -> int:
    """0 or 1: which half a sentence belongs to, from a hash of (seed, text): stable across runs and files."""
    return hashlib.sha256(f"{seed}\0{text}".encode()).digest()[0] & 1


def split_halves(sentences: Sequence[Sentence], seed: int = 0) -> tuple[list[Sentence], list[Sentence]]:
    """(judge training half, held-out half): disjoint, a duplicate text always on one side."""
    halves: tuple[list, list] = ([], [])
    for s in sentences:
        halves[half_of(s.text, seed)].append(s)
    return halves


class TfidfJudge:
    """One-vs-rest logistic regression on TF-IDF word 1-2-grams, over the 11 canonical labels."""

    def __init__(self, seed: int = 0, c: float = 10.0):
        try:
            from sklearn.feature_extraction.text import TfidfVectorizer
            from sklearn.linear_model import LogisticRegression
            from sklearn.multiclass import OneVsRestClassifier
        except ImportError:
            raise JudgeError("the TF-IDF judge needs scikit-learn: pip install -e '.[judge]'") from None
        self.labels = list(CANONICAL_LABELS)
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        self.model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000, random_state=seed))

    def fit(self, sentences: Sequence[Sentence]) -> TfidfJudge:
        y = np.array([[label in s.labels for label in self.labels] for s in sentences], dtype=int)  # (S, L)
        self.model.fit(self.vectorizer.fit_transform([s.text for s in sentences]), y)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(S, L) per-label probabilities, columns in self.labels order."""
        return np.asarray(self.model.predict_proba(self.vectorizer.transform(list(texts))))

    def judge(self, labels: Sequence[str]):
        """An evaluate.Judge: explanations -> argmax over the columns in `labels`; empty -> neutral."""
        return argmax_judge(self.predict_proba, self.labels, labels)


def argmax_judge(predict_proba, columns_labels: Sequence[str], labels: Sequence[str]):
    """The decision of evaluate.erv_judge for any per-label scorer: argmax over the dataset's labels."""
    columns = [j for j, label in enumerate(columns_labels) if label in labels]
    if not columns:
        raise JudgeError(f"the judge has no output for any of {list(labels)}")

    def judge(explanations: list[str]) -> list[str]:
        out = ["neutral"] * len(explanations)
        todo = [i for i, e in enumerate(explanations) if e.strip()]
        if todo:
            probs = predict_proba([explanations[i] for i in todo])[:, columns]  # (S, |labels|)
            for row, i in zip(probs, todo, strict=True):
                out[i] = columns_labels[columns[int(row.argmax())]]
        return out

    return judge


def train_judge(root: str | Path = ".", seed: int = 0) -> tuple[TfidfJudge, list[Sentence]]:
    """The judge trained on its half of the corpus under `root`; returns it and the held-out half."""
    train, held_out = split_halves(read_corpus([Path(root) / f for f in CORPUS_FILES]), seed)
    return TfidfJudge(seed).fit(train), held_out


def judge_quality(judge: TfidfJudge, held_out: Sequence[Sentence], labels: Sequence[str], erv=None) -> dict:
    """Held-out quality of the judge and, given `erv` (predict_proba + labels), its agreement with it.

    macro_f1_0.5: multi-label macro-F1 over the 11 labels at probability 0.5; top1_accuracy: argmax
    over the 11 labels is one of the gold labels; decision_accuracy: the EPC/EEA decision (argmax
    over the dataset's `labels`) is a gold label, on sentences with a gold label in `labels`;
    agreement: share of held-out sentences where the judge's and the ERV's decisions are equal,
    with Cohen's kappa, and the same share on the sentences with a gold label in `labels`.
    """
    from sklearn.metrics import cohen_kappa_score, f1_score

    texts = [s.text for s in held_out]
    gold = np.array([[label in s.labels for label in judge.labels] for s in held_out], dtype=int)  # (S, L)
    probs = judge.predict_proba(texts)  # (S, L)
    in_dataset = [i for i, s in enumerate(held_out) if s.labels & set(labels)]
    decisions = judge.judge(labels)(texts)
    report = {
        "held_out_sentences": len(held_out),
        "macro_f1_0.5": float(f1_score(gold, probs > 0.5, average="macro", zero_division=0)),
        "top1_accuracy": float(
            np.mean([judge.labels[j] in s.labels for j, s in zip(probs.argmax(1), held_out, strict=True)])
        ),
        "decision_sentences": len(in_dataset),
        "decision_accuracy": float(np.mean([decisions[i] in held_out[i].labels for i in in_dataset])),
    }
    if erv is not None:
        erv_decisions = argmax_judge(erv.predict_proba, erv.labels, labels)(texts)
        report["erv_decision_accuracy"] = float(
            np.mean([erv_decisions[i] in held_out[i].labels for i in in_dataset])
        )
        report["agreement_with_erv"] = float(
            np.mean([a == b for a, b in zip(decisions, erv_decisions, strict=True)])
        )
        report["kappa_with_erv"] = float(cohen_kappa_score(decisions, erv_decisions))
        # On sentences whose gold is among `labels` (the others have no right answer to agree on).
        report["agreement_with_erv_decision_sentences"] = float(
            np.mean([decisions[i] == erv_decisions[i] for i in in_dataset])
        )
    return report
