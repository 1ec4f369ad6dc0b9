"""Crash safety and repeatability of training: a run stopped by SIGINT/SIGTERM ends KILLED or
FAILED and registers nothing; a run killed by SIGKILL is closed by the next command, after
which `dvc repro` completes; the same seed and data give the same metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from helpers import (
    BIN,
    REPO_ROOT,
    TINY_OVERRIDES,
    sh,
    tiny_project,
    write_preprocessed,
)

MODEL_NAME = "leukemia-cnn"


def client_for(uri: str):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def training_runs(client, experiment: str = "leukemia-cnn") -> list:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], filter_string="tags.stage = 'train'")


def wait_for_training(process: subprocess.Popen, uri: str, timeout: float = 300):
    """Wait until a new RUNNING train run has logged at least one epoch; return it."""
    client = client_for(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"training exited early ({process.returncode}):\n"
                                 f"{process.stdout.read()[-3000:]}")
        try:
            running = [r for r in training_runs(client)
                       if r.info.status == "RUNNING" and "loss/train" in r.data.metrics]
        except Exception:  # noqa: BLE001 - the store may be mid-creation
            running = []
        if running:
            return running[0]
        time.sleep(1)
    raise AssertionError("no training epoch was logged in time")


def env_with(uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = uri
    return env


@pytest.fixture
def champion_project(tmp_path, monkeypatch):
    """A tiny project with a registered champion (train, evaluate, register in-process)."""
    from leukemia_cnn.config import load_config, write_params
    from leukemia_cnn.modeling import evaluate, train
    from leukemia_cnn.registry import register

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = load_config([*TINY_OVERRIDES, "train.epochs=1"], root=REPO_ROOT)
    write_preprocessed(tmp_path, cfg)
    train.run(cfg, tmp_path)
    evaluate.run(cfg, tmp_path)
    registered = register.run(cfg, tmp_path)
    assert registered["champion_version"] == "1"
    # The interrupted run: many epochs, so that it is still training when signalled.
    write_params(load_config([*TINY_OVERRIDES, "train.epochs=500"], root=REPO_ROOT),
                 tmp_path / "params.yaml")
    return tmp_path, uri


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopped_training_is_closed_and_registers_nothing(champion_project, signum):
    root, uri = champion_project
    client = client_for(uri)
    before = {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    kept_run = json.loads((root / "models" / "run.json").read_text())["run_id"]
    kept_model = (root / "models" / "cnn.keras").read_bytes()
    # SIGINT at its default in the child, as in a terminal: a test run started in the
    # background of a non-interactive shell (`... &`) inherits SIGINT ignored, and an ignored
    # signal stays ignored across exec, so Python would never raise KeyboardInterrupt.
    process = subprocess.Popen([str(BIN / "leukemia-cnn"), "train"], cwd=root, env=env_with(uri),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run = wait_for_training(process, uri)
    process.send_signal(signum)
    output = process.communicate(timeout=120)[0]

    assert process.returncode != 0, output
    assert "interrupted" in output
    stopped = client.get_run(run.info.run_id)
    print(f"{signum.name}: exit code {process.returncode}, run {stopped.info.status}")
    assert stopped.info.status in ("KILLED", "FAILED"), output
    assert stopped.info.end_time is not None
    assert not any(r.info.status == "RUNNING" for r in training_runs(client))
    # Nothing registered, champion unchanged, and the last good model and its record stay
    # (modeling/outputs.py): registering again finds that run already registered.
    assert {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")} == before
    assert str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == "1"
    assert json.loads((root / "models" / "run.json").read_text())["run_id"] == kept_run
    assert (root / "models" / "cnn.keras").read_bytes() == kept_model
    assert not list((root / "models").glob("cnn.keras.tmp-*"))
    registering = subprocess.run([str(BIN / "leukemia-cnn"), "register"], cwd=root,
                                 env=env_with(uri), capture_output=True, text=True)
    assert registering.returncode == 0, registering.stderr
    assert "already registered" in registering.stdout
    assert {v.version for v in client.search_model_versions(f"name='{MODEL_NAME}'")} == before


def test_register_refuses_a_run_that_did_not_finish(tmp_path, mlflow_store, make_cfg):
    from leukemia_cnn.errors import LeukemiaCNNError
    from leukemia_cnn.registry import register
    from leukemia_cnn.tracking.store import setup_mlflow

    cfg = make_cfg()
    experiment = setup_mlflow(cfg, tmp_path)
    client = client_for(mlflow_store)
    killed = client.create_run(experiment, tags={"stage": "train"})
    client.set_terminated(killed.info.run_id, status="KILLED")
    with pytest.raises(LeukemiaCNNError, match="KILLED, not FINISHED"):
        register.register(cfg, tmp_path, killed.info.run_id, f"runs:/{killed.info.run_id}/leukemia-cnn")
    assert client.search_model_versions(f"name='{MODEL_NAME}'") == []


def test_orphaned_run_of_a_dead_process_is_closed_by_the_next_command(tmp_path, monkeypatch,
                                                                      make_cfg):
    import mlflow

    from leukemia_cnn.tracking.orphans import PID_START_TAG, PID_TAG, process_tags
    from leukemia_cnn.tracking.store import setup_mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = make_cfg()
    experiment = setup_mlflow(cfg, tmp_path)
    client = client_for(uri)
    # A process that has exited: its run was left RUNNING (as after SIGKILL).
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = client.create_run(experiment, tags={**process_tags(), PID_TAG: str(dead.pid),
                                                 PID_START_TAG: "1.00"})
    # This process's own live run, and a run of another host: both left alone.
    live = client.create_run(experiment, tags=process_tags())
    elsewhere = client.create_run(experiment, tags={**process_tags(),
                                                    "process.host": "another-host"})
    assert setup_mlflow(cfg, tmp_path) == experiment  # what every command does first
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    assert "ended without closing" in client.get_run(orphan.info.run_id).data.tags["orphaned"]
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"
    while mlflow.active_run():
        mlflow.end_run()


@pytest.mark.slow
def test_sigkilled_dvc_repro_is_recovered_by_the_next_repro(tmp_path):
    repo = tiny_project(tmp_path / "repo", train={"epochs": 2})
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    params = repo / "params.yaml"
    default_params = params.read_text()
    long_params = yaml.safe_load(default_params)
    long_params["train"]["epochs"] = 500
    params.write_text(yaml.safe_dump(long_params, sort_keys=False))

    env = env_with(uri)
    env.pop("MLFLOW_TRACKING_URI")  # the project's own embedded store, as a user runs it
    process = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=repo, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    killed_run = wait_for_training(process, uri, timeout=600)
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the training process, no clean-up
    process.communicate(timeout=60)
    client = client_for(uri)
    assert client.get_run(killed_run.info.run_id).info.status == "RUNNING"

    params.write_text(default_params)
    repro = sh("dvc", "repro", cwd=repo)
    output = repro.stdout + repro.stderr
    assert f"closed orphaned run {killed_run.info.run_id}" in output
    closed = client.get_run(killed_run.info.run_id)
    assert closed.info.status == "FAILED"
    assert "orphaned" in closed.data.tags
    assert not any(r.info.status == "RUNNING" for r in training_runs(client))
    status = sh("dvc", "status", cwd=repo)
    assert "up to date" in status.stdout
    # The completed run was registered (2 epochs may not earn the champion alias: collapsed).
    registered = json.loads((repo / "reports" / "registered.json").read_text())
    version = client.get_model_version(MODEL_NAME, registered["version"])
    assert version.run_id != killed_run.info.run_id
    assert client.get_run(version.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_concurrent_training_processes_on_one_sqlite_store_lose_nothing(tmp_path, make_cfg):
    """Real `leukemia-cnn train` processes at once on one fresh embedded store (what
    `dvc queue start -j 2` or parallel sweep jobs do); tests/tracking/test_store.py does the same
    with light logging workers."""
    from leukemia_cnn.config import write_params
    from leukemia_cnn.data.lineage import workspace_lineage
    from leukemia_cnn.tracking.fields import TRAINING_GROUPS, stage_params

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    projects = []
    for seed in (1, 2, 3):
        root = tmp_path / f"project{seed}"
        cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=3", f"seed={seed}")
        write_preprocessed(root, cfg)
        write_params(cfg, root / "params.yaml")
        projects.append(root)
    processes = [subprocess.Popen([str(BIN / "leukemia-cnn"), "train"], cwd=root,
                                  env=env_with(uri), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for root in projects]
    outputs = [process.communicate(timeout=900)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    client = client_for(uri)
    runs = training_runs(client)
    assert sorted(r.data.tags["seed"] for r in runs) == ["1", "2", "3"]
    for run in runs:
        assert run.info.status == "FINISHED"
        cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=3", f"seed={run.data.tags['seed']}")
        root = tmp_path / f"project{run.data.tags['seed']}"
        expected = stage_params(cfg, workspace_lineage(cfg, root), TRAINING_GROUPS)
        expected.update({"data.n_train": "96", "data.n_val": "32"})
        # the logged model's config, which MLflow logs as params too
        expected.update({"preprocessing/classes": str(list(cfg.data.classes)),
                         "preprocessing/image_size": "32", "preprocessing/color_mode": "grayscale",
                         "preprocessing/inference_precision": cfg.train.inference_precision})
        params = dict(run.data.params)
        assert float(params.pop("preprocessing/temperature")) > 0  # fitted on val
        assert params == expected  # every param, with its value
        assert run.data.tags["input_shape"] == "32x32x1"
        for key in ("loss/train", "loss/val", "accuracy/train", "accuracy/val"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3]
    # Each process's own record names its own run.
    recorded = {json.loads((root / "models" / "run.json").read_text())["run_id"]
                for root in projects}
    assert recorded == {r.info.run_id for r in runs}


def test_same_seed_and_data_give_identical_metrics(tmp_path, make_cfg):
    from leukemia_cnn.data.preprocess import load_split
    from leukemia_cnn.modeling import train

    cfg = make_cfg(*TINY_OVERRIDES, "train.epochs=2", "seed=7")
    assert cfg.train.deterministic is True
    directory = write_preprocessed(tmp_path, cfg)
    x_train, y_train, _ = load_split(directory, "train")
    x_val, y_val, _ = load_split(directory, "val")
    first_model, first, _ = train.fit(cfg, x_train, y_train, x_val, y_val)
    second_model, second, _ = train.fit(cfg, x_train, y_train, x_val, y_val)
    assert len(first) == 2
    columns = [c for c in first.columns if c != "learning_rate"]
    assert first[columns].equals(second[columns]), (first, second)
    # Same weights, so the same predictions, bit for bit.
    assert (first_model.predict(x_val, verbose=0) == second_model.predict(x_val, verbose=0)).all()
    # A different seed really changes the numbers (the comparison above is not vacuous).
    _, other, _ = train.fit(make_cfg(*TINY_OVERRIDES, "train.epochs=2", "seed=8"),
                            x_train, y_train, x_val, y_val)
    assert not first["loss"].equals(other["loss"])
