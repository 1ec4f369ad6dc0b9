"""Robustness stage: the trained model and its guard on the test split under the seeded
acquisition-shift suite (:mod:`leukemia_cnn.data.shifts`); docs/robustness.md says what each
number means and where it is written.

Each test image is read from ``paths.raw_dir`` as it was acquired, shifted as another lab would
shift it, preprocessed exactly as the served model does
(:func:`~leukemia_cnn.data.imaging.to_model_input`) and scored by the network and its guard in
float32, one prediction per image (no test-time augmentation). Per case (a shift at one
strength, and the unchanged images as ``clean``) it reports :data:`STATS`; it writes the table
and the ``robustness`` plot's lines under ``reports/robustness/``, the summary
(``reports/robustness.json``) and, on the training run in MLflow, every case's numbers as
``robustness/<family>_<strength>/<stat>``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from leukemia_cnn.data import shifts
from leukemia_cnn.data.acquisition import acquisition_of
from leukemia_cnn.data.preprocess import load_split, scale_record
from leukemia_cnn.fileio import write_csv, write_json
from leukemia_cnn.modeling.guard import load_trained, score_images
from leukemia_cnn.modeling.guardinputs import embedding_model
from leukemia_cnn.tracking.orphans import process_tags
from leukemia_cnn.tracking.runs import log_artifact, log_artifacts, log_metrics, set_tags, start_run
from leukemia_cnn.tracking.store import setup_mlflow

ROBUSTNESS_DIR = "robustness"  # under paths.reports_dir: the table and the plot files
TABLE_FILE = "robustness.csv"
METRICS_FILE = "robustness.json"
CLEAN = "clean"  # the family name of the unchanged images in the table
STATS = ("accuracy", "flagged", "accuracy_accepted", "wrong_accepted", "correct_accepted",
         "ood_auroc")
SUMMARY_KEYS = ("robustness_worst_accuracy_accepted", "robustness_worst_accuracy",
                "robustness_clean_accuracy", "robustness_clean_flagged",
                "robustness_moderate_min_accuracy", "robustness_moderate_correct_accepted",
                "robustness_wrong_accepted", "robustness_ood_auroc",
                "robustness_cases_all_flagged", "robustness_n_cases", "robustness_n_images",
                "robustness_seconds")


def case_row(y_true: np.ndarray, y_pred: np.ndarray, accepted: np.ndarray,
             ood_score: np.ndarray) -> dict[str, float]:
    """The numbers of one case (:data:`STATS`, docs/robustness.md) from its images' labels,
    predictions, the guard's verdicts and scores."""
    correct = np.asarray(y_true) == np.asarray(y_pred)
    accepted = np.asarray(accepted, dtype=bool)
    n = len(correct)
    wrong = ~correct
    return {
        "n": n,
        "accuracy": float(correct.mean()) if n else float("nan"),
        "flagged": float(1.0 - accepted.mean()) if n else float("nan"),
        "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else float("nan"),
        "wrong_accepted": int((wrong & accepted).sum()),
        "correct_accepted": (float(accepted[correct].mean()) if correct.any()
                             else float("nan")),
        "ood_auroc": error_auroc(wrong, ood_score),
    }


def error_auroc(wrong: np.ndarray, ood_score: np.ndarray) -> float:
    """The AUROC of ``ood_score`` for the wrong answers (1: every wrong answer scores above
    every right one; 0.5: chance); NaN without both kinds or without scores."""
    from sklearn.metrics import roc_auc_score

    wrong, ood_score = np.asarray(wrong, dtype=bool), np.asarray(ood_score, dtype=float)
    finite = np.isfinite(ood_score)
    if not 0 < wrong[finite].sum() < finite.sum():
        return float("nan")
    return float(roc_auc_score(wrong[finite], ood_score[finite]))


