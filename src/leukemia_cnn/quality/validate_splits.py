"""Stage ``validate_splits``: Great Expectations checks on the split table, before preprocess.

Every file the split table (``paths.splits``) lists is hashed from the file itself (sha256 and
a 64-bit perceptual hash); the suite checks, with thresholds from ``cfg.validation``, each
split's size and class shares, that every file is listed once and that no content and no
near-duplicate is in two splits (the checks: docs/data-quality.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from leukemia_cnn.config import SPLITS
from leukemia_cnn.config_schema import Config, ValidationConfig
from leukemia_cnn.data.imaging import N_THREADS, open_image, perceptual_hash
from leukemia_cnn.data.preprocess import read_split_table
from leukemia_cnn.data.splitbounds import expected_counts
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import file_sha256, write_json, write_text
from leukemia_cnn.markdown import pipe_table
from leukemia_cnn.quality import suites
from leukemia_cnn.quality.suites import ExpectationOutcome, ValidationResult

REPORT_JSON = "validate_splits.json"
REPORT_MD = "validate_splits.md"
# Columns derived for the leak checks (empty string = no finding).
SAME_CONTENT = "same_content_in_other_split"
NEAR_DUPLICATE = "near_duplicate_in_other_split"
# Rows of the distance matrix computed at once (bounds memory for large sets).
CHUNK = 512


def fingerprint(path: Path) -> tuple[str, int]:
    """``(sha256 hex, 64-bit perceptual hash)`` of one image file; DataError naming it."""
    try:
        sha256 = file_sha256(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc}); restore it or rerun "
                        "`dvc repro validate_raw split`") from exc
    return sha256, perceptual_hash(open_image(path))


def near_duplicate_pairs(hashes: np.ndarray, splits: np.ndarray, sha256: np.ndarray,
                         max_distance: int) -> tuple[dict[int, tuple[int, int]], int | None]:
    """The closest other-split partner of each file within ``max_distance`` bits.

    Pairs of byte-identical files are left to the sha256 check. Returns ``({row: (partner
    row, distance)}, smallest distance between any two files of different splits)``.
    """
    closest: dict[int, tuple[int, int]] = {}
    smallest: int | None = None
    for start in range(0, len(hashes), CHUNK):
        rows = slice(start, start + CHUNK)
        distance = np.bitwise_count(hashes[rows, None] ^ hashes[None, :]).astype(np.int64)
        across = (splits[rows, None] != splits[None, :]) & (sha256[rows, None] != sha256[None, :])
        if not across.any():
            continue
        distance = np.where(across, distance, 65)
        smallest = min(int(distance.min()), 65 if smallest is None else smallest)
        for offset, partner in enumerate(distance.argmin(axis=1)):
            if distance[offset, partner] <= max_distance:
                closest[start + offset] = (int(partner), int(distance[offset, partner]))
    return closest, smallest


def check_table(table: pd.DataFrame, sha256: list[str], hashes: np.ndarray,
                max_distance: int) -> tuple[pd.DataFrame, int | None]:
    """The split table plus each file's sha256 and the two leak columns the suite checks."""
    frame = table[["path", "class", "split"]].reset_index(drop=True).copy()
    frame["split_class"] = frame["split"] + "/" + frame["class"]
    frame["sha256"] = sha256

    same = pd.Series("", index=frame.index, dtype=object)
    for _, group in frame.groupby("sha256"):
        if group["split"].nunique() > 1:
            for index, row in group.iterrows():
                others = group[group["split"] != row["split"]]
                same[index] = ", ".join(others["path"] + " (" + others["split"] + ")")
    closest, smallest = near_duplicate_pairs(hashes, frame["split"].to_numpy(),
                                             frame["sha256"].to_numpy(), max_distance)
    near = pd.Series("", index=frame.index, dtype=object)
    for index, (partner, distance) in closest.items():
        near[index] = (f"{frame.at[partner, 'path']} ({frame.at[partner, 'split']}, "
                       f"{distance} bits apart)")
    return frame.assign(**{SAME_CONTENT: same, NEAR_DUPLICATE: near}), smallest


