"""Bootstrap intervals: hand-worked extremes, seeding, pairing."""

import pytest

from orchestrator.bootstrap import bootstrap_ci, paired_difference_ci


def test_all_right_gives_a_point_interval_and_one_right_one_wrong_spans_0_to_1():
    ci = bootstrap_ci(["sad"] * 5, ["sad"] * 5, ["sad"] * 5, n_resamples=200)
    assert all(ci[m] == (1.0, 1.0) for m in ("WAR", "EEA", "EPC", "FCR", "UAR"))
    # Two prompts, one right: a resample of 2 has WAR 0 (p = 1/4), 1/2 (1/2) or 1 (1/4), so the
    # 2.5% and 97.5% percentiles of 2000 draws are 0 and 1.
    ci = bootstrap_ci(["sad", "happy"], ["sad", "sad"], ["sad", "sad"], n_resamples=2000)
    assert ci["WAR"] == (0.0, 1.0)
    assert ci["EEA"] == (1.0, 1.0)  # both explanations are right in every resample


def test_seeded_and_reproducible_and_the_point_estimate_is_inside():
    p = ["sad", "happy", "fear", "sad", "angry", "sad", "happy", "sad"]
    x = ["sad", "sad", "fear", "happy", "angry", "sad", "happy", "neutral"]
    g = ["sad", "happy", "fear", "sad", "sad", "sad", "happy", "sad"]
    assert bootstrap_ci(p, x, g, seed=3) == bootstrap_ci(p, x, g, seed=3)
    # few resamples: the percentiles move with the seed (with many they sit on the same 1/8 grid)
    assert bootstrap_ci(p, x, g, n_resamples=7, seed=3) != bootstrap_ci(p, x, g, n_resamples=7, seed=4)
    lo, hi = bootstrap_ci(p, x, g)["WAR"]
    assert lo <= 6 / 8 <= hi and lo < hi


def test_paired_difference_of_identical_arms_is_exactly_zero():
    s = (["sad", "happy", "sad"], ["sad", "sad", "fear"], ["sad", "happy", "happy"])
    assert all(v == (0.0, 0.0, 0.0) for v in paired_difference_ci(s, s, n_resamples=100).values())
    better = (["sad", "happy", "happy"], s[1], s[2])  # one more right answer: WAR +1/3
    diff, lo, hi = paired_difference_ci(better, s, n_resamples=500)["WAR"]
    assert diff == pytest.approx(1 / 3) and 0.0 <= lo <= diff <= hi
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference_ci(s, (s[0], s[1], ["sad", "sad", "sad"]))


def test_empty_sample_is_an_error():
    with pytest.raises(ValueError, match="at least one sample"):
        bootstrap_ci([], [], [])
