"""Evaluate stage: argmax accuracy, per-class precision/recall/F1, confusion matrices, sample
predictions (the paper's Fig. 2) and the paper's "prediction time" (wall time to predict a whole
split) on val and test; calibration before and after the train stage's temperature (ECE, NLL,
reliability diagrams), a Grad-CAM grid of test predictions and selective prediction under the
guard (:mod:`leukemia_cnn.modeling.selective`). Written as DVC metrics/plots and logged to the
training run in MLflow."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.preprocess import load_split
from leukemia_cnn.data.staging import interrupted_note
from leukemia_cnn.fileio import write_csv, write_json, write_text
from leukemia_cnn.modeling.calibration import (
    apply_temperature,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from leukemia_cnn.modeling.evaluate_figures import plot_gradcam_grid, plot_reliability, plot_samples
from leukemia_cnn.modeling.guard import load_trained
from leukemia_cnn.modeling.plots import plot_confusion
from leukemia_cnn.modeling.selective import RISK_COVERAGE_FILE, guard_metrics
from leukemia_cnn.tracking.failures import cleaned_on_failure
from leukemia_cnn.tracking.orphans import process_tags
from leukemia_cnn.tracking.runs import (
    log_artifact,
    log_artifacts,
    log_split_metrics,
    set_tag,
    set_tags,
    start_run,
)
from leukemia_cnn.tracking.store import setup_mlflow

# First in metrics.json, so that `dvc exp show` and `dvc metrics show` open on them.
HEADLINE_METRICS = ("val_accuracy", "test_accuracy", "val_f1_macro", "test_f1_macro", "collapsed",
                    "val_ece_calibrated", "test_ece_calibrated", "test_accuracy_accepted",
                    "test_false_flag_rate", "val_prediction_seconds", "test_prediction_seconds")


def dihedral_views(x: np.ndarray) -> list[np.ndarray]:
    """The 8 flips and 90-degree rotations of a batch of square images ``(n, h, w, c)``."""
    turns = [np.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return [np.ascontiguousarray(v) for v in turns + [np.flip(t, axis=2) for t in turns]]


def timed_predict(model, x: np.ndarray, batch_size: int = 256,
                  tta: bool = False) -> tuple[np.ndarray, float]:
    """Class probabilities for ``x`` and the wall time the whole prediction took; with ``tta``
    the mean of the probabilities over the 8 :func:`dihedral_views`."""
    start = time.perf_counter()
    if tta:
        probabilities = np.mean([model.predict(view, batch_size=batch_size, verbose=0)
                                 for view in dihedral_views(x)], axis=0)
    else:
        probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    return probabilities, time.perf_counter() - start


def is_collapsed(y_true: np.ndarray, y_pred: np.ndarray) -> bool:
    """A run that predicts a single class, or does not beat always-the-majority-class."""
    majority_share = np.bincount(y_true).max() / len(y_true)
    accuracy = float(np.mean(y_true == y_pred))
    return bool(len(np.unique(y_pred)) <= 1 or accuracy <= majority_share)


def split_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                  prefix: str) -> dict[str, float]:
    """Accuracy, macro F1 and per-class precision/recall/F1 named ``<prefix>_...``."""
    labels = list(range(len(classes)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    metrics = {
        f"{prefix}_accuracy": float(np.mean(y_true == y_pred)),
        f"{prefix}_f1_macro": float(np.mean(f1)),
    }
    for index, name in enumerate(classes):
        metrics[f"{prefix}_precision_{name}"] = float(precision[index])
        metrics[f"{prefix}_recall_{name}"] = float(recall[index])
        metrics[f"{prefix}_f1_{name}"] = float(f1[index])
    return metrics


def score_split(model, split: str, data: tuple, classes: list[str], reports_dir: Path, *,
                tta: bool, fitted_temperature: float, n_bins: int) -> tuple[dict[str, float], dict]:
    """Predict one split ``(x, y, paths)``; write its reliability tables (before and after the
    temperature) and diagram and its ``confusion_<split>.csv``. Returns its metrics and
    ``{x, y_true, y_pred, paths, probabilities}``."""
    x, y_true, paths = data
    figures_dir = reports_dir / "figures"
    model.predict(x[:1], verbose=0)  # warm-up: graph tracing is not prediction time
    probabilities, seconds = timed_predict(model, x, tta=tta)
    y_pred = probabilities.argmax(axis=1)
    metrics = split_metrics(y_true, y_pred, classes, split)
    if tta:  # what the registered model (one prediction per image) scores
        plain = timed_predict(model, x)[0].argmax(axis=1)
        metrics[f"{split}_accuracy_no_tta"] = float(np.mean(plain == y_true))
    metrics[f"{split}_prediction_seconds"] = seconds
    metrics[f"{split}_n_images"] = len(y_true)
    counts = np.bincount(y_true, minlength=len(classes))
    metrics.update({f"{split}_support_{name}": int(counts[i]) for i, name in enumerate(classes)})
    tables = {}  # ECE, NLL and reliability bins before and after the fitted temperature
    for name, p in (("uncalibrated", probabilities),
                    ("calibrated", apply_temperature(probabilities, fitted_temperature))):
        metrics[f"{split}_ece_{name}"] = expected_calibration_error(p, y_true, n_bins)
        metrics[f"{split}_nll_{name}"] = negative_log_likelihood(p, y_true)
        table = tables[name] = reliability_bins(p, y_true, n_bins)
        write_csv(reports_dir / "reliability" / f"{split}_{name}.csv",
                  table[table["count"] > 0].round(6))
    plot_reliability(tables, metrics, split, fitted_temperature,
                     figures_dir / f"reliability_{split}.png")
    write_csv(reports_dir / f"confusion_{split}.csv",
              pd.DataFrame({"path": paths, "actual": np.asarray(classes)[y_true],
                            "predicted": np.asarray(classes)[y_pred]}))
    details = {"x": x, "y_true": y_true, "y_pred": y_pred, "paths": paths,
               "probabilities": probabilities}
    return metrics, details


def write_reports(model, cfg: Config, details: dict[str, dict], reports_dir: Path,
                  temperature: float, raw_dir: Path | None) -> None:
    """Confusion matrices and ``classification_report.txt`` of val and test; sample
    predictions and the Grad-CAM grid of test."""
    classes = list(cfg.data.classes)
    figures_dir = reports_dir / "figures"
    labels = list(range(len(classes)))
    report_text = ""
    for split in ("val", "test"):
        d = details[split]
        plot_confusion(confusion_matrix(d["y_true"], d["y_pred"], labels=labels), classes,
                       figures_dir / f"confusion_{split}.png", f"Confusion matrix ({split})")
        report_text += f"== {split} ==\n" + classification_report(
            d["y_true"], d["y_pred"], labels=labels, target_names=classes, digits=3,
            zero_division=0) + "\n"
    test = details["test"]
    plot_samples(test["x"], test["y_true"], test["y_pred"], classes,
                 figures_dir / "sample_predictions.png", seed=cfg.seed)
    plot_gradcam_grid(model, test["x"], test["y_true"], test["y_pred"],
                      apply_temperature(test["probabilities"], temperature), test["paths"],
                      classes, cfg.evaluate.gradcam_per_class, raw_dir,
                      figures_dir / "gradcam_test.png")
    write_text(reports_dir / "classification_report.txt", report_text)


def evaluate_model(model, cfg: Config, splits: dict[str, tuple], reports_dir: Path,
                   temperature: float = 1.0, fitted_temperature: float | None = None,
                   raw_dir: Path | None = None, guard=None) -> tuple[dict[str, float], bool]:
    """Predict val and test, write the evaluation files, return ``(metrics, collapsed)``.

    Parameters
    ----------
    cfg : Config
        Composed config (``data.classes``, ``seed``).
    splits : dict
        ``{"val": (x, y, paths), "test": (x, y, paths)}`` as :func:`load_split` returns them.
    reports_dir : pathlib.Path
        Receives ``metrics.json``, ``confusion_{val,test}.csv``,
        ``classification_report.txt``, ``reliability/{val,test}_{uncalibrated,calibrated}.csv``
        and ``figures/`` (confusion matrices, sample predictions, reliability diagrams,
        Grad-CAM grid).
    temperature : float, default 1.0
        The temperature the logged model serves (1.0: none).
    fitted_temperature : float, optional
        The temperature fit on val (default: ``temperature``); "calibrated" metrics use it,
        whether or not the model serves it.
    raw_dir : pathlib.Path, optional
        ``paths.raw_dir``: the Grad-CAM grid draws on the original colour images found there
        (else on the preprocessed grayscale ones).
    guard : leukemia_cnn.modeling.guard.Guard, optional
        The model's out-of-distribution guard: adds per split the false-flag rate, the
        coverage and the accuracy on the accepted images, and ``risk_coverage_test.csv``.

    Returns
    -------
    metrics : dict
        Argmax accuracy, F1, per-class P/R/F1 and support, ECE and NLL before and after
        temperature scaling, prediction seconds and image counts per split, the temperatures,
        the val majority share and ``collapsed`` (0 or 1).
    collapsed : bool
        See :func:`is_collapsed` (judged on the val split).
    """
    fitted_temperature = temperature if fitted_temperature is None else fitted_temperature
    metrics = {"calibration_temperature": float(temperature),
               "calibration_fitted_temperature": float(fitted_temperature)}
    (reports_dir / "figures").mkdir(parents=True, exist_ok=True)
    details: dict[str, dict] = {}
    for split in ("val", "test"):
        scores, details[split] = score_split(
            model, split, splits[split], list(cfg.data.classes), reports_dir,
            tta=cfg.evaluate.tta, fitted_temperature=fitted_temperature,
            n_bins=cfg.evaluate.ece_bins)
        metrics.update(scores)
    y_val = details["val"]["y_true"]
    collapsed = is_collapsed(y_val, details["val"]["y_pred"])
    metrics["val_majority_share"] = float(np.bincount(y_val).max() / len(y_val))
    metrics["collapsed"] = int(collapsed)

    write_reports(model, cfg, details, reports_dir, temperature, raw_dir)
    if guard is not None:
        metrics.update(guard_metrics(guard, model, details, reports_dir))
    headline = {key: metrics[key] for key in HEADLINE_METRICS if key in metrics}
    write_json(reports_dir / "metrics.json", headline | metrics)
    return metrics, collapsed


def log_evaluation(metrics: dict[str, float], collapsed: bool, reports_dir: Path) -> None:
    """Log the metrics, the ``collapsed`` tag and the evaluation files to the active run."""
    log_split_metrics({k: float(v) for k, v in metrics.items()})  # linked to val/test datasets
    set_tag("collapsed", str(collapsed).lower())
    log_artifacts(reports_dir / "figures", artifact_path="evaluation")
    log_artifact(reports_dir / "classification_report.txt", "evaluation")
    log_artifact(reports_dir / "metrics.json", "evaluation")
    if (reports_dir / RISK_COVERAGE_FILE).is_file():
        log_artifact(reports_dir / RISK_COVERAGE_FILE, "evaluation")
    log_artifacts(reports_dir / "reliability", artifact_path="evaluation/reliability")


def print_summary(metrics: dict[str, float], collapsed: bool, run_id: str,
                  prefix: str = "evaluate") -> None:
    """Accuracies and prediction times, calibration, the guard's flags; a collapse warning first."""
    if collapsed:
        print(f"{prefix}: WARNING run {run_id} collapsed (val accuracy "
              f"{metrics['val_accuracy']:.3f} <= majority share {metrics['val_majority_share']:.3f}"
              " or one class predicted); it is tagged collapsed=true and will not be promoted")
    print(f"{prefix}: val accuracy {metrics['val_accuracy']:.3f}, test accuracy "
          f"{metrics['test_accuracy']:.3f}; prediction time val {metrics['val_prediction_seconds']:.2f}"
          f" s, test {metrics['test_prediction_seconds']:.2f} s")
    served = "applied" if metrics["calibration_temperature"] != 1.0 else "not applied"
    print(f"{prefix}: calibration T {metrics['calibration_fitted_temperature']:.3f} "
          f"({served}); ECE val {metrics['val_ece_uncalibrated']:.3f} -> "
          f"{metrics['val_ece_calibrated']:.3f}, test {metrics['test_ece_uncalibrated']:.3f} "
          f"-> {metrics['test_ece_calibrated']:.3f}; NLL val "
          f"{metrics['val_nll_uncalibrated']:.3f} -> {metrics['val_nll_calibrated']:.3f}, "
          f"test {metrics['test_nll_uncalibrated']:.3f} -> {metrics['test_nll_calibrated']:.3f}")
    if "test_false_flag_rate" in metrics:  # evaluated with a guard
        print(f"{prefix}: guard flags {metrics['test_false_flag_rate']:.1%} of test images; "
              f"accuracy on the accepted {metrics['test_accuracy_accepted']:.3f} "
              f"(all: {metrics['test_accuracy']:.3f})")


