"""Stage ``validate_features``: Great Expectations checks on the HOG+PCA features.

Two tables are checked (:func:`vector_suite`, :func:`pca_suite`, docs/data-quality.md): one row
per feature vector of ``<features_dir>/{train,val,test}.npz`` and one row for the fitted PCA
(``pca.joblib``), whose explained variance the reports record.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from leukemia_cnn.config import SPLITS
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.preprocess import read_split_table
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import write_json, write_text
from leukemia_cnn.markdown import pipe_table
from leukemia_cnn.quality import suites
from leukemia_cnn.quality.suites import ExpectationOutcome, ValidationResult

REPORT_JSON = "validate_features.json"
REPORT_MD = "validate_features.md"
PCA_FILE = "pca.joblib"
RERUN = "rerun `dvc repro features`"


def load_features(features_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (x, paths)}`` from the ``features`` stage's ``<split>.npz`` files."""
    loaded = {}
    for name in SPLITS:
        path = Path(features_dir) / f"{name}.npz"
        if not path.is_file():
            raise DataError(f"feature file {path} not found; {RERUN}")
        try:
            with np.load(path, allow_pickle=False) as data:
                loaded[name] = (np.asarray(data["x"]), np.asarray(data["path"]).astype(str))
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"feature file {path} is unreadable ({exc}); {RERUN}") from exc
    return loaded


def load_pca(features_dir: Path) -> dict[str, Any]:
    """Component count, input (HOG) length and explained variance of ``pca.joblib``."""
    path = Path(features_dir) / PCA_FILE
    if not path.is_file():
        raise DataError(f"PCA file {path} not found; {RERUN}")
    try:
        pca = joblib.load(path)
        ratios = np.asarray(pca.explained_variance_ratio_, dtype=float)
        return {"n_components": int(pca.n_components_), "hog_length": int(pca.n_features_in_),
                "explained_variance": float(ratios.sum()),
                "explained_variance_ratio": [round(float(r), 6) for r in ratios]}
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways
        raise DataError(f"PCA file {path} is unreadable ({exc}); {RERUN}") from exc


def feature_table(features: dict[str, tuple[np.ndarray, np.ndarray]],
                  split_table: pd.DataFrame) -> pd.DataFrame:
    """One row per feature vector: path, split, column count, all finite, split per table."""
    listed = dict(zip(split_table["path"], split_table["split"], strict=False))
    rows = []
    for name, (x, paths) in features.items():
        matrix = x.reshape(len(x), -1) if x.ndim != 2 else x
        finite = np.isfinite(matrix).all(axis=1) if len(matrix) else np.zeros(0, dtype=bool)
        columns = x.shape[1] if x.ndim == 2 else -1
        for path, ok in zip(paths, finite, strict=False):
            rows.append({"path": str(path), "split": name, "n_columns": int(columns),
                         "finite": bool(ok), "split_in_table": listed.get(str(path), "")})
    return pd.DataFrame(rows, columns=["path", "split", "n_columns", "finite", "split_in_table"])


def vector_suite(add, split_counts: dict[str, int], n_components: int) -> None:
    """The checks on the per-vector table of :func:`feature_table`, added by ``add``."""
    for name, count in split_counts.items():
        add("ExpectTableRowCountToBeBetween",
            f"split {name} has one feature vector per image of the split table ({count})",
            kind="rows", subject=name, min_value=count, max_value=count, where=("split", name))
    add("ExpectColumnPairValuesToBeEqual",
        "every vector belongs to an image of the same split in the split table",
        column_A="split", column_B="split_in_table")
    add("ExpectColumnValuesToBeInSet",
        f"every vector has {n_components} columns (features.pca.n_components)",
        column="n_columns", value_set=[n_components])
    add("ExpectColumnValuesToBeInSet", "every value is finite (no NaN or infinity)",
        column="finite", value_set=[True])


def pca_suite(add, n_components: int, min_explained: float) -> None:
    """The checks on the one-row PCA table, added by ``add``."""
    add("ExpectColumnValuesToBeInSet",
        f"the PCA has {n_components} components (features.pca.n_components)",
        column="n_components", value_set=[n_components])
    add("ExpectColumnPairValuesAToBeGreaterThanB",
        "the PCA has at most as many components as HOG features",
        column_A="hog_length", column_B="n_components", or_equal=True)
    add("ExpectColumnValuesToBeBetween",
        f"the PCA keeps at least {min_explained:.0%} of the train HOG variance "
        "(validation.min_explained_variance)",
        column="explained_variance", min_value=min_explained, max_value=1.0 + 1e-9)


