"""The study end to end on tiny data: Hydra multirun with parallel workers -> MLflow runs
-> the Table 1 report -> promotion of the best configuration."""

import json
import shutil

import mlflow
import pytest

from helpers import REPO_ROOT, table_rows, write_preprocessed
from leukemia_cnn.config import load_config
from leukemia_cnn.registry import register
from leukemia_cnn.registry.champion import config_scores
from leukemia_cnn.study import report, sweep

# A tiny network on 32x32 images trained for one epoch (800 train images: 13-25 steps, enough
# for every run of both configurations to beat the majority share, so the promotion has a run
# to choose); batch size and loss come from the experiment files (overriding them would make
# the two configurations one).
TINY_SWEEP = ["train.epochs=1", "train.learning_rate=0.003", "train.verbose=0",
              "model.filters=[8,8,8]", "model.kernel_sizes=[3,3,3]", "model.dense_units=32",
              "preprocess.image_size=32", "features.pca.n_components=8", "sweep.tf_threads=1"]
CONFIGS = ("table1_e15_b64_cce", "table1_e15_b32_cce")


@pytest.fixture
def project(tmp_path, monkeypatch, mlflow_store):
    """A project folder with conf/ and tiny preprocessed splits; MLflow in tmp_path."""
    root = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "conf", root / "conf")
    cfg = load_config(TINY_SWEEP[:-1], root=root)
    write_preprocessed(root, cfg, per_class={"train": 200, "val": 8, "test": 8})
    monkeypatch.chdir(root)
    mlflow.set_registry_uri(mlflow_store)  # an earlier test may have pointed it elsewhere
    return root


