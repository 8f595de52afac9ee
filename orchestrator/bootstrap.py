"""Bootstrap 95% confidence intervals of the paper's metrics (WAR, UAR, EEA, EPC, FCR). Pure, seeded.

Runs in the orchestrator process (the ablation's evaluations). Resamples test prompts with
replacement (percentile method) and recomputes orchestrator.eval_metrics.all_metrics on each
resample; `paired_difference_ci` resamples the same prompts for two arms evaluated on one test set,
so the interval of a difference accounts for the prompts both arms share. Hand-written rather than
scipy.stats.bootstrap: the metrics are functions of three label lists, not of one numeric array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.eval_metrics import all_metrics

Sample = tuple[Sequence[str], Sequence[str], Sequence[str]]  # (predictions, explanations, truths)


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    if n < 1:
        raise ValueError("bootstrap needs at least one sample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))  # (R, n)


def _metrics_at(sample: Sample, idx: np.ndarray) -> dict[str, float]:
    p, x, g = (np.asarray(a, dtype=object)[idx] for a in sample)
    return all_metrics(list(p), list(x), list(g))


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_ci(
    predictions: Sequence[str],
    explanations: Sequence[str],
    truths: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)}: percentile bootstrap interval of each metric, fractions in [0, 1]."""
    sample = (predictions, explanations, truths)
    idx = _resample_indices(len(truths), n_resamples, seed)  # (R, n)
    draws = [_metrics_at(sample, row) for row in idx]
    return {m: _interval(np.array([d[m] for d in draws]), confidence) for m in draws[0]}


def paired_difference_ci(
    a: Sample, b: Sample, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, tuple[float, float, float]]:
    """{metric: (a - b, low, high)} on the same prompts: both arms resampled with the same indices."""
    n = len(a[2])
    if len(b[2]) != n or list(a[2]) != list(b[2]):
        raise ValueError("paired bootstrap needs both arms evaluated on the same prompts in the same order")
    point_a, point_b = all_metrics(*a), all_metrics(*b)
    idx = _resample_indices(n, n_resamples, seed)  # (R, n)
    diffs = {m: [] for m in point_a}
    for row in idx:
        ma, mb = _metrics_at(a, row), _metrics_at(b, row)
        for m in diffs:
            diffs[m].append(ma[m] - mb[m])
    return {m: (point_a[m] - point_b[m], *_interval(np.array(v), confidence)) for m, v in diffs.items()}