class Scorer:
    """The network and its guard (or none) on preprocessed images: labels, verdicts, scores."""

    def __init__(self, model, guard):
        self.guard = guard
        self.two_headed = embedding_model(model) if guard is not None else model

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(predicted label, accepted, ood_score)`` per image of ``x``."""
        if self.guard is None:
            probabilities = self.two_headed.predict(x, batch_size=256, verbose=0)
            n = len(x)
            return probabilities.argmax(axis=1), np.ones(n, bool), np.full(n, np.nan)
        if len(x) == 0:
            return np.zeros(0, int), np.zeros(0, bool), np.zeros(0)
        result = score_images(self.guard, self.two_headed, x)
        return result.probabilities.argmax(axis=1), result.in_distribution, result.ood_score


def evaluate_suite(scorer: Scorer, originals, y_true: np.ndarray, cases, seed: int,
                   preprocess, progress: bool = True, acquisition=None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the clean images and every case of ``cases`` (``acquisition``: what the model
    does to every image first, :func:`leukemia_cnn.data.acquisition.acquisition_of`).

    Returns the table (one row per case, clean first) and the per-image frame of the shifted
    cases (``case``, ``wrong``, ``accepted``, ``ood_score``) the pooled AUROC is computed on.
    """
    rows, images = [], []
    moderate = set(shifts.MODERATE)
    for case in [None, *cases]:
        x = shifts.shifted_inputs(originals, case, seed, preprocess.image_size,
                                  preprocess.color_mode, acquisition)
        y_pred, accepted, ood_score = scorer(x)
        name = CLEAN if case is None else case.name
        rows.append({"case": name, "family": CLEAN if case is None else case.family,
                     "strength": float("nan") if case is None else case.strength,
                     "moderate": case in moderate, **case_row(y_true, y_pred, accepted, ood_score)})
        if case is not None:
            images.append(pd.DataFrame({"case": name, "moderate": case in moderate,
                                        "wrong": y_pred != y_true, "accepted": accepted,
                                        "ood_score": ood_score}))
        if progress:
            row = rows[-1]
            print(f"robustness: {name:<16} accuracy {row['accuracy']:.3f}, flagged "
                  f"{row['flagged']:.1%}, accepted accuracy {row['accuracy_accepted']:.3f}, "
                  f"{row['wrong_accepted']} wrong accepted", flush=True)
    per_image = (pd.concat(images, ignore_index=True) if images
                 else pd.DataFrame(columns=["case", "moderate", "wrong", "accepted", "ood_score"]))
    return pd.DataFrame(rows), per_image


def summary_metrics(table: pd.DataFrame, per_image: pd.DataFrame) -> dict[str, float]:
    """The stage's summary (``SUMMARY_KEYS``) from :func:`evaluate_suite`'s results."""
    clean = table[table["family"] == CLEAN].iloc[0]
    shifted = table[table["family"] != CLEAN]
    moderate = per_image[per_image["moderate"]]
    right = moderate[~moderate["wrong"]]
    return {  # pandas' min and mean skip NaN and are NaN for no value
        "robustness_worst_accuracy_accepted": float(shifted["accuracy_accepted"].min()),
        "robustness_worst_accuracy": float(shifted["accuracy"].min()),
        "robustness_clean_accuracy": float(clean["accuracy"]),
        "robustness_clean_flagged": float(clean["flagged"]),
        "robustness_moderate_min_accuracy": float(shifted[shifted["moderate"]]["accuracy"].min()),
        "robustness_moderate_correct_accepted": float(right["accepted"].mean()),
        "robustness_wrong_accepted": int(shifted["wrong_accepted"].sum()),
        "robustness_ood_auroc": error_auroc(per_image["wrong"].to_numpy(bool),
                                            per_image["ood_score"].to_numpy(float)),
        "robustness_cases_all_flagged": int(shifted["accuracy_accepted"].isna().sum()),
        "robustness_n_cases": len(shifted),
        "robustness_n_images": int(clean["n"]),
    }


def worst_cases(table: pd.DataFrame) -> dict[str, str]:
    """The case names of the worst accuracy and the worst accuracy on accepted images."""
    shifted = table[table["family"] != CLEAN]
    names = {}
    for stat, key in (("accuracy", "worst_case"), ("accuracy_accepted", "worst_accepted_case")):
        values = shifted[stat].dropna()
        if len(values):
            names[key] = str(shifted.loc[values.idxmin(), "case"])
    return names


