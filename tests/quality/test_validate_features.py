"""Stage validate_features: good features stay green with the explained variance recorded;
wrong shapes, NaN values, a wrong PCA count or too little variance turn it red naming the
file and the expectation; the feature files are never modified."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA

from helpers.datasets import tree_digest
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import save_npz
from leukemia_cnn.quality import validate_features

N_COMPONENTS = 8
HOG_LENGTH = 30
COUNTS = {"train": 40, "val": 8, "test": 8}


@pytest.fixture
def cfg(make_cfg):
    return make_cfg(f"features.pca.n_components={N_COMPONENTS}")


def write_project(cfg, root, n_components: int = N_COMPONENTS, nan_at: tuple[str, int] | None = None,
                  drop_from: str | None = None) -> dict[str, list[str]]:
    """A split table, <split>.npz feature files (PCA of random HOG-like vectors), pca.joblib."""
    rng = np.random.default_rng(0)
    classes = list(cfg.data.classes)
    rows, paths = [], {}
    for name, count in COUNTS.items():
        paths[name] = [f"{classes[i % 4]}/img-{name}-{i:03d}.jpg" for i in range(count)]
        rows += [{"path": p, "class": classes[i % 4], "label": i % 4, "sha256": f"{name}{i}",
                  "split": name} for i, p in enumerate(paths[name])]
    (root / "data").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / cfg.paths.splits, index=False)
    hog = {name: rng.random((count, HOG_LENGTH)) for name, count in COUNTS.items()}
    pca = PCA(n_components=n_components, svd_solver="full").fit(hog["train"])
    features_dir = root / cfg.paths.features_dir
    for name in COUNTS:
        x = pca.transform(hog[name]).astype(np.float32)
        kept = paths[name]
        if nan_at and nan_at[0] == name:
            x[nan_at[1], 2] = np.nan
        if drop_from == name:
            x, kept = x[:-1], kept[:-1]
        save_npz(features_dir / f"{name}.npz", x=x, y=np.zeros(len(x), dtype=np.int64),
                 path=np.array(kept))
    joblib.dump(pca, features_dir / "pca.joblib")
    return paths


def fail(cfg, root) -> tuple[str, dict, str]:
    before = tree_digest(root / "data")
    with pytest.raises(DataError) as info:
        validate_features.run(cfg, root)
    assert tree_digest(root / "data") == before
    report = json.loads((root / "reports" / "validate_features.json").read_text())
    markdown = (root / "reports" / "validate_features.md").read_text()
    assert report["success"] is False and markdown.startswith("# Feature validation: FAILED")
    return str(info.value), report, markdown


def test_good_features_pass_and_record_explained_variance(cfg, tmp_path):
    write_project(cfg, tmp_path)
    before = tree_digest(tmp_path / "data")

    summary = validate_features.run(cfg, tmp_path)

    assert summary["success"] is True and summary["counts"] == COUNTS
    assert tree_digest(tmp_path / "data") == before
    report = json.loads((tmp_path / "reports" / "validate_features.json").read_text())
    ratios = joblib.load(tmp_path / "data" / "features" / "pca.joblib").explained_variance_ratio_
    assert report["explained_variance"] == pytest.approx(ratios.sum(), abs=1e-6)
    assert len(report["explained_variance_ratio"]) == N_COMPONENTS
    assert report["n_columns"] == [N_COMPONENTS] and report["hog_length"] == HOG_LENGTH
    markdown = (tmp_path / "reports" / "validate_features.md").read_text()
    assert markdown.startswith("# Feature validation: PASSED")
    assert f"{N_COMPONENTS} components of {HOG_LENGTH} HOG features keep {ratios.sum():.1%}" in markdown


def test_nan_features_name_the_image(cfg, tmp_path):
    paths = write_project(cfg, tmp_path, nan_at=("val", 3))

    message, report, markdown = fail(cfg, tmp_path)

    assert "every value is finite (no NaN or infinity) (expect_column_values_to_be_in_set)" in message
    assert f"{paths['val'][3]}: finite=False" in message
    assert report["n_nonfinite_vectors"] == 1
    assert f"`{paths['val'][3]}: finite=False`" in markdown


def test_wrong_pca_count_fails_columns_and_components(cfg, tmp_path):
    write_project(cfg, tmp_path, n_components=N_COMPONENTS - 2)

    message, report, _ = fail(cfg, tmp_path)

    assert f"every vector has {N_COMPONENTS} columns (features.pca.n_components)" in message
    assert f"the PCA has {N_COMPONENTS} components" in message
    assert f"data/features/pca.joblib: n_components={N_COMPONENTS - 2}" in message
    assert report["n_components"] == N_COMPONENTS - 2


def test_a_missing_vector_is_a_wrong_shape(cfg, tmp_path):
    paths = write_project(cfg, tmp_path, drop_from="test")

    message, _, _ = fail(cfg, tmp_path)

    assert f"split test has one feature vector per image of the split table ({COUNTS['test']})" in message
    assert f"split test: {COUNTS['test'] - 1} vectors" in message
    assert paths["test"][-1] not in message  # the others pass


def test_too_little_explained_variance_fails_when_a_minimum_is_set(make_cfg, tmp_path):
    strict = make_cfg(f"features.pca.n_components={N_COMPONENTS}",
                      "validation.min_explained_variance=0.99")
    write_project(strict, tmp_path)

    message, report, _ = fail(strict, tmp_path)

    assert "the PCA keeps at least 99% of the train HOG variance" in message
    assert report["explained_variance"] < 0.99


def test_missing_features_are_a_clear_error(cfg, tmp_path):
    write_project(cfg, tmp_path)
    (tmp_path / "data" / "features" / "val.npz").unlink()
    with pytest.raises(DataError, match=r"val\.npz not found; rerun `dvc repro features`"):
        validate_features.run(cfg, tmp_path)
