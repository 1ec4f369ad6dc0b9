"""Stage ``validate_raw``: a manifest of ``data/raw`` (:mod:`.raw_manifest`, one row per
image file) and Great Expectations checks on it (:func:`build_suite`, docs/data-quality.md).

The manifest CSV is written only when every critical check passes, so later stages never read
data that failed validation; both outcomes write the JSON and Markdown reports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from leukemia_cnn.config import check_section
from leukemia_cnn.config_schema import Config, ValidationConfig
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import atomic_write, shown, write_json, write_text
from leukemia_cnn.quality import suites
from leukemia_cnn.quality.raw_manifest import (
    DUPLICATE_OF,
    LABEL_CONFLICT,
    MANIFEST_COLUMNS,
    build_manifest,
    with_content_columns,
)
from leukemia_cnn.quality.raw_report import (
    counts_per_class,
    failure_message,
    found_in,
    markdown_report,
    report_dict,
)
from leukemia_cnn.quality.suites import MAX_LISTED, ExpectationOutcome, ValidationResult

REPORT_JSON = "validate_raw.json"
REPORT_MD = "validate_raw.md"


def build_suite(add, classes: list[str], rules: ValidationConfig,
                n_images: int | None = None) -> None:
    """The raw-data checks, each added by ``add`` (:func:`suites.run_suite`) with what it
    checks in words.

    They run on :func:`with_content_columns` of the manifest. The class-share checks need the
    number of images ``n_images`` (they are left out without it).
    """
    add("ExpectColumnValuesToBeInSet", "every file decodes as an image",
        column="decodable", value_set=[True])
    add("ExpectColumnValuesToBeBetween", "no file is empty",
        column="size_bytes", min_value=0, strict_min=True)
    add("ExpectColumnValuesToBeInSet",
        "no content appears under two classes (label conflict: same sha256 in another class)",
        kind="label_conflict", column=LABEL_CONFLICT, value_set=[""])
    add("ExpectColumnValuesToBeInSet",
        "no two files have the same content (exact duplicates by sha256; reported, not failing)",
        kind="duplicate", column=DUPLICATE_OF, value_set=[""], severity="warning")
    formats, modes = list(rules.allowed_formats), list(rules.allowed_modes)
    add("ExpectColumnValuesToBeInSet",
        f"image format is one of {', '.join(formats)} (validation.allowed_formats)",
        column="format", value_set=formats)
    add("ExpectColumnValuesToBeInSet",
        f"colour mode is one of {', '.join(modes)} (validation.allowed_modes)",
        column="mode", value_set=modes)
    for side in ("width", "height"):
        low, high = getattr(rules, f"min_{side}"), getattr(rules, f"max_{side}")
        add("ExpectColumnValuesToBeBetween",
            f"{side} is between {low} and {high} pixels (validation.min_{side}/max_{side})",
            column=side, min_value=low, max_value=high)
    add("ExpectColumnValuesToBeInSet",
        f"every file is in a class folder {', '.join(classes)} (data.classes)",
        kind="class_set", column="class", value_set=list(classes))
    add("ExpectColumnDistinctValuesToContainSet",
        "every configured class has a folder with images (data.classes)",
        kind="class_present", column="class", value_set=list(classes))
    _add_class_checks(add, classes, rules, n_images)


def _add_class_checks(add, classes: list[str], rules: ValidationConfig,
                      n_images: int | None) -> None:
    """Images per class and, given ``n_images``, each class's share; each check's subject is
    its class (the offender a failure names)."""
    minimum = rules.min_images_per_class
    for cls in classes:
        add("ExpectTableRowCountToBeBetween",
            f"class {cls} has at least {minimum} images (validation.min_images_per_class)",
            kind="class_count", subject=cls, min_value=minimum, where=("class", cls))
    if n_images:
        low, high = rules.min_class_share, rules.max_class_share
        for cls in classes:
            # shares as counts of this manifest; the tolerance absorbs float rounding
            add("ExpectTableRowCountToBeBetween",
                f"class {cls} holds {low:.0%} to {high:.0%} of the images "
                "(validation.min_class_share/max_class_share)",
                kind="class_share", subject=cls, min_value=math.ceil(low * n_images - 1e-9),
                max_value=math.floor(high * n_images + 1e-9), where=("class", cls))


def _class_outcome(outcome: ExpectationOutcome, classes: list[str],
                   manifest: pd.DataFrame) -> ExpectationOutcome:
    """The per-class checks in the words of the reports: the missing classes, the classes
    found, a class's images and share (what :func:`suites.run_suite` cannot know)."""
    if outcome.error:
        return outcome
    if outcome.name == "expect_column_distinct_values_to_contain_set":
        present = set(manifest["class"].dropna())
        outcome.offending = [cls for cls in classes if cls not in present]
        outcome.observed = sorted(str(cls) for cls in present)
    elif outcome.name == "expect_table_row_count_to_be_between":
        outcome.column = "class"
        if outcome.kind == "class_share" and outcome.observed is not None and len(manifest):
            outcome.observed = {"images": outcome.observed,
                                "share": round(outcome.observed / len(manifest), 4)}
    return outcome


