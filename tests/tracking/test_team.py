"""Beyond one machine, with real components started by the tests: a team tracking server
(`mlflow server` on a PostgreSQL backend store with a served artifact store) that the tiny
pipeline logs, registers and promotes through; and a DVC remote that carries data/raw and
every stage output from one clone to a fresh one."""

from __future__ import annotations

import shutil

import pytest

from helpers import BIN, TINY_CONF, sh, tiny_project
from helpers.servers import free_port, server
from helpers.team import cached_outputs, sha256_tree

pytestmark = pytest.mark.slow

MODEL_NAME = "leukemia-cnn"


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory):
    """`mlflow server` on the PostgreSQL store, proxying artifacts to a folder of its own."""
    workdir = tmp_path_factory.mktemp("team-server")
    artifacts = workdir / "artifacts"
    port = free_port()
    args = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3: name the pinned driver.
            "--backend-store-uri", postgres.uri.replace("postgresql://", "postgresql+psycopg2://"),
            "--serve-artifacts",
            "--artifacts-destination", str(artifacts), "--workers", "1"]
    with server(args, port, workdir) as url:
        yield {"url": url, "artifacts": artifacts, "db": postgres.uri}


def test_pipeline_logs_registers_and_promotes_through_postgres_server(team_server,
                                                                      tmp_path_factory):
    import psycopg2
    from mlflow import MlflowClient

    repo = tiny_project(tmp_path_factory.mktemp("team") / "repo")
    env = {"MLFLOW_TRACKING_URI": team_server["url"]}
    sh("dvc", "repro", cwd=repo, env_extra=env)
    assert not (repo / "mlflow.db").exists(), "the embedded store was used instead of the server"

    client = MlflowClient(tracking_uri=team_server["url"], registry_uri=team_server["url"])
    experiment = client.get_experiment_by_name("leukemia-cnn")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'train'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert {"val_accuracy", "test_accuracy", "train_seconds", "loss/train"} <= set(run.data.metrics)
    assert run.data.params["train.epochs"] == str(TINY_CONF["train"]["epochs"])
    assert len(client.get_metric_history(run.info.run_id, "loss/train")) == TINY_CONF["train"]["epochs"]
    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.run_id == run.info.run_id
    # The same data lineage as the embedded store: tags, datasets, the version's group.
    assert champion.tags["val_digest"] == run.data.tags["val_digest"] != "unknown"
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {
        "synthetic-train", "synthetic-val", "synthetic-test"}

    # The artifacts went through the server into its own destination folder.
    stored = {p.name for p in team_server["artifacts"].rglob("*") if p.is_file()}
    assert {"cnn.keras", "MLmodel", "curves.png", "config.yaml"} <= stored
    # And the runs, params, metrics and registry are rows in PostgreSQL.
    with psycopg2.connect(team_server["db"]) as connection, connection.cursor() as cursor:
        cursor.execute("select status from runs where run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchone() == ("FINISHED",)
        cursor.execute("select count(*) from params where run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchone()[0] == len(run.data.params)
        cursor.execute("select alias, version from registered_model_aliases where name = %s",
                       (MODEL_NAME,))
        assert cursor.fetchall() == [("champion", int(champion.version))]
        cursor.execute("select name, digest from datasets order by name")
        # one dataset row per split, each with the digest the run's inputs carry
        logged = {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}
        assert cursor.fetchall() == sorted(logged.items())
        assert len(set(logged.values())) == 3

    promoted = sh("leukemia-cnn", "promote", cwd=repo, env_extra=env)
    assert f"already on version {champion.version}" in promoted.stdout
    assert "the workspace's current data; compared" in promoted.stdout
    image = sorted((repo / "data" / "raw" / "Pro").glob("*.jpg"))[0]
    predicted = sh("leukemia-cnn", "predict", str(image), cwd=repo, env_extra=env)
    assert predicted.stdout.splitlines()[0].startswith("path,predicted_class") or \
        "predicted_class" in predicted.stdout


def test_dvc_remote_push_then_pull_into_a_fresh_clone(pipeline, tmp_path):
    # A copy of the session's finished pipeline, so that committing to it changes nothing else.
    repo = tmp_path / "origin"
    shutil.copytree(pipeline["repo"], repo, symlinks=True)
    remote = tmp_path / "remote"
    sh("dvc", "remote", "add", "-d", "shared", str(remote), cwd=repo)
    sh("git", "add", "-A", cwd=repo)  # dvc.lock, metrics and the remote, as a user commits them
    sh("git", "commit", "-qm", "pipeline results and the shared remote", cwd=repo)
    pushed = sh("dvc", "push", cwd=repo)
    assert remote.is_dir() and any(remote.rglob("*")), pushed.stdout

    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / "data" / "raw").exists()
    assert not (clone / "models" / "cnn.keras").exists()
    pulled = sh("dvc", "pull", cwd=clone)
    outs = cached_outputs(repo)
    assert {"data/raw", "data/preprocessed", "data/features", "models/cnn.keras"} <= set(outs)
    original, restored = sha256_tree(repo, outs), sha256_tree(clone, outs)
    assert len(original) > 100, pulled.stdout
    assert restored == original
    status = sh("dvc", "status", cwd=clone)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    # Nothing to re-run in the fresh clone: the pulled outputs satisfy dvc.lock.
    dry = sh("dvc", "repro", "--dry", cwd=clone)
    assert "Running stage" not in dry.stdout, dry.stdout
