"""Stage ``validate_raw``: a manifest of ``data/raw`` and Great Expectations checks on it.

Every image file under ``raw_dir/<Class>/`` becomes one manifest row (path, class, sha256,
size, width, height, format, mode, whether it decodes). A Great Expectations suite built from
``cfg.validation`` checks the manifest: decoding, formats, modes, sizes, the exact class set,
images and share per class, empty files, exact duplicates (reported as a warning) and the same
content under two classes (a label conflict, an error). The manifest CSV is written only when
every critical check passes, so later stages never read data that failed validation. Both
outcomes write a JSON report (a DVC metric) and a Markdown report that names the offending
files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from leukemia_cnn.config import check_section
from leukemia_cnn.data.filekinds import printable, skip_problem
from leukemia_cnn.data.imaging import (
    N_THREADS,
    OS_JUNK,
    SkippedFile,
    open_image,
    perceptual_hash,
    skip_reason,
)
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import OUTPUT_MARKER, atomic_write, shown
from leukemia_cnn.quality.suites import (
    MAX_LISTED,
    ExpectationOutcome,
    ValidationResult,
    failure_lines,
    markdown_checks,
    md_escape,
    plain,
)

# phash: the 64-bit perceptual hash as 16 hex digits ("" when the file does not decode); the
# split stage keeps near-duplicates together with it.
MANIFEST_COLUMNS = ("path", "class", "sha256", "phash", "size_bytes", "width", "height",
                    "format", "mode", "decodable", "error")
REPORT_JSON = "validate_raw.json"
REPORT_MD = "validate_raw.md"
# Columns derived from the manifest for the content checks (not written to the manifest CSV).
DUPLICATE_OF = "duplicate_of"
LABEL_CONFLICT = "label_conflict"


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------

def _class_of(folder: str, classes: list[str]) -> str:
    """The configured class a top-level folder holds; unknown folders keep their own name
    (the class check then fails and names their files)."""
    if folder in classes:
        return folder
    by_lower = {name.lower(): name for name in classes}
    return by_lower.get(folder.lower(), folder)


def find_image_files(raw_dir: Path, classes: list[str]) -> tuple[list[tuple[str, str]],
                                                                 list[SkippedFile]]:
    """List the image files under ``raw_dir`` with their class, and the files skipped.

    Returns ``([(relative POSIX path, class), ...], [SkippedFile, ...])``, both sorted by path.
    An image directly in ``raw_dir`` gets class ``""`` so that the class check names it.
    """
    images: list[tuple[str, str]] = []
    skipped: list[SkippedFile] = []
    for folder, dirnames, filenames in os.walk(raw_dir):
        here = Path(folder).relative_to(raw_dir)
        for dirname in list(dirnames):
            if dirname.startswith(".") or dirname.lower() in OS_JUNK:
                dirnames.remove(dirname)
                skipped.append(SkippedFile((here / dirname).as_posix() + "/",
                                           "hidden or operating-system folder (not searched)"))
            elif (Path(folder) / dirname).is_symlink():
                # os.walk does not follow it; a row makes the decode check name it
                dirnames.remove(dirname)
                relative = here / dirname
                images.append((relative.as_posix(), _class_of(relative.parts[0], classes)))
        dirnames.sort()
        for name in sorted(filenames):
            if name == OUTPUT_MARKER and not here.parts:
                continue  # the tree's own marker (a `leukemia-cnn data --output` folder)
            relative = (here / name).as_posix()
            reason = skip_reason(name) or skip_problem(Path(folder) / name, relative)
            if reason is not None:
                skipped.append(SkippedFile(printable(relative), reason))
                continue
            cls = _class_of(here.parts[0], classes) if here.parts else ""
            images.append((relative, cls))
    with_images = {Path(path).parts[0] for path, _ in images}
    for entry in sorted(raw_dir.iterdir()):
        name = entry.name
        if (entry.is_dir() and not entry.is_symlink() and name not in with_images
                and _class_of(name, classes) not in classes
                and not (name.startswith(".") or name.lower() in OS_JUNK)):
            skipped.append(SkippedFile(f"{printable(name)}/", "folder is not a configured class "
                                       "(data.classes) and holds no images"))
    return sorted(images), sorted(skipped, key=lambda item: item.path)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _link_problem(raw_dir: Path, path: Path) -> str | None:
    """Why a symbolic link under ``raw_dir`` cannot be a data file, or None when it can."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    if path.is_dir():
        return (f"link to a folder ({target}); links to folders are not followed: move the "
                "images into the class folder itself")
    if not target.is_relative_to(Path(os.path.realpath(raw_dir))):
        return (f"symbolic link to {target}, outside the raw image folder: data.dvc would not "
                "version what it points to; replace the link by a copy of the file")
    return None


