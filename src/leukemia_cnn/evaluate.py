"""Evaluate stage: argmax accuracy on val and test, per-class precision/recall/F1, confusion
matrices, sample predictions (the paper's Fig. 2) and the paper's "prediction time" (wall
time to predict the whole val set and the whole test set). Written as DVC metrics/plots and
logged to the training run in MLflow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

from leukemia_cnn.config import knob
from leukemia_cnn.errors import DataError
from leukemia_cnn.preprocess import load_split
from leukemia_cnn.tracking import process_tags, setup_mlflow


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
    """Accuracy, macro/weighted F1 and per-class precision/recall/F1 named ``<prefix>_...``."""
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


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(5, 4.4))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
             yticklabels=classes, xlabel="predicted", ylabel="actual", title=title)
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, str(value), ha="center", va="center",
                  color="white" if value > matrix.max() / 2 else "black")
    fig.colorbar(image, ax=axis, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_samples(x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str],
                 path: Path, n: int = 16, seed: int = 0) -> Path:
    """The paper's Fig. 2: a grid of test images with true and predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x), size=min(n, len(x)), replace=False)
    cols = 4
    rows = int(np.ceil(len(picks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.6), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), picks, strict=False):
        image = x[index]
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        ok = y_true[index] == y_pred[index]
        axis.set_title(f"true {classes[y_true[index]]}\npred {classes[y_pred[index]]}",
                       fontsize=9, color="green" if ok else "red")
    fig.suptitle("Sample predictions (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate_model(model, cfg: DictConfig, splits: dict[str, tuple], reports_dir: Path,
                   ) -> tuple[dict[str, float], bool]:
    """Predict val and test, write the evaluation files, return ``(metrics, collapsed)``.

    Parameters
    ----------
    model : keras.Model
        The trained model.
    cfg : DictConfig
        Composed config (``data.classes``, ``seed``).
    splits : dict
        ``{"val": (x, y, paths), "test": (x, y, paths)}`` as :func:`load_split` returns them.
    reports_dir : pathlib.Path
        Receives ``metrics.json``, ``confusion_{val,test}.csv``,
        ``classification_report.txt`` and ``figures/`` (confusion matrices, sample predictions).

    Returns
    -------
    metrics : dict
        Argmax accuracy, F1, per-class P/R/F1, prediction seconds and image counts per split,
        the val majority share and ``collapsed`` (0 or 1).
    collapsed : bool
        See :func:`is_collapsed` (judged on the val split).
    """
    classes = list(cfg.data.classes)
    figures_dir = reports_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    details: dict[str, dict] = {}
    tta = bool(knob(cfg, "evaluate.tta"))
    for split in ("val", "test"):
        x, y_true, paths = splits[split]
        model.predict(x[:1], verbose=0)  # warm-up: graph tracing is not prediction time
        probabilities, seconds = timed_predict(model, x, tta=tta)
        y_pred = probabilities.argmax(axis=1)
        metrics.update(split_metrics(y_true, y_pred, classes, split))
        if tta:  # what the registered model (one prediction per image) scores
            plain = timed_predict(model, x)[0].argmax(axis=1)
            metrics[f"{split}_accuracy_no_tta"] = float(np.mean(plain == y_true))
        metrics[f"{split}_prediction_seconds"] = seconds
        metrics[f"{split}_n_images"] = len(y_true)
        pd.DataFrame({"path": paths, "actual": np.asarray(classes)[y_true],
                      "predicted": np.asarray(classes)[y_pred]}).to_csv(
            reports_dir / f"confusion_{split}.csv", index=False)
        details[split] = {"x": x, "y_true": y_true, "y_pred": y_pred}

    collapsed = is_collapsed(details["val"]["y_true"], details["val"]["y_pred"])
    majority = float(np.bincount(details["val"]["y_true"]).max() / len(details["val"]["y_true"]))
    metrics["val_majority_share"] = majority
    metrics["collapsed"] = int(collapsed)

    report_text = ""
    for split in ("val", "test"):
        d = details[split]
        matrix = confusion_matrix(d["y_true"], d["y_pred"], labels=list(range(len(classes))))
        plot_confusion(matrix, classes, figures_dir / f"confusion_{split}.png",
                       f"Confusion matrix ({split})")
        report_text += f"== {split} ==\n" + classification_report(
            d["y_true"], d["y_pred"], labels=list(range(len(classes))), target_names=classes,
            digits=3, zero_division=0) + "\n"
    test = details["test"]
    plot_samples(test["x"], test["y_true"], test["y_pred"], classes,
                 figures_dir / "sample_predictions.png", seed=int(cfg.seed))
    (reports_dir / "classification_report.txt").write_text(report_text)
    (reports_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics, collapsed


def log_evaluation(metrics: dict[str, float], collapsed: bool, reports_dir: Path) -> None:
    """Log the metrics, the ``collapsed`` tag and the evaluation files to the active run."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    mlflow.set_tag("collapsed", str(collapsed).lower())
    mlflow.log_artifacts(str(reports_dir / "figures"), artifact_path="evaluation")
    mlflow.log_artifact(str(reports_dir / "classification_report.txt"), "evaluation")
    mlflow.log_artifact(str(reports_dir / "metrics.json"), "evaluation")


def print_summary(metrics: dict[str, float], collapsed: bool, run_id: str,
                  prefix: str = "evaluate") -> None:
    """One line of accuracies and prediction times; a warning first for a collapsed run."""
    if collapsed:
        print(f"{prefix}: WARNING run {run_id} collapsed (val accuracy "
              f"{metrics['val_accuracy']:.3f} <= majority share {metrics['val_majority_share']:.3f}"
              " or one class predicted); it is tagged collapsed=true and will not be promoted")
    print(f"{prefix}: val accuracy {metrics['val_accuracy']:.3f}, test accuracy "
          f"{metrics['test_accuracy']:.3f}; prediction time val {metrics['val_prediction_seconds']:.2f}"
          f" s, test {metrics['test_prediction_seconds']:.2f} s")


SUMMARY_KEYS = ("val_accuracy", "test_accuracy", "val_f1_macro", "test_f1_macro",
                "val_prediction_seconds", "test_prediction_seconds", "collapsed")


def run(cfg: DictConfig, root: Path) -> dict:
    """DVC stage ``evaluate``."""
    import keras
    import mlflow

    model_dir = root / cfg.paths.model_dir
    reports_dir = root / cfg.paths.reports_dir
    run_file = model_dir / "run.json"
    if not run_file.is_file():
        raise DataError(f"{run_file} not found; run the train stage first (`dvc repro train`)")
    record = json.loads(run_file.read_text())
    model = keras.saving.load_model(model_dir / "cnn.keras", compile=False)
    splits = {split: load_split(root / cfg.paths.preprocessed_dir, split)
              for split in ("val", "test")}
    metrics, collapsed = evaluate_model(model, cfg, splits, reports_dir)

    setup_mlflow(cfg, root)
    with mlflow.start_run(run_id=record["run_id"]):
        mlflow.set_tags(process_tags())  # this process now owns the reopened run
        log_evaluation(metrics, collapsed, reports_dir)
    print_summary(metrics, collapsed, record["run_id"])
    return {k: metrics[k] for k in SUMMARY_KEYS}
