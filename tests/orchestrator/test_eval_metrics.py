"""WAR, UAR, EEA, EPC, FCR on a hand-worked example of six samples."""

import pytest

from orchestrator.eval_metrics import all_metrics, epc, uar, war

#        p (prediction)  x (explanation)  g (ground truth)
ROWS = [
    ("happy", "happy", "happy"),  # p=g, x=g, x=p
    ("happy", "sad", "happy"),  # p=g
    ("sad", "sad", "happy"),  # x=p
    ("sad", "sad", "sad"),  # p=g, x=g, x=p
    ("unknown", "fear", "fear"),  # x=g
    ("angry", "neutral", "fear"),  # nothing
]
P, X, G = (list(c) for c in zip(*ROWS, strict=True))


def test_worked_example():
    m = all_metrics(P, X, G)
    assert m["WAR"] == pytest.approx(3 / 6)  # rows 1, 2, 4
    # recall happy 2/3, sad 1/1, fear 0/2 -> (2/3 + 1 + 0) / 3
    assert m["UAR"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["EEA"] == pytest.approx(3 / 6)  # rows 1, 4, 5
    assert m["EPC"] == pytest.approx(3 / 6)  # rows 1, 3, 4
    assert m["FCR"] == pytest.approx(2 / 6)  # rows 1, 4
    assert list(m) == ["EEA", "FCR", "EPC", "WAR", "UAR"]


def test_unknown_never_matches_and_uar_ignores_absent_classes():
    assert war(["unknown", "unknown"], ["happy", "sad"]) == 0.0
    # "angry" is predicted but never true: it adds no class to the mean
    assert uar(["angry", "sad"], ["happy", "sad"]) == pytest.approx(0.5)
    assert epc(["sad", "fear"], ["sad", "unknown"]) == 0.5


def test_empty_and_mismatched_lengths():
    assert all_metrics([], [], []) == {"EEA": 0.0, "FCR": 0.0, "EPC": 0.0, "WAR": 0.0, "UAR": 0.0}
    with pytest.raises(ValueError):
        war(["happy"], ["happy", "sad"])
