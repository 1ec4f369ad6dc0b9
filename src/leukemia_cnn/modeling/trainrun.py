"""The MLflow run of one training, shared by the ``train`` stage and the sweep jobs: how it
is opened (name, tags, params, datasets) and what it logs per epoch and at the end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leukemia_cnn.config import paper_faithful
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.lineage import lineage_and_rows
from leukemia_cnn.data.staging import interrupted_note
from leukemia_cnn.modeling.model import resolve_mixed_precision
from leukemia_cnn.tracking.failures import cleaned_on_failure
from leukemia_cnn.tracking.fields import (
    EPOCH_METRICS,
    TRAINING_GROUPS,
    recipe,
    run_base_name,
    stage_params,
)
from leukemia_cnn.tracking.runs import MetricWriter, active_run_id, log_params, start_run
from leukemia_cnn.tracking.store import (
    config_id,
    log_datasets,
    run_tags,
    setup_mlflow,
    unique_run_name,
)


@dataclass(frozen=True)
class TrainingRun:
    """The active training run: its id, experiment, name and configuration id."""

    run_id: str
    experiment_id: str
    name: str
    config_id: str


def epoch_logger():
    """A Keras callback logging every epoch's curves to the active run, at step = epoch.

    Train and val of one quantity share a prefix (``loss/train``, ``loss/val``,
    ``accuracy/train``, ``accuracy/val``), so the run page shows them side by side in one
    section. ``val_accuracy`` stays free for the evaluate stage's accuracy of the kept model.

    The writes happen off the training thread (:class:`leukemia_cnn.tracking.runs.MetricWriter`);
    ``on_train_end`` waits for them and raises a failed write, and the caller of an interrupted
    fit calls ``close(raise_errors=False)`` before it ends the run KILLED.
    """
    import keras

    class MLflowEpochLogger(keras.callbacks.Callback):
        writer: MetricWriter | None = None

        def on_train_begin(self, logs=None):
            self.writer = MetricWriter(active_run_id())

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            # Keras's own accuracy duplicates the argmax accuracy (Keras 3 computes it
            # categorically whatever the loss; tag `keras_accuracy_metric` says which)
            metrics = {EPOCH_METRICS.get(k, k): float(v) for k, v in (logs or {}).items()
                       if k not in ("accuracy", "val_accuracy")}
            metrics["epoch_seconds"] = time.perf_counter() - self._start
            self.writer.put(metrics, step=epoch + 1)

        def on_train_end(self, logs=None):
            self.close()

        def close(self, raise_errors: bool = True):
            """Wait for the queued epochs to be written (no-op before the fit began)."""
            return self.writer.close(raise_errors) if self.writer is not None else None

    return MLflowEpochLogger()


def study_tags(cfg: Config) -> dict[str, str]:
    """``sweep_id`` and ``experiment_name`` when ``sweep.id`` is set (a DVC-queued study run)."""
    if cfg.sweep.id is None:
        return {}
    return {"sweep_id": cfg.sweep.id, "experiment_name": cfg.sweep.experiment or "default"}


def training_params(cfg: Config, lineage, x_train: np.ndarray, y_train: np.ndarray,
                    y_val: np.ndarray) -> dict[str, str]:
    """The run's params: the knobs of the groups training reads (data as it actually was,
    split, preprocess, model, train, evaluate, seed) and the data sizes.

    The compare view's scatter plot opens on the alphabetically first param: that is
    ``data.n_train`` (the class list and the input shape, constant within a study, are tags).

    ``train.mixed_precision: auto`` is logged as what it resolved to on this machine (``off``
    or ``bfloat16``): the run's numbers depend on it, and runs that computed alike then share a
    configuration id (the setting itself stays in the logged ``config.yaml``).
    """
    params = stage_params(cfg, lineage, TRAINING_GROUPS)
    if params.get("train.mixed_precision") == "auto":
        params["train.mixed_precision"] = resolve_mixed_precision("auto")
    params.update({"data.n_train": str(len(y_train)), "data.n_val": str(len(y_val))})
    return params


@contextlib.contextmanager
def start_training_run(cfg: Config, root: Path, x_train, y_train, y_val, train_paths=None,
                       stage: str = "train", recipe_name: str | None = None,
                       overrides: str | None = None, outputs: Sequence[Path] = (),
                       **extra_tags: str):
    """Open the MLflow run of one training and log what it starts from; yield a
    :class:`TrainingRun`.

    Name ``<recipe>-s<seed>-<data>`` (``-2``, ``-3`` when taken), the project's tags with a
    description, the training params and the train/val/test datasets. Leaving the block ends
    the run (FAILED on an exception, KILLED on KeyboardInterrupt); a failed block's logged
    artifacts are removed and a full disk is one line naming the path (``outputs``: the
    folders the block writes besides the store; :func:`tracking.failures.cleaned_on_failure`).
    """
    experiment_id = setup_mlflow(cfg, root)
    lineage, rows = lineage_and_rows(cfg, root)
    name = unique_run_name(run_base_name(recipe_name or recipe(cfg), cfg, lineage),
                           experiment_id)
    params = training_params(cfg, lineage, x_train, y_train, y_val)
    configuration = config_id(params)
    tags = run_tags(cfg, root, overrides=overrides,
                    what=f"Keras CNN trained by `{stage}`", groups=TRAINING_GROUPS,
                    stage=stage, model_family="cnn",
                    paper_faithful=str(paper_faithful(cfg)).lower(),
                    config_id=configuration, input_shape="x".join(map(str, x_train.shape[1:])),
                    **{**study_tags(cfg), **extra_tags})
    with (start_run(run_name=name, tags=tags) as active,
          cleaned_on_failure(active.info.run_id, outputs, interrupted_note(root))):
        log_params(params)
        if rows is not None:
            log_datasets(lineage, rows, train_paths)
        yield TrainingRun(active.info.run_id, experiment_id, name, configuration)


def summary_fields(summary: dict, calibration: dict) -> tuple[dict, dict]:
    """``(metrics, tags)`` of a training summary: the time runs are compared on as a metric;
    counts that describe the run (parameters, epochs run, kept epoch, whether calibration
    applies) as tags, which the UI does not chart. (The temperatures are the evaluate stage's
    metrics: logged here too, the logged model would list them twice.)"""
    metrics = {"train_seconds": summary["train_seconds"]}
    tags = {"n_params": str(summary["n_params"]),
            "calibration_applied": str(bool(calibration["applied"])).lower()}
    for key in ("epochs_run", "kept_epoch"):
        if key in summary:
            tags[key] = str(summary[key])
    return metrics, tags
