"""Selective prediction: what the out-of-distribution guard costs and buys on held-out images.

Every val and test image is in distribution by construction, so the share the guard flags is
its false-flag rate. The risk-coverage curve answers the clinician's question "if I only
trust the answers the model is surest of, how accurate are they?": images ordered from the
most familiar (lowest ``ood_score``) or the most confident (highest top probability), the
accuracy of the first ``k`` against the coverage ``k / n``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leukemia_cnn.fileio import write_csv
from leukemia_cnn.modeling.guard import Guard, score_images

# Written by the evaluate stage; drawn by the `risk_coverage` plot of dvc.yaml.
RISK_COVERAGE_FILE = "risk_coverage_test.csv"
CURVE_POINTS = 100  # at most this many coverages: a readable plot and a small file


def selective_accuracy(correct: np.ndarray, order_key: np.ndarray) -> np.ndarray:
    """Accuracy of the first ``k`` images (``k = 1..n``) ordered by ascending ``order_key``."""
    order = np.argsort(order_key, kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=np.float64)[order])
    return hits / np.arange(1, len(order) + 1)


def risk_coverage(correct: np.ndarray, ood_score: np.ndarray,
                  confidence: np.ndarray) -> pd.DataFrame:
    """Coverage, accuracy when ordering by ``ood_score`` and by ``confidence``, and risk
    (1 - accuracy) by ``ood_score``; at most :data:`CURVE_POINTS` rows, always the full set."""
    n = len(correct)  # 0: the same columns, no rows
    by_score = selective_accuracy(correct, ood_score)
    by_confidence = selective_accuracy(correct, -np.asarray(confidence))
    keep = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int))
    return pd.DataFrame({"coverage": (keep + 1) / n, "accuracy_ood_score": by_score[keep],
                         "accuracy_confidence": by_confidence[keep],
                         "risk_ood_score": 1.0 - by_score[keep]}).round(6)


def guard_metrics(guard: Guard, model, details: dict[str, dict], reports_dir: Path
                  ) -> dict[str, float]:
    """Per split: the share accepted, the false-flag rate and the accuracy on the accepted
    images; writes the test split's risk-coverage curve to ``reports_dir``.

    ``details`` maps a split to ``{"x", "y_true", "y_pred", "probabilities"}`` (evaluate's).
    """
    metrics: dict[str, float] = {}  # (the threshold is the train run's metric already)
    for split, d in details.items():
        result = score_images(guard, model, d["x"])
        accepted = result.in_distribution
        correct = d["y_true"] == d["y_pred"]
        metrics[f"{split}_guard_coverage"] = float(np.mean(accepted))
        metrics[f"{split}_false_flag_rate"] = float(1.0 - np.mean(accepted))
        metrics[f"{split}_accuracy_accepted"] = (float(np.mean(correct[accepted]))
                                                if accepted.any() else float("nan"))
        if split == "test":
            write_csv(reports_dir / RISK_COVERAGE_FILE, risk_coverage(
                correct, result.ood_score, d["probabilities"].max(axis=1)))
    return metrics
