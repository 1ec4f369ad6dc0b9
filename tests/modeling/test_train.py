import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import TINY_OVERRIDES, blob_images
from leukemia_cnn.modeling.train import fit


def test_train_writes_model_history_and_run_record(trained):
    root, cfg = trained.root, trained.cfg
    assert (root / "models" / "cnn.keras").stat().st_size > 0
    record = json.loads((root / "models" / "run.json").read_text())
    assert record["run_id"] == trained.train["run_id"]
    assert record["model_uri"].startswith("models:/")
    history = pd.read_csv(root / "reports" / "train_history.csv")
    assert list(history["epoch"]) == list(range(1, cfg.train.epochs + 1))
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "argmax_accuracy"} <= set(history)
    summary = json.loads((root / "reports" / "train.json").read_text())
    assert summary["epochs"] == cfg.train.epochs and summary["train_seconds"] > 0


def test_mlflow_run_has_params_tags_curves_timing_and_model(trained):
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(trained.train["run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.epochs"] == str(trained.cfg.train.epochs)
    assert params["train.loss"] == "categorical_crossentropy"
    assert params["model.filters"] == "[8, 8, 8]"
    tags = run.data.tags
    for key in ("git_commit", "data_version", "data_source", "seed", "hydra_overrides"):
        assert tags[key]
    # The overrides tag names what differs from conf/'s defaults.
    assert "train.epochs=8" in tags["hydra_overrides"]
    assert tags["keras_accuracy_metric"] == "CategoricalAccuracy"
    # train and val curves share a prefix: one chart section per quantity in the run page
    # every epoch's curves, written by the logger's background thread, each at step = epoch
    epochs = list(range(1, trained.cfg.train.epochs + 1))
    history = pd.read_csv(trained.root / "reports" / "train_history.csv")
    for keras_name, key in (("loss", "loss/train"), ("val_loss", "loss/val"),
                            ("argmax_accuracy", "accuracy/train"),
                            ("val_argmax_accuracy", "accuracy/val"), (None, "epoch_seconds")):
        logged = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in logged) == epochs, key
        if keras_name is not None:
            by_step = {m.step: m.value for m in logged}
            assert [by_step[e] for e in epochs] == pytest.approx(list(history[keras_name]))
    assert not {"accuracy", "val_accuracy"} & {
        m.key for m in client.get_metric_history(run.info.run_id, "accuracy")}
    assert run.data.metrics["train_seconds"] > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "curves.png", "train_history.csv"} <= artifacts
    import mlflow

    model = mlflow.models.get_model_info(trained.train["model_uri"])
    assert model.signature is not None
    assert model.signature.inputs.input_names() == ["image"]


def test_logged_model_is_named_with_example_datasets_and_no_temporary_path(trained):
    import mlflow
    import yaml

    client = mlflow.MlflowClient()
    logged = client.get_logged_model(trained.train["model_uri"].removeprefix("models:/"))
    assert logged.name == "leukemia-cnn"
    local = Path(mlflow.artifacts.download_artifacts(trained.train["model_uri"]))
    mlmodel = (local / "MLmodel").read_text()
    # no artifact path into the training's temporary folder (tempfile's /tmp/tmpXXXX)
    assert not re.search(r"uri: .*/tmp[a-z0-9_]{8}/", mlmodel), mlmodel
    assert "preprocessing.json" not in mlmodel
    flavor = yaml.safe_load(mlmodel)["flavors"]["python_function"]
    assert flavor["config"]["preprocessing"]["classes"] == list(trained.cfg.data.classes)
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert list(example.columns) == ["image"]
    # the signature's image column is a string (base64) since the served model takes both
    value = example["image"][0]
    raw = base64.b64decode(value) if isinstance(value, str) else value
    assert raw[:4] == b"\x89PNG"
    # scored on the val and test datasets (the model page's "Datasets used"), each metric once
    by_key = {}
    for metric in logged.metrics:
        by_key.setdefault(metric.key, []).append(metric.dataset_name)
    assert by_key["val_accuracy"] == ["synthetic-val"]
    assert by_key["test_accuracy"] == ["synthetic-test"]
    assert all(len(names) == 1 for names in by_key.values()), by_key


