"""Calibration of class probabilities: expected calibration error, reliability bins and
temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"):
functions of arrays, no TensorFlow (docs/predictions.md: how evaluate and serving use them).

A model's softmax outputs ``p`` are turned back into logits as ``log p`` (softmax is
invariant to an additive constant, so ``softmax(log p / T)`` is temperature scaling of the
original logits); probabilities that underflowed to 0 are clipped to float32's smallest
normal number first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import log_softmax, softmax

from leukemia_cnn.config import CALIBRATION_MODES

# `auto` keeps the fitted temperature only when it lowers the validation NLL by at least this
# fraction (a temperature a few percent from 1 changes nothing worth a step) and does not raise
# the validation ECE over this many bins (a lower NLL alone can come with a worse ECE: on real
# smears a fitted T = 1.16 lowered val NLL by 1.4% and doubled val ECE, 0.018 -> 0.038).
AUTO_MIN_NLL_GAIN = 0.01
AUTO_ECE_BINS = 15
_TINY = float(np.finfo(np.float32).tiny)


def _check(probabilities, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (n_samples, n_classes >= 2); got "
                         f"{p.shape}")
    if labels is None:
        return p, None
    y = np.asarray(labels)
    if y.shape != (len(p),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(p)},); got {y.dtype} "
                         f"{y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {p.shape[1] - 1}]; got "
                         f"[{y.min()}, {y.max()}]")
    return p, y


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the probabilities of the logits divided by ``temperature``.

    Parameters
    ----------
    probabilities : array-like of shape (n_samples, n_classes)
        Softmax outputs (rows sum to 1).
    temperature : float
        ``T > 0``; ``T > 1`` softens over-confident probabilities, ``T = 1`` returns them
        unchanged (as float64). The argmax of every row is unchanged for any ``T``.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_classes), float64
    """
    p, _ = _check(probabilities)
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    if temperature == 1.0:
        return p
    return softmax(np.log(np.maximum(p, _TINY)) / temperature, axis=1)


def negative_log_likelihood(probabilities, labels) -> float:
    """Mean ``-log p[true class]`` (nats per sample), with ``p`` clipped at float32's tiny."""
    p, y = _check(probabilities, labels)
    if len(y) == 0:
        return float("nan")
    # Not sklearn's log_loss: it clips at float64's eps (a true class that underflowed to 0
    # costs 36 nats, not 87) and warns on float32 rows that sum to 1 only within 1e-7.
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], _TINY))))


def reliability_bins(probabilities, labels, n_bins: int = 15) -> pd.DataFrame:
    """The reliability diagram's table: top-label confidence against accuracy per bin.

    Parameters
    ----------
    probabilities : array-like of shape (n_samples, n_classes)
    labels : array-like of int, shape (n_samples,)
    n_bins : int, default 15
        Equal-width bins of the top-label confidence over (0, 1]; bin ``b`` holds
        confidences in ``(b / n_bins, (b + 1) / n_bins]``.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin``, ``lower``, ``upper``, ``count``, ``confidence`` (mean
        top-label probability), ``accuracy`` (share of argmax predictions that are right) and
        ``gap`` (``accuracy - confidence``); the last three are NaN for an empty bin.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r}")
    p, y = _check(probabilities, labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins; a confidence of exactly 0 (impossible for a softmax) joins bin 0
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, correct, minlength=n_bins) / count
    return pd.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:],
                         "count": count, "confidence": mean_confidence, "accuracy": accuracy,
                         "gap": accuracy - mean_confidence})


def expected_calibration_error(probabilities, labels, n_bins: int = 15) -> float:
    """ECE: ``sum_b (n_b / n) |accuracy_b - confidence_b|`` over equal-width confidence bins.

    0 for a perfectly calibrated model; at most 1. See :func:`reliability_bins` for the bins.
    """
    bins = reliability_bins(probabilities, labels, n_bins)
    filled = bins[bins["count"] > 0]
    if filled.empty:
        return float("nan")
    weights = filled["count"] / filled["count"].sum()
    return float(np.sum(weights * filled["gap"].abs()))


def fit_temperature(probabilities, labels,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature that minimises the NLL of ``labels`` (one scalar, fit on ``log T``).

    The NLL is convex in ``1 / T``, so the bounded scalar search finds its minimum.

    Parameters
    ----------
    probabilities : array-like of shape (n_samples, n_classes)
        Softmax outputs on held-out data (the validation split, never test).
    labels : array-like of int, shape (n_samples,)
    bounds : (float, float)
        Smallest and largest temperature searched (log-spaced); the default is far beyond
        any useful value either way.
    """
    from scipy.optimize import minimize_scalar

    p, y = _check(probabilities, labels)
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on zero samples")
    low, high = bounds
    if not 0 < low < 1 < high:
        raise ValueError(f"bounds must satisfy 0 < low < 1 < high; got {bounds!r}")
    log_p = np.log(np.maximum(p, _TINY))
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-np.mean(log_softmax(log_p / np.exp(log_t), axis=1)[rows, y]))

    result = minimize_scalar(nll, bounds=(np.log(low), np.log(high)), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


def calibrate(probabilities, labels, mode: str = "auto") -> dict[str, float | bool]:
    """Fit a temperature on held-out ``probabilities`` and decide whether to use it.

    Parameters
    ----------
    probabilities : array-like of shape (n_samples, n_classes)
        Softmax outputs on the validation split.
    labels : array-like of int, shape (n_samples,)
    mode : {"auto", "on", "off"}
        ``on``: always use the fitted temperature; ``off``: never fit (temperature 1);
        ``auto``: use it when it lowers the NLL by at least :data:`AUTO_MIN_NLL_GAIN`
        (a fraction of the uncalibrated NLL) and does not raise the ECE
        (:data:`AUTO_ECE_BINS` bins).

    Returns
    -------
    dict
        ``fitted_temperature``, ``temperature`` (the one to serve: fitted or 1.0),
        ``applied`` (bool), ``nll_before``/``nll_after`` and ``ece_before``/``ece_after``
        (with the fitted temperature).
    """
    if mode not in CALIBRATION_MODES:
        raise ValueError(f"mode must be one of {', '.join(CALIBRATION_MODES)}; got {mode!r}")
    before = negative_log_likelihood(probabilities, labels)
    ece_before = expected_calibration_error(probabilities, labels, AUTO_ECE_BINS)
    fitted = 1.0 if mode == "off" else fit_temperature(probabilities, labels)
    scaled = apply_temperature(probabilities, fitted)
    after = negative_log_likelihood(scaled, labels)
    ece_after = expected_calibration_error(scaled, labels, AUTO_ECE_BINS)
    applied = mode == "on" or (mode == "auto" and after <= before * (1 - AUTO_MIN_NLL_GAIN)
                               and ece_after <= ece_before)
    return {"fitted_temperature": fitted, "temperature": fitted if applied else 1.0,
            "applied": bool(applied), "nll_before": before, "nll_after": after,
            "ece_before": ece_before, "ece_after": ece_after}
