"""Shared fixtures: real configs composed from conf/, a private MLflow store per test, and
small learnable image sets the tests make themselves."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from datasets import class_tree, image_bytes, write_file
from leukemia_cnn import devtools

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

REPO_ROOT = Path(__file__).resolve().parents[1]

# A configuration small enough to train in seconds on 2 cores.
TINY_OVERRIDES = [
    "train.epochs=8",
    "train.batch_size=16",
    "train.learning_rate=0.003",
    "train.verbose=0",
    "model.filters=[8,8,8]",
    "model.kernel_sizes=[3,3,3]",
    "model.dense_units=32",
    "preprocess.image_size=32",
    "features.pca.n_components=8",
]


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


def blob_images(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Grayscale float32 images in [0, 1] whose dark disc grows with the class label."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((len(labels), size, size, 1), dtype=np.float32)
    for index, label in enumerate(labels):
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        radius = size * (0.12 + 0.07 * label) * rng.uniform(0.9, 1.1)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < radius**2
        image = 0.85 - 0.55 * disc + rng.normal(0, 0.05, (size, size))
        images[index, ..., 0] = np.clip(image, 0, 1)
    return images


def write_preprocessed(root: Path, cfg, per_class: dict[str, int] | None = None,
                       seed: int = 0) -> Path:
    """Write data/preprocessed/{train,val,test}.npz in the preprocess stage's format."""
    classes = list(cfg.data.classes)
    n_classes = len(classes)
    per_class = per_class or {"train": 24, "val": 8, "test": 8}
    directory = root / cfg.paths.preprocessed_dir
    directory.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(per_class.items()):
        labels = np.repeat(np.arange(n_classes), count).astype(np.int64)
        x = blob_images(labels, int(cfg.preprocess.image_size), seed=seed + offset)
        paths = np.array([f"{classes[y]}/img-{split}-{i}.jpg"
                          for i, y in enumerate(labels)])
        np.savez(directory / f"{split}.npz", x=x, y=labels, path=paths)
    return directory


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory):
    """A tiny project trained and evaluated once per session (train + evaluate stages)."""
    from leukemia_cnn import evaluate, train
    from leukemia_cnn.config import compose

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


BIN = Path(sys.executable).parent
# Written into the copy's conf/config.yaml (after `_self_`, so they win): both `dvc repro`
# (via params.yaml) and `dvc exp run` (which re-composes conf/) then run the tiny setup.
TINY_CONF = {
    "data": {"synth": {"scale": 0.1}},
    "preprocess": {"image_size": 64},
    "features": {"pca": {"n_components": 16}},
    "model": {"filters": [16, 32, 32], "kernel_sizes": [5, 3, 3], "dense_units": 64},
    "train": {"epochs": 15, "batch_size": 16, "learning_rate": 0.001, "verbose": 0},
}


def sh(*args: str, cwd: Path, check: bool = True, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env.update(env_extra or {})
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def copy_project(dest: Path) -> Path:
    """The working tree's project files (tracked or not, minus ignored/generated ones)."""
    return devtools.copy_project(REPO_ROOT, dest)


def tiny_project(dest: Path, train: dict | None = None) -> Path:
    """The tiny project (TINY_CONF, ``train`` keys on top) as a git repository with its
    synthetic data, ready for ``dvc repro``."""
    repo = copy_project(dest)
    config = yaml.safe_load((repo / "conf" / "config.yaml").read_text())
    config.update(TINY_CONF)
    config["train"] = {**TINY_CONF["train"], **(train or {})}
    (repo / "conf" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for args in (("git", "init", "-q"), ("git", "config", "user.email", "ci@example.com"),
                 ("git", "config", "user.name", "ci"), ("leukemia-cnn", "params"),
                 ("leukemia-cnn", "data", "synth"), ("git", "add", "-A"),
                 ("git", "commit", "-qm", "tiny project")):
        sh(*args, cwd=repo)
    return repo


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    repo = tiny_project(tmp_path_factory.mktemp("e2e") / "repo")
    repro = sh("dvc", "repro", cwd=repo)
    return {"repo": repo, "repro": repro}




GUARD_IMAGE = "inbox/cell.jpg"  # predict's input in the guard project, untracked
GUARD_SOURCE = "inbox/tree"  # data get's source folder there, untracked


def register_tiny_model(root: Path) -> None:
    """An untrained two-layer CNN logged as the project's pyfunc model and made champion in
    ``root/mlflow.db``: enough for `predict` to run (its answers are not the point)."""
    import keras
    import mlflow

    from leukemia_cnn.config import load_params
    from leukemia_cnn.model import build_model
    from leukemia_cnn.pyfunc import log_model
    from leukemia_cnn.tracking import setup_mlflow

    cfg = load_params(root / "params.yaml")
    setup_mlflow(cfg, root)
    model = build_model((32, 32, 1), 4, filters=[4], kernel_sizes=[3], dense_units=8)
    with tempfile.TemporaryDirectory() as work, mlflow.start_run():
        keras.saving.save_model(model, Path(work) / "model.keras")
        info = log_model(Path(work) / "model.keras", list(cfg.data.classes), 32, "grayscale",
                         Path(work))
    name = str(cfg.mlflow.registered_model_name)
    version = mlflow.register_model(info.model_uri, name).version
    mlflow.MlflowClient().set_registered_model_alias(name, str(cfg.mlflow.champion_alias),
                                                     version)


def git(*args: str, cwd: Path) -> None:
    """``git ARGS`` in ``cwd``, quietly; fails the test on an error."""
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


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