def build_suite(add, frame: pd.DataFrame, classes: list[str], ratios: Mapping[str, float],
                rules: ValidationConfig) -> None:
    """The split checks on ``frame`` (the output of :func:`check_table`), each added by
    ``add`` (:func:`suites.run_suite`)."""
    add("ExpectColumnValuesToBeInSet", f"every file is in one of the splits {', '.join(SPLITS)}",
        column="split", value_set=list(SPLITS))
    add("ExpectColumnValuesToBeUnique", "every file is listed once (in one split)", column="path")
    add("ExpectColumnValuesToBeInSet",
        "no content is in two splits (same sha256 in another split: a leak)",
        kind="leak", column=SAME_CONTENT, value_set=[""])
    distance = rules.near_duplicate_max_distance
    add("ExpectColumnValuesToBeInSet",
        f"no near-duplicate is in two splits (perceptual hash within {distance} bits; "
        "validation.near_duplicate_max_distance)",
        kind="leak", column=NEAR_DUPLICATE, value_set=[""])

    n = len(frame)
    size_tolerance = rules.split_size_tolerance
    counts = frame["split"].value_counts().to_dict()
    bounds = expected_counts(dict.fromkeys(SPLITS), n, ratios, size_tolerance)
    for split, (low, high) in bounds.items():
        add("ExpectTableRowCountToBeBetween",
            f"split {split} holds {ratios[split]:.0%} of the {n} images +/- "
            f"{size_tolerance:.0%} and one image: {low} to {high} "
            "(split.*, validation.split_size_tolerance)",
            kind="split_size", subject=split, min_value=low, max_value=high, where=("split", split))
    share_tolerance = rules.class_share_tolerance
    overall = {cls: int((frame["class"] == cls).sum()) / n for cls in classes}
    for split in SPLITS:
        n_split = int(counts.get(split, 0))
        if n_split == 0:
            continue  # the size check above fails and names the split
        allowed = expected_counts(overall, n_split, overall, share_tolerance)
        for cls, (low, high) in allowed.items():
            add("ExpectTableRowCountToBeBetween",
                f"class {cls} is {overall[cls]:.1%} of split {split} (as of all images) "
                f"+/- {share_tolerance:.0%} and one image: {low} to {high} of {n_split} "
                "(validation.class_share_tolerance)",
                kind="class_share", subject=f"{split}/{cls}", min_value=low,
                max_value=high, where=("split_class", f"{split}/{cls}"))


def validate(table: pd.DataFrame, raw_dir: Path, classes: list[str], ratios: Mapping[str, float],
             rules: ValidationConfig, progress: bool = True
             ) -> tuple[ValidationResult, pd.DataFrame, int | None]:
    """Fingerprint the files of ``table`` and run the split suite on them.

    Parameters
    ----------
    table : pandas.DataFrame
        The split table (columns ``path``, ``class``, ``split``), paths relative to ``raw_dir``.
    raw_dir : Path
        The raw image folder (``paths.raw_dir``); only read.
    classes : list of str
        ``data.classes``.
    ratios : mapping
        ``{"train": 0.7, "val": 0.15, "test": 0.15}`` (``split.*``).
    rules : mapping
        ``cfg.validation``: split_size_tolerance, class_share_tolerance,
        near_duplicate_max_distance.

    Returns
    -------
    (ValidationResult, pandas.DataFrame, int or None)
        The checks, the checked table (with sha256 and leak columns) and the smallest
        perceptual-hash distance between two files of different splits.
    """
    if table.empty:
        raise DataError("the split table lists no images; rerun `dvc repro split`")
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        pairs = list(tqdm(pool.map(lambda p: fingerprint(raw_dir / p), table["path"]),
                          total=len(table), desc="validate_splits: hashing images", unit="img",
                          disable=not progress))
    sha256, hashes = [sha for sha, _ in pairs], np.array([h for _, h in pairs], dtype=np.uint64)
    frame, smallest = check_table(table, sha256, hashes, rules.near_duplicate_max_distance)
    result = suites.run_suite(
        frame, lambda add: build_suite(add, frame, list(classes), ratios, rules), "validate_splits")
    return result, frame, smallest


def _found(outcome: ExpectationOutcome) -> str:
    if outcome.kind in ("split_size", "class_share"):
        return f"{outcome.observed} images"
    count = len(outcome.offending)
    return f"{count} offending file{'' if count == 1 else 's'}"