@pytest.mark.slow  # trains; about 15 s on 2 cores
def test_multirun_with_parallel_workers_report_and_promotion(project, capfd):
    argv = ["-m", f"experiment={','.join(CONFIGS)}", "seed=1,2", *TINY_SWEEP,
            "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "sweep.id=tiny"]
    assert sweep.main(argv) == 0
    out = capfd.readouterr().out
    assert "sweep tiny: 4 job(s)" in out

    # Four runs in the project's experiment, one per job, tagged with the sweep.
    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"])
    assert len(runs) == 4 and set(runs["status"]) == {"FINISHED"}
    assert set(runs["tags.sweep_id"]) == {"tiny"}
    assert sorted(runs["tags.experiment_name"]) == sorted(CONFIGS * 2)
    assert runs["tags.config_id"].nunique() == 2
    # names say recipe, seed and data; the same recipe and seed again would be numbered
    assert sorted(runs["tags.mlflow.runName"]) == sorted(
        f"{c}-s{s}-synthetic" for c in CONFIGS for s in (1, 2))
    assert set(runs["tags.keras_accuracy_metric"]) == {"CategoricalAccuracy"}
    assert set(runs["tags.collapsed"]) <= {"true", "false"}
    for column in ("val_accuracy", "test_accuracy", "val_prediction_seconds",
                   "test_prediction_seconds"):
        assert runs[f"metrics.{column}"].notna().all()
    assert set(runs["params.train.batch_size"]) == {"64", "32"}
    client = mlflow.MlflowClient()
    history = client.get_metric_history(runs["run_id"][0], "accuracy/val")
    assert [m.step for m in history] == [1]

    # Each job wrote its files in its own Hydra folder, not in models/ or reports/.
    statuses = sweep.collect_statuses(project / "multirun" / "tiny")
    assert [s["status"] for s in statuses] == ["ok"] * 4
    for status in statuses:
        job_dir = project / "multirun" / "tiny" / status["job_dir"].split("/")[-1]
        assert (job_dir / "cnn.keras").is_file() and (job_dir / "figures").is_dir()
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert metrics["val_accuracy"] == pytest.approx(
            runs.set_index("run_id").loc[status["run_id"], "metrics.val_accuracy"])
    assert not (project / "models").exists()
    assert len(client.search_model_versions("name='leukemia-cnn'")) == 4

    # The report: both rows beside the paper, the claim they test, the figures.
    cfg = load_config(TINY_SWEEP, root=project)
    result = report.build(cfg, project)
    table = result["table"]
    assert list(table["label"]) == ["table1_e15_b64_cce", "table1_e15_b32_cce"]
    assert list(table["n_seeds"]) == [2, 2]
    text = result["markdown"].read_text()
    assert {"0.80", "0.74"} <= {cell for row in table_rows(text) for cell in row}
    claim = next(c for c in result["claims"] if c.startswith("**batch 64 beats batch 32"))
    assert any(word in claim for word in ("support", "contradict", "no difference"))
    assert "over 2 paired seeds" in claim
    assert "not tested" in next(c for c in result["claims"] if "binary CE" in c)
    assert (project / "reports" / "table1.html").is_file()

    # Promotion of the best configuration by mean val accuracy, then its best run.
    found = register.candidates("leukemia-cnn")
    best = config_scores(found)[0]
    assert best.n_eligible > 0, "every tiny run collapsed: nothing to promote"
    champion = register.promote(cfg, project, by="config")
    chosen = next(c for c in found if c.version == champion)
    assert chosen.config_key == best.config_key and not chosen.collapsed
    version = client.get_model_version_by_alias("leukemia-cnn", "champion")
    assert version.tags["promotion_mode"] == "config"
    assert "best configuration by mean val_accuracy" in version.tags["promoted_by"]


def test_single_run_without_multirun(project, capfd):
    argv = ["experiment=table1_e10_b32_cce", "seed=3", *TINY_SWEEP, "train.epochs=2",
            "sweep.register=false"]
    assert sweep.main(argv) == 0
    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"])
    assert len(runs) == 1
    assert runs["tags.experiment_name"][0] == "table1_e10_b32_cce"
    assert runs["tags.sweep_id"][0]  # made by the command
    assert runs["params.train.epochs"][0] == "2" and runs["tags.seed"][0] == "3"
    assert len(mlflow.MlflowClient().search_model_versions("name='leukemia-cnn'")) == 0
    assert "1 job(s)" in capfd.readouterr().out


@pytest.mark.parametrize("override,message", [
    ("train.loss=hinge", "`train.loss`"),
    ("preprocess.image_size=48", "split table and raw images are needed"),
])
def test_a_failing_job_is_reported_without_traceback(project, capfd, override, message):
    assert sweep.main([*TINY_SWEEP, override]) == 1
    captured = capfd.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    assert "FAILED" in captured.out


@pytest.mark.slow
def test_sigterm_stops_the_workers_and_closes_their_runs(project, mlflow_store):
    """SIGTERM to `leukemia-cnn sweep`: no worker keeps training, no run stays RUNNING."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    argv = [sys.executable, "-m", "leukemia_cnn.cli", "sweep", "-m", "seed=1,2",
            "experiment=table1_e15_b64_cce", *TINY_SWEEP, "train.epochs=500", "sweep.id=stopme",
            "hydra.launcher.n_jobs=2"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store}
    process = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while True:
        runs = mlflow.search_runs(experiment_names=["leukemia-cnn"])
        if len(runs) == 2 and set(runs["status"]) == {"RUNNING"}:
            break
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(2)
    family = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted; workers stopped" in err and "Traceback" not in err
    gone, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"])
    assert len(runs) == 2 and set(runs["status"]) == {"KILLED"}
    assert len(mlflow.MlflowClient().search_model_versions("name='leukemia-cnn'")) == 0


@pytest.mark.slow
def test_conv_layer_study_through_submitits_local_executor(tmp_path, monkeypatch, mlflow_store,
                                                            capfd):
    """The SLURM launcher's code path (submitit: pickled jobs, logs in .submitit) run by its
    local executor, on the paper's number-of-conv-layers rows with their real filter lists."""
    root = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "conf", root / "conf")
    # 64 px: four valid 5/5/3/3 conv blocks with 2x2 pooling still leave a 1x1 map.
    small = ["preprocess.image_size=64", "train.epochs=1", "train.verbose=0",
             "features.pca.n_components=8", "sweep.register=false", "sweep.tf_threads=1"]
    write_preprocessed(root, load_config(small, root=root), {"train": 8, "val": 4, "test": 4})
    monkeypatch.chdir(root)

    argv = ["-m", "experiment=conv2,conv4", "seed=1", *small, "sweep.id=layers",
            "hydra/launcher=submitit_local_cpu", "hydra.launcher.timeout_min=10"]
    assert sweep.main(argv) == 0
    assert "sweep layers: 2 job(s)" in capfd.readouterr().out

    runs = mlflow.search_runs(experiment_names=["leukemia-cnn"]).set_index(
        "tags.experiment_name")
    assert sorted(runs.index) == ["conv2", "conv4"] and set(runs["status"]) == {"FINISHED"}
    assert runs.loc["conv2", "params.model.filters"] == "[64, 32]"
    assert runs.loc["conv4", "params.model.filters"] == "[64, 32, 128, 128]"
    assert set(runs["tags.sweep_id"]) == {"layers"}
    submitit_logs = list((root / "multirun" / "layers" / ".submitit").rglob("*_log.out"))
    assert len(submitit_logs) == 2


