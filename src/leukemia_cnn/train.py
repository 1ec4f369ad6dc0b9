"""Train stage: the Keras CNN, tracked as one MLflow run.

The run carries the flattened resolved config as params, tags (git commit, data version,
data source, seed, Hydra overrides), per-epoch loss/accuracy, the training time, the resolved
config, the curves and the model (with its preprocessing and signature). The evaluate and
register stages add to the same run (its id is in ``models/run.json``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from leukemia_cnn.config import flatten
from leukemia_cnn.model import build_from_config, displayed_accuracy_metric, set_seeds
from leukemia_cnn.preprocess import load_split
from leukemia_cnn.tracking import run_tags, setup_mlflow


class TrainingInterrupted(KeyboardInterrupt):
    """Raised in the training process on SIGTERM so the MLflow run is closed as KILLED."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    def handler(signum, frame):
        raise TrainingInterrupted(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def _epoch_logger():
    import keras
    import mlflow

    class MLflowEpochLogger(keras.callbacks.Callback):
        """Log every epoch's metrics (loss, accuracy, val_*) and the epoch time to MLflow."""

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            metrics["epoch_seconds"] = time.perf_counter() - self._start
            mlflow.log_metrics(metrics, step=epoch + 1)

    return MLflowEpochLogger()


def fit(cfg: DictConfig, x_train, y_train, x_val, y_val, callbacks=()):
    """Build, compile and fit the model of ``cfg``; return ``(model, history_frame, seconds)``.

    A plain function of arrays: the benchmarks and tests call it without MLflow.
    """
    set_seeds(int(cfg.seed), bool(cfg.train.deterministic))
    n_classes = len(cfg.data.classes)
    model = build_from_config(cfg, x_train.shape[1:])
    start = time.perf_counter()
    history = model.fit(x_train, one_hot(y_train, n_classes),
                        validation_data=(x_val, one_hot(y_val, n_classes)),
                        epochs=int(cfg.train.epochs), batch_size=int(cfg.train.batch_size),
                        shuffle=True, verbose=int(cfg.train.verbose), callbacks=list(callbacks))
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return model, frame, seconds


def plot_curves(history: pd.DataFrame, path: Path, title: str) -> Path:
    """The paper's Fig. 3: loss and accuracy per epoch, train and validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for column, style in (("loss", "-"), ("val_loss", "--")):
        ax_loss.plot(history["epoch"], history[column], style, marker="o", label=column)
    for column, style in (("argmax_accuracy", "-"), ("val_argmax_accuracy", "--")):
        ax_acc.plot(history["epoch"], history[column], style, marker="o", label=column)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (argmax)", title="Accuracy", ylim=(0, 1))
    for axis in (ax_loss, ax_acc):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_name(cfg: DictConfig) -> str:
    return (f"cnn-e{cfg.train.epochs}-b{cfg.train.batch_size}-"
            f"{'cce' if cfg.train.loss == 'categorical_crossentropy' else 'bce'}-"
            f"c{len(cfg.model.filters)}-s{cfg.seed}")


def run(cfg: DictConfig, root: Path) -> dict:
    """DVC stage ``train``: fit on the train split, validate on val, log everything to MLflow."""
    import mlflow

    from leukemia_cnn.pyfunc import log_model

    pre_dir = root / cfg.paths.preprocessed_dir
    x_train, y_train, _ = load_split(pre_dir, "train")
    x_val, y_val, _ = load_split(pre_dir, "val")
    model_dir = root / cfg.paths.model_dir
    reports_dir = root / cfg.paths.reports_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    reports_dir.mkdir(parents=True, exist_ok=True)

    experiment_id = setup_mlflow(cfg, root)
    params = {k: str(v)[:6000] for k, v in flatten(cfg).items() if not k.startswith("paths.")}
    params.update({"data.n_train": len(y_train), "data.n_val": len(y_val),
                   "data.input_shape": "x".join(map(str, x_train.shape[1:]))})
    print(f"train: {len(y_train)} train / {len(y_val)} val images, input {x_train.shape[1:]}, "
          f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, loss {cfg.train.loss}")

    with _sigterm_as_interrupt(), mlflow.start_run(run_name=run_name(cfg)) as active:
        run_id = active.info.run_id
        mlflow.set_tags(run_tags(cfg, root, stage="train", model_family="cnn"))
        mlflow.log_params(params)
        try:
            model, history, seconds = fit(cfg, x_train, y_train, x_val, y_val,
                                          callbacks=[_epoch_logger()])
        except KeyboardInterrupt:
            mlflow.set_tag("interrupted", "true")
            mlflow.end_run(status="KILLED")
            raise
        # Which accuracy the Keras progress line showed (Keras 3: categorical, whatever the loss).
        mlflow.set_tag("keras_accuracy_metric", displayed_accuracy_metric(model))
        keras_path = model_dir / "cnn.keras"
        model.save(keras_path)
        history.to_csv(reports_dir / "train_history.csv", index=False)
        last = history.iloc[-1]
        summary = {
            "train_seconds": round(seconds, 3),
            "epochs": int(cfg.train.epochs),
            "seconds_per_epoch": round(seconds / int(cfg.train.epochs), 3),
            "final_train_loss": float(last["loss"]),
            "final_val_loss": float(last["val_loss"]),
            "final_train_accuracy": float(last["argmax_accuracy"]),
            "final_val_accuracy_keras": float(last["val_argmax_accuracy"]),
            "n_params": int(model.count_params()),
        }
        mlflow.log_metrics({"train_seconds": seconds, "n_params": model.count_params()})
        with tempfile.TemporaryDirectory() as tmp:
            tmp_dir = Path(tmp)
            (tmp_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            mlflow.log_artifact(str(tmp_dir / "config.yaml"))
            mlflow.log_artifact(str(plot_curves(history, tmp_dir / "curves.png", run_name(cfg))))
            mlflow.log_artifact(str(reports_dir / "train_history.csv"))
            info = log_model(keras_path, list(cfg.data.classes), int(cfg.preprocess.image_size),
                             str(cfg.preprocess.color_mode), tmp_dir)
    record = {"run_id": run_id, "experiment_id": experiment_id, "model_uri": info.model_uri,
              "run_name": run_name(cfg)}
    (model_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    (reports_dir / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"train: {seconds:.1f} s; MLflow run {run_id}; model {info.model_uri}")
    return {**summary, **record}