SUMMARY_KEYS = ("val_accuracy", "test_accuracy", "val_f1_macro", "test_f1_macro",
                "val_prediction_seconds", "test_prediction_seconds", "collapsed",
                "calibration_temperature", "val_ece_uncalibrated", "val_ece_calibrated",
                "test_ece_uncalibrated", "test_ece_calibrated")


def run(cfg: Config, root: Path) -> dict:
    """DVC stage ``evaluate``."""
    reports_dir = root / cfg.paths.reports_dir
    record, model, guard = load_trained(root / cfg.paths.model_dir)
    splits = {split: load_split(root / cfg.paths.preprocessed_dir, split)
              for split in ("val", "test")}
    temperature = float(record.get("temperature", 1.0))  # absent: trained before calibration
    metrics, collapsed = evaluate_model(
        model, cfg, splits, reports_dir, temperature=temperature,
        fitted_temperature=float(record.get("fitted_temperature", temperature)),
        raw_dir=root / cfg.paths.raw_dir, guard=guard)

    setup_mlflow(cfg, root)
    with (start_run(run_id=record["run_id"]),
          cleaned_on_failure(record["run_id"], (reports_dir,), interrupted_note(root))):
        set_tags(process_tags())  # this process now owns the reopened run
        log_evaluation(metrics, collapsed, reports_dir)
    print_summary(metrics, collapsed, record["run_id"])
    return {k: metrics[k] for k in SUMMARY_KEYS}