def validate(manifest: pd.DataFrame, classes: list[str],
             rules: ValidationConfig | Mapping[str, Any]) -> ValidationResult:
    """Run the raw-data ExpectationSuite on ``manifest`` with Great Expectations.

    Parameters
    ----------
    manifest : pandas.DataFrame
        The output of :func:`build_manifest`.
    classes : list of str
        The configured classes (``data.classes``).
    rules : Config or dict
        ``cfg.validation`` (every key of the group; checked by the config schema).
    """
    rules = check_section("validation", rules)  # types and ranges: the config schema
    classes = list(classes)
    missing = [column for column in MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise DataError(f"manifest lacks column(s) {missing}; build it with build_manifest()")

    checked = with_content_columns(manifest)
    result = suites.run_suite(
        checked, lambda add: build_suite(add, classes, rules, n_images=len(manifest)), "raw_images")
    result.expectations = [_class_outcome(outcome, classes, checked)
                           for outcome in result.expectations]
    return result


def run(cfg: Config, root: Path) -> dict[str, Any]:
    """The DVC stage: manifest ``paths.raw_dir``, validate it, write reports and the manifest.

    Writes ``<paths.reports_dir>/validate_raw.{json,md}`` always and ``paths.manifest`` only
    when every check passes. Raises DataError (listing the offending files) otherwise.
    """
    raw_dir = root / cfg.paths.raw_dir
    manifest_path = root / cfg.paths.manifest
    reports_dir = root / cfg.paths.reports_dir
    classes = list(cfg.data.classes)
    hint = ("create it with `leukemia-cnn data synth` (synthetic images) or put the images "
            "there in the Kaggle layout <raw_dir>/<Class>/*.jpg")

    if not raw_dir.is_dir():
        problem = "is not a folder" if raw_dir.exists() else "does not exist"
        raise DataError(f"raw image folder {shown(raw_dir, root)} {problem} (paths.raw_dir); {hint}")
    manifest = build_manifest(raw_dir, classes)
    skipped = manifest.attrs["skipped"]
    if manifest.empty:
        found = "".join(f"\n  {item.path}: {item.reason}" for item in skipped[:MAX_LISTED])
        raise DataError(f"no image files under {shown(raw_dir, root)} (paths.raw_dir); {hint}"
                        + (f"\nskipped files:{found}" if found else ""))

    result = validate(manifest, classes, cfg.validation)
    md_path = reports_dir / REPORT_MD
    write_json(reports_dir / REPORT_JSON, report_dict(result, manifest, skipped, classes))
    write_text(md_path, markdown_report(result, manifest, skipped, classes))
    if not result.success:
        raise DataError(failure_message(result, manifest, shown(raw_dir, root),
                                        shown(md_path, root)))
    atomic_write(manifest_path, lambda tmp: manifest.to_csv(tmp, index=False))
    return {"success": True, "n_images": int(len(manifest)), "n_skipped": len(skipped),
            "counts_per_class": counts_per_class(manifest, classes),
            "warnings": [f"{outcome.description}: {found_in(outcome)}" for outcome in result.warnings],
            "manifest": shown(manifest_path, root)}


def check_staged(cfg: Config, staging: Path, names: Mapping[str, str], label: str,
                 out_dir: Path, progress: bool = True) -> list[str]:
    """The raw-data suite on a tree ``leukemia-cnn data get`` staged beside ``out_dir``, before
    it is swapped in: a DataError naming the files as ``names`` (staged path -> source name)
    calls them, or the suite's warnings as lines."""
    classes = [str(name) for name in cfg.data.classes]
    manifest = build_manifest(staging, classes, progress=progress)
    result = validate(manifest, classes, cfg.validation)
    if not result.success:
        advice = (f"{out_dir} was left unchanged. Fix or remove these files in the source (or "
                  "adjust conf/validation/) and run `leukemia-cnn data get` again, or pass "
                  "--no-validate to ingest anyway (the validate_raw stage will still stop the "
                  "pipeline).")
        raise DataError(failure_message(result, manifest, label, names=names, advice=advice))
    return [f"{outcome.description}: {len(outcome.offending)} "
            f"file{'' if len(outcome.offending) == 1 else 's'}" for outcome in result.warnings]
