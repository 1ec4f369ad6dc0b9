"""Shared fixtures: real configs composed from conf/, a private MLflow store per test, and
small learnable image sets the tests make themselves."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from helpers import REPO_ROOT, TINY_OVERRIDES, sh, tiny_project, write_preprocessed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture
def make_cfg():
    """Compose the real conf/ with Hydra overrides (and validate it)."""
    from leukemia_cnn.config import compose, validate_config

    def factory(*overrides: str):
        cfg = compose(list(overrides), root=REPO_ROOT)
        validate_config(cfg)
        return cfg

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
    from leukemia_cnn.config import compose
    from leukemia_cnn.modeling import evaluate, train

    root = tmp_path_factory.mktemp("trained")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = compose(TINY_OVERRIDES, root=REPO_ROOT)
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


