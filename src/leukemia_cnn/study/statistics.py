"""The report's statistics over seeds: a summary with its t-interval, and the two tests."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats


def summarize(values: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and the t-interval of the mean (NaN bounds when n < 2).

    Parameters
    ----------
    values : array-like of float
        One value per seed.
    confidence : float
        Level of the interval (``report.confidence``).

    Returns
    -------
    dict
        ``n``, ``mean``, ``std``, ``low``, ``high``.
    """
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": math.nan, "low": math.nan, "high": math.nan}
    std = float(values.std(ddof=1))
    if std == 0:  # scipy answers NaN for a zero scale; the interval of equal values is a point
        return {"n": n, "mean": mean, "std": std, "low": mean, "high": mean}
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "low": float(low), "high": float(high)}


def paired_test(better: pd.Series, worse: pd.Series, alpha: float = 0.05) -> dict:
    """Paired t-test of ``better - worse`` over the seeds both have (Series indexed by seed).

    Returns
    -------
    dict
        ``n`` (paired seeds), ``mean_diff``, ``p`` and ``verdict``: ``supported``,
        ``contradicted`` (the reverse is significant), ``not supported`` (no significant
        difference), ``no difference`` (equal on every seed) or ``not enough seeds``.
    """
    seeds = sorted(set(better.dropna().index) & set(worse.dropna().index))
    a, b = (series.loc[seeds].to_numpy(dtype=float) for series in (better, worse))
    n, diffs = len(seeds), a - b
    mean_diff = float(np.mean(diffs)) if n else math.nan
    if n < 2:
        return {"n": n, "mean_diff": mean_diff, "p": math.nan, "verdict": "not enough seeds"}
    if np.allclose(diffs, diffs[0]):
        # Zero spread: the test is undefined; the sign of a constant difference is the answer.
        p = 0.0 if diffs[0] != 0 else 1.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    if mean_diff == 0 and p >= alpha:
        verdict = "no difference"
    elif p < alpha:
        verdict = "supported" if mean_diff > 0 else "contradicted"
    else:
        verdict = "not supported"
    return {"n": n, "mean_diff": mean_diff, "p": p, "verdict": verdict}


def spread_test(lower: pd.Series, higher: pd.Series, alpha: float = 0.05) -> dict:
    """One-sided F-test that ``lower`` has a smaller variance than ``higher`` (values per seed).

    The seeds need not pair up. Returns ``n`` (the smaller count), ``std_lower``,
    ``std_higher``, ``p`` (of the variance ratio under equal variances), ``verdict``
    (``supported``, ``contradicted``, ``not supported``, ``no difference`` or ``not enough
    seeds``) and ``needed``: the ratio of standard deviations below which this many seeds
    would call the spread lower at ``alpha``.
    """
    a, b = lower.dropna().to_numpy(dtype=float), higher.dropna().to_numpy(dtype=float)
    n = min(len(a), len(b))
    if n < 2:
        return {"n": n, "std_lower": math.nan, "std_higher": math.nan, "p": math.nan,
                "needed": math.nan, "verdict": "not enough seeds"}
    std_a, std_b = float(a.std(ddof=1)), float(b.std(ddof=1))
    dfs = (len(a) - 1, len(b) - 1)
    needed = math.sqrt(float(stats.f.ppf(alpha, *dfs)))
    if std_a == std_b:
        p, verdict = 1.0, "no difference"
    else:
        ratio = (std_a / std_b) ** 2 if std_b else math.inf  # F's cdf(inf) = 1, sf(inf) = 0
        p, p_reverse = float(stats.f.cdf(ratio, *dfs)), float(stats.f.sf(ratio, *dfs))
        verdict = ("supported" if p < alpha else "contradicted" if p_reverse < alpha
                   else "not supported")
    return {"n": n, "std_lower": std_a, "std_higher": std_b, "p": p, "needed": needed,
            "verdict": verdict}
