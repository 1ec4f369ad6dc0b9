"""The split-size and class-share bounds of the validate_splits suite, in one place: the split
stage draws until its table is within them, and the suite checks them (quality/validate_splits.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from leukemia_cnn.config import SPLITS


def expected_counts(counts: Mapping[str, int], n: int, ratios: Mapping[str, float],
                    tolerance: float) -> dict[str, tuple[int, int]]:
    """Allowed ``(min, max)`` count per key: ``ratio * n`` +/- (``tolerance * n`` + 1 image)."""
    slack = tolerance * n + 1
    return {key: (max(0, math.ceil(ratios[key] * n - slack - 1e-9)),
                  math.floor(ratios[key] * n + slack + 1e-9)) for key in counts}


def suite_failures(table: pd.DataFrame, classes: Sequence[str], ratios: Mapping[str, float],
                   size_tolerance: float, share_tolerance: float) -> list[str]:
    """The split-size and class-share checks of validate_splits that ``table`` fails."""
    n, found = len(table), []
    counts = table["split"].value_counts().to_dict()
    for split, (low, high) in expected_counts(dict.fromkeys(SPLITS), n, ratios,
                                              size_tolerance).items():
        if not low <= counts.get(split, 0) <= high:
            found.append(f"split {split} holds {counts.get(split, 0)} images, allowed "
                         f"{low} to {high}")
    overall = {cls: int((table["class"] == cls).sum()) / n for cls in classes}
    for split in SPLITS:
        in_split = table[table["split"] == split]
        if len(in_split) == 0:
            continue
        for cls, (low, high) in expected_counts(overall, len(in_split), overall,
                                                share_tolerance).items():
            if not low <= int((in_split["class"] == cls).sum()) <= high:
                found.append(f"class {cls} has {int((in_split['class'] == cls).sum())} of "
                             f"split {split}'s {len(in_split)} images, allowed {low} to {high}")
    return found