def inspect_image(raw_dir: Path, relative: str, cls: str) -> dict[str, Any]:
    """One manifest row: hash, size and header of ``raw_dir/relative``; whether it decodes."""
    path = raw_dir / relative
    row: dict[str, Any] = {"path": relative, "class": cls, "sha256": "", "phash": "",
                           "size_bytes": 0,
                           "width": None, "height": None, "format": None, "mode": None,
                           "decodable": False, "error": ""}
    link_problem = _link_problem(raw_dir, path)
    if link_problem is not None:
        # never read through a link that leaves the tree; its own size keeps it off "empty"
        row["size_bytes"], row["error"] = path.lstat().st_size, link_problem
        return row
    try:
        row["size_bytes"] = path.stat().st_size
        row["sha256"] = _sha256(path)
    except OSError as exc:
        row["error"] = f"cannot read file ({exc.strerror or exc})"
        return row
    if row["size_bytes"] == 0:
        row["error"] = "empty file (0 bytes)"
        return row
    try:
        # The header gives the format, which the decoded copy of open_image() no longer has.
        with Image.open(path) as header:
            row.update(width=header.width, height=header.height, format=header.format,
                       mode=header.mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        pass  # open_image() below records why
    try:
        row["phash"] = f"{perceptual_hash(open_image(path)):016x}"
        row["decodable"] = True
    except DataError as exc:
        # Name the file relative to raw_dir, as everywhere else in the reports.
        row["error"] = str(exc).removeprefix(f"{path}: ").replace(str(path), relative)
    return row


def build_manifest(raw_dir: Path, classes: list[str], progress: bool = True) -> pd.DataFrame:
    """Describe every image file under ``raw_dir/<Class>/`` (recursively), one row per file.

    Parameters
    ----------
    raw_dir : Path
        The raw image tree (Kaggle layout: one folder per class).
    classes : list of str
        The configured class names (``data.classes``); folders match them exactly or,
        failing that, case-insensitively. Files of other folders keep the folder name as
        class, so that :func:`validate` reports them.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MANIFEST_COLUMNS`, sorted by ``path``. Files that are not images (OS
        junk, dotfiles, other extensions) are not rows: they are listed, with the reason,
        in ``manifest.attrs["skipped"]`` (a list of :class:`SkippedFile`).
    """
    raw_dir = Path(raw_dir)
    files, skipped = find_image_files(raw_dir, list(classes))
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        rows = list(tqdm(pool.map(lambda item: inspect_image(raw_dir, *item), files),
                         total=len(files), desc="validate_raw: reading images", unit="img",
                         disable=not progress))
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    manifest = manifest.astype({"size_bytes": "int64", "width": "Int64", "height": "Int64",
                                "decodable": "bool"})
    manifest = manifest.sort_values("path", ignore_index=True)
    manifest.attrs["skipped"] = skipped
    return manifest


# --------------------------------------------------------------------------------------------
# Great Expectations
# --------------------------------------------------------------------------------------------

def with_content_columns(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus two columns for the content checks (empty string = no finding).

    ``duplicate_of``: the first file (by path) with the same bytes, on every later copy.
    ``label_conflict``: the files with the same bytes in *other* classes. Empty and unreadable
    files (no content hash) are left to the other checks.
    """
    duplicate_of = pd.Series("", index=manifest.index, dtype=object)
    label_conflict = pd.Series("", index=manifest.index, dtype=object)
    hashed = manifest[(manifest["sha256"] != "") & (manifest["size_bytes"] > 0)]
    copies = hashed[hashed["sha256"].duplicated(keep=False)]
    for _, group in copies.sort_values("path").groupby("sha256", sort=False):
        first = group["path"].iloc[0]
        duplicate_of[group.index[1:]] = first
        if group["class"].nunique() > 1:
            for index, cls in group["class"].items():
                others = group.loc[group["class"] != cls, "path"]
                label_conflict[index] = ", ".join(others)
    return manifest.assign(**{DUPLICATE_OF: duplicate_of, LABEL_CONFLICT: label_conflict})


def build_suite(classes: list[str], rules: Mapping[str, Any], n_images: int | None = None):
    """The raw-data ExpectationSuite; each expectation's ``meta`` says what it checks in words.

    It runs on :func:`with_content_columns` of the manifest. The class-share checks need the
    number of images ``n_images`` (they are left out without it).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    suite = gx.ExpectationSuite(name="raw_images")

    def add(expectation_type, description: str, kind: str = "file", **kwargs: Any) -> None:
        suite.add_expectation(expectation_type(meta={"description": description, "kind": kind},
                                               **kwargs))

    add(gxe.ExpectColumnValuesToBeInSet, "every file decodes as an image",
        column="decodable", value_set=[True])
    add(gxe.ExpectColumnValuesToBeBetween, "no file is empty",
        column="size_bytes", min_value=0, strict_min=True)
    add(gxe.ExpectColumnValuesToBeInSet,
        "no content appears under two classes (label conflict: same sha256 in another class)",
        kind="label_conflict", column=LABEL_CONFLICT, value_set=[""])
    add(gxe.ExpectColumnValuesToBeInSet,
        "no two files have the same content (exact duplicates by sha256; reported, not failing)",
        kind="duplicate", column=DUPLICATE_OF, value_set=[""], severity="warning")
    formats, modes = list(rules["allowed_formats"]), list(rules["allowed_modes"])
    add(gxe.ExpectColumnValuesToBeInSet,
        f"image format is one of {', '.join(formats)} (validation.allowed_formats)",
        column="format", value_set=formats)
    add(gxe.ExpectColumnValuesToBeInSet,
        f"colour mode is one of {', '.join(modes)} (validation.allowed_modes)",
        column="mode", value_set=modes)
    for side in ("width", "height"):
        low, high = rules[f"min_{side}"], rules[f"max_{side}"]
        add(gxe.ExpectColumnValuesToBeBetween,
            f"{side} is between {low} and {high} pixels (validation.min_{side}/max_{side})",
            column=side, min_value=low, max_value=high)
    add(gxe.ExpectColumnValuesToBeInSet,
        f"every file is in a class folder {', '.join(classes)} (data.classes)",
        kind="class_set", column="class", value_set=list(classes))
    add(gxe.ExpectColumnDistinctValuesToContainSet,
        "every configured class has a folder with images (data.classes)",
        kind="class_present", column="class", value_set=list(classes))
    minimum = rules["min_images_per_class"]
    for cls in classes:
        add(gxe.ExpectTableRowCountToBeBetween,
            f"class {cls} has at least {minimum} images (validation.min_images_per_class)",
            kind="class_count", min_value=minimum, row_condition=Column("class") == cls)
    if n_images:
        low, high = rules["min_class_share"], rules["max_class_share"]
        for cls in classes:
            # shares as counts of this manifest; the tolerance absorbs float rounding
            add(gxe.ExpectTableRowCountToBeBetween,
                f"class {cls} holds {low:.0%} to {high:.0%} of the images "
                "(validation.min_class_share/max_class_share)",
                kind="class_share", min_value=math.ceil(low * n_images - 1e-9),
                max_value=math.floor(high * n_images + 1e-9), row_condition=Column("class") == cls)
    return suite


def _outcome(gx_result, manifest: pd.DataFrame) -> ExpectationOutcome:
    config = gx_result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column")
    result = gx_result.result or {}
    severity = getattr(config, "severity", None)
    outcome = ExpectationOutcome(name=config.type, description=config.meta.get("description", ""),
                                 column=column, success=bool(gx_result.success),
                                 kind=config.meta.get("kind", "file"),
                                 severity=str(getattr(severity, "value", severity or "critical")))
    exception = gx_result.exception_info or {}
    if exception.get("raised_exception"):
        outcome.error = str(exception.get("exception_message") or "the check raised an exception")
        return outcome
    if "unexpected_index_list" in result:  # a per-file (column map) check
        offenders = result["unexpected_index_list"] or []
        outcome.offending = [str(item["path"]) for item in offenders]
        outcome.offending_values = [plain(item.get(column)) for item in offenders]
        outcome.observed = int(result.get("unexpected_count", len(offenders)))
    elif config.type == "expect_column_distinct_values_to_contain_set":
        present = set(manifest["class"].dropna())
        outcome.offending = [cls for cls in kwargs["value_set"] if cls not in present]
        outcome.observed = sorted(str(cls) for cls in present)
    elif config.type == "expect_table_row_count_to_be_between":
        cls = kwargs["row_condition"]["parameter"]
        outcome.column = "class"
        outcome.observed = plain(result.get("observed_value"))
        if outcome.kind == "class_share" and outcome.observed is not None and len(manifest):
            outcome.observed = {"images": outcome.observed,
                                "share": round(outcome.observed / len(manifest), 4)}
        outcome.offending = [] if outcome.success else [str(cls)]
    return outcome


def validate(manifest: pd.DataFrame, classes: list[str],
             rules: DictConfig | Mapping[str, Any]) -> ValidationResult:
    """Run the raw-data ExpectationSuite on ``manifest`` with Great Expectations.

    Parameters
    ----------
    manifest : pandas.DataFrame
        The output of :func:`build_manifest`.
    classes : list of str
        The configured classes (``data.classes``).
    rules : DictConfig or dict
        ``cfg.validation`` (every key of the group; checked by the config schema). The suite
        uses allowed_formats, allowed_modes, min/max width and height, min_images_per_class
        and min/max_class_share.

    Returns
    -------
    ValidationResult
        Overall success, one :class:`ExpectationOutcome` per check (with the offending paths
        or classes) and statistics.
    """
    rules = check_section("validation", rules)  # types and ranges: the config schema
    classes = list(classes)
    missing = [column for column in MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise DataError(f"manifest lacks column(s) {missing}; build it with build_manifest()")

    # GX logs its own bookkeeping at INFO (hundreds of lines at import when a caller logs INFO).
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_definition = (context.data_sources.add_pandas("raw_images")
                        .add_dataframe_asset("manifest")
                        .add_batch_definition_whole_dataframe("whole_manifest"))
    suite = context.suites.add(build_suite(classes, rules, n_images=len(manifest)))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="validate_raw", data=batch_definition, suite=suite))
    checked = with_content_columns(manifest)
    gx_result = definition.run(
        batch_parameters={"dataframe": checked},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]})

    outcomes = [_outcome(item, checked) for item in gx_result.results]
    statistics = {key: plain(value) for key, value in dict(gx_result.statistics).items()}
    success = all(o.success or o.severity != "critical" for o in outcomes)
    return ValidationResult(success=success, expectations=outcomes, statistics=statistics)


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------

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


