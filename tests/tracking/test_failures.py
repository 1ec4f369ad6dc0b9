"""Issue 31, item 2 (stages and readers): train, evaluate and features end on a full disk with
one line naming the full path; the MLflow run ends FAILED and what it half-logged is removed.
Commands that only read the store (predict, explain) never fail for it: when closing an
orphaned run cannot be written, they say so in one line and classify.

The real full disk is a small tmpfs (skipped where none can be mounted); the seam tests make
the same writes fail everywhere."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import REPO_ROOT, TINY_OVERRIDES, write_preprocessed
from helpers.datasets import image_bytes, tree_digest, write_file
from helpers.disks import fill, small_disk
from helpers.guard import one_line_error, register_tiny_model, run


def enospc_copying(destination: Path) -> OSError:
    """What shutil.copy raises when the destination's disk is full (source, destination)."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/source", None, str(destination))


def project_with_data(root: Path, monkeypatch) -> Path:
    """Preprocessed tiny splits and their params.yaml in ``root`` (the current folder)."""
    from leukemia_cnn.config import compose, write_params

    cfg = compose(TINY_OVERRIDES, root=REPO_ROOT)
    write_preprocessed(root, cfg)
    write_params(cfg, root / "params.yaml")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


def store(root: Path):
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def artifact_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "mlruns").rglob("*")
                  if p.is_file()) if (root / "mlruns").exists() else []


def test_train_on_a_full_disk_is_one_line_and_leaves_no_half_logged_model(tmp_path, monkeypatch,
                                                                           capfd):
    """The seam: the model's files fill the disk while MLflow copies them into the store."""
    from leukemia_cnn.modeling import train

    root = project_with_data(tmp_path, monkeypatch)
    real_log = train.log_pyfunc_model

    def half_logged(*args, **kwargs):
        from leukemia_cnn.tracking.runs import log_artifact

        log_artifact(root / "params.yaml", "leukemia-cnn")  # part of the model went in
        raise enospc_copying(root / "mlruns" / "models" / "m-1" / "artifacts" / "cnn.keras")

    monkeypatch.setattr(train, "log_pyfunc_model", half_logged)
    code, err = run(["train"], capfd)
    monkeypatch.setattr(train, "log_pyfunc_model", real_log)

    assert one_line_error(code, err, "train")
    assert f"no space left on device writing {root}/mlruns/models/m-1/artifacts/cnn.keras" in err
    assert "half-logged artifact(s) removed" in err and "the MLflow run ended FAILED" in err
    (failed,) = store(root).search_runs(["1"])
    assert failed.info.status == "FAILED"
    assert artifact_files(root) == []
    assert not (root / "models" / "cnn.keras").exists()
    assert not list((root / "models").glob("*.tmp-*"))


def test_evaluate_on_a_full_disk_removes_only_what_it_logged(tmp_path, monkeypatch, capfd):
    from leukemia_cnn.modeling import evaluate

    root = project_with_data(tmp_path, monkeypatch)
    assert run(["train"], capfd)[0] == 0
    trained = artifact_files(root)

    def full_store(metrics, collapsed, reports_dir):
        from leukemia_cnn.tracking.runs import log_artifact

        log_artifact(reports_dir / "metrics.json", "evaluation")
        raise RuntimeError("(sqlite3.OperationalError) database or disk is full")

    monkeypatch.setattr(evaluate, "log_evaluation", full_store)
    code, err = run(["evaluate"], capfd)

    assert one_line_error(code, err, "evaluate")
    assert f"no space left on device writing {root}/mlflow.db" in err
    assert artifact_files(root) == trained  # the training's model and files stay


def test_features_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capfd):
    from leukemia_cnn.tracking import runs

    root = project_with_data(tmp_path, monkeypatch)

    def full(*args, **kwargs):
        runs.log_artifact(root / "params.yaml", "hog-pca-logreg")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no file name: a write()

    monkeypatch.setattr(runs, "log_sklearn_model", full)
    code, err = run(["features"], capfd)

    assert one_line_error(code, err, "features")
    assert f"no space left on device writing {root}" in err
    (failed,) = store(root).search_runs(["1"])
    assert failed.info.status == "FAILED" and artifact_files(root) == []