def test_same_seed_gives_identical_training(make_cfg):
    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=2")
    y = np.repeat(np.arange(4), 8)
    x = blob_images(y, 32)
    _, first, _ = fit(cfg, x, y, x, y)
    _, second, _ = fit(cfg, x, y, x, y)
    pd.testing.assert_frame_equal(first, second)


def test_train_fraction_is_a_fixed_stratified_subset(make_cfg):
    import numpy as np
    import pytest

    from leukemia_cnn.errors import ConfigError
    from leukemia_cnn.modeling.train import train_subset

    y = np.repeat(np.arange(4), [20, 40, 40, 30])
    x = np.arange(len(y), dtype=np.float32)[:, None]
    paths = np.array([f"img{i}.jpg" for i in range(len(y))])
    cfg = make_cfg("train.train_fraction=0.5")
    xs, ys, ps = train_subset(cfg, x, y, paths)
    assert np.bincount(ys).tolist() == [10, 20, 20, 15]
    assert ps.tolist() == [f"img{int(i)}.jpg" for i in xs[:, 0]]
    again = train_subset(make_cfg("train.train_fraction=0.5", "seed=7"), x, y, paths)
    assert np.array_equal(again[0], xs)  # the training seed does not move the subset
    assert train_subset(make_cfg(), x, y)[0] is x
    with pytest.raises(ConfigError, match="train.train_fraction"):
        train_subset(make_cfg("train.train_fraction=0.01"), x, y)


def test_early_stopping_watches_the_configured_value_and_keeps_its_best_epoch(make_cfg):
    import keras
    import pytest

    from leukemia_cnn.errors import ConfigError
    from leukemia_cnn.modeling.train import kept_epoch, training_callbacks

    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_argmax_accuracy": [0.5, 0.8, 0.7, 0.6],
                            "val_loss": [1.0, 0.9, 0.8, 0.85]})
    assert training_callbacks(make_cfg()) == []  # the paper: every epoch, no callback
    by_accuracy = make_cfg("train.early_stopping_patience=3")
    (stop,) = training_callbacks(by_accuracy)
    assert isinstance(stop, keras.callbacks.EarlyStopping)
    assert (stop.monitor, stop.patience, stop.restore_best_weights) == (
        "val_argmax_accuracy", 3, True)
    assert kept_epoch(by_accuracy, history) == 2
    by_loss = make_cfg("train.early_stopping_patience=3", "train.early_stopping_monitor=val_loss",
                       "train.lr_schedule=plateau")
    stop, plateau = training_callbacks(by_loss)
    assert (stop.monitor, stop.mode) == ("val_loss", "min")  # lower is better
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
    assert (plateau.monitor, plateau.factor, plateau.patience) == ("val_loss", 0.5, 2)
    assert kept_epoch(by_loss, history) == 3
    gentler = make_cfg("train.lr_schedule=plateau", "train.lr_plateau_patience=5")
    (plateau,) = training_callbacks(gentler)
    assert plateau.patience == 5
    with pytest.raises(ConfigError, match="train.early_stopping_monitor"):
        make_cfg("train.early_stopping_monitor=val_f1")