def validate(features: dict[str, tuple[np.ndarray, np.ndarray]], pca: dict[str, Any],
             split_table: pd.DataFrame, n_components: int, min_explained: float,
             pca_name: str = PCA_FILE) -> tuple[ValidationResult, pd.DataFrame]:
    """Run both suites; returns the merged result and the per-vector table."""
    counts = {name: int((split_table["split"] == name).sum()) for name in SPLITS}
    table = feature_table(features, split_table)
    pca_row = pd.DataFrame([{"file": pca_name, "n_components": pca["n_components"],
                             "hog_length": pca["hog_length"],
                             "explained_variance": pca["explained_variance"]}])
    result = suites.merge(
        suites.run_suite(table, lambda add: vector_suite(add, counts, n_components),
                         "validate_features"),
        suites.run_suite(pca_row, lambda add: pca_suite(add, n_components, min_explained),
                         "validate_pca", index_column="file"))
    return result, table


def _found(outcome: ExpectationOutcome) -> str:
    if outcome.kind == "rows":
        return f"{outcome.observed} vectors"
    count = len(outcome.offending)
    return f"{count} offending" if count else "none offending"


def offender_lines(outcome: ExpectationOutcome) -> list[str]:
    """``file: why`` for each offending vector (or the PCA file) of a failed check."""
    if outcome.kind == "rows":
        return [f"split {subject}: {outcome.observed} vectors" for subject in outcome.offending]
    reason = ("vector in split {}, but the split table does not list it there"
              if outcome.column == "split" else f"{outcome.column}={{}}")
    return [f"{path}: {reason.format(value)}"
            for path, value in zip(outcome.offending, outcome.offending_values, strict=False)]


def report_dict(result: ValidationResult, table: pd.DataFrame, pca: dict[str, Any]
                ) -> dict[str, Any]:
    """The machine-readable report (DVC's metric file for the stage)."""
    return {
        "success": result.success,
        "counts": {name: int((table["split"] == name).sum()) for name in SPLITS},
        "n_columns": sorted({int(n) for n in table["n_columns"]}),
        "n_nonfinite_vectors": int((~table["finite"]).sum()),
        "n_components": pca["n_components"],
        "hog_length": pca["hog_length"],
        "explained_variance": round(pca["explained_variance"], 6),
        "explained_variance_ratio": pca["explained_variance_ratio"],
        "n_expectations": len(result.expectations),
        "n_failed_expectations": len(result.failed),
        "expectations": [asdict(outcome) for outcome in result.expectations],
    }


def markdown_report(result: ValidationResult, table: pd.DataFrame, pca: dict[str, Any]) -> str:
    """The human-readable report: checks, offending files, explained variance."""
    data = report_dict(result, table, pca)
    counts = ", ".join(f"{name} {n}" for name, n in data["counts"].items())
    cumulative = np.cumsum(pca["explained_variance_ratio"])
    marks = [k for k in (1, 2, 5, 10, 20, 50, 100, 200) if k <= len(cumulative)]
    return suites.report_page(
        "Feature validation", result,
        f"Feature vectors: {counts}; {data['n_failed_expectations']} of "
        f"{data['n_expectations']} checks failed; {data['n_nonfinite_vectors']} vectors "
        "with NaN or infinite values.", _found, offender_lines,
        ["", "## Explained variance (PCA fit on the train HOG features)", "",
         f"{pca['n_components']} components of {pca['hog_length']} HOG features keep "
         f"{pca['explained_variance']:.1%} of the train variance.", "",
         pipe_table([(k, f"{cumulative[k - 1]:.1%}") for k in marks],
                    ("components", "cumulative share"))])


def run(cfg: Config, root: Path) -> dict[str, Any]:
    """The DVC stage: check ``paths.features_dir`` against the split table and the config.

    Writes ``<paths.reports_dir>/validate_features.{json,md}``; raises DataError naming each
    failed expectation and its offending files. Reads only.
    """
    features_dir = root / cfg.paths.features_dir
    split_table = read_split_table(root / cfg.paths.splits, list(cfg.data.classes))
    features = load_features(features_dir)
    pca = load_pca(features_dir)
    result, table = validate(features, pca, split_table, cfg.features.pca.n_components,
                             cfg.validation.min_explained_variance,
                             pca_name=f"{cfg.paths.features_dir}/{PCA_FILE}")
    reports_dir = root / cfg.paths.reports_dir
    data = report_dict(result, table, pca)
    write_json(reports_dir / REPORT_JSON, data)
    write_text(reports_dir / REPORT_MD, markdown_report(result, table, pca))
    if not result.success:
        raise DataError(suites.failure_message(
            f"features in {cfg.paths.features_dir}", result, offender_lines,
            "Rerun `dvc repro split preprocess features` or adjust conf/ "
            "(features.pca.n_components, validation.min_explained_variance).",
            report=f"{cfg.paths.reports_dir}/{REPORT_MD}"))
    return {key: data[key] for key in ("success", "counts", "n_components", "hog_length",
                                       "explained_variance")}
