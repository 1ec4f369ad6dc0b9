"""The run-logging door of features, modeling and study: what it logs is what MLflow shows."""

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from leukemia_cnn.errors import ConfigError
from leukemia_cnn.tracking.runs import (
    download_artifact,
    end_run,
    end_running_runs,
    finished_runs,
    log_artifact,
    log_artifacts,
    log_metrics,
    log_params,
    log_sklearn_model,
    metric_history,
    set_tag,
    set_tags,
    start_run,
    store_errors,
)
from leukemia_cnn.tracking.store import setup_mlflow


def test_a_run_logged_through_the_door_holds_what_was_logged(mlflow_store, make_cfg, tmp_path):
    setup_mlflow(make_cfg(), tmp_path)
    (tmp_path / "report.json").write_text("{}\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "confusion.png").write_bytes(b"png")
    with start_run(run_name="door", tags={"stage": "test"}) as active:
        log_params({"train.epochs": 2})
        for epoch in (1, 2):
            log_metrics({"loss": 1.0 / epoch}, step=epoch)
        set_tag("collapsed", "false")
        set_tags({"seed": "7"})
        log_artifact(tmp_path / "report.json")
        log_artifact(tmp_path / "report.json", "evaluation")
        log_artifacts(tmp_path / "figures", artifact_path="evaluation")
    run = mlflow.get_run(active.info.run_id)
    assert run.info.run_name == "door" and run.info.status == "FINISHED"
    assert run.data.params == {"train.epochs": "2"}
    assert {"stage": "test", "collapsed": "false", "seed": "7"}.items() <= run.data.tags.items()
    assert metric_history(run.info.run_id, "loss") == {1: 1.0, 2: 0.5}
    paths = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    paths |= {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluation")}
    assert paths == {"report.json", "evaluation", "evaluation/report.json",
                     "evaluation/confusion.png"}
    local = download_artifact(run.info.run_id, "evaluation/confusion.png", tmp_path / "dl")
    assert open(local, "rb").read() == b"png"
    with pytest.raises(Exception):  # noqa: B017 - MLflow's own error for a missing artifact
        download_artifact(run.info.run_id, "evaluation/missing.png", tmp_path / "dl")


def test_reopened_and_killed_runs_keep_their_status(mlflow_store, make_cfg, tmp_path):
    setup_mlflow(make_cfg(), tmp_path)
    with start_run(run_name="reopened") as first:
        pass
    with start_run(run_id=first.info.run_id):
        log_metrics({"val_accuracy": 0.5})
    start_run(run_name="killed")
    end_run(status="KILLED")
    runs = finished_runs("leukemia-cnn")
    assert list(runs["tags.mlflow.runName"]) == ["reopened"]
    assert runs["metrics.val_accuracy"].tolist() == [0.5]
    assert finished_runs("no-such-experiment") is None


def test_end_running_runs_closes_only_the_tagged_running_runs(mlflow_store, make_cfg, tmp_path):
    setup_mlflow(make_cfg(), tmp_path)
    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name("leukemia-cnn").experiment_id
    ours = client.create_run(experiment_id, tags={"sweep_id": "s1"}).info.run_id
    other = client.create_run(experiment_id, tags={"sweep_id": "s2"}).info.run_id
    done = client.create_run(experiment_id, tags={"sweep_id": "s1"}).info.run_id
    client.set_terminated(done, status="FINISHED")
    assert end_running_runs({"sweep_id": "s1"}, status="KILLED") == 1
    assert [client.get_run(r).info.status for r in (ours, other, done)] == [
        "KILLED", "RUNNING", "FINISHED"]


def test_logged_sklearn_model_predicts_like_the_fitted_one(mlflow_store, make_cfg, tmp_path):
    setup_mlflow(make_cfg(), tmp_path)
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = (x[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    with start_run(run_name="baseline"):
        info = log_sklearn_model(model, x[:5], name="model")
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.metadata.get_input_schema().inputs[0].shape == (-1, 3)  # from the sample
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    requirements = mlflow.pyfunc.get_model_dependencies(info.model_uri)
    assert "skops" in open(requirements).read()  # pinned, not inferred by a slow subprocess


def test_store_errors_name_the_store_and_the_config_key(mlflow_store, make_cfg, tmp_path):
    cfg = make_cfg()
    with pytest.raises(ConfigError, match=r"could not log the baseline to MLflow at sqlite:///.*"
                                          r"config key `mlflow.tracking_uri`"):
        with store_errors(cfg, tmp_path, "log the baseline"):
            mlflow.get_run("0" * 32)  # no such run: MLflow raises MlflowException


def test_metric_writer_writes_every_batch_in_order_off_the_calling_thread(
        mlflow_store, make_cfg, tmp_path):
    import threading

    from leukemia_cnn.tracking.runs import MetricWriter, active_run_id

    setup_mlflow(make_cfg(), tmp_path)
    writers = []
    with start_run(run_name="writer") as active:
        writer = MetricWriter(active_run_id())
        original = writer._client.log_batch

        def log_batch(*args, **kwargs):
            writers.append(threading.current_thread())
            return original(*args, **kwargs)

        writer._client.log_batch = log_batch
        for step in (1, 2, 3):
            writer.put({"loss/train": 1.0 / step, "epoch_seconds": 0.5}, step=step)
        assert writer.close() is None
        assert writer.close() is None  # idempotent
    client = mlflow.MlflowClient()
    history = client.get_metric_history(active.info.run_id, "loss/train")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    timestamps = [m.timestamp for m in history]
    assert timestamps == sorted(timestamps)  # stamped when put, in order
    assert [m.step for m in client.get_metric_history(active.info.run_id, "epoch_seconds")] \
        == [1, 2, 3]
    assert len(writers) == 3 and threading.current_thread() not in writers
    assert not any(t.name == "metric-writer" for t in threading.enumerate())


def test_metric_writer_raises_a_failed_write_when_closed(mlflow_store):
    from mlflow.exceptions import MlflowException

    from leukemia_cnn.tracking.runs import MetricWriter

    writer = MetricWriter("0" * 32)  # no such run
    writer.put({"loss/train": 1.0}, step=1)
    writer.put({"loss/train": 0.5}, step=2)  # skipped after the first error
    with pytest.raises(MlflowException):
        writer.close()
    assert isinstance(writer.close(raise_errors=False), MlflowException)