def test_weight_averaging_validates_and_keeps_the_averaged_weights(make_cfg):
    """train.ema_momentum: val metrics, early stopping and the kept model all use the moving
    average of the weights, so the kept model scores what the history says it scored."""
    import keras

    from leukemia_cnn.modeling.train import kept_epoch, training_callbacks

    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=4", "train.early_stopping_patience=2",
                   "train.ema_momentum=0.9")
    swap, stop = training_callbacks(cfg)  # the swap runs first: early stopping sees the average
    assert isinstance(swap, keras.callbacks.SwapEMAWeights) and swap.swap_on_epoch
    assert isinstance(stop, keras.callbacks.EarlyStopping)
    y = np.repeat(np.arange(4), 8)
    x, x_val = blob_images(y, 32, seed=0), blob_images(y, 32, seed=1)
    model, history, _ = fit(cfg, x, y, x_val, y)
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.9
    kept = history.set_index("epoch").loc[kept_epoch(cfg, history)]
    accuracy = float((model.predict(x_val, verbose=0).argmax(1) == y).mean())
    assert accuracy == kept["val_argmax_accuracy"]
    # The averaged weights are not the raw ones the optimizer trained last.
    raw, _, _ = fit(make_cfg(*TINY_OVERRIDES, "train.epochs=1"), x, y, x_val, y)
    averaged, _, _ = fit(make_cfg(*TINY_OVERRIDES, "train.epochs=1", "train.ema_momentum=0.9"),
                         x, y, x_val, y)
    assert not np.allclose(raw.get_weights()[0], averaged.get_weights()[0])
    assert not make_cfg().train.ema_momentum  # off by default: the paper's optimizer


def test_dihedral_augmentation_turns_and_mirrors_images_exactly(make_cfg):
    """Each training image comes out as one of the 8 symmetries of the square (no
    interpolation), different images and epochs draw different ones, and a seed repeats them."""
    from leukemia_cnn.modeling.batches import training_batches

    cfg = make_cfg("train.augment_dihedral=true", "train.batch_size=5", "seed=3")
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[np.arange(16) % 4]

    def symmetries(image):
        turns = [np.rot90(image, k, axes=(0, 1)) for k in range(4)]
        return turns + [np.flip(t, axis=1) for t in turns]

    def epoch(dataset):
        images, labels = zip(*[(a.numpy(), b.numpy()) for a, b in dataset.unbatch()], strict=True)
        return np.stack(images), np.stack(labels)

    dataset = training_batches(cfg, x, y, channels=1)
    assert [len(b[0]) for b in dataset] == [5, 5, 5, 1]
    seen = set()
    first = epoch(dataset)
    for image, label in zip(*first, strict=True):
        index = next(i for i in range(16) if any(np.array_equal(image, s)
                                                  for s in symmetries(x[i])))
        np.testing.assert_array_equal(label, y[index])
        seen.add(next(k for k, s in enumerate(symmetries(x[index])) if np.array_equal(image, s)))
    assert len(seen) >= 4  # not one fixed transform
    assert not np.array_equal(first[0], epoch(dataset)[0])  # reshuffled and redrawn per epoch
    import keras

    keras.utils.set_random_seed(3)
    again = epoch(training_batches(cfg, x, y, channels=1))
    keras.utils.set_random_seed(3)
    np.testing.assert_array_equal(again[0], epoch(training_batches(cfg, x, y, channels=1))[0])


def test_fit_with_dihedral_augmentation_and_the_recipe_knobs_learns(make_cfg):
    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=3", "train.augment_dihedral=true",
                   "train.label_smoothing=0.1", "train.weight_decay=0.01",
                   "model.standardize=per_image", "train.class_weight=balanced")
    y = np.repeat(np.arange(4), 8)
    x = blob_images(y, 32)
    model, history, _ = fit(cfg, x, y, x, y)
    assert len(history) == 3 and np.isfinite(history["loss"]).all()
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]


def test_auto_precision_is_logged_as_what_it_resolved_to(make_cfg, monkeypatch):
    """Runs of one recipe group by what they computed in: `auto` on a CPU with bfloat16 units
    is logged (and identified) as bfloat16; elsewhere as off, the paper's float32."""
    from leukemia_cnn.data.lineage import workspace_lineage
    from leukemia_cnn.modeling import model, trainrun
    from leukemia_cnn.tracking.store import config_id

    x, y = np.zeros((4, 8, 8, 1), np.float32), np.array([0, 1, 2, 3])
    ids = {}
    for setting in ("auto", "bfloat16", "off"):
        for has_units in (True, False):
            monkeypatch.setattr(model, "cpu_has_bfloat16", lambda cpuinfo=None, v=has_units: v)
            cfg = make_cfg(f"train.mixed_precision={setting}")
            params = trainrun.training_params(cfg, workspace_lineage(cfg), x, y, y)
            ids[setting, has_units] = config_id(params)
            expected = ({True: "bfloat16", False: "off"}[has_units] if setting == "auto"
                        else setting)
            assert params["train.mixed_precision"] == expected
    assert ids["auto", True] == ids["bfloat16", True] != ids["off", True]
    assert ids["auto", False] == ids["off", False]


