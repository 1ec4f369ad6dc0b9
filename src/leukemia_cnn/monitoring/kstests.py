"""Distribution-shift tests: is a batch of new images drawn like the training images?

One two-sample Kolmogorov-Smirnov test per feature (``scipy.stats.ks_2samp``: no assumption
about the shape of either distribution, and its statistic, the largest gap between the two
empirical CDFs, reads as an effect size from 0 to 1). With a hundred features some p-values
are small by chance, so the p-values are adjusted for the number of tests before they are
compared with ``alpha``:

- ``bh``: Benjamini-Hochberg (``scipy.stats.false_discovery_control``), which bounds the
  expected share of false alarms among the features called shifted at ``alpha``. When
  nothing shifted, it bounds the chance of any alarm at ``alpha`` as well.
- ``bonferroni``: each p-value times the number of tests (capped at 1), which bounds the
  chance of any false alarm at ``alpha`` under any dependence; fewer detections.

Pure functions of arrays (numpy and scipy): the drift command feeds them features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

CORRECTIONS = {"bh": "Benjamini-Hochberg (false discovery rate)",
               "bonferroni": "Bonferroni (family-wise error rate)"}


@dataclass(frozen=True)
class ShiftTest:
    """One feature's test: the KS statistic, its raw and adjusted p-values, the verdict."""

    feature: str
    n_new: int
    statistic: float
    p_value: float
    p_adjusted: float
    shifted: bool
    reference_median: float
    new_median: float


def adjust_p_values(p_values: np.ndarray, correction: str = "bh") -> np.ndarray:
    """p-values adjusted for the number of tests.

    Parameters
    ----------
    p_values : array-like
        One raw p-value per test, each in [0, 1].
    correction : {"bh", "bonferroni"}
        See the module docstring.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, same order; each at least its raw value and at most 1.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if correction not in CORRECTIONS:
        raise ValueError(f"correction {correction!r} is not one of {sorted(CORRECTIONS)}")
    if correction == "bonferroni":
        return np.minimum(p * p.size, 1.0)
    return stats.false_discovery_control(p, method="bh")


def shift_tests(reference: Mapping[str, np.ndarray], new: Mapping[str, np.ndarray],
                alpha: float = 0.05, correction: str = "bh") -> list[ShiftTest]:
    """A KS test per feature present in both samples, adjusted over all of them.

    Parameters
    ----------
    reference, new : mapping of feature name to 1-d array
        Per-image values of each feature: the training images and the new batch.
    alpha : float
        Significance level of the adjusted p-values.
    correction : {"bh", "bonferroni"}
        The correction for the number of tests.

    Returns
    -------
    list of ShiftTest
        In the order of ``reference``; a feature without finite values on one side is left
        out (it cannot be tested).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    rows = []
    for name, values in reference.items():
        ref, cur = _finite(values), _finite(new.get(name, ()))
        if len(ref) and len(cur):  # one and the same constant on both sides gives (0.0, 1.0)
            result = stats.ks_2samp(ref, cur)
            rows.append((name, ref, cur, float(result.statistic), float(result.pvalue)))
    adjusted = adjust_p_values(np.array([row[4] for row in rows]), correction)
    return [ShiftTest(feature=name, n_new=cur.size, statistic=statistic,
                      p_value=p_value, p_adjusted=float(p_adj), shifted=bool(p_adj < alpha),
                      reference_median=float(np.median(ref)), new_median=float(np.median(cur)))
            for (name, ref, cur, statistic, p_value), p_adj in zip(rows, adjusted, strict=True)]


def _finite(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


@dataclass(frozen=True)
class Verdict:
    """Drift or not, and the reasons in words (one line each)."""

    drift: bool
    reasons: list[str]
    # No drift found, but in too few new images for the tests to have found one: no verdict.
    too_few: bool = False


def verdict(tests: list[ShiftTest], flagged_share: float | None, max_flagged_share: float,
            alpha: float, correction: str, min_new: int = 0) -> Verdict:
    """Drift when a feature shifted (adjusted p < ``alpha``) or when the model's guard flagged
    more than ``max_flagged_share`` of the images (``flagged_share`` None: no guard).

    A shift found in a small batch is evidence, but finding none is not when the batch is too
    small for the tests to see one: with fewer than ``min_new`` new images and nothing found,
    the verdict is ``too_few`` (no drift claimed, none ruled out).
    """
    shifted = sorted((t for t in tests if t.shifted), key=lambda t: t.p_adjusted)
    reasons = []
    if shifted:
        names = ", ".join(t.feature for t in shifted[:8]) + (" ..." if len(shifted) > 8 else "")
        reasons.append(f"{len(shifted)} of {len(tests)} features shifted (KS test, "
                       f"{CORRECTIONS[correction]}-adjusted p < {alpha:g}): {names}")
    else:
        reasons.append(f"no feature shifted: all {len(tests)} KS tests have "
                       f"{CORRECTIONS[correction]}-adjusted p >= {alpha:g}")
    too_many = flagged_share is not None and flagged_share > max_flagged_share
    if flagged_share is not None:
        reasons.append(f"the model's guard flagged {flagged_share:.1%} of the images "
                       f"({'above' if too_many else 'within'} the limit "
                       f"{max_flagged_share:.1%})")
    drift = bool(shifted) or too_many
    n_new = min((t.n_new for t in tests), default=0)
    if not drift and n_new < min_new:
        reasons.append(f"too few images to judge: {n_new} new image(s), fewer than "
                       f"drift.min_images ({min_new}): too few for the tests to rule drift out")
        return Verdict(drift=False, reasons=reasons, too_few=True)
    return Verdict(drift=drift, reasons=reasons)
