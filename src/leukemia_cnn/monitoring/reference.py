"""The reference side of ``leukemia-cnn drift``: the images the model was trained on.

The input statistics are measured again on the train images the features stage read
(``<features_dir>/train.npz``) in ``paths.raw_dir``, which :func:`check_unchanged` first
compares with the sha256 the split table records; the HOG + PCA reference is ``val.npz``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np

from leukemia_cnn.config_schema import Config
from leukemia_cnn.console import terminal_safe
from leukemia_cnn.data.preprocess import n_workers, read_split_table
from leukemia_cnn.errors import DataError
from leukemia_cnn.features.features import hog_features
from leukemia_cnn.features.imagestats import describe_files
from leukemia_cnn.fileio import file_sha256

# How many changed files a refusal names.
NAMED = 3


@dataclass
class Reference:
    """The training side: input statistics of train images, and the val PCA features."""

    stats: dict[str, np.ndarray]
    pca_features: np.ndarray
    pca: object
    n_measured: int
    notes: list[str] = field(default_factory=list)


def check_unchanged(cfg: Config, root: Path, listed: list[str]) -> list[str]:
    """Refuse (DataError) when ``data/raw`` or the split table changed since the features
    stage read the train images ``listed``; return notes (e.g. no split table to check with).
    """
    table_path = root / cfg.paths.splits
    if not table_path.is_file():
        return [f"no split table ({cfg.paths.splits}), so whether the train images in "
                f"{cfg.paths.raw_dir} changed since the features stage ran was not checked"]
    table = read_split_table(table_path, list(cfg.data.classes))
    train = table[table["split"] == "train"]
    fix = ("drift compares new images with the images the model was trained on: restore them "
           f"(`dvc checkout {cfg.paths.raw_dir}`, or `git checkout` + `dvc checkout` of the "
           "commit you trained), or run `dvc repro` to train on the current data")
    if set(train["path"]) != set(listed):
        raise DataError(f"{cfg.paths.splits} lists other train images than the features stage "
                        f"read ({len(train)} against {len(listed)}): the split was rerun on "
                        f"other data since; {fix}")
    recorded = dict(zip(train["path"], train["sha256"].fillna("").astype(str), strict=True))
    changed = []
    for path in listed:
        file = root / cfg.paths.raw_dir / path
        if not file.is_file():
            changed.append(f"{path} (missing)")
        elif recorded[path] and file_sha256(file) != recorded[path]:
            changed.append(f"{path} (edited)")
    if changed:
        named = ", ".join(terminal_safe(item) for item in changed[:NAMED])
        more = f" and {len(changed) - NAMED} more" if len(changed) > NAMED else ""
        raise DataError(f"{cfg.paths.raw_dir} changed since the features stage ran: "
                        f"{len(changed)} of {len(listed)} train images differ from "
                        f"{cfg.paths.splits} ({named}{more}); {fix}")
    return []


def load_reference(cfg: Config, root: Path) -> Reference:
    """The reference side: the input statistics of the train images in ``paths.raw_dir`` (a
    seeded sample of ``drift.reference_images`` of them when set), after checking they are
    the images the features stage read (:func:`check_unchanged`), and the val split's PCA
    features with the fitted PCA of the features stage.

    The PCA features come from val, not train: the PCA fits the train images' own noise, so
    against train even the test split would drift (docs/results/drift.md).
    """
    features_dir = root / cfg.paths.features_dir
    train_file, val_file = features_dir / "train.npz", features_dir / "val.npz"
    pca_file = features_dir / "pca.joblib"
    for path in (train_file, val_file, pca_file):
        if not path.is_file():
            raise DataError(f"{path} not found: the drift check compares with the training "
                            "features; run `dvc repro features` first")
    try:
        with np.load(train_file, allow_pickle=False) as data:
            listed = [str(p) for p in data["path"]]
        with np.load(val_file, allow_pickle=False) as data:
            pca_features = data["x"]
        pca = joblib.load(pca_file)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"{features_dir} is unreadable ({exc}); rerun `dvc repro features`"
                        ) from exc
    notes = check_unchanged(cfg, root, listed)
    limit = cfg.drift.reference_images
    if limit is not None and len(listed) > limit:
        chosen = np.random.default_rng(cfg.seed).choice(len(listed), limit, replace=False)
        listed = [listed[i] for i in sorted(chosen)]
    raw_dir = root / cfg.paths.raw_dir
    described = describe_files([raw_dir / p for p in listed], cfg.preprocess.image_size,
                               cfg.preprocess.color_mode, n_workers(), "train images",
                               keep_inputs=False)
    if not described.paths:
        example = next(iter(described.skipped.values()), "no image listed")
        raise DataError(f"none of the {len(listed)} train images listed in {train_file} is "
                        f"readable under {raw_dir} (e.g. {example}); restore them (`dvc "
                        "checkout`, `dvc pull`) or rerun `dvc repro`")
    if described.skipped:
        notes.append(f"{len(described.skipped)} of {len(listed)} train images are unreadable "
                     f"under {cfg.paths.raw_dir} and were left out of the reference")
    return Reference(stats=described.stats, pca_features=pca_features, pca=pca,
                     n_measured=len(described.paths), notes=notes)


def new_pca_features(cfg: Config, model_inputs: np.ndarray, pca) -> np.ndarray:
    """The new images' HOG descriptors (``features.hog``) reduced by the train PCA."""
    hog = cfg.features.hog
    descriptors = hog_features(model_inputs, hog.orientations, hog.pixels_per_cell,
                               hog.cells_per_block, hog.block_norm, n_jobs=cfg.features.n_jobs)
    expected = getattr(pca, "n_features_in_", descriptors.shape[1])
    if descriptors.shape[1] != expected:
        raise DataError(f"{cfg.paths.features_dir}/pca.joblib was fitted on HOG descriptors of "
                        f"length {expected}, but `preprocess` and `features.hog` give "
                        f"{descriptors.shape[1]}; rerun `dvc repro features`")
    return pca.transform(descriptors.astype(np.float64)).astype(np.float32)
