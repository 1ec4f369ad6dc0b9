"""Shared fixtures: real configs composed from conf/, a private MLflow store per test, and
small learnable image sets the tests make themselves."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from helpers import REPO_ROOT, TINY_OVERRIDES, copy_project, sh, tiny_project, write_preprocessed
from helpers.datasets import class_tree, image_bytes, write_file
from helpers.guard import GUARD_IMAGE, GUARD_SOURCE, git, register_tiny_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture
def make_cfg():
    """Compose the real conf/ with Hydra overrides: the typed config a stage takes."""
    from leukemia_cnn.config import load_config

    def factory(*overrides: str):
        return load_config(list(overrides), root=REPO_ROOT)

    return factory


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A private embedded MLflow store (sqlite + artifact folder) for one test."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory):
    """A tiny project trained and evaluated once per session (train + evaluate stages)."""
    from leukemia_cnn.config import load_config
    from leukemia_cnn.modeling import evaluate, train

    root = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = load_config(TINY_OVERRIDES, root=REPO_ROOT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        write_preprocessed(root, cfg)
        trained = train.run(cfg, root)
        evaluated = evaluate.run(cfg, root)
    return SimpleNamespace(root=root, cfg=cfg, uri=uri, train=trained, evaluate=evaluated)


@pytest.fixture
def trained(trained_project, monkeypatch):
    """The session's trained project, with MLflow pointed at its store."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained_project.uri)
    mlflow.set_tracking_uri(trained_project.uri)
    return trained_project


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("e2e") / "repo")
    repro = sh("dvc", "repro", cwd=repo)
    return {"repo": repo, "repro": repro}


@pytest.fixture(scope="session")
def guard_project(tmp_path_factory):
    """A scratch project to run commands in with hostile paths; returns its root (see
    tests/test_fileio.py). Commands run with the root as cwd."""
    root = copy_project(tmp_path_factory.mktemp("guard") / "project")
    for name in ("data.dvc", "data/.gitignore"):
        write_file(root / name, (REPO_ROOT / name).read_bytes())
    git("init", "-q", cwd=root)
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A", cwd=root)
    git("-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "scratch",
        cwd=root)
    class_tree(root / "data" / "raw", per_class=2)
    write_file(root / "reports" / "validate_raw.md", b"# an earlier stage report (cache: false)\n")
    write_file(root / "notes" / "todo.txt", b"the user's own folder\n")
    write_file(root / "notes.txt", b"the user's own file\n")
    write_file(root / GUARD_IMAGE, image_bytes(1, size=(48, 48)))
    class_tree(root / GUARD_SOURCE, per_class=1, seed=3)
    (root / "link-conf").symlink_to("conf")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(root)
        register_tiny_model(root)
    assert (root / "mlflow.db").is_file()
    return root
