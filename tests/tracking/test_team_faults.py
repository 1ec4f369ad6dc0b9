"""Faults of the team setup, on the real servers the tests start (tests/helpers/team.py): a
SLURM job cancelled or whose node dies, S3 unreachable during `dvc push` or during logging,
and refused S3 credentials. Each is reported in one line, waits are bounded, nothing local is
lost, and the next attempt completes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from helpers import BIN, tiny_project
from helpers.team import add_s3_remote, mlflow_on_s3, run, sha256_tree, wait_for
from leukemia_cnn.stack import s3, servers, slurm
from leukemia_cnn.stack.procs import StackError, stop, wait_until

pytestmark = pytest.mark.slow

ONE_CORE = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=30", "sweep.tf_threads=1"]
# The client's retries of a failed upload (7 by default, with back-off): two, to be quick.
FEW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@pytest.fixture(scope="module")
def project(postgres, s3_server, slurm_cluster, tmp_path_factory):
    """A tiny project that ran `dvc repro` against the server on S3 and pushed to S3."""
    folder = tmp_path_factory.mktemp("team-faults")
    daemon, url = mlflow_on_s3(folder / "server", postgres, s3_server)
    env = {"MLFLOW_TRACKING_URI": url, **slurm_cluster.env, **s3_server.env}
    try:
        repo = tiny_project(folder / "P", train={"epochs": 2})
        run("dvc", "repro", cwd=repo, env=env)
        add_s3_remote(repo, s3_server, "faults", env)
        run("git", "add", "-A", cwd=repo)
        run("git", "commit", "-qm", "results and the S3 remote", cwd=repo)
        run("dvc", "push", cwd=repo, env=env)
        mlflow.set_tracking_uri(url)
        mlflow.set_registry_uri(url)
        yield {"repo": repo, "env": env, "url": url, "s3": s3_server, "slurm": slurm_cluster}
    finally:
        stop(daemon)


def start_sweep(project, sweep_id: str, *overrides: str) -> subprocess.Popen:
    """The sweep in the background; its output in files (a pipe could fill while it runs)."""
    env = {**os.environ, **project["env"], "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = project["repo"].parent / f"sweep-{sweep_id}"
    sweep = subprocess.Popen([str(BIN / "leukemia-cnn"), "sweep", "-m", "hydra/launcher=slurm",
                              *overrides, *ONE_CORE, f"sweep.id={sweep_id}"],
                             cwd=project["repo"], env=env, stdout=open(f"{log}.out", "w"),  # noqa: SIM115
                             stderr=open(f"{log}.err", "w"))  # noqa: SIM115
    sweep.logs = (Path(f"{log}.out"), Path(f"{log}.err"))
    return sweep


def training_run(sweep_id: str, epochs: int, timeout: float = 300):
    """The sweep's run of ``epochs`` once it has logged its first epoch."""
    client = MlflowClient()

    def logged():
        runs = mlflow.search_runs(experiment_names=["leukemia-cnn"], output_format="list",
                                  filter_string=f"tags.sweep_id = '{sweep_id}' and "
                                                f"params.`train.epochs` = '{epochs}'")
        if runs and client.get_metric_history(runs[0].info.run_id, "loss/train"):
            return runs[0]
        return None

    return wait_for(logged, timeout, f"a run of sweep {sweep_id} logged an epoch")


