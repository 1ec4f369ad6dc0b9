"""End to end: a copy of this repository in a temporary git repo, a tiny synthetic dataset,
the real `dvc repro` through every stage, the real MLflow store and registry, `predict`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT, copy_project, sh


def test_every_stage_ran_and_wrote_its_outputs(pipeline):
    repo = pipeline["repo"]
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    for stage in dvc_yaml["stages"]:
        assert f"Running stage '{stage}'" in pipeline["repro"].stdout
    for path in ("data/manifest.csv", "data/splits.csv", "data/preprocessed/train.npz",
                 "data/features/train.npz", "models/cnn.keras", "reports/metrics.json",
                 "reports/baseline.json", "reports/registered.json", "reports/validate_raw.md",
                 "reports/validate_splits.md", "reports/validate_features.md",
                 "reports/figures/confusion_test.png"):
        assert (repo / path).is_file(), path
    assert yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["path"] == "data/raw"


def test_metrics_are_probabilities(pipeline):
    metrics = json.loads((pipeline["repo"] / "reports" / "metrics.json").read_text())
    baseline = json.loads((pipeline["repo"] / "reports" / "baseline.json").read_text())
    for value in (metrics["val_accuracy"], metrics["test_accuracy"], baseline["val_accuracy"],
                  baseline["test_accuracy"]):
        assert 0.0 <= value <= 1.0
    shown = sh("dvc", "metrics", "show", "--json", cwd=pipeline["repo"]).stdout
    assert "val_accuracy" in shown


def test_mlflow_store_holds_runs_and_registry_has_champion(pipeline):
    from mlflow import MlflowClient

    repo = pipeline["repo"]
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}",
                          registry_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("leukemia-cnn")
    assert Path(experiment.artifact_location.removeprefix("file://")) == repo / "mlruns"
    runs = client.search_runs([experiment.experiment_id])
    families = {run.data.tags.get("model_family") for run in runs}
    assert families == {"cnn", "baseline"}
    record = json.loads((repo / "models" / "run.json").read_text())
    cnn = client.get_run(record["run_id"])
    assert cnn.data.params["train.epochs"] == "15"
    assert {"val_accuracy", "test_accuracy", "train_seconds", "test_prediction_seconds"} <= set(
        cnn.data.metrics)
    assert cnn.data.tags["data_version"] == yaml.safe_load(
        (repo / "data.dvc").read_text())["outs"][0]["md5"]
    artifacts = {a.path for a in client.list_artifacts(cnn.info.run_id)}
    assert {"config.yaml", "curves.png", "evaluation"} <= artifacts
    champion = client.get_model_version_by_alias("leukemia-cnn", "champion")
    assert champion.run_id == cnn.info.run_id


def test_predict_classifies_a_jpeg_with_the_champion(pipeline):
    repo = pipeline["repo"]
    image = sorted((repo / "data" / "raw" / "Pro").glob("*.jpg"))[0]
    result = sh("leukemia-cnn", "predict", str(image), "--format", "json", cwd=repo)
    rows = json.loads(result.stdout)
    assert rows[0]["predicted_class"] in {"Benign", "Early", "Pre", "Pro"}


def test_second_repro_does_nothing_and_status_is_clean(pipeline):
    repo = pipeline["repo"]
    again = sh("dvc", "repro", cwd=repo)
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout
    status = sh("dvc", "status", "--json", cwd=repo).stdout
    assert json.loads(status) == {}


def test_changing_epochs_reruns_only_the_downstream_stages(pipeline):
    repo = pipeline["repo"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 16
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = sh("dvc", "repro", cwd=repo).stdout
    ran = [line.split("'")[1] for line in rerun.splitlines() if line.startswith("Running stage")]
    # check_config re-checks any changed params.yaml; its marker is unchanged, so only the
    # stages that read train.* run after it.
    assert ran == ["check_config", "train", "evaluate", "robustness", "register"]


def test_plots_render(pipeline):
    repo = pipeline["repo"]
    sh("dvc", "plots", "show", "-o", "plots_html", cwd=repo)
    html = (repo / "plots_html" / "index.html").read_text()
    assert "confusion_test.csv" in html and "train_history.csv" in html
    # accuracy under shift, one line per shift (DVC names each line by its file)
    assert "Test accuracy under acquisition shift" in html
    assert '"filename": "magnify_up.csv"' in html and '"filename": "grayscale.csv"' in html


def test_dvc_exp_run_composes_hydra_and_logs_to_the_same_store(pipeline):
    from mlflow import MlflowClient

    repo = pipeline["repo"]
    sh("dvc", "exp", "run", "-S", "train.batch_size=32", "-n", "batch32", cwd=repo)
    # DVC's Hydra integration re-composed conf/ with the override into params.yaml.
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["batch_size"] == 32
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("leukemia-cnn")
    batch32 = client.search_runs([experiment.experiment_id],
                                 "params.`train.batch_size` = '32'")
    assert len(batch32) == 1
    assert "train.batch_size=32" in batch32[0].data.tags["hydra_overrides"]
    shown = sh("dvc", "exp", "show", "--json", cwd=repo).stdout
    assert "batch32" in shown and "val_accuracy" in shown


@pytest.mark.slow
def test_committed_data_dvc_matches_a_regenerated_default_set(tmp_path):
    """`make run` on a fresh clone regenerates exactly the data that data.dvc versions."""
    committed = yaml.safe_load((REPO_ROOT / "data.dvc").read_text())["outs"][0]
    repo = copy_project(tmp_path / "repo")
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", "-f", cwd=repo)
    sh("leukemia-cnn", "data", "synth", cwd=repo)
    regenerated = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]
    assert regenerated["md5"] == committed["md5"]
    assert regenerated["nfiles"] == committed["nfiles"]
