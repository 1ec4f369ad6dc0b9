"""The model card's section on robustness to acquisition shift: the robustness stage's
metrics (``robustness/<case>/<stat>`` and the ``robustness_*`` summary, modeling/robustness.py)
as the run holds them."""

from __future__ import annotations

import math

from leukemia_cnn.data.shifts import MODERATE
from leukemia_cnn.markdown import pipe_table

# A moderate shift that costs more accuracy than this is named among the card's limits.
SHIFT_LIMIT_DROP = 0.05
ROBUSTNESS_PREFIX = "robustness/"  # the robustness stage's per-case metrics (modeling/robustness.py)


def _robustness_cases(metrics: dict) -> dict[str, dict[str, float]]:
    """``{case: {stat: value}}`` from the run's ``robustness/<case>/<stat>`` metrics."""
    cases: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith(ROBUSTNESS_PREFIX) and key.count("/") == 2:
            _, case, stat = key.split("/")
            cases.setdefault(case, {})[stat] = value
    return cases


def _case_order(case: str) -> tuple:
    family, _, strength = case.rpartition("_")
    try:
        return (case != "clean", family, float(strength))
    except ValueError:
        return (case != "clean", case, 0.0)


def robustness_section(metrics: dict) -> list[str]:
    """The test split under the acquisition-shift suite: the summary and one row per case;
    nothing for a run the robustness stage did not score (the card leaves the section out)."""
    cases = _robustness_cases(metrics)
    if not cases:  # a run the robustness stage has not scored: no section
        return []
    lines = [
        "The test split's original images under seeded acquisition shifts (conf/robustness/, "
        "docs/robustness.md), scored as served. Worst accuracy on the images the guard accepts: "
        f"{number(metrics, 'robustness_worst_accuracy_accepted')}; worst accuracy: "
        f"{number(metrics, 'robustness_worst_accuracy')}; lowest accuracy under a moderate "
        f"shift: {number(metrics, 'robustness_moderate_min_accuracy')}; moderately shifted "
        "smears read right that the guard accepts: "
        f"{number(metrics, 'robustness_moderate_correct_accepted')}; AUROC of `ood_score` for "
        f"the errors under shift: {number(metrics, 'robustness_ood_auroc')}.", ""]
    rows = [(case.replace("_", " "), number(stats, "accuracy"), number(stats, "flagged"),
             number(stats, "accuracy_accepted"),
             "-" if stats.get("wrong_accepted") is None else int(stats["wrong_accepted"]))
            for case, stats in sorted(cases.items(), key=lambda item: _case_order(item[0]))]
    return [*lines, pipe_table(rows, ("shift", "accuracy", "flagged", "accuracy, accepted",
                                      "wrong, accepted"))]


def number(metrics: dict, key: str, digits: int = 3) -> str:
    """``metrics[key]`` with ``digits`` decimals, or ``-`` when absent or NaN."""
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def shift_limit(metrics: dict) -> str | None:
    """A limit of the card when an everyday shift between two labs (``shifts.MODERATE``)
    costs the model more than :data:`SHIFT_LIMIT_DROP` of its clean accuracy: the cases and
    their accuracy, measured on this run's test split. None when none does, or the robustness
    stage has not scored the run."""
    cases = _robustness_cases(metrics)
    clean = cases.get("clean", {}).get("accuracy")
    if clean is None:
        return None
    fallen = []
    for case in MODERATE:
        accuracy = cases.get(case.key, {}).get("accuracy")
        if accuracy is not None and clean - accuracy > SHIFT_LIMIT_DROP:
            fallen.append(f"{case.name} {accuracy:.3f}")
    if not fallen:
        return None
    return (f"Accuracy is a property of images taken as the training images were, not of the "
            f"method: everyday differences between two labs cost it (test split, clean "
            f"{clean:.3f}; {', '.join(fallen)}). See the robustness section and "
            "docs/robustness.md.")
