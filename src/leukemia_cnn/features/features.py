"""Stage ``features``: HOG descriptors reduced by PCA (paper Sec. 2.1), plus a classical baseline.

HOG runs on the ITU-R 601 luma of RGB images (:func:`to_gray`), so its length does not depend
on the colour mode. PCA is fit on the train split only, so no statistic of the evaluation
images leaks into the features. A standardised logistic regression on the PCA features is the
classical baseline the CNN has to beat (:mod:`.baseline_run` logs it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from leukemia_cnn.config import SPLITS, hog_feature_length
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.preprocess import load_split
from leukemia_cnn.errors import ConfigError, DataError
from leukemia_cnn.features.hogworker import hog_block
from leukemia_cnn.fileio import atomic_write, save_npz, write_json

# Fewer images than this per worker run in this process (see hog_features).
MIN_IMAGES_PER_WORKER = 100
# ITU-R 601 luma, the weights of PIL's convert("L").
LUMA = np.array([0.299, 0.587, 0.114])


def to_gray(images: np.ndarray) -> np.ndarray:
    """Images (n, H, W, C) with C in {1, 3} -> grayscale (n, H, W), same dtype: the one
    channel, or the ITU-R 601 luma of RGB."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"expected images of shape (n, H, W, 1|3), got {images.shape}; "
                        "rerun `dvc repro preprocess`")
    if images.shape[-1] == 1:
        return images[..., 0]
    return (images @ LUMA.astype(images.dtype)).astype(images.dtype)


def hog_params(image_shape: tuple[int, int], orientations: int,
               pixels_per_cell: tuple[int, int], cells_per_block: tuple[int, int],
               block_norm: str) -> tuple[dict, int]:
    """Keyword arguments of ``skimage.feature.hog`` and the descriptor length for
    ``image_shape`` (H, W); a :class:`ConfigError` when the cells do not fit the image."""
    params = dict(orientations=int(orientations), pixels_per_cell=tuple(pixels_per_cell),
                  cells_per_block=tuple(cells_per_block), block_norm=str(block_norm),
                  feature_vector=True)
    dim = hog_feature_length(tuple(image_shape), params["pixels_per_cell"][0],
                             params["cells_per_block"][0], int(orientations))
    if dim == 0:
        raise ConfigError(f"config key `features.hog` = {params} gives no HOG block for "
                          f"{image_shape[0]}x{image_shape[1]} images; use smaller "
                          "pixels_per_cell/cells_per_block or a larger preprocess.image_size")
    return params, dim


def hog_features(images: np.ndarray, orientations: int = 9,
                 pixels_per_cell: tuple[int, int] = (8, 8),
                 cells_per_block: tuple[int, int] = (2, 2), block_norm: str = "L2-Hys",
                 n_jobs: int = 1) -> np.ndarray:
    """HOG descriptor of every image (scikit-image), computed over ``n_jobs`` worker processes.

    Each image's descriptor is computed independently by the same code, so any ``n_jobs``
    gives bit-identical results.

    Parameters
    ----------
    images : numpy.ndarray
        Preprocessed images (n, H, W, C), C in {1, 3}; RGB is converted to luma first.
    orientations : int
        Orientation bins (``features.hog.orientations``).
    pixels_per_cell, cells_per_block : tuple of int
        Cell and block sizes (``features.hog.*``).
    block_norm : str
        ``features.hog.block_norm`` (``L1``, ``L1-sqrt``, ``L2`` or ``L2-Hys``).
    n_jobs : int, default 1
        Worker processes (``features.n_jobs``); 1 runs in this process, and so does any
        input with fewer than ``MIN_IMAGES_PER_WORKER`` images per worker.

    Returns
    -------
    numpy.ndarray
        Shape (n, hog_dim); float32 for float32 images (skimage keeps the input precision).
    """
    gray = to_gray(images)
    params, dim = hog_params(gray.shape[1:], orientations, pixels_per_cell, cells_per_block,
                             block_norm)
    if len(gray) == 0:
        return np.empty((0, dim), dtype=gray.dtype)
    blocks, _, jobs = _blocks({"train": gray}, [], n_jobs)
    return np.concatenate(list(describe_blocks(blocks, params, jobs)))


def describe_blocks(blocks: list[np.ndarray], params: dict, n_jobs: int):
    """HOG descriptors of each block of grayscale images, yielded in order.

    With ``n_jobs`` > 1 the blocks go to worker processes, all dispatched at once: joblib hands
    each block over as a memory-mapped array instead of pickling thousands of small tasks, the
    workers import only hogworker, and they go on while the caller consumes earlier results.
    """
    if n_jobs == 1:
        return (hog_block(block, params) for block in blocks)
    return joblib.Parallel(n_jobs=n_jobs, return_as="generator", pre_dispatch="all")(
        joblib.delayed(hog_block)(block, params) for block in blocks)


