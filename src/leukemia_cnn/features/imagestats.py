"""Interpretable per-image statistics, shared by the out-of-distribution guard and ``drift``.

:func:`image_statistics` measures a batch of model inputs (brightness, spread, percentiles,
focus, edges; :func:`colour_statistics` their colour) for the guard's input part and for
``drift``'s ``intensity_*`` and ``focus``, so "focus" means one thing in both.
:func:`file_statistics` adds, for ``drift``, what a file tells about another lab's acquisition,
measured on the model input (:func:`~leukemia_cnn.data.imaging.to_model_input` at
``preprocess.image_size``, so comparable between resolutions), except its size:

- ``width``, ``height``, ``aspect`` (width / height): the file as stored;
- ``red|green|blue_mean|std``: colour, on the RGB version of the model input;
- ``hematoxylin|eosin_mean|std``: stain optical densities (``skimage.color.rgb2hed``, colour
  deconvolution with Ruifrok and Johnston's H&E vectors): a stain or scanner change moves them;
- ``intensity_mean|std``: the model input itself (grayscale, or the mean of RGB's channels);
- ``focus``: the log variance of its Laplacian, which falls when an image is blurred or
  magnified (:data:`STATISTIC_NAMES` ``log_laplacian_var``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.color import rgb2hed
from tqdm.auto import tqdm

from leukemia_cnn.data.imaging import open_image, to_model_input
from leukemia_cnn.errors import DataError

INPUT_FEATURES = ("width", "height", "aspect",
                  *(f"{name}_{stat}" for name in ("red", "green", "blue", "hematoxylin", "eosin")
                    for stat in ("mean", "std")),
                  "intensity_mean", "intensity_std", "focus")
# The HOG + PCA components of the features stage, as features: hog_pca_1 ... hog_pca_k.
PCA_PREFIX = "hog_pca_"


STATISTICS_SIDE = 50  # image statistics are computed at about this many pixels a side
STATISTICS_CHUNK = 128  # fewer images per thread than this: one thread computes the statistics
STATISTIC_NAMES = ("mean", "std", "p05", "p50", "p95", "log_laplacian_var", "log_gradient_energy")


def image_statistics(x: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Brightness, focus and edge statistics per image of ``x`` (n, H, W, C) in [0, 1].

    Computed at about :data:`STATISTICS_SIDE` pixels a side (every second pixel of a 100x100
    input; percentiles on half as many again): the guard's input gate then costs a few percent
    of the forward pass, and a blur or a stain shift still moves these statistics. Batches of
    :data:`STATISTICS_CHUNK` images or more are split over ``workers`` threads (default: one
    per core; numpy releases the GIL); each image's row is the same either way.
    """
    n = len(x)
    if n == 0:
        return np.zeros((0, len(STATISTIC_NAMES)))
    workers = max(1, min(workers or os.cpu_count() or 1, n // STATISTICS_CHUNK))
    if workers == 1:
        return _statistics(x)
    bounds = np.linspace(0, n, workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(lambda start, stop: _statistics(x[start:stop]),
                                            bounds[:-1], bounds[1:])))


def colour_statistics(x: np.ndarray) -> np.ndarray:
    """The colour of each image of ``x`` (n, H, W, C) in [0, 1]: the mean red and blue minus
    the mean green (the stain's hue) and the mean per-pixel spread of the channels (its
    saturation; 0 for a grey image). All 0 for one channel. (n, 3)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[-1] < 3 or len(x) == 0:
        return np.zeros((len(x), 3))
    means = x[..., :3].mean(axis=(1, 2))
    chroma = (x[..., :3].max(axis=-1) - x[..., :3].min(axis=-1)).mean(axis=(1, 2))
    return np.column_stack([means[:, 0] - means[:, 1], means[:, 2] - means[:, 1],
                            chroma]).astype(np.float64)


def _statistics(x: np.ndarray) -> np.ndarray:
    gray = np.asarray(x, dtype=np.float32)
    if gray.ndim == 4:  # a view for one channel: a mean over it would copy every pixel
        gray = gray[..., 0] if gray.shape[-1] == 1 else gray.mean(axis=-1)
    n, step = len(gray), max(1, gray.shape[1] // STATISTICS_SIDE)
    half = np.ascontiguousarray(gray[:, ::step, ::step])
    flat = half.reshape(n, -1)
    percentiles = np.percentile(gray[:, ::2 * step, ::2 * step].reshape(n, -1), [5, 50, 95],
                                axis=1).T
    laplacian = (half[:, 1:-1, :-2] + half[:, 1:-1, 2:] + half[:, :-2, 1:-1]
                 + half[:, 2:, 1:-1] - 4.0 * half[:, 1:-1, 1:-1])
    edges = (np.square(np.diff(half, axis=1)).mean(axis=(1, 2))
             + np.square(np.diff(half, axis=2)).mean(axis=(1, 2)))
    focus = np.log(laplacian.reshape(n, -1).var(axis=1) + 1e-8)
    return np.column_stack([flat.mean(axis=1), flat.std(axis=1), percentiles.reshape(n, 3),
                            focus, np.log(edges + 1e-8)]).astype(np.float64)


def pca_columns(values: np.ndarray) -> dict[str, np.ndarray]:
    """One entry per PCA component of ``values`` (n, k): ``hog_pca_1`` ... ``hog_pca_k``."""
    return {f"{PCA_PREFIX}{index + 1}": values[:, index] for index in range(values.shape[1])}


def file_statistics(image, image_size: int, color_mode: str) -> tuple[dict[str, float],
                                                                     np.ndarray]:
    """The :data:`INPUT_FEATURES` of one decoded PIL image, and its model input.

    Parameters
    ----------
    image : PIL.Image.Image
        A decoded image (:func:`leukemia_cnn.data.imaging.open_image`).
    image_size : int
        ``preprocess.image_size``.
    color_mode : {"grayscale", "rgb"}
        ``preprocess.color_mode``.

    Returns
    -------
    stats : dict of str to float
        One value per feature of :data:`INPUT_FEATURES`.
    model_input : numpy.ndarray
        float32 (image_size, image_size, channels): what the model and HOG see.
    """
    rgb = to_model_input(image, image_size, "rgb")
    model_input = to_model_input(image, image_size, color_mode)
    shared = dict(zip(STATISTIC_NAMES, image_statistics(model_input[np.newaxis], workers=1)[0],
                      strict=True))
    stains = rgb2hed(rgb.astype(np.float64))
    stats = {"width": float(image.width), "height": float(image.height),
             "aspect": image.width / image.height, "intensity_mean": float(shared["mean"]),
             "intensity_std": float(shared["std"]), "focus": float(shared["log_laplacian_var"])}
    planes = {"red": rgb[..., 0], "green": rgb[..., 1], "blue": rgb[..., 2],
              "hematoxylin": stains[..., 0], "eosin": stains[..., 1]}
    for name, plane in planes.items():
        stats[f"{name}_mean"], stats[f"{name}_std"] = float(plane.mean()), float(plane.std())
    return stats, model_input


@dataclass
class DescribedImages:
    """What :func:`describe_files` measured: per feature one value per readable file, their
    model inputs (same order), and why each other file was skipped."""

    paths: list[Path]
    stats: dict[str, np.ndarray]
    model_inputs: np.ndarray
    skipped: dict[Path, str]


def describe_files(paths: list[Path], image_size: int, color_mode: str, workers: int = 1,
                   desc: str = "images", keep_inputs: bool = True) -> DescribedImages:
    """Decode each file once and measure it; unreadable files are skipped with their reason.

    Parameters
    ----------
    image_size, color_mode
        ``preprocess.image_size`` and ``preprocess.color_mode``.
    workers : int
        Decoding threads (PIL and numpy release the GIL for most of the work).
    desc : str
        Progress-bar label.
    keep_inputs : bool
        Keep the model inputs (for HOG); False leaves ``model_inputs`` empty.
    """
    def measure(path: Path):
        if not path.is_file():
            return f"{path}: {'not a regular file' if path.exists() else 'no such file'}"
        try:
            stats, model_input = file_statistics(open_image(path), image_size, color_mode)
        except DataError as exc:
            return str(exc)
        return stats, (model_input if keep_inputs else None)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(tqdm(pool.map(measure, paths), total=len(paths), desc=desc, unit="img",
                            leave=False, disable=None))
    kept = [(path, result) for path, result in zip(paths, results, strict=True)
            if not isinstance(result, str)]
    channels = 1 if color_mode == "grayscale" else 3
    inputs = (np.stack([result[1] for _, result in kept]) if kept and keep_inputs
              else np.empty((0, image_size, image_size, channels), np.float32))
    return DescribedImages(
        paths=[path for path, _ in kept],
        stats={name: np.array([result[0][name] for _, result in kept], dtype=np.float64)
               for name in INPUT_FEATURES},
        model_inputs=inputs,
        skipped={path: result for path, result in zip(paths, results, strict=True)
                 if isinstance(result, str)})