def finish(sweep: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for the sweep (bounded); its exit status, stdout and stderr."""
    try:
        sweep.wait(timeout=timeout)
        waited_too_long = False
    except subprocess.TimeoutExpired:  # SIGTERM: the sweep stops its child and cancels jobs
        sweep.terminate()
        try:
            sweep.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sweep.kill()
            sweep.wait()
        waited_too_long = True
    out, err = (path.read_text() for path in sweep.logs)
    assert not waited_too_long, f"the sweep was still waiting after {timeout} s:\n{err[-3000:]}"
    return sweep.returncode, out, err


def test_a_job_cancelled_with_scancel_ends_killed_and_the_sweep_names_it(project):
    sweep = start_sweep(project, "cancelled", "train.epochs=3,400")
    victim = training_run("cancelled", 400)
    job = victim.data.tags["slurm_job_id"]
    slurm.slurm_command(project["slurm"], "scancel", job, check=True)
    code, out, err = finish(sweep, 300)
    assert code == 1, out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("leukemia-cnn sweep: error: 1 of 2 job(s) failed: "
                           f"SLURM job {job} ended CANCELLED"), err[-2000:]
    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"], output_format="list",
                              filter_string="tags.sweep_id = 'cancelled'")
    assert {r.data.tags["slurm_job_id"]: r.info.status for r in runs}[job] == "KILLED"
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]


def test_a_job_whose_node_dies_is_reported_not_waited_on(project):
    cluster = project["slurm"]
    sweep = start_sweep(project, "node-died", "train.epochs=400")
    victim = training_run("node-died", 400)
    job = victim.data.tags["slurm_job_id"]
    try:
        slurm.kill_node(cluster)  # slurmd and every process of the job, without a word
        killed = time.monotonic()
        code, out, err = finish(sweep, 300)
        print(f"node death reported {time.monotonic() - killed:.0f} s after the kill "
              f"(SlurmdTimeout={slurm.SLURMD_TIMEOUT} s)")
    finally:
        cluster.daemons.append(slurm.start_slurmd(cluster))
        wait_until(lambda: slurm.node_state(cluster) == "idle", 120, "the node is back",
                   cluster.daemon("slurmd"))
    assert code == 1, out + err
    assert f"SLURM job {job} ended NODE_FAIL" in err.strip().splitlines()[-1], err[-2000:]
    assert MlflowClient().get_run(victim.info.run_id).info.status == "FAILED"


def test_s3_down_during_dvc_push_loses_nothing_and_a_later_push_completes(project):
    repo, env, store = project["repo"], project["env"], project["s3"]
    (repo / "notes.txt").write_text("a file to share\n")
    run("dvc", "add", "notes.txt", cwd=repo, env=env)
    cached = sha256_tree(repo, [".dvc/cache"])
    s3.stop_s3(store, timeout=5)
    try:
        pushed = run("dvc", "push", cwd=repo, env=env, check=False, timeout=300)
        assert pushed.returncode != 0
        assert "Could not connect to the endpoint URL" in pushed.stderr, pushed.stderr
        ours = run("leukemia-cnn", "data", "push", cwd=repo, env=env, check=False, timeout=300)
        assert ours.returncode == 1 and len(ours.stderr.strip().splitlines()) == 1, ours.stderr
        assert "did not answer" in ours.stderr and "nothing local was lost" in ours.stderr
        assert sha256_tree(repo, [".dvc/cache"]) == cached
    finally:
        s3.launch(store)
    run("leukemia-cnn", "data", "push", cwd=repo, env=env)
    status = run("dvc", "status", "--cloud", cwd=repo, env=env)
    assert "in sync" in status.stdout, status.stdout


def test_s3_down_during_logging_keeps_the_last_model_and_a_later_run_completes(project):
    repo, store = project["repo"], project["s3"]
    env = {**project["env"], **FEW_RETRIES}
    kept = sha256_tree(repo, ["models", "dvc.lock", "reports/train.json"])
    s3.stop_s3(store, timeout=5)
    try:
        failed = run("dvc", "repro", "-f", "train", cwd=repo, env=env, check=False, timeout=900)
    finally:
        s3.launch(store)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in said, said[-3000:]
    line = next(li for li in said.splitlines() if li.startswith("leukemia-cnn train: error:"))
    assert f"the MLflow server {project['url']} could not store this run's artifacts" in line
    assert sha256_tree(repo, ["models", "dvc.lock", "reports/train.json"]) == kept
    latest = mlflow.search_runs(experiment_names=["leukemia-cnn"], output_format="list",
                                filter_string="tags.stage = 'train'",
                                order_by=["attributes.start_time DESC"])[0]
    assert latest.info.status == "FAILED"
    run("dvc", "repro", "-f", "train", cwd=repo, env=env, timeout=900)
    assert sha256_tree(repo, ["models/cnn.keras"]) != {k: v for k, v in kept.items()
                                                       if k == "models/cnn.keras"}


def test_wrong_s3_credentials_are_one_line_naming_the_setting(project, postgres, tmp_path):
    repo, env, store = project["repo"], project["env"], project["s3"]
    for variable, option in (("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
                             ("AWS_ACCESS_KEY_ID", "access_key_id")):
        wrong = {**env, variable: "wrong-" + variable.lower()}
        assert run("dvc", "push", cwd=repo, env=wrong, check=False).returncode != 0
        ours = run("leukemia-cnn", "data", "push", cwd=repo, env=wrong, check=False)
        assert ours.returncode == 1 and len(ours.stderr.strip().splitlines()) == 1, ours.stderr
        assert f"`{option}`" in ours.stderr and variable in ours.stderr, ours.stderr
    # The MLflow server's own keys are checked before it starts.
    with pytest.raises(StackError, match="check AWS_SECRET_ACCESS_KEY"):
        servers.mlflow_server(tmp_path, postgres.uri, "s3://mlflow/artifacts",
                              {**store.env, "AWS_SECRET_ACCESS_KEY": "wrong"})
