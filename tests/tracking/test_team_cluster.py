"""The team setup of docs/scaling.md end to end, on real servers the tests start: PostgreSQL,
SeaweedFS's S3, `mlflow server` with its artifacts in a bucket, and a one-node SLURM cluster.

Clone A runs the pipeline against the server and pushes its data and outputs to an S3 DVC
remote; clone B pulls them, sweeps two configurations times two seeds as SLURM jobs, reads the
runs back (report, promote --by config) and serves the champion through the server."""

from __future__ import annotations

import base64
import json
import re
import urllib.request

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from helpers import BIN, tiny_project
from helpers.servers import free_port, server
from helpers.team import (
    MLFLOW_BUCKET,
    add_s3_remote,
    cached_outputs,
    mlflow_on_s3,
    run,
    sha256_tree,
)
from leukemia_cnn.stack import s3
from leukemia_cnn.stack.procs import stop

pytestmark = pytest.mark.slow

MODEL = "leukemia-cnn"
CONFIGS = ("table1_e15_b64_cce", "table1_e15_b32_cce")
SWEEP_ID = "team-slurm"
# The exact command docs/scaling.md shows (section 3): one core and 1 GB per job on this node.
SWEEP = ["-m", "hydra/launcher=slurm", f"experiment={','.join(CONFIGS)}", "seed=1,2",
         "train.epochs=40", "sweep.tf_threads=1", f"sweep.id={SWEEP_ID}",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
         "hydra.launcher.timeout_min=30"]


def unpin_batch_size(repo) -> None:
    """The tiny config sets train.batch_size after the experiment files: without it each
    experiment keeps its own (64, 32), so the sweep's two experiments are two configurations."""
    config = yaml.safe_load((repo / "conf" / "config.yaml").read_text())
    config["train"].pop("batch_size")
    (repo / "conf" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run("leukemia-cnn", "params", cwd=repo)
    run("git", "commit", "-qam", "each experiment's own batch size", cwd=repo)


@pytest.fixture(scope="module")
def team(postgres, s3_server, slurm_cluster, tmp_path_factory):
    """Clone A ran `dvc repro` against the server (one epoch: a weak first champion) and
    pushed to S3; clone B is a fresh `git clone` of it."""
    folder = tmp_path_factory.mktemp("team-cluster")
    daemon, url = mlflow_on_s3(folder / "server", postgres, s3_server)
    env = {"MLFLOW_TRACKING_URI": url, **slurm_cluster.env, **s3_server.env}
    try:
        origin = tiny_project(folder / "A", train={"epochs": 1})
        unpin_batch_size(origin)
        run("dvc", "repro", cwd=origin, env=env)
        add_s3_remote(origin, s3_server, "leukemia-cnn", env)
        run("git", "add", "-A", cwd=origin)
        run("git", "commit", "-qm", "pipeline results and the S3 remote", cwd=origin)
        pushed = run("dvc", "push", cwd=origin, env=env)
        clone = folder / "B"
        run("git", "clone", "-q", str(origin), str(clone), cwd=folder)
        mlflow.set_tracking_uri(url)
        mlflow.set_registry_uri(url)
        yield {"url": url, "env": env, "A": origin, "B": clone, "pushed": pushed.stdout,
               "s3": s3_server, "slurm": slurm_cluster}
    finally:
        stop(daemon)


@pytest.fixture(scope="module")
def swept(team):
    """From B: `dvc pull`, then the sweep on SLURM; the champion before it."""
    run("dvc", "pull", cwd=team["B"], env=team["env"])
    client = MlflowClient()
    try:
        before = client.get_model_version_by_alias(MODEL, "champion").version
    except mlflow.exceptions.MlflowException:
        before = None  # the one-epoch model collapsed: no champion yet
    result = run("leukemia-cnn", "sweep", *SWEEP, cwd=team["B"], env=team["env"], timeout=1200)
    jobs = re.search(r"submitted SLURM job\(s\) (.+)", result.stdout).group(1).split(", ")
    runs = mlflow.search_runs(experiment_names=[MODEL],
                              filter_string=f"tags.sweep_id = '{SWEEP_ID}'")
    return {"stdout": result.stdout, "jobs": jobs, "runs": runs, "champion_before": before}


def test_dvc_pull_from_s3_restores_every_output_byte_for_byte(team, swept):
    keys = s3.list_keys(team["s3"], "dvc", "leukemia-cnn/")
    assert len(keys) > 100, team["pushed"]
    outs = cached_outputs(team["A"])
    assert {"data/raw", "data/preprocessed", "data/features", "models/cnn.keras"} <= set(outs)
    original, restored = sha256_tree(team["A"], outs), sha256_tree(team["B"], outs)
    assert len(original) > 100 and restored == original
    status = run("dvc", "status", cwd=team["B"], env=team["env"])
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def test_sweep_submits_four_slurm_jobs_whose_runs_reach_the_server_and_bucket(team, swept):
    # The trap the launcher avoids: this cluster has no accounting, so sacct fails.
    sacct = run("sacct", "-j", swept["jobs"][0].split("_")[0], cwd=team["B"], env=team["env"],
                check=False)
    assert sacct.returncode != 0 and "accounting storage is disabled" in sacct.stderr.lower()
    assert len(swept["jobs"]) == 4 and len(set(swept["jobs"])) == 4
    runs = swept["runs"]
    assert len(runs) == 4 and set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["tags.slurm_job_id"]) == sorted(swept["jobs"])
    assert set(runs["tags.slurm_node"]) == {team["slurm"].node}
    assert sorted(runs["tags.experiment_name"]) == sorted(CONFIGS * 2)
    # Each job's model is a set of objects in the bucket, under the model the run logged.
    keys = s3.list_keys(team["s3"], MLFLOW_BUCKET, "artifacts/")
    statuses = [json.loads(p.read_text())
                for p in (team["B"] / "multirun" / SWEEP_ID).rglob("status.json")]
    assert {s["run_id"] for s in statuses} == set(runs["run_id"])
    for status in statuses:
        model_id = status["model_uri"].removeprefix("models:/")
        stored = [k for k in keys if f"/models/{model_id}/artifacts/" in k]
        assert any(k.endswith("/MLmodel") for k in stored), (model_id, keys[:20])
        assert any(k.endswith("cnn.keras") for k in stored), stored
        assert any(f"/{status['run_id']}/artifacts/config.yaml" in k for k in keys)
    assert not (team["B"] / "mlflow.db").exists(), "a job used the embedded store"


