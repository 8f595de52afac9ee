"""Evaluation metrics of the ERV paper (docs/REWARD_SPEC.md): WAR, UAR, EEA, EPC, FCR. Pure functions.

Inputs are per test sample: the prediction p (canonical label or "unknown"), the ground truth g,
and the explanation emotion x (the judge's label for the <think> text). Used by `erv-grpo eval`
and the demo in the orchestrator process.
"""

from __future__ import annotations

from collections.abc import Sequence


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def war(predictions: Sequence[str], truths: Sequence[str]) -> float:
    """Weighted average recall = accuracy: share of samples with p == g ("unknown" is never g)."""
    return _share([p == g for p, g in zip(predictions, truths, strict=True)])


def uar(predictions: Sequence[str], truths: Sequence[str]) -> float:
    """Unweighted average recall: mean over the classes present in the ground truth of that class's recall."""
    classes = sorted(set(truths))
    if not classes:
        return 0.0
    recalls = []
    for c in classes:
        rows = [p for p, g in zip(predictions, truths, strict=True) if g == c]
        recalls.append(sum(p == c for p in rows) / len(rows))
    return sum(recalls) / len(recalls)


def eea(explanations: Sequence[str], truths: Sequence[str]) -> float:
    """Explanation emotion accuracy: share with x == g."""
    return _share([x == g for x, g in zip(explanations, truths, strict=True)])


def epc(explanations: Sequence[str], predictions: Sequence[str]) -> float:
    """Explanation-prediction consistency: share with x == p."""
    return _share([x == p for x, p in zip(explanations, predictions, strict=True)])


def fcr(predictions: Sequence[str], explanations: Sequence[str], truths: Sequence[str]) -> float:
    """Faithful consistency rate: share with p == g and x == g."""
    return _share([p == g and x == g for p, x, g in zip(predictions, explanations, truths, strict=True)])


def all_metrics(
    predictions: Sequence[str], explanations: Sequence[str], truths: Sequence[str]
) -> dict[str, float]:
    """The five metrics, as fractions in [0, 1], in the paper's table order."""
    return {
        "EEA": eea(explanations, truths),
        "FCR": fcr(predictions, explanations, truths),
        "EPC": epc(explanations, predictions),
        "WAR": war(predictions, truths),
        "UAR": uar(predictions, truths),
    }