@dataclass
class SplitFeatures:
    """What :func:`features_of_splits` computes: HOG descriptors, the PCA and its output."""

    hogs: dict[str, np.ndarray]
    pca: PCA
    reduced: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)


def features_of_splits(images: dict[str, np.ndarray], fcfg, n_jobs: int = 1) -> SplitFeatures:
    """HOG of every split, PCA fit on the train descriptors, every split reduced by it.

    With ``n_jobs`` > 1 the images go to the worker processes in blocks, the train split's
    first, and this process fits the PCA as soon as the train descriptors are back while the
    workers describe the other splits. Any ``n_jobs`` gives bit-identical output: each
    descriptor comes from the same code, and the PCA fit and transforms always run on one
    BLAS thread (a multi-threaded BLAS may sum in another order).

    Parameters
    ----------
    images : dict of str to numpy.ndarray
        Preprocessed images per split, (n, H, W, C); must have ``train``.
    fcfg : Config
        ``features`` (``hog``, ``pca``).
    n_jobs : int, default 1
        Worker processes (``features.n_jobs``).

    Returns
    -------
    SplitFeatures
        Per split (in the order of ``images``) the HOG descriptors and float32 PCA features;
        the fitted PCA; ``seconds`` of ``hog_train`` (train descriptors back), ``pca_fit``
        and ``total``.
    """
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    gray = _gray_splits(images)
    hog_cfg = fcfg.hog
    params, dim = hog_params(gray["train"].shape[1:], hog_cfg.orientations,
                             hog_cfg.pixels_per_cell, hog_cfg.cells_per_block,
                             hog_cfg.block_norm)
    others = [name for name in images if name != "train" and len(images[name])]
    train_blocks, rest_blocks, jobs = _blocks(gray, others, n_jobs)
    results = describe_blocks(train_blocks + rest_blocks, params, jobs)
    empty = np.empty((0, dim), dtype=gray["train"].dtype)
    hogs = {"train": np.concatenate([next(results) for _ in train_blocks] or [empty])}
    hog_train = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        pca = fit_pca(hogs["train"], fcfg.pca.n_components, fcfg.pca.whiten,
                      fcfg.pca.svd_solver, fcfg.pca.random_state)
        pca_done = time.perf_counter()
        described = np.concatenate(list(results) or [empty])
        ends = np.cumsum([len(images[name]) for name in others])
        hogs.update(zip(others, np.split(described, ends[:-1]) if others else [], strict=True))
        hogs.update({name: empty for name in images if name not in hogs})
        reduced = {name: pca.transform(hogs[name]).astype(np.float32) if len(hogs[name])
                   else np.empty((0, pca.n_components_), dtype=np.float32) for name in images}
    finished = time.perf_counter()
    return SplitFeatures(
        hogs={name: hogs[name] for name in images}, pca=pca, reduced=reduced,
        seconds={"hog_train": hog_train - started, "pca_fit": pca_done - hog_train,
                 "total": finished - started})