@pytest.mark.slow
def test_train_on_a_real_full_disk_keeps_the_last_model_and_the_store_clean(tmp_path,
                                                                            monkeypatch, capfd):
    """The whole project on an 8 MiB tmpfs, trained once, then filled until a training fails
    (with about 1.5 MB, 900, 600, 300 kB left: where it fails depends on the sizes of the
    model and the store)."""
    with small_disk(tmp_path / "project", 8 * 1024) as root:
        project_with_data(root, monkeypatch)
        assert run(["train"], capfd)[0] == 0
        for leave_kb in (1500, 900, 600, 300):
            models, artifacts = tree_digest(root / "models"), artifact_files(root)
            filler = fill(root, leave_kb=leave_kb)
            code, err = run(["train"], capfd)
            filler.unlink()
            if code != 0:
                break
        assert one_line_error(code, err, "train")
        assert f"no space left on device writing {root}/" in err
        assert tree_digest(root / "models") == models  # the last good model
        assert artifact_files(root) == artifacts  # nothing half-logged stays
        statuses = {r.info.status for r in store(root).search_runs(["1"])}
        assert statuses <= {"FINISHED", "FAILED", "RUNNING"}
        # a run the full store could not close is closed by the next command
        assert run(["features"], capfd)[0] == 0
        assert "RUNNING" not in {r.info.status for r in store(root).search_runs(["1"])}


def orphaned_project(root: Path, monkeypatch) -> tuple[Path, str]:
    """A project whose store holds a champion and a run left RUNNING by a dead process."""
    from leukemia_cnn.config import compose, write_params
    from leukemia_cnn.tracking.orphans import PID_START_TAG, PID_TAG, process_tags

    shutil.copytree(REPO_ROOT / "conf", root / "conf")
    write_params(compose([], root=REPO_ROOT), root / "params.yaml")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    register_tiny_model(root)
    client = store(root)
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = client.create_run("1", tags={**process_tags(), PID_TAG: str(dead.pid),
                                          PID_START_TAG: "1.00"})
    write_file(root / "cell.jpg", image_bytes(3, size=(64, 64)))
    return root, orphan.info.run_id


def assert_classified_and_said(code: int, capfd_out: str, err: str) -> None:
    assert code == 0, err
    assert "Traceback" not in err and "OperationalError" not in capfd_out
    said = [line for line in err.splitlines() if "could not close orphaned runs" in line]
    assert len(said) == 1 and "stay RUNNING until a command that can write" in said[0]


def test_predict_explain_and_card_go_on_when_the_store_cannot_be_written(tmp_path, monkeypatch,
                                                                    capfd):
    """The seam: every write to the store fails as on a full disk."""
    import mlflow

    root, orphan = orphaned_project(tmp_path / "project", monkeypatch)

    def full(*args, **kwargs):
        raise RuntimeError("(sqlite3.OperationalError) database or disk is full")

    monkeypatch.setattr(mlflow.MlflowClient, "set_tag", full)
    monkeypatch.setattr(mlflow.MlflowClient, "set_terminated", full)
    from leukemia_cnn.cli.main import main as cli_main

    for argv in (["predict", "cell.jpg"], ["explain", "cell.jpg", "--output", "heat"], ["card"]):
        code = cli_main(argv)
        captured = capfd.readouterr()
        assert_classified_and_said(code, captured.out, captured.err)
    assert store(root).get_run(orphan).info.status == "RUNNING"


def test_predict_classifies_on_a_real_full_disk_with_an_orphaned_run(tmp_path, monkeypatch,
                                                                     capfd):
    with small_disk(tmp_path / "project", 32 * 1024) as root:
        root, orphan = orphaned_project(root, monkeypatch)
        filler = fill(root, leave_kb=0)
        from leukemia_cnn.cli.main import main as cli_main

        code = cli_main(["predict", "cell.jpg"])
        captured = capfd.readouterr()
        filler.unlink()

        assert_classified_and_said(code, captured.out, captured.err)
        assert "cell.jpg" in captured.out  # its row
        assert store(root).get_run(orphan).info.status == "RUNNING"
