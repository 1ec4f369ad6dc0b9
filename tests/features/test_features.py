"""Stage ``features``: HOG -> PCA fit on train only, and the baseline run in MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from helpers import REPO_ROOT as REPO
from leukemia_cnn.config import load_config, updated
from leukemia_cnn.errors import ConfigError, DataError
from leukemia_cnn.features import features

SIZE = 48
COUNTS = {"train": 48, "val": 16, "test": 16}


def pattern_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes HOG tells apart: horizontal, vertical, diagonal stripes and blobs."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    labels = np.arange(n) % 4
    images = np.empty((n, SIZE, SIZE, 1), dtype=np.float32)
    for i, label in enumerate(labels):
        period, phase = rng.uniform(6, 10), rng.uniform(0, 2 * np.pi)
        wave = [rows, cols, rows + cols, np.hypot(rows - SIZE / 2, cols - SIZE / 2)][label]
        image = 0.5 + 0.4 * np.sin(2 * np.pi * wave / period + phase)
        images[i, ..., 0] = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
    return images, labels.astype(np.int64)


def write_preprocessed(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What the preprocess stage writes: <preprocessed_dir>/{split}.npz with x, y, path."""
    out = root / "data" / "preprocessed"
    out.mkdir(parents=True)
    data = {}
    for seed, (name, n) in enumerate(COUNTS.items()):
        x, y = pattern_images(n, seed)
        np.savez(out / f"{name}.npz", x=x, y=y,
                 path=np.array([f"c{label}/{name}-{i}.png" for i, label in enumerate(y)]))
        data[name] = (x, y)
    return data


@pytest.fixture(scope="module")
def cfg():
    return load_config(["features.pca.n_components=12"], root=REPO)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # One store for the module: creating an MLflow sqlite schema takes seconds.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture()
def tracking(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    yield store
    mlflow.set_tracking_uri(None)


def hog_of(x: np.ndarray, cfg, n_jobs: int = 1) -> np.ndarray:
    hog = cfg.features.hog
    return features.hog_features(x, hog.orientations, tuple(hog.pixels_per_cell),
                                 tuple(hog.cells_per_block), hog.block_norm, n_jobs=n_jobs)


def test_run_writes_features_baseline_and_mlflow_run(tmp_path, cfg, tracking):
    data = write_preprocessed(tmp_path)

    result = features.run(cfg, tmp_path)

    out = tmp_path / "data" / "features"
    for name, (x, y) in data.items():
        with np.load(out / f"{name}.npz") as saved:
            assert saved["x"].shape == (len(x), 12) and saved["x"].dtype == np.float32
            assert saved["y"].dtype == np.int64 and saved["y"].tolist() == y.tolist()
    hog_dim = 5 * 5 * 2 * 2 * 9  # 48 px / 8 px cells = 6 cells, 5 blocks of 2x2 per side
    pca = joblib.load(out / "pca.joblib")
    assert pca.components_.shape == (12, hog_dim)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["hog_length"] == hog_dim and meta["n_components"] == 12
    assert meta["explained_variance_ratio_sum"] == pytest.approx(
        pca.explained_variance_ratio_.sum())

    report = json.loads((tmp_path / "reports" / "baseline.json").read_text())
    assert set(report) == {"val_accuracy", "test_accuracy", "val_f1_macro", "test_f1_macro",
                           "hog_dim", "pca_explained_variance", "feature_seconds"}
    assert report["hog_dim"] == hog_dim and report["feature_seconds"] > 0
    # Stripes of four orientations are what HOG is made for.
    assert report["val_accuracy"] >= 0.75 and report["test_f1_macro"] >= 0.75

    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment_name)
    [run] = [r for r in client.search_runs([experiment.experiment_id])
             if r.info.run_id == result["mlflow_run_id"]]
    # its own name (data and seed), tags, description and datasets; not the CNN's overrides
    assert run.info.run_name == f"baseline-s{cfg.seed}-synthetic"
    assert run.data.tags["mlflow.note.content"].startswith("Baseline (HOG + PCA")
    assert "train." not in run.data.tags.get("hydra_overrides", "")
    assert not [k for k in run.data.params if k.startswith(("train.", "model.", "mlflow."))]
    assert {i.dataset.name.rsplit("-", 1)[1] for i in run.inputs.dataset_inputs} \
        == {"train", "val", "test"}
    assert run.data.tags["model_family"] == "baseline"
    assert run.data.metrics["val_accuracy"] == pytest.approx(report["val_accuracy"])
    assert run.data.params["features.pca.n_components"] == "12"
    assert run.data.params["features.hog.pixels_per_cell"] == "[8, 8]"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"baseline.json", "pca_explained_variance.png"} <= artifacts
    # The logged model goes from HOG vectors to labels.
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/hog-pca-logreg")
    hog_val = hog_of(data["val"][0], cfg)
    assert (model.predict(hog_val) == data["val"][1]).mean() == pytest.approx(
        report["val_accuracy"])