def plot_lines(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One frame per line of the ``robustness`` plot: a family (a two-sided one split into
    ``<family>_up`` and ``<family>_down`` around its identity strength), its cases from mild to
    strong as ``severity`` 1, 2, ... after the clean images at 0.

    Every line of every family is written, so that ``dvc plots show`` finds each file
    ``dvc.yaml`` names: a family the suite did not evaluate (``grayscale`` for a grayscale
    model, one left out of ``robustness.families``) is its clean point alone."""
    clean = table[table["family"] == CLEAN].iloc[0]
    lines = {}
    for family, spec in sorted(shifts.FAMILIES.items()):
        group = table[table["family"] == family]
        identity = spec.identity
        if spec.two_sided:
            parts = {f"{family}_up": group[group["strength"] > identity],
                     f"{family}_down": group[group["strength"] < identity]}
        else:
            parts = {family: group}
        for name, part in parts.items():
            distance = (part["strength"] - (identity or 0.0)).abs()
            if family == "jpeg":  # a lower quality is the stronger shift
                distance = -part["strength"]
            part = part.assign(_d=distance).sort_values(["_d", "strength"]).drop(columns="_d")
            start = pd.DataFrame([{**clean.to_dict(), "strength": identity}])
            frame = start if part.empty else pd.concat([start, part], ignore_index=True)
            frame.insert(0, "severity", range(len(frame)))
            lines[name] = frame[["severity", "strength", "accuracy", "accuracy_accepted",
                                 "flagged"]].round(6)
    return lines


def write_outputs(table: pd.DataFrame, summary: dict, reports_dir: Path) -> Path:
    """The table, the plot files and the summary JSON; returns the table's folder."""
    folder = reports_dir / ROBUSTNESS_DIR
    write_csv(folder / TABLE_FILE, table.round(6))
    for name, frame in plot_lines(table).items():
        write_csv(folder / f"{name}.csv", frame)
    write_json(reports_dir / METRICS_FILE, summary)
    return folder


def case_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Every case's numbers as MLflow metrics ``robustness/<family>_<strength>/<stat>``."""
    metrics = {}
    for row in table.to_dict("records"):
        key = (CLEAN if row["family"] == CLEAN
               else shifts.ShiftCase(row["family"], row["strength"]).key)
        metrics.update({f"robustness/{key}/{stat}": float(row[stat]) for stat in STATS})
    return metrics


def suite_cases(robustness, color_mode: str) -> list[shifts.ShiftCase]:
    """The cases of the ``robustness`` config group for a model of ``color_mode``."""
    return shifts.suite(robustness.families, color_mode=color_mode,
                        strengths=robustness.strengths)


def run(cfg, root: Path) -> dict:
    """DVC stage ``robustness``."""
    reports_dir = root / cfg.paths.reports_dir
    start = time.perf_counter()
    record, model, guard = load_trained(root / cfg.paths.model_dir)
    _, y_test, paths = load_split(root / cfg.paths.preprocessed_dir, "test")
    originals = shifts.load_originals(root / cfg.paths.raw_dir, paths)
    cases = suite_cases(cfg.robustness, cfg.preprocess.color_mode)
    print(f"robustness: {len(originals)} test images under {len(cases)} shifts "
          f"(seed {cfg.robustness.seed})", flush=True)
    scale = scale_record(root / cfg.paths.preprocessed_dir)
    table, per_image = evaluate_suite(Scorer(model, guard), originals, y_test, cases,
                                      cfg.robustness.seed, cfg.preprocess,
                                      acquisition=acquisition_of(scale))
    summary = summary_metrics(table, per_image)
    summary["robustness_seconds"] = round(time.perf_counter() - start, 2)
    worst = worst_cases(table)
    folder = write_outputs(table, {**summary, **worst}, reports_dir)

    setup_mlflow(cfg, root)
    with start_run(run_id=record["run_id"]):
        set_tags(process_tags())  # this process now owns the reopened run
        log_metrics({**case_metrics(table), **summary})  # summary_metrics' numbers only
        set_tags({f"robustness_{k}": v for k, v in worst.items()})
        log_artifacts(folder, artifact_path=ROBUSTNESS_DIR)
        log_artifact(reports_dir / METRICS_FILE, ROBUSTNESS_DIR)
    print(f"robustness: {summary['robustness_n_cases']} shifts in "
          f"{summary['robustness_seconds']:.1f} s; worst accuracy "
          f"{summary['robustness_worst_accuracy']:.3f} ({worst.get('worst_case', '-')}), worst "
          f"accuracy on accepted images {summary['robustness_worst_accuracy_accepted']:.3f} "
          f"({worst.get('worst_accepted_case', '-')})")
    print(f"robustness: the guard let {summary['robustness_wrong_accepted']} wrong answers "
          f"through; it accepts {summary['robustness_moderate_correct_accepted']:.1%} of the "
          f"moderately shifted smears the model reads right; ood_score AUROC for the errors "
          f"under shift {summary['robustness_ood_auroc']:.3f}")
    return summary
