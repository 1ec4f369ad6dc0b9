"""One job of ``leukemia-cnn sweep`` (:mod:`leukemia_cnn.study.sweep`): the Hydra task that
trains and evaluates one configuration on the current splits as one MLflow run, writes its
files in its job folder and its ``status.json``."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

import numpy as np

from leukemia_cnn.config import find_repo_root, validate_config
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.preprocess import SPLITS, load_images, load_split, n_workers, read_split_table
from leukemia_cnn.errors import DataError, LeukemiaCNNError
from leukemia_cnn.study.jobstatus import write_status


def load_splits(cfg: Config, root: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The train/val/test arrays for ``cfg``'s input size and colour mode.

    The preprocess stage's arrays (``paths.preprocessed_dir``) when their shape matches
    ``preprocess.image_size``/``preprocess.color_mode``; otherwise (a sweep over input size
    or colour) the same split table's images decoded in memory from ``paths.raw_dir`` with
    the preprocess stage's functions.

    Raises
    ------
    DataError
        If the preprocessed arrays are missing, or the raw images needed are.
    """
    pre_dir = root / cfg.paths.preprocessed_dir
    splits = {name: load_split(pre_dir, name) for name in SPLITS}
    size, mode = cfg.preprocess.image_size, cfg.preprocess.color_mode
    expected = (size, size, 1 if mode == "grayscale" else 3)
    found = tuple(splits["train"][0].shape[1:])
    if found == expected:
        return splits
    print(f"sweep: {pre_dir} holds {found} images; decoding {expected} ({mode}) from "
          f"{cfg.paths.raw_dir} for this job")
    raw_dir = root / cfg.paths.raw_dir
    try:
        table = read_split_table(root / cfg.paths.splits, list(cfg.data.classes))
        for name in SPLITS:
            rows = table[table["split"] == name]
            x = load_images([raw_dir / p for p in rows["path"]], size, mode,
                            workers=n_workers(), desc=name)
            splits[name] = (x, rows["label"].to_numpy(dtype=np.int64),
                            rows["path"].to_numpy(dtype=str))
    except DataError as exc:
        raise DataError(f"preprocess.image_size/color_mode ({size}, {mode}) differ from the "
                        f"arrays in {pre_dir} {found}, so the split table and raw images are "
                        f"needed: {exc}") from exc
    return splits


def run_job(cfg: Config, root: Path, out_dir: Path, experiment_name: str = "default",
            overrides: list[str] | None = None) -> dict:
    """Train and evaluate ``cfg`` as one MLflow run; write the job's files in ``out_dir``.

    Parameters
    ----------
    root : pathlib.Path
        Project root: config paths and the embedded MLflow store are relative to it.
    out_dir : pathlib.Path
        The job's folder: ``cnn.keras``, ``train_history.csv``, ``metrics.json``, confusion
        tables, ``classification_report.txt`` and ``figures/``.
    experiment_name : str
        The ``conf/experiment`` file of the job (``default`` for none).
    overrides : list of str, optional
        The job's Hydra overrides (tag ``hydra_overrides``).

    Returns
    -------
    dict
        run id, model URI, registered version (or None), config id, accuracies, prediction
        times and ``collapsed``.
    """
    from leukemia_cnn.modeling import evaluate
    from leukemia_cnn.modeling.train import sigterm_as_interrupt
    from leukemia_cnn.modeling.trainrun import start_training_run
    from leukemia_cnn.registry import register
    from leukemia_cnn.tracking.store import store_lock, tracking_uri

    splits = _job_splits(cfg, root, out_dir, experiment_name)
    x_train, y_train, train_paths = splits["train"]
    # SIGTERM -> KeyboardInterrupt (run closed as KILLED), where signals can be handled.
    main = threading.current_thread() is threading.main_thread()
    with sigterm_as_interrupt() if main else contextlib.nullcontext(), start_training_run(
            cfg, root, x_train, y_train, splits["val"][1], train_paths, stage="sweep",
            recipe_name=None if experiment_name == "default" else experiment_name,
            overrides=" ".join(overrides or []) or "(defaults)", sweep_id=cfg.sweep.id,
            experiment_name=experiment_name, hydra_job_dir=str(out_dir)) as training:
        summary, info, metrics, collapsed = _train_and_evaluate(cfg, root, out_dir, splits,
                                                                training.name)
    evaluate.print_summary(metrics, collapsed, training.run_id, prefix=f"sweep: {training.name}")
    version = None
    if cfg.sweep.register:  # one at a time: parallel jobs number versions in one registry
        with store_lock(tracking_uri(cfg, root)):
            version = register.register(cfg, root, training.run_id, info.model_uri)
    return {"run_id": training.run_id, "model_uri": info.model_uri, "version": version,
            "config_id": training.config_id, "experiment_name": experiment_name,
            "seed": cfg.seed, "train_seconds": summary["train_seconds"],
            **{k: metrics[k] for k in evaluate.SUMMARY_KEYS}}