def test_an_interrupted_fit_ends_its_run_killed_with_the_logged_epochs_written(
        make_cfg, mlflow_store, tmp_path, monkeypatch):
    import threading

    import keras
    import mlflow

    from leukemia_cnn.modeling import train
    from leukemia_cnn.tracking.runs import start_run
    from leukemia_cnn.tracking.store import setup_mlflow

    class CtrlCAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after the epoch logger (it comes first) queued epoch 2
                raise KeyboardInterrupt

    monkeypatch.setattr(train, "training_callbacks", lambda cfg: [CtrlCAfterSecondEpoch()])
    written_when_killed = []
    end_run = train.end_run

    def recording_end_run(status):
        run_id = mlflow.active_run().info.run_id
        written_when_killed.extend(m.step for m in
                                   mlflow.MlflowClient().get_metric_history(run_id, "loss/val"))
        end_run(status=status)

    monkeypatch.setattr(train, "end_run", recording_end_run)
    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=5")
    y = np.repeat(np.arange(4), 4)
    x = blob_images(y, 32)
    setup_mlflow(cfg, tmp_path)
    with pytest.raises(KeyboardInterrupt), start_run(run_name="interrupted") as active:
        train.fit_and_log(cfg, x, y, x, y, tmp_path, tmp_path)
    client = mlflow.MlflowClient()
    run = client.get_run(active.info.run_id)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert run.data.tags["interrupted"] == "true"
    assert sorted(written_when_killed) == [1, 2]  # written before the run was marked KILLED
    for key in ("loss/train", "loss/val", "accuracy/val", "epoch_seconds"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [1, 2]
    assert mlflow.active_run() is None
    assert not any(t.name == "metric-writer" for t in threading.enumerate())


def test_one_val_pass_gives_the_calibration_and_guard_that_separate_passes_give(
        make_cfg, mlflow_store, tmp_path):
    from leukemia_cnn.modeling import guard as guard_module
    from leukemia_cnn.modeling import train
    from leukemia_cnn.tracking.runs import start_run
    from leukemia_cnn.tracking.store import setup_mlflow

    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=2", "train.calibration=on",
                   "train.guard_method=mahalanobis+input+energy+knn")
    y = np.repeat(np.arange(4), 8)
    x, x_val = blob_images(y, 32), blob_images(y, 32, seed=1)
    model, _, _ = fit(cfg, x, y, x_val, y)
    separate = train.fit_calibration(cfg, model, x_val, y)  # its own model.predict
    guard = guard_module.fit_guard(model, x, y, x_val, cfg.train.guard_method, 0.95)
    setup_mlflow(cfg, tmp_path)
    with start_run(run_name="shared"):
        summary = {"train_seconds": 1.0, "n_params": model.count_params()}
        shared, guard_path = train.calibrate_and_guard(cfg, model, x, y, x_val, y, tmp_path,
                                                       summary)
    assert shared == separate
    assert summary["fitted_temperature"] == separate["fitted_temperature"]
    loaded = guard_module.load_guard(guard_path)
    assert (loaded.threshold, loaded.val_accept_rate, loaded.train_accept_rate) == (
        guard.threshold, guard.val_accept_rate, guard.train_accept_rate)
    for name, part in guard.parts.items():
        for key, value in part.items():
            np.testing.assert_array_equal(loaded.parts[name][key], value, err_msg=name)