def _found(outcome: ExpectationOutcome) -> str:
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


def _offender_lines(outcome: ExpectationOutcome, errors: Mapping[str, str],
                    names: Mapping[str, str] | None = None) -> list[str]:
    """``path: why`` for each offending file (or class) of a failed check.

    ``names`` maps manifest paths to the names to show (e.g. where ingestion read them).
    """
    def display(path: str) -> str:
        return (names or {}).get(path, path)

    if outcome.kind == "class_share":
        found = _found(outcome)
        return [f"class {cls}: {found}" for cls in outcome.offending]
    if outcome.column == "class" and outcome.name == "expect_table_row_count_to_be_between":
        return [f"class {cls}: {outcome.observed} images" for cls in outcome.offending]
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
        if outcome.kind == "class_set":
            reason = (f"folder {value}/ is not a configured class" if value
                      else "not inside a class folder")
        elif outcome.kind == "duplicate":
            reason = f"same content (sha256) as {display(value)}"
        elif outcome.kind == "label_conflict":
            others = ", ".join(display(other) for other in str(value).split(", "))
            reason = f"same content (sha256) as {others} in another class"
        elif outcome.column in ("decodable", "size_bytes"):
            reason = errors.get(path) or f"{outcome.column}={value}"
        else:
            reason = f"{outcome.column}={value}"
        lines.append(f"{display(path)}: {reason}")
    return lines