def test_pca_is_fit_on_train_only(tmp_path, cfg, tracking):
    data = write_preprocessed(tmp_path)

    features.run(cfg, tmp_path)

    pca = joblib.load(tmp_path / "data" / "features" / "pca.joblib")
    hogs = {name: hog_of(x, cfg) for name, (x, _) in data.items()}
    np.testing.assert_allclose(pca.mean_, hogs["train"].mean(axis=0), rtol=1e-5, atol=1e-7)
    everything = np.concatenate(list(hogs.values())).mean(axis=0)
    assert not np.allclose(pca.mean_, everything, rtol=1e-5, atol=1e-7)
    with np.load(tmp_path / "data" / "features" / "test.npz") as saved:
        np.testing.assert_allclose(saved["x"], pca.transform(hogs["test"]), rtol=1e-4,
                                   atol=1e-5)


def test_parallel_hog_is_bit_identical_to_serial(cfg):
    x, _ = pattern_images(2 * features.MIN_IMAGES_PER_WORKER, seed=5)

    serial = hog_of(x, cfg, n_jobs=1)
    parallel = hog_of(x, cfg, n_jobs=2)

    assert serial.shape == (len(x), 900)
    assert serial.dtype == parallel.dtype
    assert np.array_equal(serial, parallel)


def test_rgb_images_use_their_luma(cfg):
    gray, _ = pattern_images(4, seed=1)
    rgb = np.repeat(gray, 3, axis=-1)

    np.testing.assert_allclose(hog_of(rgb, cfg), hog_of(gray, cfg), atol=1e-5)


def test_too_many_components_names_the_key(tmp_path, cfg, tracking):
    write_preprocessed(tmp_path)
    greedy = updated(cfg, {"features": {"pca": {"n_components": 60}}})

    with pytest.raises(ConfigError, match=r"features.pca.n_components.*48 train images"):
        features.run(greedy, tmp_path)


def test_missing_preprocessed_data_says_what_to_run(tmp_path, cfg):
    with pytest.raises(DataError, match="dvc repro preprocess"):
        features.run(cfg, tmp_path)


def test_cells_larger_than_the_image_are_a_config_error(cfg):
    x, _ = pattern_images(2, seed=0)
    with pytest.raises(ConfigError, match="features.hog"):
        features.hog_features(x, 9, (32, 32), (2, 2), "L2-Hys")


def test_features_of_splits_are_the_same_for_any_number_of_workers(cfg):
    x, _ = pattern_images(2 * features.MIN_IMAGES_PER_WORKER + 30, seed=9)
    images = {"train": x[:210], "val": x[210:], "test": x[:0]}

    serial = features.features_of_splits(images, cfg.features, n_jobs=1)
    parallel = features.features_of_splits(images, cfg.features, n_jobs=2)

    for name, part in images.items():
        assert np.array_equal(parallel.hogs[name], hog_of(part, cfg, n_jobs=1)), name
        assert np.array_equal(parallel.hogs[name], serial.hogs[name]), name
        assert np.array_equal(parallel.reduced[name], serial.reduced[name]), name
    assert list(parallel.reduced) == ["train", "val", "test"]
    assert parallel.hogs["test"].shape == (0, 900) and parallel.reduced["test"].shape == (0, 12)
    assert parallel.reduced["val"].dtype == np.float32
    np.testing.assert_allclose(parallel.pca.mean_, serial.hogs["train"].mean(axis=0), rtol=1e-5)
    assert set(parallel.seconds) == {"hog_train", "pca_fit", "total"}


def test_randomized_pca_is_seeded_and_close_to_the_exact_one(cfg):
    x, _ = pattern_images(120, seed=4)
    hog = hog_of(x, cfg)

    first = features.fit_pca(hog, 12, svd_solver="randomized", random_state=0)
    again = features.fit_pca(hog, 12, svd_solver="randomized", random_state=0)
    exact = features.fit_pca(hog, 12, svd_solver="full")

    assert np.array_equal(first.transform(hog), again.transform(hog))
    assert first.explained_variance_ratio_.sum() == pytest.approx(
        exact.explained_variance_ratio_.sum(), rel=1e-3)
