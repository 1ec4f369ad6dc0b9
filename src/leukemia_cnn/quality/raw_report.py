"""The reports of the raw-data suite: the JSON metric, the Markdown page and the failure
message, each naming the offending files of every failed check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd

from leukemia_cnn.data.imaging import SkippedFile
from leukemia_cnn.markdown import pipe_table
from leukemia_cnn.quality import suites
from leukemia_cnn.quality.raw_manifest import DUPLICATE_OF, with_content_columns
from leukemia_cnn.quality.suites import ExpectationOutcome, ValidationResult, md_escape


def counts_per_class(manifest: pd.DataFrame, classes: list[str] | None = None) -> dict[str, int]:
    """Images per class: configured classes first (0 when absent), then any other folder."""
    counts = manifest["class"].value_counts().to_dict()
    ordered = {cls: int(counts.pop(cls, 0)) for cls in (classes or [])}
    ordered.update({str(cls) if cls else "(no class folder)": int(n)
                    for cls, n in sorted(counts.items())})
    return ordered


def report_dict(result: ValidationResult, manifest: pd.DataFrame, skipped: list[SkippedFile],
                classes: list[str] | None = None) -> dict[str, Any]:
    """The machine-readable report (also DVC's metric file for the stage)."""
    return {
        "success": result.success,
        "n_files": int(len(manifest) + len(skipped)),
        "n_images": int(len(manifest)),
        "n_skipped": len(skipped),
        "n_undecodable": int((~manifest["decodable"]).sum()),
        "n_duplicate_sha256": int((with_content_columns(manifest)[DUPLICATE_OF] != "").sum()),
        "n_expectations": len(result.expectations),
        "n_failed_expectations": len(result.failed),
        "n_warnings": len(result.warnings),
        "counts_per_class": counts_per_class(manifest, classes),
        "expectations": [asdict(outcome) for outcome in result.expectations],
        "skipped": [asdict(item) for item in skipped],
    }


def found_in(outcome: ExpectationOutcome) -> str:
    """What a check observed, in a few words."""
    if outcome.error:
        return "error"
    if outcome.kind == "class_share" and isinstance(outcome.observed, dict):
        return f"{outcome.observed['images']} images ({outcome.observed['share']:.1%})"
    if outcome.name == "expect_table_row_count_to_be_between":
        return f"{outcome.observed} images"
    if outcome.name == "expect_column_distinct_values_to_contain_set":
        return "missing: " + ", ".join(outcome.offending) if outcome.offending else "all present"
    count = len(outcome.offending)
    return f"{count} offending file{'' if count == 1 else 's'}"


def offender_lines(outcome: ExpectationOutcome, errors: Mapping[str, str],
                   names: Mapping[str, str] | None = None) -> list[str]:
    """``path: why`` for each offending file (or class) of a failed check.

    ``names`` maps manifest paths to the names to show (e.g. where ingestion read them).
    """
    def display(path: str) -> str:
        return (names or {}).get(path, path)

    if outcome.kind in ("class_count", "class_share"):
        return [f"class {cls}: {found_in(outcome)}" for cls in outcome.offending]
    if outcome.name == "expect_column_distinct_values_to_contain_set":
        return [f"class {cls}: no images (folder {cls}/ of the raw image folder is missing or empty)"
                for cls in outcome.offending]
    lines = []
    if outcome.kind == "class_set":
        folders = Counter(outcome.offending_values)
        lines += [f"unknown class folder {folder}/ ({n} image file{'' if n == 1 else 's'}): rename "
                  "it to a configured class or remove it" if folder else
                  f"{n} image file{'' if n == 1 else 's'} outside any class folder"
                  for folder, n in sorted(folders.items())]
    for path, value in zip(outcome.offending, outcome.offending_values, strict=False):
        lines.append(f"{display(path)}: {_reason(outcome, path, value, errors, display)}")
    return lines


def _reason(outcome: ExpectationOutcome, path: str, value: Any, errors: Mapping[str, str],
            display: Callable[[str], str]) -> str:
    """Why one offending file fails ``outcome``, in words."""
    if outcome.kind == "class_set":
        return (f"folder {value}/ is not a configured class" if value
                else "not inside a class folder")
    if outcome.kind == "duplicate":
        return f"same content (sha256) as {display(value)}"
    if outcome.kind == "label_conflict":
        others = ", ".join(display(other) for other in str(value).split(", "))
        return f"same content (sha256) as {others} in another class"
    if outcome.column in ("decodable", "size_bytes"):
        return errors.get(path) or f"{outcome.column}={value}"
    return f"{outcome.column}={value}"


def markdown_report(result: ValidationResult, manifest: pd.DataFrame,
                    skipped: list[SkippedFile], classes: list[str] | None = None) -> str:
    """The human-readable report: checks, offending files, counts per class, skipped files."""
    errors = dict(zip(manifest["path"], manifest["error"], strict=True))
    data = report_dict(result, manifest, skipped, classes)
    sections = []
    if result.warnings:
        sections += ["", "## Warnings (reported, not failing)", ""]
        for outcome in result.warnings:
            sections += [f"### {md_escape(outcome.description)}", ""]
            sections += [f"- `{md_escape(line)}`" for line in offender_lines(outcome, errors)]
            sections.append("")
    sections += ["", "## Images per class", "",
                 pipe_table(list(data["counts_per_class"].items()), ("class", "images")),
                 "", "## Skipped files", "",
                 pipe_table([(f"`{item.path}`", item.reason) for item in skipped],
                            ("file", "reason")) if skipped else "None."]
    return suites.report_page(
        "Raw data validation", result,
        f"{data['n_images']} image files checked, {data['n_skipped']} other files skipped; "
        f"{data['n_failed_expectations']} of {data['n_expectations']} checks failed; "
        f"{data['n_undecodable']} undecodable; {data['n_duplicate_sha256']} duplicate files "
        "(same sha256 as an earlier one).",
        found_in, lambda outcome: offender_lines(outcome, errors), sections)


STAGE_ADVICE = "Fix or remove these files (or adjust conf/validation/) and run the stage again."


def failure_message(result: ValidationResult, manifest: pd.DataFrame, raw_dir: str,
                    report: str | None = None, names: Mapping[str, str] | None = None,
                    advice: str = STAGE_ADVICE) -> str:
    """What failed, naming up to :data:`MAX_LISTED` offending files per check (as ``names``
    calls them, see :func:`offender_lines`), then ``advice``."""
    errors = dict(zip(manifest["path"], manifest["error"], strict=True))
    return suites.failure_message(f"raw data in {raw_dir}", result,
                                  lambda outcome: offender_lines(outcome, errors, names),
                                  advice, report)