def markdown_report(result: ValidationResult, manifest: pd.DataFrame,
                    skipped: list[SkippedFile], classes: list[str] | None = None) -> str:
    """The human-readable report: checks, offending files, counts per class, skipped files."""
    errors = dict(zip(manifest["path"], manifest["error"], strict=True))
    data = report_dict(result, manifest, skipped, classes)
    status = "PASSED" if result.success else "FAILED"
    lines = [
        f"# Raw data validation: {status}",
        "",
        f"{data['n_images']} image files checked, {data['n_skipped']} other files skipped; "
        f"{data['n_failed_expectations']} of {data['n_expectations']} checks failed; "
        f"{data['n_undecodable']} undecodable; {data['n_duplicate_sha256']} duplicate files "
        "(same sha256 as an earlier one).",
        "",
    ]
    lines += markdown_checks(result, _found, lambda outcome: _offender_lines(outcome, errors))
    if result.warnings:
        lines += ["", "## Warnings (reported, not failing)", ""]
        for outcome in result.warnings:
            lines += [f"### {md_escape(outcome.description)}", ""]
            lines += [f"- `{md_escape(line)}`" for line in _offender_lines(outcome, errors)]
            lines.append("")
    lines += ["", "## Images per class", "", "| class | images |", "|---|---|"]
    lines += [f"| {md_escape(cls)} | {n} |" for cls, n in data["counts_per_class"].items()]
    lines += ["", "## Skipped files", ""]
    if skipped:
        lines += ["| file | reason |", "|---|---|"]
        lines += [f"| `{md_escape(item.path)}` | {md_escape(item.reason)} |" for item in skipped]
    else:
        lines.append("None.")
    return "\n".join(lines).rstrip() + "\n"