def _job_splits(cfg: Config, root: Path, out_dir: Path, experiment_name: str) -> dict:
    """Check the job's config, make its folder, reset Keras and load its three splits (the
    train split cut to ``train.train_fraction``)."""
    import keras

    from leukemia_cnn.modeling import train

    out_dir.mkdir(parents=True, exist_ok=True)
    keras.backend.clear_session()  # a reused worker process keeps no earlier model
    if (threads := cfg.sweep.tf_threads) is not None:  # before TensorFlow's runtime starts
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # a reused worker: TF keeps its first setting
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
    splits = load_splits(cfg, root)
    splits["train"] = train.train_subset(cfg, *splits["train"])
    n_train, n_val = len(splits["train"][1]), len(splits["val"][1])
    print(f"sweep: job {experiment_name} seed {cfg.seed} ({n_train} train / {n_val} "
          f"val images, {cfg.train.epochs} epochs, batch {cfg.train.batch_size}, "
          f"{cfg.train.loss})")
    return splits


def _train_and_evaluate(cfg: Config, root: Path, out_dir: Path, splits: dict, label: str):
    """Inside the job's run: fit and log the model, then evaluate it on val and test."""
    from leukemia_cnn.modeling import evaluate, guardshift, train

    (x_train, y_train, _), (x_val, y_val, val_paths) = splits["train"], splits["val"]
    learning = guardshift.learning_inputs(cfg, root, val_paths, y_val)  # the shift guard's
    summary, info, model = train.fit_and_log(cfg, x_train, y_train, x_val, y_val, out_dir,
                                             out_dir, label=label, guard_learning=learning)
    metrics, collapsed = evaluate.evaluate_model(
        model, cfg, {"val": splits["val"], "test": splits["test"]}, out_dir,
        temperature=summary["temperature"], fitted_temperature=summary["fitted_temperature"],
        raw_dir=root / cfg.paths.raw_dir)
    evaluate.log_evaluation(metrics, collapsed, out_dir)
    return summary, info, metrics, collapsed


def run_task(composed) -> dict:
    """The Hydra task (``composed``: Hydra's ``DictConfig``): :func:`run_job` with the job's
    config checked by the schema, its folder, sweep id and experiment name.

    A user error (bad config or data, a file system or MLflow store that refuses) fails this
    job only: its message goes to stderr and its ``status.json``; :func:`main` reports it.
    """
    from hydra.core.hydra_config import HydraConfig

    from leukemia_cnn.tracking.runs import store_errors

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    experiment = hydra_cfg.runtime.choices.get("experiment") or "default"
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("sweep.id=")]
    status: dict = {"experiment_name": experiment, "overrides": overrides}
    # The launch's working directory (the project root), not this worker's: a reused worker
    # process may have started elsewhere.
    root = find_repo_root(Path(hydra_cfg.runtime.cwd))
    label = " ".join(overrides) or "(defaults)"
    try:
        cfg = validate_config(composed)
        with store_errors(cfg, root, f"log job {label}"):
            status.update(status="ok", **run_job(cfg, root, out_dir, experiment, overrides))
    except (LeukemiaCNNError, OSError) as exc:  # the file system's no: a path, a full disk
        print(f"leukemia-cnn sweep: error in job {label}: {exc}", file=sys.stderr)
        status.update(status="failed", error=str(exc))
    write_status(out_dir, status)
    return status