def _gray_splits(images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The splits in grayscale, after checking that there is a train split and one shape."""
    if "train" not in images:
        raise DataError("no train split among the preprocessed arrays; rerun "
                        "`dvc repro preprocess`")
    shapes = {x.shape[1:] for x in images.values() if len(x)}
    if len(shapes) > 1:
        raise DataError(f"preprocessed splits differ in image shape: {sorted(shapes)}; "
                        "rerun `dvc repro preprocess`")
    return {name: to_gray(x) for name, x in images.items()}


def _blocks(gray: dict[str, np.ndarray], others: list[str], n_jobs: int):
    """The train images and the other splits' (in ``others`` order) cut into blocks for the
    workers: (train blocks, other blocks, number of workers)."""
    rest = np.concatenate([gray[name] for name in others]) if others else gray["train"][:0]
    # Starting a worker process costs about as much as a few hundred descriptors.
    jobs = max(1, min(int(n_jobs), len(gray["train"]) // MIN_IMAGES_PER_WORKER))
    train_blocks = np.array_split(gray["train"], jobs) if len(gray["train"]) else []
    rest_blocks = np.array_split(rest, max(1, min(jobs, len(rest)))) if len(rest) else []
    return train_blocks, rest_blocks, jobs


def fit_pca(train_hog: np.ndarray, n_components: int, whiten: bool = False,
            svd_solver: str = "randomized", random_state: int = 0) -> PCA:
    """Fit PCA on the train HOG descriptors only (float64).

    Parameters
    ----------
    train_hog : numpy.ndarray
        (n_train, hog_dim) descriptors of the train split.
    n_components : int
        ``features.pca.n_components``; at most ``min(n_train, hog_dim)``.
    whiten : bool
        ``features.pca.whiten``.
    svd_solver : {"randomized", "full"}
        ``features.pca.svd_solver`` (conf/features/default.yaml says why randomized).
    random_state : int
        ``features.pca.random_state``: the seed of the randomized solver.
    """
    n_train, dim = train_hog.shape
    if n_components > min(n_train, dim):
        raise ConfigError(f"config key `features.pca.n_components` = {n_components} is too "
                          f"large for {n_train} train images with {dim} HOG features; allowed: "
                          f"at most {min(n_train, dim)}; lower it or add images")
    return PCA(n_components=n_components, whiten=bool(whiten), svd_solver=svd_solver,
               random_state=int(random_state)).fit(train_hog.astype(np.float64))


def fit_baseline(x_train: np.ndarray, y_train: np.ndarray, C: float = 1.0,
                 max_iter: int = 2000) -> Pipeline:
    """Standardise, then multinomial logistic regression: the classical baseline.

    Parameters
    ----------
    x_train : numpy.ndarray
        (n, n_components) PCA features of the train split.
    y_train : numpy.ndarray
        Integer labels.
    C : float
        Inverse regularisation strength (``features.baseline.C``).
    max_iter : int
        Solver iterations (``features.baseline.max_iter``).
    """
    if len(np.unique(y_train)) < 2:
        raise DataError("the train split holds a single class; the baseline needs at least two; "
                        "check data/raw and rerun `dvc repro split`")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=float(C), max_iter=int(max_iter)))
    return model.fit(x_train, y_train)


def _scores(model: Pipeline, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if len(y) == 0:
        return float("nan"), float("nan")
    predicted = model.predict(x)
    return (float(accuracy_score(y, predicted)),
            float(f1_score(y, predicted, average="macro", zero_division=0)))


def write_features(out_dir: Path, reduced: dict, labels: dict, paths: dict, pca: PCA) -> dict:
    """Write ``<split>.npz``, ``pca.joblib`` and ``meta.json`` (returned) in ``out_dir``."""
    for name in SPLITS:
        save_npz(out_dir / f"{name}.npz", x=reduced[name], y=labels[name].astype(np.int64),
                 path=paths[name])
    atomic_write(out_dir / "pca.joblib", lambda tmp: joblib.dump(pca, tmp))
    meta = {"hog_length": int(pca.n_features_in_), "n_components": int(pca.n_components_),
            "whiten": pca.whiten, "svd_solver": pca.svd_solver,
            "explained_variance_ratio_sum": float(pca.explained_variance_ratio_.sum()),
            "counts": {name: len(labels[name]) for name in SPLITS}}
    write_json(out_dir / "meta.json", meta)
    return meta


def run(cfg: Config, root: Path) -> dict:
    """Run the stage: preprocessed splits -> HOG -> PCA features, baseline metrics and run.

    Returns the baseline metrics (as in ``baseline.json``), the MLflow run id and the
    features folder.
    """
    fcfg = cfg.features
    out_dir = root / cfg.paths.features_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    images, labels, paths = {}, {}, {}
    for name in SPLITS:
        images[name], labels[name], paths[name] = load_split(root / cfg.paths.preprocessed_dir, name)
    computed = features_of_splits(images, fcfg, n_jobs=fcfg.n_jobs)
    del images
    hogs, pca, reduced = computed.hogs, computed.pca, computed.reduced
    feature_seconds = time.perf_counter() - started

    meta = write_features(out_dir, reduced, labels, paths, pca)
    model = fit_baseline(reduced["train"], labels["train"], fcfg.baseline.C,
                         fcfg.baseline.max_iter)
    val_accuracy, val_f1 = _scores(model, reduced["val"], labels["val"])
    test_accuracy, test_f1 = _scores(model, reduced["test"], labels["test"])
    metrics = {
        "val_accuracy": val_accuracy, "test_accuracy": test_accuracy,
        "val_f1_macro": val_f1, "test_f1_macro": test_f1,
        "hog_dim": meta["hog_length"], "pca_explained_variance": meta["explained_variance_ratio_sum"],
        "feature_seconds": round(feature_seconds, 3),
    }
    # JSON has no NaN: an empty split's score is written as null.
    report_path = write_json(root / cfg.paths.reports_dir / "baseline.json",
                             {k: (v if np.isfinite(v) else None) for k, v in metrics.items()})

    from leukemia_cnn.features.baseline_run import log_baseline

    run_id = log_baseline(cfg, root, metrics, meta["counts"], pca, model, report_path, hogs["train"])
    return {**metrics, "mlflow_run_id": run_id, "output": str(out_dir)}