def test_report_and_promote_by_config_read_the_runs_from_the_server(team, swept):
    report = run("leukemia-cnn", "report", "--sweep-id", SWEEP_ID, "--no-sample-images",
                 cwd=team["B"], env=team["env"], timeout=600)
    assert "report: 4 runs, 2 configurations" in report.stdout, report.stdout
    table = (team["B"] / "reports" / "table1.md").read_text()
    assert all(config in table for config in CONFIGS), table[:2000]
    promoted = run("leukemia-cnn", "promote", "--by", "config", cwd=team["B"], env=team["env"])
    champion = MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id in set(swept["runs"]["run_id"]), promoted.stdout
    assert champion.version != swept["champion_before"]


def test_predict_and_models_serve_load_the_champion_through_the_server(team, swept):
    # after the test above (file order): the champion is the sweep's
    champion = MlflowClient().get_model_version_by_alias(MODEL, "champion")
    image = sorted((team["B"] / "data" / "raw" / "Pro").glob("*.jpg"))[0]
    predicted = run("leukemia-cnn", "predict", str(image), "--format", "json", cwd=team["B"],
                    env=team["env"])
    rows = json.loads(predicted.stdout)
    assert rows[0]["model_version"] == champion.version and rows[0]["predicted_class"]

    port = free_port()
    args = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager",
            "local", "--host", "127.0.0.1", "-p", str(port)]
    payload = json.dumps({"dataframe_records": [
        {"image": base64.b64encode(image.read_bytes()).decode()}]}).encode()
    with server(args, port, team["B"], health="/ping", env_extra=team["env"]) as base:
        request = urllib.request.Request(f"{base}/invocations", payload,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    predictions = answer.get("predictions", answer)
    assert str(predictions[0]["model_version"]) == champion.version
