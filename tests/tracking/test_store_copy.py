"""A copied project must not log into the original's artifact store (mlruns/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import mlflow
import pytest

from helpers import REPO_ROOT
from leukemia_cnn.config import load_config
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.tracking.store import setup_mlflow


def test_a_copied_project_refuses_the_originals_artifact_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(root=REPO_ROOT)
    original = tmp_path / "original"
    original.mkdir()
    setup_mlflow(cfg, original)
    with mlflow.start_run():
        mlflow.log_text("the original's", "note.txt")
    before = sorted(p.relative_to(original) for p in (original / "mlruns").rglob("*"))

    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set by MLflow: a new command
    with pytest.raises(ConfigError, match="copied from another project") as refused:
        setup_mlflow(cfg, copy)
    assert str(original / "mlruns") in str(refused.value)
    assert sorted(p.relative_to(original) for p in (original / "mlruns").rglob("*")) == before

    # The advice works: with mlflow.db and mlruns/ moved aside, the copy (a new command, as a
    # user runs it) gets its own store.
    (copy / "mlflow.db").rename(copy / "mlflow.db.original")
    shutil.move(copy / "mlruns", copy / "mlruns.original")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    subprocess.run([sys.executable, "-c",
                    "import mlflow; from pathlib import Path; "
                    "from leukemia_cnn.config import load_config; "
                    "from leukemia_cnn.tracking.store import setup_mlflow; "
                    f"setup_mlflow(load_config(root=Path({str(REPO_ROOT)!r})), Path({str(copy)!r})); "
                    "run = mlflow.start_run(); mlflow.log_text('the copy', 'note.txt'); "
                    "mlflow.end_run()"], check=True, env=env, capture_output=True)
    assert list((copy / "mlruns").rglob("note.txt"))
    assert sorted(p.relative_to(original) for p in (original / "mlruns").rglob("*")) == before
