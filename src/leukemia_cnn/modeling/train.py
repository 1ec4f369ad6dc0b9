"""Train stage: the Keras CNN, tracked as one MLflow run (docs/mlflow.md says what it shows).

The evaluate and register stages add to the same run (its id is in ``models/run.json``).
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from leukemia_cnn.config import flatten, write_params
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.augment import LUMA, needs_color
from leukemia_cnn.data.preprocess import load_split, scale_record, train_rgb
from leukemia_cnn.data.staging import staging_folder
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.fileio import write_csv
from leukemia_cnn.modeling.batches import training_batches
from leukemia_cnn.modeling.guard import fit_for_training
from leukemia_cnn.modeling.guard import summary as guard_summary
from leukemia_cnn.modeling.guardinputs import embedding_model, forward
from leukemia_cnn.modeling.guardshift import learning_inputs
from leukemia_cnn.modeling.model import build_from_config, displayed_accuracy_metric, set_seeds
from leukemia_cnn.modeling.outputs import HISTORY_FILE, MODEL_FILE, exit_with_dvc, publish
from leukemia_cnn.modeling.plots import plot_curves
from leukemia_cnn.modeling.trainrun import epoch_logger, start_training_run, summary_fields
from leukemia_cnn.tracking.runs import end_run, log_artifact, log_metrics, set_tag, set_tags


class TrainingInterrupted(KeyboardInterrupt):
    """Raised in the training process on SIGTERM so the MLflow run is closed as KILLED.

    SIGINT (Ctrl-C) already raises KeyboardInterrupt: during ``fit`` the run ends KILLED, at
    any other point ``mlflow.start_run``'s context ends it FAILED; either way the new model
    and reports are not moved in (:mod:`leukemia_cnn.modeling.outputs`): the last good ones
    and their ``run.json`` stay. SIGKILL cannot be caught: the next command closes the
    orphaned run (``tracking.close_orphaned_runs``).
    """


@contextlib.contextmanager
def sigterm_as_interrupt():
    def handler(signum, frame):
        raise TrainingInterrupted(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def class_weights(cfg: Config, y_train: np.ndarray) -> dict[int, float] | None:
    """``train.class_weight: balanced`` -> ``{label: n / (n_classes * n_label)}``; else None.

    Not sklearn's compute_class_weight: that divides by the classes present and refuses an
    absent one, where this divides by the configured classes and leaves an absent one out."""
    if cfg.train.class_weight != "balanced":
        return None
    n_classes = len(cfg.data.classes)
    counts = np.bincount(y_train, minlength=n_classes)
    return {label: float(len(y_train) / (n_classes * count))
            for label, count in enumerate(counts) if count > 0}


def training_callbacks(cfg: Config) -> list:
    """The Keras callbacks the robust-training knobs ask for (none for the paper's config).

    ``train.early_stopping_patience``: stop when ``train.early_stopping_monitor`` (val argmax
    accuracy or val loss) has not improved for that many epochs and restore the best epoch's
    weights. ``train.lr_schedule: plateau``: halve the learning rate when val loss has not
    improved for ``train.lr_plateau_patience`` epochs (default 2). ``train.ema_momentum`` > 0:
    Keras's ``SwapEMAWeights`` puts the optimizer's moving average of the weights in the model
    for validation and at every epoch's end, ahead of early stopping, so the val metrics, the
    best epoch and the kept model are all the averaged weights (the raw ones train on).
    """
    import keras

    callbacks = []
    if cfg.train.ema_momentum > 0:
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if cfg.train.early_stopping_patience:
        monitor = cfg.train.early_stopping_monitor
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode="min" if monitor == "val_loss" else "max",
            patience=cfg.train.early_stopping_patience, restore_best_weights=True))
    if cfg.train.lr_schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=cfg.train.lr_plateau_patience,
            min_lr=1e-5))
    return callbacks


def distribution_strategy(cfg: Config):
    """The ``tf.distribute`` strategy ``train.distribute`` selects, or None (default device).

    ``mirrored``: ``tf.distribute.MirroredStrategy`` over every visible GPU (synchronous
    data-parallel training on one machine; the global batch ``train.batch_size`` is split
    across the replicas); with no GPU it mirrors onto the CPU, so it also runs here.
    """
    if cfg.train.distribute is None:
        return None
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    print(f"train: MirroredStrategy with {strategy.num_replicas_in_sync} replica(s): "
          f"{', '.join(strategy.extended.worker_devices)}")
    return strategy


def fit(cfg: Config, x_train, y_train, x_val, y_val, callbacks=()):
    """Build, compile and fit the model of ``cfg``; return ``(model, history_frame, seconds)``.

    A plain function of arrays: the benchmarks and tests call it without MLflow. With early
    stopping the returned model holds the best epoch's weights and the history ends at the
    epoch training stopped. The model takes images shaped as ``x_val``; ``x_train`` may be
    their RGB version (``preprocess.train_rgb``) for the ``augment`` shifts, which see colour
    and hand the model grey.
    """
    set_seeds(cfg.seed, cfg.train.deterministic)
    n_classes = len(cfg.data.classes)
    batch_size = cfg.train.batch_size
    channels = x_val.shape[-1]
    strategy = distribution_strategy(cfg)
    # what the model takes: RGB training images turned grey with PIL's weights
    x_model = (x_train if x_train.shape[-1] == channels
               else (x_train @ LUMA[:, np.newaxis]).astype(np.float32))
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_from_config(cfg, x_val.shape[1:], x_train=x_model,
                                  steps_per_epoch=int(np.ceil(len(x_train) / batch_size)))
    start = time.perf_counter()
    batches = training_batches(cfg, x_train, one_hot(y_train, n_classes), channels)
    if batches is not None:  # the pipeline shuffles and batches itself
        inputs = {"x": batches, "shuffle": False}
    else:
        inputs = {"x": x_train, "y": one_hot(y_train, n_classes), "batch_size": batch_size,
                  "shuffle": True}
    history = model.fit(**inputs, validation_data=(x_val, one_hot(y_val, n_classes)),
                        epochs=cfg.train.epochs, verbose=cfg.train.verbose,
                        callbacks=[*callbacks, *training_callbacks(cfg)],
                        class_weight=class_weights(cfg, y_train))
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return model, frame, seconds


def kept_epoch(cfg: Config, history: pd.DataFrame) -> int:
    """The epoch whose weights the fitted model holds (the best one under early stopping)."""
    if cfg.train.early_stopping_patience:
        monitor = cfg.train.early_stopping_monitor
        values = history[monitor].to_numpy()
        best = values.argmin() if monitor == "val_loss" else values.argmax()
        return int(history["epoch"].iloc[int(best)])
    return int(history["epoch"].iloc[-1])


def train_subset(cfg: Config, x: np.ndarray, y: np.ndarray, paths=None):
    """The stratified ``train.train_fraction`` of the train split (all of it at 1.0).

    Drawn with ``split.seed``, so every configuration and training seed sees the same images.
    """
    fraction = cfg.train.train_fraction
    if fraction >= 1.0:
        return x, y, paths
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    try:
        keep, _ = train_test_split(index, train_size=fraction, stratify=y,
                                   random_state=cfg.split.seed)
    except ValueError as exc:
        raise ConfigError(f"config key `train.train_fraction` = {fraction} leaves too few "
                          f"training images per class ({len(y)} in the split): {exc}") from exc
    keep = np.sort(keep)
    return x[keep], y[keep], None if paths is None else paths[keep]


def fit_and_log(cfg: Config, x_train, y_train, x_val, y_val, model_dir: Path,
                reports_dir: Path, label: str | None = None, scale: dict | None = None,
                guard_learning=None, x_source=None):
    """Fit inside the active MLflow run and log curves, timing, config and the model.

    Writes ``model_dir/cnn.keras`` and ``reports_dir/train_history.csv``. Shared by the
    ``train`` stage and the sweep jobs. ``scale``: the preprocess stage's record of the training
    set's magnification (:func:`leukemia_cnn.data.preprocess.scale_record`), which the logged
    model carries (and applies, with ``preprocess.rescale``). ``guard_learning``: the shifted
    val images of a guard with a ``shift`` part
    (:func:`leukemia_cnn.modeling.guardshift.learning_inputs`). ``x_source``: the images the
    training batches start from when they are not ``x_train`` (its RGB copy,
    :func:`training_source`); the guard is fitted on ``x_train``, what the model sees.

    Returns
    -------
    summary : dict
        Training time, final losses/accuracies, epochs run, kept epoch, parameter count.
    model_info : mlflow.models.model.ModelInfo
        The logged model (its ``model_uri``).
    model : keras.Model
    """
    logger = epoch_logger()
    try:
        model, history, seconds = fit(cfg, x_train if x_source is None else x_source, y_train,
                                      x_val, y_val, callbacks=[logger])
    except KeyboardInterrupt:  # the run ends KILLED (tag `interrupted`) after its epochs are written
        logger.close(raise_errors=False)
        set_tag("interrupted", "true")
        end_run(status="KILLED")
        raise
    finally:
        logger.close(raise_errors=False)  # after any other error: the run ends FAILED
    # Which accuracy the Keras progress line showed (Keras 3: categorical, whatever the loss).
    set_tag("keras_accuracy_metric", displayed_accuracy_metric(model))
    keras_path = model_dir / MODEL_FILE
    model.save(keras_path)
    write_csv(reports_dir / HISTORY_FILE, history)
    summary = training_summary(cfg, model, history, seconds)
    calibration, guard_path = calibrate_and_guard(cfg, model, x_train, y_train, x_val, y_val,
                                                  model_dir, summary, guard_learning)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        write_params(cfg, tmp_dir / "config.yaml")
        log_artifact(tmp_dir / "config.yaml")
        log_artifact(plot_curves(history, tmp_dir / "curves.png", label or "training curves"))
        log_artifact(reports_dir / HISTORY_FILE)
        info = log_pyfunc_model(cfg, keras_path, guard_path, calibration["temperature"], x_val[0],
                                scale)
    return summary, info, model


def training_summary(cfg: Config, model, history: pd.DataFrame, seconds: float) -> dict:
    """Training time, final losses/accuracies, epochs (run, kept), parameter count."""
    last = history.iloc[-1]
    epochs_run = len(history)
    summary = {
        "train_seconds": round(seconds, 3),
        "epochs": cfg.train.epochs,
        "seconds_per_epoch": round(seconds / epochs_run, 3),
        "final_train_loss": float(last["loss"]),
        "final_val_loss": float(last["val_loss"]),
        "final_train_accuracy": float(last["argmax_accuracy"]),
        "final_val_accuracy_keras": float(last["val_argmax_accuracy"]),
        "n_params": int(model.count_params()),
    }
    if epochs_run != cfg.train.epochs or cfg.train.early_stopping_patience:
        summary.update(epochs_run=epochs_run, kept_epoch=kept_epoch(cfg, history))
    return summary


def calibrate_and_guard(cfg: Config, model, x_train, y_train, x_val, y_val,
                        model_dir: Path, summary: dict, learning=None) -> tuple[dict, Path]:
    """Fit the temperature on val and the out-of-distribution guard (fit on train, thresholded
    on val, served with the model); add both to ``summary`` and log them; return the
    calibration and the guard's file.

    One forward pass over val gives the calibration's probabilities and the guard's val
    embeddings (the same probabilities as ``model.predict``, bit for bit).
    """
    two_headed = embedding_model(model)
    val_embeddings, val_probabilities = forward(two_headed, x_val)
    calibration = fit_calibration(cfg, model, x_val, y_val, probabilities=val_probabilities)
    summary.update(temperature=calibration["temperature"],
                   fitted_temperature=calibration["fitted_temperature"])
    metrics, tags = summary_fields(summary, calibration)
    guard, guard_path = fit_for_training(cfg, model, x_train, y_train, x_val, model_dir,
                                         val_embeddings=val_embeddings, two_headed=two_headed,
                                         learning=learning)
    guard_record = guard_summary(guard)
    summary.update(guard_record)
    tags.update({k: guard_record.pop(k) for k in ("guard_method", "guard_degenerate")
                 if k in guard_record})  # text: tags, not metrics
    metrics.update(guard_record)
    log_metrics(metrics)
    set_tags(tags)
    return calibration, guard_path


def log_pyfunc_model(cfg: Config, keras_path: Path, guard_path: Path, temperature: float,
                     example: np.ndarray, scale: dict | None = None):
    """Log the pyfunc model (:func:`leukemia_cnn.serving.pyfunc.log_model`); return its
    ``ModelInfo``."""
    from leukemia_cnn.serving.pyfunc import log_model

    # the logged model's own params: the knobs that define it
    model_params = {k: str(v)[:6000] for k, v in flatten(cfg).items()
                    if k.startswith(("preprocess.", "model.", "train."))}
    return log_model(keras_path, list(cfg.data.classes), cfg.preprocess.image_size,
                     cfg.preprocess.color_mode, temperature=temperature,
                     name=cfg.mlflow.registered_model_name, example=example,
                     params=model_params, guard_path=guard_path,
                     inference_precision=cfg.train.inference_precision, scale=scale)


def fit_calibration(cfg: Config, model, x_val: np.ndarray, y_val: np.ndarray,
                    probabilities: np.ndarray | None = None) -> dict:
    """Temperature scaling fit on the validation split (``train.calibration``: auto, on, off);
    see :func:`leukemia_cnn.modeling.calibration.calibrate`. The logged model serves its
    temperature. ``probabilities``: the model's on ``x_val``, when already computed."""
    from leukemia_cnn.modeling.calibration import calibrate

    mode = cfg.train.calibration
    if probabilities is None:
        probabilities = model.predict(x_val, batch_size=256, verbose=0)
    result = calibrate(probabilities, y_val, mode=mode)
    print(f"train: calibration {mode}: temperature fitted on val {result['fitted_temperature']:.3f}"
          f" (val NLL {result['nll_before']:.4f} -> {result['nll_after']:.4f}, ECE "
          f"{result['ece_before']:.4f} -> {result['ece_after']:.4f}); "
          f"{'applied' if result['applied'] else 'not applied'}")
    return result


def training_source(cfg: Config, pre_dir: Path, x_train: np.ndarray):
    """The images the training batches start from: the train split's RGB copy for a grayscale
    model whose augmentation needs colour (``augment.stain``), else ``x_train``."""
    if not (needs_color(cfg.augment) and x_train.shape[-1] == 1):
        return x_train
    x_rgb = train_rgb(pre_dir)
    if x_rgb is None:
        raise ConfigError(f"config key `augment.stain` needs the train split in RGB, which "
                          f"{pre_dir / 'train.npz'} lacks; set preprocess.train_rgb=true and "
                          "rerun `dvc repro preprocess`")
    _, y_all, _ = load_split(pre_dir, "train")
    return train_subset(cfg, x_rgb, y_all)[0]  # the same images as x_train


def run(cfg: Config, root: Path) -> dict:
    """DVC stage ``train``: fit on the train split, validate on val, log everything to MLflow."""
    pre_dir = root / cfg.paths.preprocessed_dir
    x_train, y_train, train_paths = train_subset(cfg, *load_split(pre_dir, "train"))
    x_val, y_val, val_paths = load_split(pre_dir, "val")
    x_source = training_source(cfg, pre_dir, x_train)
    guard_learning = learning_inputs(cfg, root, val_paths, y_val)
    model_dir = root / cfg.paths.model_dir
    reports_dir = root / cfg.paths.reports_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    reports_dir.mkdir(parents=True, exist_ok=True)

    print(f"train: {len(y_train)} train / {len(y_val)} val images, input {x_train.shape[1:]}, "
          f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, loss {cfg.train.loss}")

    # The outputs are staged and moved in together at the end (modeling/outputs.py): an
    # interrupted or failed run leaves the last good model and reports.
    with (sigterm_as_interrupt(), exit_with_dvc(),
          staging_folder(model_dir / MODEL_FILE) as (staging, _)):
        staging.mkdir()
        with start_training_run(cfg, root, x_train, y_train, y_val, train_paths,
                                outputs=(staging, reports_dir)) as training:
            summary, info, _ = fit_and_log(cfg, x_train, y_train, x_val, y_val, staging,
                                           staging, label=training.name,
                                           scale=scale_record(pre_dir),
                                           guard_learning=guard_learning, x_source=x_source)
        run_id = training.run_id
        record = {"run_id": run_id, "experiment_id": training.experiment_id,
                  "model_uri": info.model_uri, "run_name": training.name,
                  "temperature": summary["temperature"],
                  "fitted_temperature": summary["fitted_temperature"]}
        publish(staging, model_dir, reports_dir, record, summary)
    print(f"train: {summary['train_seconds']:.1f} s; MLflow run {run_id}; model {info.model_uri}")
    return {**summary, **record}