def offender_lines(outcome: ExpectationOutcome) -> list[str]:
    """``file: why`` for a failed per-file check; ``split: count`` for a table check."""
    if outcome.kind in ("split_size", "class_share"):
        label = "split" if outcome.kind == "split_size" else "split/class"
        return [f"{label} {subject}: {outcome.observed} images" for subject in outcome.offending]
    reason = {SAME_CONTENT: "same content (sha256) as {}", NEAR_DUPLICATE: "near-duplicate of {}",
              "path": "listed more than once"}.get(outcome.column, f"{outcome.column}={{}}")
    return [f"{path}: {reason.format(value)}"
            for path, value in zip(outcome.offending, outcome.offending_values, strict=False)]


def report_dict(result: ValidationResult, frame: pd.DataFrame, classes: list[str],
                smallest: int | None, rules: ValidationConfig) -> dict[str, Any]:
    """The machine-readable report (DVC's metric file for the stage)."""
    n = len(frame)
    counts = {s: int((frame["split"] == s).sum()) for s in SPLITS}
    return {
        "success": result.success,
        "n_images": n,
        "counts": counts,
        "fractions": {s: round(counts[s] / n, 4) for s in SPLITS},
        "per_class": {s: {c: int(((frame["split"] == s) & (frame["class"] == c)).sum())
                          for c in classes} for s in SPLITS},
        "n_same_content_across_splits": int((frame[SAME_CONTENT] != "").sum()),
        "n_near_duplicates_across_splits": int((frame[NEAR_DUPLICATE] != "").sum()),
        "near_duplicate_max_distance": rules.near_duplicate_max_distance,
        "min_phash_distance_across_splits": smallest,
        "n_expectations": len(result.expectations),
        "n_failed_expectations": len(result.failed),
        "expectations": [asdict(outcome) for outcome in result.expectations],
    }


def markdown_report(result: ValidationResult, frame: pd.DataFrame, classes: list[str],
                    smallest: int | None, rules: ValidationConfig) -> str:
    """The human-readable report: checks, offending files, images per split and class."""
    data = report_dict(result, frame, classes, smallest, rules)
    n = data["n_images"]
    rows = []
    for cls in classes:
        total = int((frame["class"] == cls).sum())
        rows.append((cls, f"{total} ({total / n:.1%})", *[
            f"{data['per_class'][s][cls]} ({data['per_class'][s][cls] / max(data['counts'][s], 1):.1%})"
            for s in SPLITS]))
    rows.append(("**all**", n, *[f"{data['counts'][s]} ({data['fractions'][s]:.1%})"
                                 for s in SPLITS]))
    return suites.report_page(
        "Split validation", result,
        f"{n} images in {len(SPLITS)} splits; {data['n_failed_expectations']} "
        f"of {data['n_expectations']} checks failed; "
        f"{data['n_same_content_across_splits']} files share their content with another "
        f"split, {data['n_near_duplicates_across_splits']} have a near-duplicate in another "
        f"split (closest pair across splits: {smallest} bits of 64 apart, threshold "
        f"{data['near_duplicate_max_distance']}).", _found, offender_lines,
        ["", "## Images per split and class", "", pipe_table(rows, ("class", "all", *SPLITS))])


def run(cfg: Config, root: Path) -> dict[str, Any]:
    """The DVC stage: check ``paths.splits`` against the files of ``paths.raw_dir``.

    Writes ``<paths.reports_dir>/validate_splits.{json,md}``; raises DataError naming each
    failed expectation and its offending files. Reads only; never changes the table or data.
    """
    classes = list(cfg.data.classes)
    rules = cfg.validation
    ratios = {name: getattr(cfg.split, name) for name in SPLITS}
    table = read_split_table(root / cfg.paths.splits, classes)
    result, frame, smallest = validate(table, root / cfg.paths.raw_dir, classes, ratios, rules)

    reports_dir = root / cfg.paths.reports_dir
    data = report_dict(result, frame, classes, smallest, rules)
    write_json(reports_dir / REPORT_JSON, data)
    write_text(reports_dir / REPORT_MD, markdown_report(result, frame, classes, smallest, rules))
    if not result.success:
        raise DataError(suites.failure_message(
            f"split table {cfg.paths.splits}", result, offender_lines,
            "Rerun `dvc repro split` (it keeps identical files and near-duplicates within "
            "`split.near_duplicate_max_distance` bits in one split); remove "
            "near-duplicate copies from data/raw, or adjust conf/validation/ if the "
            "thresholds are too strict for this dataset.",
            report=f"{cfg.paths.reports_dir}/{REPORT_MD}"))
    return {key: data[key] for key in ("success", "n_images", "counts", "fractions",
                                       "min_phash_distance_across_splits")}
