"""Beyond one machine, with real components started by the tests: a team tracking server
(`mlflow server` on a PostgreSQL backend store with a served artifact store) that the tiny
pipeline logs, registers and promotes through; and a DVC remote that carries data/raw and
every stage output from one clone to a fresh one."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from helpers import BIN, TINY_CONF, sh, tiny_project
from helpers.servers import free_port, server

pytestmark = pytest.mark.slow

MODEL_NAME = "leukemia-cnn"


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (newest), or one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 with a database `mlflow`; yields its URI."""
    bindir = postgres_bin()
    if bindir is None or not (bindir / "initdb").is_file():
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/postgres or "
                    "`postgres` on PATH); install Debian's postgresql (.ci/run does)")
    # Outside pytest's 0700 temp root: the postgres user must reach its data folder.
    base = Path(tempfile.mkdtemp(prefix="leukemia-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    data = base / "data"
    subprocess.run(as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                "-A", "trust", "--no-sync"]), check=True, capture_output=True)
    port = free_port()
    log = open(base / "postgres.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(as_postgres([str(bindir / "postgres"), "-D", str(data),
                                            "-h", "127.0.0.1", "-p", str(port), "-k", str(base)]),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("postgres did not start:\n"
                                     + (base / "postgres.log").read_text()[-3000:])
            time.sleep(0.5)
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", "mlflow"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"  # a libpq URI
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory):
    """`mlflow server` on the PostgreSQL store, proxying artifacts to a folder of its own."""
    workdir = tmp_path_factory.mktemp("team-server")
    artifacts = workdir / "artifacts"
    port = free_port()
    args = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3: name the pinned driver.
            "--backend-store-uri", postgres.replace("postgresql://", "postgresql+psycopg2://"),
            "--serve-artifacts",
            "--artifacts-destination", str(artifacts), "--workers", "1"]
    with server(args, port, workdir) as url:
        yield {"url": url, "artifacts": artifacts, "db": postgres}


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


def sha256_tree(root: Path, names: list[str]) -> dict[str, str]:
    """sha256 of every file under each of ``names`` (files or folders) below ``root``."""
    digests = {}
    for name in names:
        target = root / name
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
        for path in files:
            digests[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def cached_outputs(repo: Path) -> list[str]:
    """data/raw plus every cached stage output that dvc.lock records."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = ["data/raw"]
    for stage in lock["stages"].values():
        outs += [out["path"] for out in stage.get("outs", [])]
    return outs


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