def write_report(result: ValidationResult, manifest: pd.DataFrame, skipped: list[SkippedFile],
                 json_path: Path, md_path: Path, classes: list[str] | None = None) -> None:
    """Write the JSON report (DVC metric) and the Markdown report."""
    for path in (json_path, md_path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    data = report_dict(result, manifest, skipped, classes)
    Path(json_path).write_text(json.dumps(data, indent=2, default=str) + "\n")
    Path(md_path).write_text(markdown_report(result, manifest, skipped, classes))


STAGE_ADVICE = "Fix or remove these files (or adjust conf/validation/) and run the stage again."


def failure_message(result: ValidationResult, manifest: pd.DataFrame, raw_dir: str,
                    report: str | None = None, names: Mapping[str, str] | None = None,
                    advice: str = STAGE_ADVICE) -> str:
    """What failed, naming up to :data:`MAX_LISTED` offending files per check, then ``advice``.

    ``names`` maps manifest paths to the names to show instead (e.g. paths in an archive).
    """
    errors = dict(zip(manifest["path"], manifest["error"], strict=True))
    where = f" (full report: {report})" if report else ""
    lines = [f"raw data in {raw_dir} failed {len(result.failed)} of {len(result.expectations)} "
             f"checks{where}:"]
    lines += failure_lines(result, lambda outcome: _offender_lines(outcome, errors, names))
    lines.append(advice)
    return "\n".join(lines)


def run(cfg: DictConfig, root: Path) -> dict[str, Any]:
    """The DVC stage: manifest ``paths.raw_dir``, validate it, write reports and the manifest.

    Writes ``<paths.reports_dir>/validate_raw.{json,md}`` always and ``paths.manifest`` only
    when every check passes. Raises DataError (listing the offending files) otherwise.
    """
    root = Path(root)
    raw_dir = root / cfg.paths.raw_dir
    manifest_path = root / cfg.paths.manifest
    reports_dir = root / cfg.paths.reports_dir
    classes = list(cfg.data.classes)
    rules = check_section("validation", cfg.validation)
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

    result = validate(manifest, classes, rules)
    json_path, md_path = reports_dir / REPORT_JSON, reports_dir / REPORT_MD
    write_report(result, manifest, skipped, json_path, md_path, classes)
    if not result.success:
        raise DataError(failure_message(result, manifest, shown(raw_dir, root),
                                        shown(md_path, root)))
    atomic_write(manifest_path, lambda tmp: manifest.to_csv(tmp, index=False))
    return {"success": True, "n_images": int(len(manifest)), "n_skipped": len(skipped),
            "counts_per_class": counts_per_class(manifest, classes),
            "warnings": [f"{outcome.description}: {_found(outcome)}" for outcome in result.warnings],
            "manifest": shown(manifest_path, root)}


def check_staged(cfg: DictConfig, staging: Path, names: Mapping[str, str], label: str,
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
