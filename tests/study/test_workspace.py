"""`leukemia-cnn study --source FOLDER`: the study of a Kaggle-layout folder in its own
workspace, leaving the project's data, params and MLflow store as they were."""

import hashlib
import subprocess

import pytest
import yaml

from helpers import BIN, sh, table_rows, tiny_project
from leukemia_cnn.errors import LeukemiaCNNError
from leukemia_cnn.study import workspace as study


def _digest(path):
    return hashlib.md5(path.read_bytes()).hexdigest() if path.exists() else None


def test_plan_runs_the_table1_and_conv_rows_over_five_seeds_on_the_whole_split(tmp_path):
    commands = study.plan(tmp_path, tmp_path / "images", "real", jobs=2)
    sweep = next(c for c in commands if c[:2] == ["leukemia-cnn", "sweep"])
    assert ("experiment=table1_e15_b64_cce,table1_e15_b64_bce,table1_e15_b32_cce,"
            "table1_e10_b32_cce,conv2,conv3,conv4,fast") in sweep
    assert "seed=1,2,3,4,5" in sweep and "train.train_fraction=1.0" in sweep
    assert "sweep.id=real" in sweep and "hydra.launcher.n_jobs=2" in sweep
    assert ["leukemia-cnn", "data", "get", "--source", str((tmp_path / "images").resolve())] \
        in commands
    assert commands[-1] == ["leukemia-cnn", "report", "--sweep-id", "real", "--name", "real"]


@pytest.mark.parametrize("cores, jobs, threads", [(2, 2, 1), (2, 1, 2), (8, 2, 4), (1, 2, 1)])
def test_the_cores_are_shared_between_the_jobs(tmp_path, monkeypatch, cores, jobs, threads):
    # one job alone uses every core; two jobs on two cores take one each
    monkeypatch.setattr(study.os, "cpu_count", lambda: cores)
    sweep = next(c for c in study.plan(tmp_path, tmp_path / "images", "real", jobs=jobs)
                 if c[:2] == ["leukemia-cnn", "sweep"])
    assert f"sweep.tf_threads={threads}" in sweep and f"hydra.launcher.n_jobs={jobs}" in sweep


def test_plan_passes_no_sample_images_to_the_report(tmp_path):
    commands = study.plan(tmp_path, tmp_path / "images", "real", sample_images=False)
    assert commands[-1] == ["leukemia-cnn", "report", "--sweep-id", "real", "--name", "real",
                            "--no-sample-images"]


def test_a_bad_name_source_or_existing_workspace_is_refused(tmp_path):
    with pytest.raises(LeukemiaCNNError, match="not a file stem"):
        study.workspace_path(tmp_path, "../real")
    with pytest.raises(LeukemiaCNNError, match="no such file or folder"):
        study.main(tmp_path, str(tmp_path / "missing"), "real")
    (tmp_path / "studies" / "real").mkdir(parents=True)
    with pytest.raises(LeukemiaCNNError, match="already exists"):
        study.make_workspace(tmp_path, tmp_path / "studies" / "real")


def test_the_command_prints_its_plan_and_creates_nothing(tmp_path, monkeypatch, capsys):
    """`leukemia-cnn study --dry-run` through the CLI (the study has no --params of its own)."""
    from helpers import REPO_ROOT
    from leukemia_cnn.cli.main import main as cli_main

    images = tmp_path / "images"
    (images / "Benign").mkdir(parents=True)
    monkeypatch.chdir(REPO_ROOT)
    assert cli_main(["study", "--source", str(images), "--name", "dryrun", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "leukemia-cnn sweep" in out and "sweep.id=dryrun" in out
    assert not (REPO_ROOT / "studies" / "dryrun").exists()


@pytest.mark.slow
def test_study_of_a_folder_writes_docs_results_and_leaves_the_project_untouched(tmp_path):
    # A Kaggle-layout folder of generated images, outside the project.
    images = tmp_path / "images"
    sh(str(BIN / "leukemia-cnn"), "data", "synth", "--scale", "0.03", "--output", str(images),
       "--no-dvc-add", cwd=tiny_project(tmp_path / "maker"))
    repo = tiny_project(tmp_path / "repo")
    # The tiny project pins data.synth.scale, a key of the synthetic data option only: the
    # schema refuses it under data=kaggle (one line naming the key), so drop it first.
    config = yaml.safe_load((repo / "conf" / "config.yaml").read_text())
    config.pop("data")
    (repo / "conf" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sh("leukemia-cnn", "params", cwd=repo)
    watched = ["params.yaml", "data.dvc", "mlflow.db"]
    before = {name: _digest(repo / name) for name in watched}
    raw_before = sorted(p.name for p in (repo / "data" / "raw").rglob("*"))
    # The tiny project's conf sets the network and batch size, so two rows that differ by
    # their loss stay two configurations.
    sh("leukemia-cnn", "study", "--source", str(images), "--name", "tiny",
       "--experiments", "table1_e15_b64_cce,table1_e15_b64_bce", "--seeds", "1,2", "--jobs", "1",
       "--no-sample-images", "train.epochs=1", cwd=repo)
    report = (repo / "docs" / "results" / "tiny.md").read_text()
    assert f"Images: `{images.resolve()}`" in report
    labels = {row[0] for row in table_rows(report)}
    assert {"table1_e15_b64_cce", "table1_e15_b64_bce"} <= labels, report
    assert "Data: source `folder`" in report  # lineage: images from `data get --source DIR`
    assert (repo / "docs" / "results" / "tiny.html").is_file()
    # --no-sample-images: curves only, no image of the source in the project
    published = sorted(p.name for p in (repo / "docs" / "results" / "tiny_files").iterdir())
    assert any(n.startswith("fig3_") for n in published)
    assert not any(n.startswith("fig2_") for n in published) and "Fig. 2" not in report
    assert ".leukemia-cnn-output" not in published  # the workspace's marker stays there
    # The workspace has its own store with the 4 runs; the project's state is as it was.
    assert (repo / "studies" / "tiny" / "mlflow.db").is_file()
    assert {name: _digest(repo / name) for name in watched} == before
    assert sorted(p.name for p in (repo / "data" / "raw").rglob("*")) == raw_before
    ignored = subprocess.run(["git", "check-ignore", "studies/tiny"], cwd=repo,
                             capture_output=True, text=True).stdout
    assert ignored.strip() == "studies/tiny"


def test_a_publish_killed_mid_way_leaves_no_half_figures_folder(tmp_path, monkeypatch):
    """SIGTERM while the figures are swapped in: interrupted, no staging folder left."""
    import os
    import signal

    reports = tmp_path / "studies" / "tiny" / "reports"
    (reports / "tiny_files").mkdir(parents=True)
    (reports / "tiny_files" / "fig3.png").write_bytes(b"png")

    def killed(*args):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(study, "swap_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        study.publish(tmp_path, reports.parent, "tiny", tmp_path / "images")
    assert not (tmp_path / "docs" / "results").exists() \
        or not list((tmp_path / "docs" / "results").iterdir())
