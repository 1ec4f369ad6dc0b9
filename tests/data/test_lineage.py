"""The data a run saw: data.dvc's recorded origin, the validation digest, MLflow datasets on
every training run (read back through `mlflow.search_runs`), the training experiment kind and
run names that name the data."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import REPO_ROOT, TINY_OVERRIDES, write_preprocessed
from helpers.datasets import class_tree
from leukemia_cnn.cli.main import main as cli_main
from leukemia_cnn.config import load_config, write_params
from leukemia_cnn.data.lineage import rows_digest, workspace_lineage
from leukemia_cnn.modeling import train
from leukemia_cnn.tracking.store import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    setup_mlflow,
    unique_run_name,
)


def split_table_for_arrays(cfg, root, name):
    """The split table of the arrays `write_preprocessed` wrote, with contents of dataset
    ``name``; and a data.dvc recording it as an ingested folder."""
    classes = list(cfg.data.classes)
    rows = []
    for split in ("train", "val", "test"):
        with np.load(root / cfg.paths.preprocessed_dir / f"{split}.npz") as data:
            for path, label in zip(data["path"], data["y"], strict=True):
                rows.append({"path": str(path), "class": classes[label], "label": int(label),
                             "sha256": hashlib.sha256(f"{name}/{path}".encode()).hexdigest(),
                             "split": split})
    (root / "data").mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(root / cfg.paths.splits, index=False)
    (root / "data.dvc").write_text(yaml.safe_dump({
        "outs": [{"md5": hashlib.md5(name.encode()).hexdigest() + ".dir", "path": "data/raw"}],
        "meta": {"data_origin": {"source": "folder", "name": name,
                                 "uri": f"file:///datasets/{name}"}}}, sort_keys=False))
    return pd.DataFrame(rows)


def test_validation_digest_depends_on_the_val_rows_only():
    rows = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "sha256": ["1", "2"], "label": [0, 1]})
    assert rows_digest(rows) == rows_digest(rows.iloc[::-1])
    relabelled = rows.assign(label=[1, 1])
    changed = rows.assign(sha256=["1", "3"])
    assert len({rows_digest(rows), rows_digest(relabelled), rows_digest(changed)}) == 3


@pytest.mark.slow  # trains; about 15 s on 2 cores
def test_training_run_logs_its_datasets_and_names_its_data(tmp_path, mlflow_store):
    cfg = load_config([*TINY_OVERRIDES, "train.epochs=1"], root=REPO_ROOT)
    write_preprocessed(tmp_path, cfg, per_class={"train": 6, "val": 3, "test": 3})
    rows = split_table_for_arrays(cfg, tmp_path, "real-dev")
    lineage = workspace_lineage(cfg, tmp_path)
    assert lineage.source == "folder" and lineage.name == "real-dev"
    assert lineage.val_digest == rows_digest(rows[rows["split"] == "val"])

    first = train.run(cfg, tmp_path)
    second = train.run(cfg, tmp_path)
    # Names say recipe, seed and data; a repeat is numbered.
    assert (first["run_name"], second["run_name"]) == ("paper-s42-real-dev", "paper-s42-real-dev-2")

    experiment = mlflow.get_experiment_by_name("leukemia-cnn")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    digest = rows_digest(rows[rows["split"] == "val"])[:12]
    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"], output_format="list",
                              filter_string=f"datasets.digest = '{digest}'")
    assert {run.info.run_id for run in runs} == {first["run_id"], second["run_id"]}
    assert mlflow.search_runs(experiment_names=["leukemia-cnn"],
                              filter_string="datasets.name = 'real-dev-val'").shape[0] == 2
    run = mlflow.get_run(first["run_id"])
    inputs = {{t.key: t.value for t in i.tags}["mlflow.data.context"]: i
              for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "testing"}
    for context, split in (("training", "train"), ("validation", "val"), ("testing", "test")):
        dataset = inputs[context].dataset
        tags = {t.key: t.value for t in inputs[context].tags}
        split_digest = rows_digest(rows[rows["split"] == split])
        # each split its own digest, so the Dataset column tells them apart
        assert dataset.name == f"real-dev-{split}" and dataset.digest == split_digest[:12]
        assert "file:///datasets/real-dev" in dataset.source
        assert tags["rows_digest"] == split_digest
        assert tags["data_version"] == lineage.version
        assert tags["n_images"] == str((rows["split"] == split).sum())
    assert run.data.tags["val_digest"] == lineage.val_digest
    assert {k: run.data.tags[k] for k in ("data_source", "data_name", "data_uri")} == {
        "data_source": "folder", "data_name": "real-dev", "data_uri": "file:///datasets/real-dev"}
    # The data params say what the data was, not the default config's source; groups the
    # training does not read stay in config.yaml only.
    params = run.data.params
    assert (params["data.source"], params["data.name"]) == ("folder", "real-dev")
    assert not [k for k in params if k.startswith(("data.kaggle", "data.synth", "data.classes",
                                                   "validation.", "features.", "report.",
                                                   "sweep.", "mlflow.", "paths."))]
    assert "validation:" in mlflow.artifacts.load_text(f"runs:/{first['run_id']}/config.yaml")
    # MLflow's own fields: the Version column's commit, the description
    assert run.data.tags["mlflow.note.content"].startswith("Keras CNN trained by `train`")
    assert "on folder data 'real-dev'" in run.data.tags["mlflow.note.content"]


def test_an_older_experiment_is_marked_for_training_and_a_set_kind_kept(make_cfg, tmp_path,
                                                                        mlflow_store):
    client = mlflow.MlflowClient()
    artifacts = (tmp_path / "mlruns").as_uri()  # the project's own (a copied store's is refused)
    client.create_experiment("leukemia-cnn", artifact_location=artifacts)
    setup_mlflow(make_cfg(), tmp_path)
    assert mlflow.get_experiment_by_name("leukemia-cnn").tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND
    other = client.create_experiment("chat", artifact_location=artifacts,
                                     tags={EXPERIMENT_KIND_TAG: "genai_development"})
    setup_mlflow(make_cfg("mlflow.experiment_name=chat"), tmp_path)
    assert client.get_experiment(other).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_repeated_run_names_are_numbered(make_cfg, tmp_path, mlflow_store):
    cfg = make_cfg()
    experiment_id = setup_mlflow(cfg, tmp_path)
    built_in = workspace_lineage(cfg, tmp_path)
    assert built_in.source == "synthetic"
    names = []
    for _ in range(3):
        names.append(unique_run_name("cnn-s1", experiment_id))
        with mlflow.start_run(run_name=names[-1]):
            pass
    assert names == ["cnn-s1", "cnn-s1-2", "cnn-s1-3"]  # numbered, not random suffixes


def dvc(*args, cwd):
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True,
                   capture_output=True, env={"DVC_NO_ANALYTICS": "1", "PATH": "/usr/bin:/bin",
                                             "HOME": str(cwd)})


def test_data_get_records_where_the_data_came_from_and_synth_forgets_it(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    dvc("init", "--no-scm", cwd=project)
    cfg = load_config(["data=kaggle"], root=REPO_ROOT)
    write_params(cfg, project / "params.yaml")
    source = class_tree(tmp_path / "real-dev", per_class=5, seed=3)
    monkeypatch.chdir(project)

    assert cli_main(["data", "get", "--source", str(source)]) == 0
    stage = yaml.safe_load((project / "data.dvc").read_text())
    assert stage["meta"]["data_origin"] == {"source": "folder", "uri": source.resolve().as_uri(),
                                            "name": "real-dev"}
    lineage = workspace_lineage(cfg, project)
    assert (lineage.source, lineage.name) == ("folder", "real-dev")
    assert lineage.version == stage["outs"][0]["md5"]

    write_params(load_config(["data.synth.scale=0.01"], root=REPO_ROOT), project / "params.yaml")
    assert cli_main(["data", "synth"]) == 0
    stage = yaml.safe_load((project / "data.dvc").read_text())
    assert "meta" not in stage
    # Without a record, the config's data.source says what the data is.
    assert workspace_lineage(cfg, project).source == "kaggle"


@pytest.mark.slow
def test_new_data_gets_its_own_champion_and_switching_back_restores_the_old(tmp_path):
    """The issue's scenario: the built-in set, then a second dataset through `data get`, then
    `dvc repro`: the champion is the new data's model and `predict` names it; back to the
    built-in set, its champion returns."""
    from mlflow import MlflowClient

    from helpers import sh, tiny_project

    # The tiny configuration's 15 epochs: fewer leave a collapsed run, which is never promoted.
    repo = tiny_project(tmp_path / "repo")
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}",
                          registry_uri=f"sqlite:///{repo / 'mlflow.db'}")

    def champion():
        return client.get_model_version_by_alias("leukemia-cnn", "champion")

    sh("dvc", "repro", cwd=repo)
    first = champion()
    assert first.tags["data_source"] == "synthetic"

    second_set = tmp_path / "second-set"
    sh("leukemia-cnn", "data", "synth", "--seed", "7", "--output", str(second_set),
       "--no-dvc-add", cwd=repo)
    sh("leukemia-cnn", "data", "get", "--source", str(second_set), cwd=repo)
    repro = sh("dvc", "repro", cwd=repo)
    second = champion()
    new_data = workspace_lineage(load_config([], root=repo), repo)
    assert second.version != first.version, repro.stdout
    assert second.tags["data_version"] == new_data.version
    assert (second.tags["data_source"], second.tags["data_name"]) == ("folder", "second-set")
    assert second.tags["val_digest"] == new_data.val_digest != first.tags["val_digest"]
    assert "other data: not compared" in repro.stdout
    summary = sh("leukemia-cnn", "summary", cwd=repo).stdout
    assert f"moved from version {first.version} to version {second.version}" in summary

    image = sorted((repo / "data" / "raw" / "Pro").glob("*.jpg"))[0]
    predicted = sh("leukemia-cnn", "predict", str(image), cwd=repo)
    assert (f"predict: model leukemia-cnn version {second.version} (models:/leukemia-cnn@"
            "champion): trained on folder data 'second-set'") in predicted.stderr
    assert "predict: WARNING" not in predicted.stderr
    listed = sh("leukemia-cnn", "promote", "--data", "all", cwd=repo).stdout
    assert "lists 2 validation set(s)" in listed and champion().version == second.version

    # Back to the built-in set (the committed data.dvc): its own champion again.
    sh("git", "checkout", "HEAD", "--", "data.dvc", cwd=repo)  # not the index: dvc autostages
    sh("dvc", "checkout", "data.dvc", cwd=repo)
    sh("dvc", "repro", cwd=repo)
    restored = champion()
    assert restored.tags["val_digest"] == first.tags["val_digest"]
    assert restored.tags["data_source"] == "synthetic"
    stale = sh("leukemia-cnn", "predict", str(image), "--model-uri",
               f"models:/leukemia-cnn/{second.version}", cwd=repo)
    assert "WARNING: model leukemia-cnn version" in stale.stderr