def closed_port() -> int:
    """A local port nothing listens on (a tracking server that is down)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("store,says", [
    ("file", "leukemia-cnn sweep: error: [Errno 17] File exists"),
    ("server", "leukemia-cnn sweep: error: could not connect the sweep to MLflow at http://"),
])
def test_a_store_that_refuses_is_one_line_before_any_job(project, capfd, monkeypatch, store,
                                                         says):
    """A store the file system refuses (its folder is a file) or a tracking server that is
    down: the sweep's child process says so in one line, not a traceback."""
    if store == "file":
        (project / "taken").write_text("a file where the store's folder should be\n")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'taken' / 'mlflow.db'}")
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert sweep.main([*TINY_SWEEP, "sweep.register=false"]) == 1
    err = capfd.readouterr().err
    assert err.startswith(says) and err.count("\n") == 1, err[-3000:]


def test_a_job_whose_artifacts_cannot_be_written_fails_in_one_line(project, capfd):
    """The store works but its artifact folder is a file: the job fails with one line and its
    status says why; the sweep exits non-zero."""
    (project / "mlruns").write_text("a file where MLflow's artifact folder should be\n")
    assert sweep.main([*TINY_SWEEP, "sweep.register=false"]) == 1
    captured = capfd.readouterr()
    ours = [line for line in captured.err.splitlines() if line.startswith("leukemia-cnn")]
    assert "Traceback" not in captured.err, captured.err[-3000:]
    assert len(ours) == 2 and ours[0].startswith("leukemia-cnn sweep: error in job "), ours
    assert "mlruns" in ours[0] and "1 of 1 job(s) failed" in ours[1] and "FAILED: " in captured.out


def test_the_sweep_child_hides_tensorflow_info_lines_unless_verbose(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("LEUKEMIA_CNN_VERBOSE", raising=False)
    assert sweep.child_environment()["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user's own level is kept
    assert sweep.child_environment()["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    monkeypatch.setenv("LEUKEMIA_CNN_VERBOSE", "1")  # --verbose: TensorFlow's lines reach the user
    assert "TF_CPP_MIN_LOG_LEVEL" not in sweep.child_environment()


@pytest.mark.slow  # trains; about 15 s on 2 cores
def test_every_job_failed_in_a_sweep_dir_elsewhere_exits_non_zero(project, capfd):
    elsewhere = project / "sweeps" / "elsewhere"  # not multirun/ (a folder outside is refused)
    status = sweep.main(["-m", f"hydra.sweep.dir={elsewhere}", "sweep.register=false",
                         *TINY_SWEEP, "preprocess.image_size=48", "seed=1,2"])
    captured = capfd.readouterr()
    assert status == 1
    assert "2 of 2 job(s) failed" in captured.err
    assert captured.out.count("FAILED: ") == 2 and str(elsewhere) in captured.out
